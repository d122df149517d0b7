"""What `team-memory up` does while the stack runs: restart a child that dies, keep the others.

A child that exits (a crash, kill -9, the OOM killer) is started again after a backoff that
doubles with each quick failure, and logged; the other children keep serving meanwhile (the
worker and the MCP server reconnect to a restarted PostgreSQL or Temporal by themselves, and
nothing acknowledged is lost: it is in PostgreSQL and Temporal). A child that keeps dying
(CRASH_LOOP_RESTARTS restarts within CRASH_LOOP_WINDOW_S) is a crash loop: `up` gives up,
says so, and stops everything. Every restart is written to ``<data dir>/up-state.json``, which
`team-memory status` reads.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

CRASH_LOOP_RESTARTS = 5
CRASH_LOOP_WINDOW_S = 60.0
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
STATE_FILE = "up-state.json"


class Running(Protocol):
    """A started child: a subprocess.Popen, or the embedded PostgreSQL."""

    def poll(self) -> int | None: ...


@dataclass
class Child:
    name: str
    start: Callable[[], Running]
    process: Running
    restarts: int = 0
    last_exit: int | None = None
    last_restart: str | None = None
    restart_at: float | None = None
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=CRASH_LOOP_RESTARTS))

    def backoff(self, now: float) -> float:
        quick = sum(1 for at in self.recent if now - at < CRASH_LOOP_WINDOW_S)
        return float(min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2.0 ** quick))

    def crash_looping(self, now: float) -> bool:
        return len(self.recent) == CRASH_LOOP_RESTARTS and \
            now - self.recent[0] < CRASH_LOOP_WINDOW_S


class CrashLoop(RuntimeError):
    def __init__(self, child: Child) -> None:
        super().__init__(f"{child.name} keeps exiting ({child.restarts} restarts, the last "
                         f"{CRASH_LOOP_RESTARTS} within {CRASH_LOOP_WINDOW_S:.0f} s, last exit "
                         f"code {child.last_exit}); giving up. Its log is in the data dir.")
        self.child = child


@dataclass
class Supervisor:
    children: list[Child]
    state_file: Path
    clock: Callable[[], float] = time.monotonic

    def check(self) -> None:
        """One round: notice exits, restart what is due. Raises CrashLoop."""
        now = self.clock()
        for child in self.children:
            if child.restart_at is None:
                code = child.process.poll()
                if code is None:
                    continue
                child.last_exit = code
                if child.crash_looping(now):
                    raise CrashLoop(child)
                child.restart_at = now + child.backoff(now)
                log(f"{child.name} exited ({code}); restarting in "
                    f"{child.restart_at - now:.1f} s")
            elif now >= child.restart_at:
                self._restart(child, now)

    def _restart(self, child: Child, now: float) -> None:
        child.restart_at = None
        child.recent.append(now)
        child.restarts += 1
        child.last_restart = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            child.process = child.start()
        except Exception as error:  # a failed start counts as one more exit, and backs off
            child.last_exit = -1
            child.restart_at = now + child.backoff(now)
            log(f"{child.name} did not start ({error}); retrying")
        else:
            log(f"{child.name} restarted (restart {child.restarts})")
        self.write_state()

    def write_state(self) -> None:
        state = {"pid": os.getpid(), "children": {
            child.name: {"restarts": child.restarts, "last_exit": child.last_exit,
                         "last_restart": child.last_restart} for child in self.children}}
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2))
        os.replace(temporary, self.state_file)


def read_state(data_dir: Path) -> dict[str, dict[str, object]]:
    """The restarts `up` recorded, by child (empty when `up` does not run or never did)."""
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    children = state.get("children") if isinstance(state, dict) else None
    return children if isinstance(children, dict) else {}


def log(message: str) -> None:
    print(f"team-memory up: {message}", file=sys.stderr, flush=True)
