"""What someone with access to the Temporal frontend sees: the real `temporal` CLI's output."""

from __future__ import annotations

import base64
import binascii
import json
import subprocess
from collections.abc import Iterator
from typing import Any

from team_memory.embedded import temporal_binary
from team_memory_core.payload_codec import ENCODING


def temporal(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(temporal_binary()), *args, "--address", address, "--disable-config-file",
         "--disable-config-env"],
        capture_output=True, text=True, timeout=60, check=False)


def show(address: str, workflow_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`temporal workflow show -o json` (``extra``: e.g. --codec-endpoint/--codec-auth)."""
    return temporal(address, "workflow", "show", "--workflow-id", workflow_id, "--output",
                    "json", *extra)


def listing(address: str, query: str) -> str:
    done = temporal(address, "workflow", "list", "--query", query, "--output", "json")
    assert done.returncode == 0, done.stderr
    return done.stdout


# Never passed through a codec, by design, and holding ids, names and times, no text
# (docs/security.md): headers (trace context), search attributes (the server indexes them) and
# the SDK core's own bookkeeping of a local activity (sequence number, type, attempt, times)
# and of a workflow.patched() call (the patch id).
CLEAR_BY_DESIGN = (".header", ".searchAttributes", "markerRecordedEventAttributes.details.data",
                   "markerRecordedEventAttributes.details.patch-data")


def payloads(tree: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, payload) for every payload in the CLI's JSON, except the ones clear by design."""
    if isinstance(tree, list):
        for index, item in enumerate(tree):
            yield from payloads(item, f"{path}[{index}]")
    elif isinstance(tree, dict):
        if isinstance(tree.get("metadata"), dict) and "encoding" in tree["metadata"]:
            yield path, tree
            return
        for key, value in tree.items():
            if not f"{path}.{key}".endswith(CLEAR_BY_DESIGN):
                yield from payloads(value, f"{path}.{key}")


def encoding(payload: dict[str, Any]) -> bytes:
    return base64.b64decode(payload["metadata"]["encoding"])


def data(payload: dict[str, Any]) -> bytes:
    raw = payload.get("data", "")
    try:
        return base64.b64decode(raw) if isinstance(raw, str) else json.dumps(raw).encode()
    except binascii.Error:
        return str(raw).encode()


def readable(output: str, needles: list[str]) -> list[str]:
    """The needles found in the output as printed or in any payload's data once base64 is
    undone (what an attacker reads without keys)."""
    tree = json.loads(output) if output.strip() else []
    blobs = [output.encode(), *(data(p) for _, p in payloads(tree))]
    return [needle for needle in needles if any(needle.encode() in blob for blob in blobs)]


# A workflow.patched() marker: the SDK core writes the patch id (a name in our code, never
# data) as plain JSON, outside the data converter (docs/security.md, "What stays clear").
_PATCH_MARKER = ".markerRecordedEventAttributes.details.patch-data."


def unencrypted(output: str) -> list[str]:
    """Where payloads not sealed by Team Memory's codec are, and their encoding."""
    return [f"{where}: {encoding(p).decode()}" for where, p in payloads(json.loads(output))
            if encoding(p) != ENCODING and _PATCH_MARKER not in where]
