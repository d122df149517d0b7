"""OpenTelemetry end to end: real `serve` and `worker` processes export to an OTLP stand-in."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from team_memory import embedded
from team_memory_core import telemetry
from team_memory_core.llm.client import Distiller
from team_memory_core.llm.ingest import Candidate, decide_ingest
from team_memory_core.models.memories import MemoryStatus
from tests.conftest import Stack
from tests.mcp_server.test_http import client_for
from tests.mcp_server.test_tools import call
from tests.processes import child_env, team_memory, wait_ready
from tests.support.anthropic_server import FakeAnthropic
from tests.support.otlp_collector import OtlpCollector

pytestmark = pytest.mark.anyio


@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    with OtlpCollector() as running:
        yield running


async def wait_for_spans(collector: OtlpCollector, trace_id: bytes, wanted: list[str],
                         timeout: float = 20) -> set[str]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        names = {span.name for _, span in collector.trace(trace_id)}
        missing = [prefix for prefix in wanted if not any(n.startswith(prefix) for n in names)]
        if not missing:
            return names
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"trace lacks {missing}; it has {sorted(names)}")
        await asyncio.sleep(0.2)


async def test_one_save_is_one_trace_from_mcp_call_to_sql(
    stack: Stack, collector: OtlpCollector, fake: FakeAnthropic
) -> None:
    port = embedded.free_port()
    settings = stack.settings.model_copy(update={"mcp_port": port})
    env = child_env(settings, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
                    OTEL_BSP_SCHEDULE_DELAY="100", OTEL_METRIC_EXPORT_INTERVAL="300",
                    ANTHROPIC_API_KEY="sk-test", ANTHROPIC_BASE_URL=fake.base_url)
    base = f"http://127.0.0.1:{port}"
    with team_memory("worker", env=env), team_memory("serve", env=env) as server:
        await asyncio.to_thread(wait_ready, base, server)
        async with client_for(f"{base}/mcp", stack.api_key) as client:
            saved = await call(client, "save_memory", category="architecture",
                               content="Traces go to the OTLP collector configured by OTEL_*")
        assert await stack.wait_status(uuid.UUID(saved["id"])) is MemoryStatus.ACTIVE

        tool_spans = await save_spans(collector, 1)
        assert len(tool_spans) == 1, "one MCP server span per save"
        root = tool_spans[0]
        names = await wait_for_spans(collector, root.trace_id, [
            "StartWorkflow:IngestMemory", "RunWorkflow:IngestMemory",
            "RunActivity:ingest_memory", "embed ", "postgresql INSERT", "postgresql UPDATE",
        ])
        spans = collector.trace(root.trace_id)
        services = {service for service, _ in spans}
        assert services == {"team-memory-mcp-server", "team-memory-worker"}, services
        by_id = {span.span_id: span for _, span in spans}
        start = next(s for _, s in spans if s.name == "StartWorkflow:IngestMemory")
        assert by_id[start.parent_span_id].name == "tools/call save_memory"
        embed = next(s for _, s in spans if s.name.startswith("embed ")
                     and by_id[s.parent_span_id].name == "RunActivity:ingest_memory")
        attributes = {a.key: a.value for a in embed.attributes}
        assert attributes["embedding.batch_size"].int_value == 1
        assert "MiniLM" in attributes["embedding.model"].string_value
        assert "postgresql SELECT" in names
        # A tenant transaction's BEGIN carries its scope as literals: not into the span.
        texts = [a.value.string_value for _, s in spans for a in s.attributes
                 if a.key == "db.query.text"]
        assert any(text.startswith("BEGIN; SELECT set_config") for text in texts), texts
        assert not any(str(stack.principal.tenant_id) in text for text in texts)

        # A second memory with a neighbour gets the model's decision: its tokens are counted.
        fake.script(FakeAnthropic.tool_result({"reason": "Separate fact.", "action": "ADD"},
                                              input_tokens=321, output_tokens=17))
        async with client_for(f"{base}/mcp", stack.api_key) as client:
            second = await call(client, "save_memory", category="architecture",
                                content="Metrics go to the same OTLP collector as traces")
        assert await stack.wait_status(uuid.UUID(second["id"])) is MemoryStatus.ACTIVE
        # The first memory's injection screening (nothing to compare it with), then this one.
        assert [c.forced_tool for c in fake.conversations] == ["record_screening",
                                                               "record_ingest_decision"]
        # The rules could not decide alone: the model's decision and the commit are steps of
        # their own, in the same trace.
        # Spans are exported in batches: the second save's may come after its commit.
        second_root = next(span for span in await save_spans(collector, 2)
                           if span.trace_id != root.trace_id)
        await wait_for_spans(collector, second_root.trace_id, [
            "RunActivity:ingest_memory", "RunActivity:decide_memory", "RunActivity:commit_memory"])

        deadline = asyncio.get_running_loop().time() + 20
        wanted_metrics = {"team_memory.saves", "team_memory.decisions",
                          "team_memory.activity.duration", "team_memory.llm.tokens"}
        # Counted since the start: the first memory's screening (the fake's benign answer:
        # 100 in, 20 out) and this decision. Metrics are exported periodically: an export
        # may come between the two, so wait for the one that has both.
        wanted_tokens = {("input", 100 + 321), ("output", 20 + 17)}
        while not (wanted_metrics <= collector.metrics.keys()
                   and wanted_tokens <= token_counts(collector)):
            assert asyncio.get_running_loop().time() < deadline, sorted(collector.metrics)
            await asyncio.sleep(0.2)
        decisions = collector.metrics["team_memory.decisions"]
        assert any({a.key: a.value.string_value for a in point.attributes}.get("decision")
                   == "add" for point in decisions)


async def test_llm_call_span_carries_model_and_token_usage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # A local provider (the process-wide one can be set only once per process).
    monkeypatch.setattr(telemetry, "tracer", provider.get_tracer("test"))
    candidates = [Candidate(id=uuid.uuid4(), content="We use React for the frontend.",
                            category="architecture", similarity=0.91)]
    with FakeAnthropic() as fake:
        fake.script(FakeAnthropic.tool_result({"reason": "Newer fact.", "action": "ADD"},
                                              input_tokens=321, output_tokens=17))
        async with Distiller(api_key="sk-test", model="claude-haiku-4-5",
                             base_url=fake.base_url, timeout_s=5.0) as distiller:
            await decide_ingest(distiller, "We moved to Svelte.", "architecture", candidates)
    (span,) = exporter.get_finished_spans()
    assert span.name == "chat claude-haiku-4-5"
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.system"] == "anthropic"
    assert attributes["gen_ai.usage.input_tokens"] == 321
    assert attributes["gen_ai.usage.output_tokens"] == 17


async def save_spans(collector: OtlpCollector, count: int) -> list[Span]:
    """The MCP server's save spans, once ``count`` have arrived (or after 20 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    spans = collector.spans_named("tools/call save_memory")
    while len(spans) < count and loop.time() < deadline:
        await asyncio.sleep(0.2)
        spans = collector.spans_named("tools/call save_memory")
    return spans


def token_counts(collector: OtlpCollector) -> set[tuple[str, int]]:
    return {({a.key: a.value.string_value for a in point.attributes}["direction"], point.as_int)
            for point in collector.metrics.get("team_memory.llm.tokens", [])}
