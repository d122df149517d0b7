"""Embedders: the bundled local model, the micro-batcher, and an OpenAI-compatible API."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from team_memory_core.active_model import ActiveModel
from team_memory_core.embedder import (
    BUNDLED_MODEL,
    INT8_COMPUTE_MODEL,
    QUERY_TUNING,
    BatchingEmbedder,
    Embedder,
    EmbeddingModel,
    HttpEmbedder,
    LocalEmbedder,
    SessionTuning,
    UnknownModel,
    _bundled_model_dir,
    _length_batches,
    create_embedder,
    embed_async,
    same_model,
    same_model_name,
)
from team_memory_core.int8_compute import derive_int8_compute_model
from team_memory_core.settings import Settings


def test_local_model_is_normalized_and_semantic(embedder: Embedder) -> None:
    vectors = embedder.embed([
        "We use UUID v7 for primary keys",
        "Which identifier format do new database rows get?",
        "The office plant needs water on Fridays",
    ])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_bundled_model_gives_the_vectors_fastembed_gives(tmp_path: Path) -> None:
    """Vectors of the bundled model were first made through fastembed: running the model
    directly must not move them (long texts are truncated at 512 tokens; batches are
    padded)."""
    from fastembed import TextEmbedding

    embedder = LocalEmbedder(tmp_path, BUNDLED_MODEL)
    reference = TextEmbedding(model_name="sentence-transformers/all-MiniLM-L6-v2",
                              specific_model_path=str(_bundled_model_dir(tmp_path)),
                              cache_dir=str(tmp_path))
    # Two batches of 8, each padded to the long text's 512 tokens. (Fifteen long texts in one
    # batch of 64 grew onnxruntime's arena in this process by 5 GB for the rest of the suite.)
    texts = ["short", "We use UUID v7 for primary keys", "token " * 700, "",
             "Ünïcödé 日本語 and emoji 🚀"] * 3
    expected = np.vstack(list(reference.embed(texts, batch_size=8)))
    assert np.allclose(embedder.embed(texts), expected, atol=1e-6)


def test_texts_of_similar_length_run_together_in_bounded_calls() -> None:
    # Shortest first; a 500-token text would pad three short ones to 4 x 500 > 1,000 tokens.
    assert _length_batches([5, 500, 7, 6], max_rows=64, max_tokens=1000) == [[0, 3, 2], [1]]
    assert _length_batches([1] * 5, max_rows=2, max_tokens=100) == [[0, 1], [2, 3], [4]]
    assert _length_batches([900], max_rows=64, max_tokens=100) == [[0]]
    assert _length_batches([], max_rows=64, max_tokens=100) == []


def test_a_mixed_batch_gives_each_text_its_own_vector(embedder: Embedder) -> None:
    texts = ["token " * 600, "short", "We use UUID v7 for primary keys", "token " * 30]
    together = embedder.embed(texts)
    alone = np.vstack([embedder.embed([text]) for text in texts])
    assert np.allclose(together, alone, atol=1e-5)


def test_local_model_runs_on_the_callers_thread_without_spinning(embedder: Embedder,
                                                                tmp_path: Path) -> None:
    """onnxruntime's defaults (a pool of one thread per core, spin-waiting) cost a third more
    CPU per text on a shared 2-core box; the product runs the model on one thread."""
    assert isinstance(embedder, LocalEmbedder)
    options = embedder._session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    tuned = LocalEmbedder(tmp_path, INT8_COMPUTE_MODEL,
                          SessionTuning(intra_op_threads=2, spinning=True))
    tuned_options = tuned._session.get_session_options()
    assert tuned_options.intra_op_num_threads == 2
    assert tuned_options.get_session_config_entry("session.intra_op.allow_spinning") == "1"



def test_queries_run_the_int8_model_on_one_thread_and_the_float_model_on_two(
        tmp_path: Path) -> None:
    """The MCP server's session: one thread is the faster for the int8 model (and leaves the
    other core to the search's SQL); two for the float model."""
    threads = {name: LocalEmbedder(tmp_path, name, QUERY_TUNING)._session
               .get_session_options().intra_op_num_threads
               for name in (INT8_COMPUTE_MODEL, BUNDLED_MODEL)}
    assert threads == {INT8_COMPUTE_MODEL: 1, BUNDLED_MODEL: 2}

TEXTS = ["We use UUID v7 for primary keys", "Which identifier format do new database rows get?",
         "The office plant needs water on Fridays", "token " * 700, "",
         "Ünïcödé 日本語 and emoji 🚀"]


def test_int8_compute_model_multiplies_the_bundled_weights_in_int8(tmp_path: Path) -> None:
    """The default model is derived from the bundled file on this machine, the same bytes
    every time; its vectors are close to the bundled model's, not equal (the activations are
    quantized), and keep the same neighbours."""
    import onnx

    bundled = (_bundled_model_dir(tmp_path) / "model.onnx").resolve()
    first, second = tmp_path / "first.onnx", tmp_path / "second.onnx"
    assert derive_int8_compute_model(bundled, first) == 36  # 6 layers x 6 projections
    derive_int8_compute_model(bundled, second)
    assert first.read_bytes() == second.read_bytes()
    operators = [node.op_type for node in onnx.load(str(first)).graph.node]
    assert operators.count("DynamicQuantizeMatMul") == 36
    assert operators.count("MatMul") == 12  # attention scores and values stay float

    int8 = LocalEmbedder(tmp_path / "cache", INT8_COMPUTE_MODEL)
    assert (int8.name, int8.dim) == (INT8_COMPUTE_MODEL, 384)
    vectors = int8.embed(TEXTS)
    reference = LocalEmbedder(tmp_path / "cache", BUNDLED_MODEL).embed(TEXTS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    agreement = np.sum(vectors * reference, axis=1)
    assert agreement.min() > 0.97 and not np.allclose(vectors, reference, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    # The activations' quantization scale is per model run: a text's vector must not depend
    # on the texts embedded with it.
    assert np.array_equal(int8.embed(TEXTS[1:2])[0], vectors[1])
    assert np.array_equal(int8.embed([TEXTS[1], "a much longer text " * 40])[0], vectors[1])


def test_local_models_answer_to_their_names_only(tmp_path: Path) -> None:
    assert same_model_name(BUNDLED_MODEL, "all-MiniLM-L6-v2")
    assert same_model_name("minilm", BUNDLED_MODEL)
    assert not same_model_name(BUNDLED_MODEL, INT8_COMPUTE_MODEL)
    assert same_model_name("text-embedding-3-small", "text-embedding-3-small")
    assert not same_model_name("text-embedding-3-small", BUNDLED_MODEL)
    with pytest.raises(UnknownModel, match=r"no model 'BAAI/bge-small-en-v1.5'.*dynamic-int8"):
        create_embedder(Settings(data_dir=tmp_path, embedding_model="BAAI/bge-small-en-v1.5"))


class QueryPrefixed:
    """The real model, queries embedded with a prefix (as e5-style models are used)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed([f"query: {text}" for text in texts])


def test_queries_are_embedded_as_queries_where_the_model_tells_them_apart(
        embedder: Embedder) -> None:
    prefixed = QueryPrefixed(embedder)
    text = "which database do we use"
    as_query = asyncio.run(embed_async(prefixed, [text], queries=True))[0]
    assert np.allclose(as_query, embedder.embed([f"query: {text}"])[0], atol=1e-6)
    assert np.allclose(asyncio.run(embed_async(prefixed, [text]))[0],
                       embedder.embed([text])[0], atol=1e-6)
    # A model without a query form embeds a query as any text.
    assert np.allclose(asyncio.run(embed_async(embedder, [text], queries=True))[0],
                       embedder.embed([text])[0], atol=1e-6)
    # The database's model, as every process holds it, passes the query form through.
    following = ActiveModel(prefixed, Settings())
    assert np.allclose(asyncio.run(embed_async(following, [text], queries=True))[0],
                       as_query, atol=1e-6)
    assert np.allclose(asyncio.run(embed_async(ActiveModel(embedder, Settings()), [text],
                                               queries=True))[0],
                       embedder.embed([text])[0], atol=1e-6)


def test_a_model_is_the_same_under_any_of_its_names_never_its_variant(
        embedder: Embedder) -> None:
    """The model identity a process follows (same_model): the bundled model's other names
    are the bundled model; its int8-arithmetic variant, or a truncation, is another."""
    assert embedder.name == INT8_COMPUTE_MODEL
    assert same_model(embedder, EmbeddingModel("local", INT8_COMPUTE_MODEL, 384))
    assert not same_model(embedder, EmbeddingModel("local", BUNDLED_MODEL, 384))
    assert not same_model(embedder, EmbeddingModel("local", INT8_COMPUTE_MODEL, 128))
    bundled = QueryPrefixed(embedder)
    bundled.name = "minilm"
    assert same_model(bundled, EmbeddingModel("local", BUNDLED_MODEL, 384))
    EmbeddingModel("local", "all-MiniLM-L6-v2", 128).check()
    with pytest.raises(UnknownModel, match="no model 'bge-small'"):
        EmbeddingModel("local", "bge-small", 384).check()
    with pytest.raises(UnknownModel, match="not widened to 512"):
        EmbeddingModel("local", INT8_COMPUTE_MODEL, 512).check()


class CountingEmbedder:
    """Wraps the real model and records the size of every call it receives."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.batches: list[int] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(len(texts))
        return self.inner.embed(texts)


def test_batching_embedder_merges_concurrent_calls(embedder: Embedder) -> None:
    counting = CountingEmbedder(embedder)
    batcher = BatchingEmbedder(counting, window_ms=20, max_batch=64)
    texts = [f"decision number {i} about caching" for i in range(20)]

    async def run() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.embed_one(t) for t in texts))

    vectors = asyncio.run(run())
    assert sum(counting.batches) == 20
    assert len(counting.batches) <= 2
    assert np.allclose(vectors[3], embedder.embed([texts[3]])[0], atol=1e-5)


def test_batching_embedder_passes_model_errors_to_every_waiter(embedder: Embedder) -> None:
    class Broken(CountingEmbedder):
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            raise RuntimeError("model crashed")

    batcher = BatchingEmbedder(Broken(embedder), window_ms=5, max_batch=8)

    async def run() -> list[BaseException | np.ndarray]:
        return await asyncio.gather(*(batcher.embed_one("x") for _ in range(3)),
                                    return_exceptions=True)

    results = asyncio.run(run())
    assert all(isinstance(r, RuntimeError) for r in results)


@pytest.fixture
def embeddings_api(embedder: Embedder) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OpenAI-compatible /embeddings endpoint on 127.0.0.1 serving the real local model."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"path": self.path, "auth": self.headers.get("Authorization"),
                             **body})
            vectors = embedder.embed(body["input"]) * 3.0  # un-normalized on purpose
            data = [{"index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
            payload = json.dumps({"data": list(reversed(data)), "model": body["model"]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload.encode())

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1", received
    server.shutdown()
    server.server_close()


def test_http_embedder_speaks_the_openai_protocol(
    embeddings_api: tuple[str, list[dict[str, Any]]], embedder: Embedder
) -> None:
    url, received = embeddings_api
    settings = Settings(embedding_provider="openai", embedding_api_url=url,
                        embedding_api_key=SecretStr("sk-test"), embedding_model="my-model",
                        embedding_dim=384)
    api = create_embedder(settings)
    assert isinstance(api, HttpEmbedder)
    vectors = api.embed(["first text", "second text"])
    assert received == [{"path": "/v1/embeddings", "auth": "Bearer sk-test",
                         "model": "my-model", "input": ["first text", "second text"]}]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[1], embedder.embed(["second text"])[0], atol=1e-5)


def test_http_embedder_rejects_a_dimension_mismatch(
    embeddings_api: tuple[str, list[dict[str, Any]]],
) -> None:
    url, _ = embeddings_api
    api = create_embedder(Settings(embedding_provider="openai", embedding_api_url=url,
                                   embedding_dim=1024))
    with pytest.raises(ValueError, match="returned 384 dimensions"):
        api.embed(["text"])


def test_local_model_with_wrong_dimension_is_a_start_up_error(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="384 dimensions"):
        create_embedder(Settings(data_dir=tmp_path, embedding_dim=768))
