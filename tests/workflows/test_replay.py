"""Workflow determinism: recorded histories of every workflow type replay against today's code.

The worker runs workflows outside the sandbox (docs/architecture.md), so nothing stops a
change from making a workflow non-deterministic except these replays: histories recorded
from an earlier version (tests/workflows/histories/, payloads decrypted) and histories of
runs made now. A change that would break running workflows after an upgrade fails here.

Re-record the committed histories (after a deliberate, versioned change) with
TEAM_MEMORY_RECORD_HISTORIES=1 ./team-memory test tests/workflows/test_replay.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from team_memory_core.contract import (
    CAPTURE_WORKFLOW,
    CONSOLIDATE_WORKFLOW,
    INGEST_WORKFLOW,
    capture_workflow_id,
)
from team_memory_core.llm.client import Distiller
from team_memory_core.models.consolidation import ConsolidateInput
from team_memory_core.payload_codec import Envelope, decrypt, is_encrypted
from team_memory_core.temporal import keyring_of
from tests.conftest import Stack
from tests.mcp_server.test_capture import serving
from tests.support.anthropic_server import FakeAnthropic
from tests.workflows.test_consolidate import save
from workflows.capture import SessionObservations
from workflows.consolidate import Consolidate
from workflows.ingest import IngestMemory

pytestmark = pytest.mark.anyio

HISTORIES = Path(__file__).parent / "histories"
RECORD = os.environ.get("TEAM_MEMORY_RECORD_HISTORIES") == "1"
WORKFLOW_TYPES = {INGEST_WORKFLOW, CONSOLIDATE_WORKFLOW, CAPTURE_WORKFLOW}


def replayer(converter: DataConverter) -> Replayer:
    """As the worker runs them: the same workflows, unsandboxed."""
    return Replayer(workflows=[IngestMemory, Consolidate, SessionObservations],
                    data_converter=converter, workflow_runner=UnsandboxedWorkflowRunner())


def workflow_type(history: dict[str, Any]) -> str:
    started = history["events"][0]["workflowExecutionStartedEventAttributes"]
    return str(started["workflowType"]["name"])


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_a_recorded_history_replays_on_todays_code(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())  # noqa: ASYNC240 (small file)
    result = await replayer(pydantic_data_converter).replay_workflow(history)
    assert result.replay_failure is None


def test_every_workflow_type_has_recorded_histories() -> None:
    recorded = {workflow_type(json.loads(p.read_text())) for p in HISTORIES.glob("*.json")}
    assert recorded == WORKFLOW_TYPES


async def test_histories_of_runs_made_now_replay(stack: Stack, fake: FakeAnthropic,
                                                 distiller: Distiller, tmp_path: Path) -> None:
    async with stack.worker():
        first = await save(stack, "Releases are cut from main every Tuesday")
        await save(stack, "Releases are cut from main every Tuesday!")  # a local duplicate
    # A neighbour and no identical text: the rules cannot decide alone, the model does.
    fake.script(FakeAnthropic.tool_result({"reason": "A separate fact.", "action": "ADD"}))
    async with stack.worker(distiller=distiller):
        decided_by_model = await save(stack, "Release branches are cut from main on Tuesdays")
    assert fake.calls == 1
    async with stack.worker():
        consolidation = f"consolidate/{stack.principal.tenant_name}/default/replay-{uuid4()}"
        await stack.client.execute_workflow(
            Consolidate.run, ConsolidateInput(tenant=stack.principal.tenant_name,
                                              project="default"),
            id=consolidation, task_queue=stack.settings.task_queue)
    async with serving(stack, fake, tmp_path) as cap:
        session_id, _ = await cap.replay_recorded_session()  # it ends with SessionEnd
    ingestion = (await stack.service.status(stack.principal, first)).workflow_id
    model_ingestion = (await stack.service.status(stack.principal, decided_by_model)).workflow_id
    assert ingestion is not None and model_ingestion is not None
    runs = {
        "ingest": ingestion,
        "ingest-model-decides": model_ingestion,
        "consolidate": consolidation,
        "capture": capture_workflow_id(stack.principal.tenant_name, stack.principal.key_id,
                                       session_id),
    }
    recorded_types = set()
    for name, workflow_id in runs.items():
        history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
        result = await replayer(stack.client.data_converter).replay_workflow(history)
        assert result.replay_failure is None, name
        plain = await decrypted(stack, json.loads(history.to_json()))
        recorded_types.add(workflow_type(plain))
        if RECORD:
            (HISTORIES / f"{name}.json").write_text(json.dumps(plain, indent=1) + "\n")
    assert recorded_types == WORKFLOW_TYPES


async def decrypted(stack: Stack, node: Any) -> Any:
    """The history with every encrypted payload opened (what the committed files hold, so
    that they replay without this session's keys)."""
    if isinstance(node, list):
        return [await decrypted(stack, item) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) >= {"metadata", "data"} and isinstance(node["metadata"], dict):
        payload = json_format.ParseDict(node, Payload())
        if is_encrypted(payload):
            opened = await decrypt(keyring_of(stack.client), payload, Envelope.read(payload))
            return json_format.MessageToDict(opened)
    return {key: await decrypted(stack, value) for key, value in node.items()}
