"""Latency of the Claude Code hooks against a running server (`team-memory up`).

    python bench/hook_latency.py --server http://127.0.0.1:8765 \
        --data-dir ~/.local/share/team-memory

Measures, as Claude Code experiences them (a new process per hook call):
- PostToolUse: `python -m team_memory.hook PostToolUse` wall time, server up;
- SessionStart: the same for the context hook (server assembles the working set);
- PostToolUse with the server down (connection refused, event spooled);
- the /hooks/context and /hooks/events requests alone, from a warm process (server share).
Prints p50/p95/max in milliseconds. Uses the recorded payloads in tests/fixtures/claude_code.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from team_memory.hook.config import HookConfig  # noqa: E402
from team_memory.hook.records import event_record  # noqa: E402
from team_memory.hook.transport import post  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "claude_code"


def _stats(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    print(f"{name:<44} n={len(ordered):<4} p50={statistics.median(ordered):6.1f} ms  "
          f"p95={p95:6.1f} ms  max={ordered[-1]:6.1f} ms")


def _payload(name: str, session: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((FIXTURES / name).read_text())
    data["session_id"] = session
    data["cwd"] = str(ROOT)
    data["tool_use_id"] = f"toolu_bench_{uuid.uuid4().hex}"
    return data


def _process(event: str, payload: dict[str, object], server: str, data_dir: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "team_memory.hook", event, "--server", server,
                    "--data-dir", data_dir], input=json.dumps(payload), text=True,
                   capture_output=True, cwd=ROOT, check=True)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default="http://127.0.0.1:8765")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("-n", type=int, default=60)
    args = parser.parse_args()
    session = f"bench-{uuid.uuid4().hex[:8]}"
    edit = "post_tool_use_edit.json"
    _stats("PostToolUse hook process (server up)",
           [_process("PostToolUse", _payload(edit, session), args.server, args.data_dir)
            for _ in range(args.n)])
    _stats("SessionStart hook process (server up)",
           [_process("SessionStart", _payload("session_start.json", session), args.server,
                     args.data_dir) for _ in range(args.n)])
    with tempfile.TemporaryDirectory() as spool_dir:
        _stats("PostToolUse hook process (server down)",
               [_process("PostToolUse", _payload(edit, session), "http://127.0.0.1:9",
                         spool_dir) for _ in range(args.n)])
    config = HookConfig.resolve(args.server, args.data_dir)
    context, events = [], []
    for _ in range(args.n):
        start = time.perf_counter()
        post(config, "/hooks/context", {"project": "github.com/bench/repo"}, 5)
        context.append((time.perf_counter() - start) * 1000)
        record = event_record("PostToolUse", _payload(edit, session), "github.com/bench/repo")
        start = time.perf_counter()
        post(config, "/hooks/events", {"events": [record]}, 5)
        events.append((time.perf_counter() - start) * 1000)
    _stats("/hooks/context request (warm client)", context)
    _stats("/hooks/events request (warm client)", events)
    end = event_record("SessionEnd", _payload("session_end.json", session),
                       "github.com/bench/repo")
    post(config, "/hooks/events", {"events": [end]}, 5)


if __name__ == "__main__":
    main()
