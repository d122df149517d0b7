"""Recorded Claude Code hook payloads and a hook configuration whose server is down."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from team_memory import embedded
from team_memory.hook.config import HookConfig
from team_memory_core.hook_protocol import SAVE_TOOL

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


def real_git_repo(root: Path, origin: str, files: dict[str, str]) -> Path:
    """A real repository (``git init``, origin ``origin``) holding ``files``, committed."""
    root.mkdir(parents=True)
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    for command in (["init", "-q"], ["remote", "add", "origin", origin], ["add", "."],
                    ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm",
                     "start"]):
        subprocess.run(["git", *command], cwd=root, check=True, capture_output=True,
                       timeout=30)
    return root


def git_hash(repo: Path, path: str) -> str:
    """What ``git hash-object`` says of a file: the hash the hook must compute."""
    done = subprocess.run(["git", "hash-object", path], cwd=repo, check=True,
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def tool_call(name: str, repo: Path, tool_use_id: str, **tool_input: Any) -> dict[str, Any]:
    """The recorded PostToolUse payload ``name`` run in ``repo``, with its tool input
    changed by ``tool_input`` (paths given relative to the repository are made absolute,
    as Claude Code sends them) and a fresh tool_use_id."""
    data = payload(name, repo)
    for key in ("file_path", "notebook_path"):
        if isinstance(tool_input.get(key), str):
            tool_input[key] = str(repo / tool_input[key])
    data["tool_input"] = {**data["tool_input"], **tool_input}
    data["tool_use_id"] = tool_use_id
    return data


def save_call(repo: Path, tool_use_id: str, content: str, files: list[str]) -> dict[str, Any]:
    """A PostToolUse payload of Claude's save_memory call citing ``files``."""
    data = payload("post_tool_use_bash.json", repo)
    data.update(tool_name=SAVE_TOOL, tool_use_id=tool_use_id,
                tool_input={"content": content, "files": files},
                tool_response=[{"type": "text", "text": "saved"}])
    return data
