"""Whether the parts Team Memory needs are working: one set of rules for the server's /readyz
and `team-memory status`.

A check is ok, failed, or unknown (what it depends on is down, or the part does not run where
it was asked). The worker is ok by ``WorkerReport.ok``: a live worker heartbeats on the task
queue, or, before its first heartbeat, polls it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from temporalio.client import Client

from team_memory_core.temporal import describe_workers


@dataclass(frozen=True)
class Check:
    ok: bool | None  # None: unknown
    detail: str  # for the operator (`team-memory status`)
    public: str | None = None  # what /readyz shows instead, if the detail is not for everyone

    @classmethod
    def passed(cls, detail: str = "ok") -> Check:
        return cls(True, detail)

    @classmethod
    def failed(cls, error: BaseException) -> Check:
        # /readyz needs no credentials: the error's message (hosts, paths) stays out of it.
        return cls(False, f"error: {describe_error(error)}", f"error: {type(error).__name__}")

    @classmethod
    def unknown(cls, detail: str) -> Check:
        return cls(None, detail)

    @property
    def probe(self) -> str:
        """The check as /readyz shows it."""
        if self.ok is None:
            return "unknown"
        return "ok" if self.ok else self.public or self.detail


def describe_error(error: BaseException) -> str:
    """The error's type and the first line of its message."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


WORKER_UNKNOWN = Check.unknown("unknown (Temporal unreachable)")


async def check_worker(client: Client, task_queue: str) -> Check:
    workers = await describe_workers(client, task_queue)
    return Check(workers.ok, workers.describe())


def ready(checks: Mapping[str, Check]) -> bool:
    """/readyz: every part is known to work."""
    return all(check.ok for check in checks.values())


def healthy(checks: Mapping[str, Check]) -> bool:
    """`team-memory status`: no part is known to fail (a part not running here is no fault)."""
    return all(check.ok is not False for check in checks.values())
