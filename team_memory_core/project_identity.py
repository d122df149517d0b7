"""Which project a working directory belongs to, without colliding across machines or forks.

In order: an explicit override (``TEAM_MEMORY_PROJECT``, or a ``.team-memory`` file in the
repository holding ``project = NAME``), the repository's normalized ``origin`` remote URL
(``github.com/org/repo`` whether cloned over ssh or https, with or without ``.git``), and
otherwise ``path/<folder>-<hash of the repository path>``; never the folder name alone.

Standard library only and no subprocess: hooks call this on every event.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

OVERRIDE_ENV = "TEAM_MEMORY_PROJECT"
OVERRIDE_FILE = ".team-memory"
_SECTION = re.compile(r'^\s*\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]')
_URL_KEY = re.compile(r"^\s*url\s*=\s*(.*?)\s*$", re.IGNORECASE)
_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://(?:[^@/]*@)?([^/:]+)(?::\d*)?(/.*)?$", re.IGNORECASE)
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9._:/@+-]+")


def repository_root(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return None


def _git_dir(root: Path) -> Path:
    dot_git = root / ".git"
    if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
        target = dot_git.read_text().strip().removeprefix("gitdir:").strip()
        git_dir = (root / target).resolve()
        common = git_dir / "commondir"
        return (git_dir / common.read_text().strip()).resolve() if common.exists() else git_dir
    return dot_git


def remote_url(root: Path, remote: str = "origin") -> str | None:
    """The URL of ``remote`` from the repository's git config (first remote if no origin)."""
    try:
        config = (_git_dir(root) / "config").read_text(errors="replace")
    except OSError:
        return None
    urls: dict[str, str] = {}
    current: str | None = None
    for line in config.splitlines():
        section = _SECTION.match(line)
        if section:
            current = section.group(2) if section.group(1).lower() == "remote" else None
            continue
        url = _URL_KEY.match(line)
        if current is not None and url and current not in urls:
            urls[current] = url.group(1).strip('"')
    return urls.get(remote) or next(iter(urls.values()), None)


def normalize_remote(url: str) -> str | None:
    """``git@github.com:Org/Repo.git`` and ``https://github.com/Org/Repo`` -> the same name."""
    url = url.strip()
    match = _URL.match(url)
    if match:
        host, path = match.group(1), match.group(2) or ""
    else:
        scp = _SCP_LIKE.match(url)
        if scp is None:
            return None
        host, path = scp.group(1), scp.group(2)
    path = path.strip("/").removesuffix(".git").strip("/")
    if not host or not path:
        return None
    return _sanitize(f"{host.lower()}/{path}")


def _sanitize(name: str) -> str:
    cleaned = _NOT_ALLOWED.sub("-", name).strip("-/.")
    return cleaned[:200]


def _override(root: Path | None, start: Path) -> tuple[str, str] | None:
    explicit = os.environ.get(OVERRIDE_ENV, "").strip()
    if explicit:
        return _sanitize(explicit), f"${OVERRIDE_ENV}"
    for directory in (start, *start.parents):
        marker = directory / OVERRIDE_FILE
        if marker.is_file():
            for line in marker.read_text(errors="replace").splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    key, sep, value = line.partition("=")
                    name = value if sep and key.strip() == "project" else line
                    if name.strip():
                        return _sanitize(name.strip()), str(marker)
        if directory == root:
            break
    return None


def identify(cwd: str | Path) -> tuple[str, str]:
    """(the project of ``cwd``, where that name comes from)."""
    start = Path(cwd).resolve()
    root = repository_root(start)
    override = _override(root, start)
    if override:
        return override
    if root is not None:
        url = remote_url(root)
        name = normalize_remote(url) if url else None
        if name:
            return name, f"git remote of {root}"
    base = root or start
    digest = hashlib.sha256(str(base).encode()).hexdigest()[:12]
    return _sanitize(f"path/{base.name or 'root'}-{digest}"), f"the path of {base} (no remote)"


def project_for(cwd: str | Path) -> str:
    return identify(cwd)[0]
