"""The command line as a whole: every command where operators and scripts expect it, from the
installed entry point and from `python -m team_memory`."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import import_module

import typer
from typer.core import TyperGroup

from team_memory.cli import app
from tests.support.hooks import ROOT

COMMANDS = {
    "up": None, "migrate": None, "worker": None, "serve": None, "status": None,
    "config": None, "import": None, "export": None, "restore": None, "purge": None,
    "screen": None,
    "audit": None, "consolidate": None, "doctor": None, "hook": None, "bench": None,
    "tenant": {"create"}, "member": {"add", "list"}, "key": {"create", "list", "revoke"},
    "project": {"set", "show"},
    "review": {"list", "approve", "reject"}, "install": {"claude-code"},
    "uninstall": {"claude-code"},
    "eval": {"locomo"}, "reembed": {"status", "cancel"},
    "temporal-key": {"list", "rotate", "retire", "new-kek", "rotate-kek"},
}


def _surface(command: object) -> dict[str, set[str] | None]:
    assert isinstance(command, TyperGroup)
    return {name: set(sub.commands) if isinstance(sub, TyperGroup) else None
            for name, sub in command.commands.items()}


def test_every_command_is_where_it_was() -> None:
    assert _surface(typer.main.get_command(app)) == COMMANDS


def test_the_entry_point_and_python_m_run_the_same_app() -> None:
    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = script["team-memory"].partition(":")
    assert getattr(import_module(module), name) is app
    shown = subprocess.run([sys.executable, "-m", "team_memory", "--help"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert all(f" {command} " in shown for command in COMMANDS)
