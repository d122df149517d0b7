"""Small JSON state files of the hook, read and written under an exclusive lock: Claude Code
runs the hooks of parallel tool calls at the same time."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def locked_json(path: Path) -> Iterator[dict[str, Any]]:
    """The object in ``path`` (empty when missing or unreadable), written back on exit."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(os.dup(fd), "rb") as handle:
            raw = handle.read()
        try:
            state = json.loads(raw) if raw.strip() else {}
        except ValueError:
            state = {}
        state = state if isinstance(state, dict) else {}
        yield state
        data = json.dumps(state, separators=(",", ":")).encode()
        if data != raw:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
    finally:
        os.close(fd)
