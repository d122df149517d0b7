"""File states for memories anchored to files (docs/freshness.md), computed in the hook:
the server cannot read the repository. What leaves the machine is a repository-relative path
and the file's git blob hash (``git hash-object``: sha1 of ``blob <size>\\0`` + content), or
null when the file does not exist; never its content.

The project's anchored paths are kept in ``<data dir>/anchors/<project hash>.json`` (the
SessionStart answer lists them), each with the stat and hash last reported, so that checking
them after a Bash command (rm, mv, git checkout, a formatter...) costs one stat per file and a
hash only for a file whose stat changed: git's own index trick.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from team_memory.hook.state import locked_json
from team_memory_core.hook_protocol import (
    ANCHOR_CACHE_MAX,
    BLOB_MAX_BYTES,
    STATES_MAX,
    repo_path,
)

CACHE_DIR = "anchors"
# A reported file state: [repository-relative path, blob hash or None when missing].
State = list[str | None]
# What the cache keeps per path: [mtime_ns, size, inode, blob] as last reported; None when the
# path has not been checked on this machine yet.
_Entry = list[Any] | None
_NO_STAMP: list[int | None] = [None, None, None]  # the file does not exist


def blob_hash(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _stamp(info: os.stat_result) -> list[int]:
    return [info.st_mtime_ns, info.st_size, info.st_ino]


def read_state(root: Path, path: str) -> tuple[list[int] | None, str | None] | None:
    """(stat stamp, blob hash) of a repository file, (None, None) when it does not exist, or
    None when it cannot be hashed here (too large, unreadable): its state is not reported."""
    try:
        fd = os.open(root / path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, None  # a directory now stands there: the file is gone
        if info.st_size > BLOB_MAX_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            return _stamp(info), blob_hash(handle.read())
    finally:
        os.close(fd)


def relative(root: Path, cwd: str, raw: str) -> str | None:
    """A tool's file path (absolute, or relative to the session's directory) relative to the
    repository root; None when it lies outside the repository."""
    absolute = os.path.realpath(os.path.join(cwd, raw))
    inside = os.path.relpath(absolute, root)
    if inside == "." or inside == ".." or inside.startswith("../"):
        return None
    return Path(inside).as_posix()


def repo_paths(listed: object, limit: int) -> list[str]:
    """The well-formed repository paths of a list (a tool input's, a server answer's), each
    once, at most ``limit``; anything else is dropped, never read."""
    paths: list[str] = []
    for raw in listed[:4 * limit] if isinstance(listed, list) else []:
        if isinstance(raw, str):
            with contextlib.suppress(ValueError):
                paths.append(repo_path(raw))
    return list(dict.fromkeys(paths))[:limit]


def states_of(root: Path, paths: Iterable[str]) -> list[State]:
    """The states of these files (those that can be hashed), for a report."""
    found: list[State] = []
    for path in paths:
        state = read_state(root, path)
        if state is not None:
            found.append([path, state[1]])
    return found[:STATES_MAX]


class AnchorCache:
    """The project's anchored paths on this machine and what was last reported of each."""

    def __init__(self, data_dir: Path, project: str) -> None:
        digest = hashlib.sha256(project.encode()).hexdigest()[:32]
        self.file = data_dir / CACHE_DIR / f"{digest}.json"

    @contextlib.contextmanager
    def _paths(self) -> Iterator[dict[str, _Entry]]:
        with locked_json(self.file) as state:
            paths = state.get("paths")
            state["paths"] = paths if isinstance(paths, dict) else {}
            yield state["paths"]

    def changes(self, root: Path) -> list[State]:
        """The anchored files whose state differs from what was last reported (checked by
        stat first); the cache then holds their new state."""
        if not self.file.exists():
            return []  # no anchored file known on this machine (one stat, no lock)
        with self._paths() as paths:
            return _changes(root, paths)

    def current(self, root: Path) -> list[State]:
        """Every anchored file's state (hashing only those whose stat changed)."""
        if not self.file.exists():
            return []
        with self._paths() as paths:
            _changes(root, paths)
            return [[path, entry[3]] for path, entry in paths.items() if entry is not None]

    def reported(self, root: Path, states: Iterable[State], add: bool = False) -> None:
        """Note states just reported for these files (``add``: start keeping them)."""
        if not add and not self.file.exists():
            return
        with self._paths() as paths:
            for path, blob in states:
                if path is not None and (add or path in paths):
                    _note(root, paths, path, blob)
            _bound(paths)

    def replace(self, anchored: Iterable[str]) -> None:
        """The project's anchored paths as the server lists them (kept entries stay)."""
        with self._paths() as paths:
            listed = list(anchored)[:ANCHOR_CACHE_MAX]
            kept = {path: paths.get(path) for path in listed}
            paths.clear()
            paths.update(kept)


def _changes(root: Path, paths: dict[str, _Entry]) -> list[State]:
    changed: list[State] = []
    for path, entry in list(paths.items()):
        try:
            now: list[int] | None = _stamp(os.stat(root / path))
        except OSError:
            now = None
        if entry is not None and (now == entry[:3] if now else entry[3] is None):
            continue  # the same stat as when last reported, or still missing
        state = read_state(root, path)
        if state is None:
            continue
        if entry is None or state[1] != entry[3]:
            changed.append([path, state[1]])
        paths[path] = [*(state[0] or _NO_STAMP), state[1]]
    return changed[:STATES_MAX]


def _note(root: Path, paths: dict[str, _Entry], path: str, blob: str | None) -> None:
    try:
        stamp: list[int | None] = list(_stamp(os.stat(root / path))) if blob else _NO_STAMP
    except OSError:
        stamp = _NO_STAMP
    paths[path] = [*stamp, blob]


def _bound(paths: dict[str, _Entry]) -> None:
    for path in list(paths)[:max(0, len(paths) - ANCHOR_CACHE_MAX)]:
        del paths[path]
