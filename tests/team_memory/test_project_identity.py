"""Project identity: normalized git remotes, explicit overrides, and no folder-name collisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from team_memory_core.models.memories import PROJECT_PATTERN
from team_memory_core.project_identity import normalize_remote, project_for


@pytest.mark.parametrize("url", [
    "git@github.com:Acme/Shop.git",
    "https://github.com/Acme/Shop.git",
    "https://github.com/Acme/Shop",
    "https://user:token@GitHub.com/Acme/Shop.git/",
    "ssh://git@github.com:22/Acme/Shop.git",
    "git+ssh://git@github.com/Acme/Shop",
])
def test_remote_forms_normalize_to_one_name(url: str) -> None:
    assert normalize_remote(url) == "github.com/Acme/Shop"


def _repo(root: Path, remote: str | None) -> Path:
    (root / ".git").mkdir(parents=True)
    config = '[core]\n\tbare = false\n'
    if remote:
        config += '[remote "upstream"]\n\turl = git@gitlab.com:other/fork.git\n'
        config += (f'[remote "origin"]\n\turl = {remote}\n'
                   '\tfetch = +refs/heads/*:refs/remotes/origin/*\n')
    (root / ".git" / "config").write_text(config)
    return root


def test_origin_remote_names_the_project_from_any_subdirectory(tmp_path: Path) -> None:
    root = _repo(tmp_path / "shop", "https://github.com/acme/shop.git")
    (root / "app" / "models").mkdir(parents=True)
    assert project_for(root / "app" / "models") == "github.com/acme/shop"


def test_worktree_reads_the_common_config(tmp_path: Path) -> None:
    main = _repo(tmp_path / "main", "git@github.com:acme/shop.git")
    gitdir = main / ".git" / "worktrees" / "feature"
    gitdir.mkdir(parents=True)
    (gitdir / "commondir").write_text("../..\n")
    worktree = tmp_path / "feature"
    worktree.mkdir()
    (worktree / ".git").write_text(f"gitdir: {gitdir}\n")
    assert project_for(worktree) == "github.com/acme/shop"


def test_same_folder_name_without_remote_does_not_collide(tmp_path: Path) -> None:
    first = _repo(tmp_path / "a" / "app", None)
    second = _repo(tmp_path / "b" / "app", None)
    plain = tmp_path / "c" / "app"
    plain.mkdir(parents=True)
    names = {project_for(first), project_for(second), project_for(plain)}
    assert len(names) == 3
    for name in names:
        assert name != "app" and name.startswith("path/app-")
        assert PROJECT_PATTERN.match(name)


def test_overrides_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _repo(tmp_path / "shop", "https://github.com/acme/shop.git")
    (root / ".team-memory").write_text("# shared name for the monorepo\nproject = acme/platform\n")
    assert project_for(root) == "acme/platform"
    monkeypatch.setenv("TEAM_MEMORY_PROJECT", "explicit/name")
    assert project_for(root) == "explicit/name"


def test_odd_characters_still_match_the_project_pattern(tmp_path: Path) -> None:
    root = _repo(tmp_path / "weird dir ~ name", "https://host.example/grp/sub grp/repo~1.git")
    name = project_for(root)
    assert name == "host.example/grp/sub-grp/repo-1"
    assert PROJECT_PATTERN.match(name)
    assert PROJECT_PATTERN.match(project_for(tmp_path / "weird dir ~ name"))
