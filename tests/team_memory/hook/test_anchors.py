"""File states in the hook (docs/freshness.md): git's blob hashes of repository files, never
their contents; relative paths; the anchored files re-checked after Bash by stat."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from team_memory.hook.anchors import AnchorCache, blob_hash, read_state, relative
from team_memory.hook.events import tool_states
from team_memory.hook.records import event_record
from team_memory_core.hook_protocol import SAVE_TOOL, repo_path
from tests.support.hooks import git_hash, payload, real_git_repo, save_call, tool_call

SECRET = "FILE-CONTENT-MUST-NOT-LEAVE"
PROJECT = "github.com/acme/shop"


def repo(tmp_path: Path) -> Path:
    return real_git_repo(tmp_path / "shop", "git@github.com:acme/shop.git", {
        "a.py": f"def parse():\n    return 'cents'  # {SECRET}\n",
        "src/b.py": "B = 1\n", "empty.txt": ""})


def record_with_states(root: Path, data: dict[str, object], cache: AnchorCache,
                       event: str = "PostToolUse") -> dict[str, object]:
    record = event_record(event, data, PROJECT, root=root)
    assert record is not None
    record["states"] = tool_states(cache, root, record)
    return record


def test_the_hash_is_gits_blob_hash(tmp_path: Path) -> None:
    root = repo(tmp_path)
    for path in ("a.py", "src/b.py", "empty.txt"):
        state = read_state(root, path)
        assert state is not None and state[1] == git_hash(root, path)
    assert read_state(root, "missing.py") == (None, None)
    assert read_state(root, "src") == (None, None)  # a directory is no file
    assert blob_hash(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob


@pytest.mark.parametrize("recorded", ["post_tool_use_edit.json", "post_tool_use_write.json"])
def test_an_edit_reports_the_relative_path_and_hash_never_the_content(
    tmp_path: Path, recorded: str
) -> None:
    root = repo(tmp_path)
    (root / "a.py").write_text(f"def parse():\n    return 'money'  # {SECRET}\n")
    edit = tool_call(recorded, root, "toolu_1", file_path="a.py")
    record = record_with_states(root, edit, AnchorCache(tmp_path / "data", PROJECT))
    assert record["files"] == ["a.py"]
    assert record["states"] == [["a.py", git_hash(root, "a.py")]]
    sent = json.dumps(record)
    assert SECRET not in sent and "MUST-NOT-LEAVE" not in sent and str(root) not in sent


def test_recorded_payloads_outside_a_repository_send_no_states(tmp_path: Path) -> None:
    for name in ("post_tool_use_edit.json", "post_tool_use_write.json",
                 "post_tool_use_bash.json"):
        data = payload(name)
        record = event_record("PostToolUse", data, PROJECT, root=None)
        assert record is not None and "states" not in record
        assert "MUST-NOT-LEAVE" not in json.dumps(record)


def test_a_save_memory_call_reports_its_files_and_keeps_them(tmp_path: Path) -> None:
    root = repo(tmp_path)
    cache = AnchorCache(tmp_path / "data", PROJECT)
    call = save_call(root, "toolu_save", "parse returns cents",
                     ["a.py", "./src/b.py", "/etc/passwd", "../x.py", "a.py"])
    record = record_with_states(root, call, cache)
    assert record["kind"] == "files" and record["tool"] == SAVE_TOOL
    assert record["files"] == ["a.py", "src/b.py"]  # invalid paths dropped, each once
    assert record["states"] == [["a.py", git_hash(root, "a.py")],
                                ["src/b.py", git_hash(root, "src/b.py")]]
    assert SECRET not in json.dumps(record)
    assert cache.changes(root) == []  # kept, and unchanged since reported


def test_bash_reports_the_anchored_files_it_changed_by_stat(tmp_path: Path) -> None:
    root = repo(tmp_path)
    cache = AnchorCache(tmp_path / "data", PROJECT)
    record_with_states(root, save_call(root, "toolu_s", "x", ["a.py", "src/b.py"]), cache)
    bash = tool_call("post_tool_use_bash.json", root, "toolu_b", command="git status")
    assert record_with_states(root, bash, cache)["states"] == []
    subprocess.run(["git", "mv", "a.py", "c.py"], cwd=root, check=True, timeout=30)
    (root / "src/b.py").write_text("B = 2\n")
    moved = record_with_states(root, bash, cache)["states"]
    assert moved == [["a.py", None], ["src/b.py", git_hash(root, "src/b.py")]]
    assert record_with_states(root, bash, cache)["states"] == []  # reported once
    subprocess.run(["git", "checkout", "--", "src/b.py"], cwd=root, check=True, timeout=30)
    back = record_with_states(root, bash, cache)["states"]
    assert back == [["src/b.py", git_hash(root, "src/b.py")]]


def test_a_touched_but_unchanged_file_is_hashed_not_reported(tmp_path: Path) -> None:
    root = repo(tmp_path)
    cache = AnchorCache(tmp_path / "data", PROJECT)
    cache.replace(["a.py"])
    assert cache.changes(root) == [["a.py", git_hash(root, "a.py")]]  # first check
    os.utime(root / "a.py", ns=(1, 1))
    assert cache.changes(root) == []


def test_the_cache_keeps_the_listed_paths_only(tmp_path: Path) -> None:
    root = repo(tmp_path)
    cache = AnchorCache(tmp_path / "data", PROJECT)
    cache.replace(["a.py", "gone.py"])
    assert cache.current(root) == [["a.py", git_hash(root, "a.py")], ["gone.py", None]]
    cache.replace(["src/b.py"])
    assert cache.current(root) == [["src/b.py", git_hash(root, "src/b.py")]]
    assert AnchorCache(tmp_path / "data", "another/project").current(root) == []


def test_paths_are_relative_to_the_repository(tmp_path: Path) -> None:
    root = repo(tmp_path).resolve()
    assert relative(root, str(root / "src"), "b.py") == "src/b.py"
    assert relative(root, str(root), str(root / "src" / ".." / "a.py")) == "a.py"
    assert relative(root, str(root), "/etc/hosts") is None
    assert relative(root, str(root), str(root)) is None


def test_a_repository_path_is_normalized_or_refused() -> None:
    assert repo_path(" ./src//a.py ") == "src/a.py"
    assert repo_path("src/../a.py") == "a.py"
    for wrong in ("", "/abs.py", "~/a.py", "C:/a.py", "..", "../a.py", "a/../../b.py",
                  "a\nb.py", ".", "x" * 301):
        try:
            repo_path(wrong)
        except ValueError:
            continue
        raise AssertionError(f"{wrong!r} was accepted")
