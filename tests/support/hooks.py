"""Recorded Claude Code hook payloads and a hook configuration whose server is down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from team_memory import embedded
from team_memory.hook.config import HookConfig

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "claude_code"


def payload(name: str, cwd: Path | None = None) -> dict[str, Any]:
    """A recorded hook payload (tests/fixtures/claude_code), run from ``cwd`` if given."""
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    if cwd is not None:
        data["cwd"] = str(cwd)
    return data


def down(tmp_path: Path) -> HookConfig:
    """A hook configured for a server nobody listens on."""
    return HookConfig(f"http://127.0.0.1:{embedded.free_port()}", tmp_path / "data", "tm_x")


def git_repo(root: Path, origin: str) -> Path:
    """A repository (only its .git/config) whose origin is ``origin``, with a src/ folder."""
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text(f'[remote "origin"]\n\turl = {origin}\n')
    (root / "src").mkdir()
    return root
