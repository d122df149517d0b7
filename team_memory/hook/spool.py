"""The local spool: events the server could not take, kept durably until a replay delivers
them (JSONL, fsync'ed, under an exclusive lock; mode 0600, secrets redacted)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from team_memory.hook.config import HookConfig
from team_memory.hook.transport import Delivery, post
from team_memory_core.hook_protocol import EVENTS_ROUTE, SPOOL_FILE

REPLAY_TIMEOUT_S = 30.0
REPLAY_BATCH = 200
CLAIMED_SUFFIX = ".replaying"


def _redacted(record: dict[str, Any]) -> dict[str, Any]:
    # Only on the (rare) spool path: keeps secrets off the disk without slowing every hook.
    from team_memory_core.rules.redaction import redact

    return {**record, "summary": redact(record["summary"]).text,
            "files": [redact(f).text for f in record["files"]]}


def spool(config: HookConfig, records: list[dict[str, Any]]) -> None:
    """Append records durably; safe against concurrent hooks and a concurrent replay."""
    data = "".join(json.dumps(_redacted(r)) + "\n" for r in records).encode()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(config.spool, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(config.spool).st_ino
            except FileNotFoundError:
                current = -1
            if current != os.fstat(fd).st_ino:
                continue  # a replay claimed the file while we waited: append to a new one
            os.write(fd, data)
            os.fsync(fd)
            return
        finally:
            os.close(fd)


def has_spool(config: HookConfig) -> bool:
    try:
        if config.spool.stat().st_size > 0:
            return True
        return any(p.name.endswith(CLAIMED_SUFFIX) for p in config.data_dir.iterdir())
    except OSError:
        return False


def _claim(config: HookConfig) -> None:
    """Move the live spool aside (under its lock) so new events start a fresh file."""
    try:
        fd = os.open(config.spool, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_size > 0:
            target = config.spool.with_name(f"{SPOOL_FILE}.{time.time_ns()}-{os.getpid()}"
                                            f"{CLAIMED_SUFFIX}")
            os.rename(config.spool, target)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def replay(config: HookConfig) -> int:
    """Deliver every spooled record; returns how many were delivered (or dropped as invalid).
    Records that still cannot be delivered stay spooled."""
    _claim(config)
    delivered = 0
    for claimed in sorted(config.data_dir.glob(f"{SPOOL_FILE}.*{CLAIMED_SUFFIX}")):
        delivered += _replay_file(config, claimed)
    return delivered


def _replay_file(config: HookConfig, path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # another replay is on it
        records = _read_records(fd)
        done = 0
        while done < len(records):
            batch = records[done:done + REPLAY_BATCH]
            outcome, _ = post(config, EVENTS_ROUTE, {"events": batch}, REPLAY_TIMEOUT_S)
            if outcome == Delivery.UNREACHABLE:
                break
            done += len(batch)
        if done == len(records):
            os.unlink(path)
        else:
            _rewrite(fd, records[done:])
        return done
    finally:
        os.close(fd)


def _read_records(fd: int) -> list[dict[str, Any]]:
    with os.fdopen(os.dup(fd), "rb") as handle:
        lines = handle.read().splitlines()
    records = []
    for line in lines:
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))  # a torn last line is dropped, not fatal
    return records


def _rewrite(fd: int, records: list[dict[str, Any]]) -> None:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def replay_in_background(config: HookConfig) -> None:
    import subprocess  # ~15 ms of imports, paid only when there is something to replay

    subprocess.Popen(
        [sys.executable, "-m", "team_memory.hook", "replay", "--server", config.server,
         "--data-dir", str(config.data_dir)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
    )
