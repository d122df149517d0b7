"""The README stays true: its configuration table and quick start match the code and CI."""

from __future__ import annotations

import re
from pathlib import Path

from team_memory_core.settings import settings_table

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_table_matches_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- settings-table -->\n(.*?)<!-- /settings-table -->", readme, re.S)
    assert table is not None
    assert table.group(1).strip() == settings_table()


def test_quick_start_is_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick_start.strip().splitlines()]
    assert commands == ["./team-memory up", "./team-memory test"]
    assert "\n./team-memory test\n" in (ROOT / ".ci" / "run").read_text()
