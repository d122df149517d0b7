"""The real Claude Code CLI, pinned by the project's own files and run offline.

- ``install_cli()``: ``npm ci`` in tests/e2e/claude_code (package.json + package-lock.json pin
  the version) when node_modules is missing or stale, then the native binary the package's
  postinstall places over bin/claude.exe (the postinstall is run again by hand when npm skipped
  it; ``node cli-wrapper.cjs`` is the last resort). Without npm the caller skips, unless
  TEAM_MEMORY_E2E_REQUIRED=1 (CI), where it fails.
- ``RefusingProxy``: HTTP(S)_PROXY for Claude Code; it answers 403 to everything and records
  what was attempted, so any call that is not to 127.0.0.1 fails and is visible.
- ``ClaudeCode.run()``: one ``claude -p`` session against a scripted ``FakeAnthropic``, with
  every hook event on stdout (``--include-hook-events``), bounded in time, its process group
  killed when it overruns.
- ``script_session()``: the model's side of one session, as rules on the conversation.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self

import pytest

from tests.support.anthropic_server import Conversation, FakeAnthropic

ROOT = Path(__file__).resolve().parents[2]
CLI_DIR = ROOT / "tests" / "e2e" / "claude_code"
PACKAGE = "@anthropic-ai/claude-code"
REQUIRED_ENV = "TEAM_MEMORY_E2E_REQUIRED"
SERVER_NAME = "team-memory"
PROJECT_HEADER = "X-Team-Memory-Project"
CONTEXT_PREFIX = "SessionStart hook additional context:"
NPM_CI_TIMEOUT_S = 900  # a cold cache downloads the ~250 MB native binary
SESSION_TIMEOUT_S = 120
_STAMP = ".team-memory-installed"
_NATIVE_MAGIC = (b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"MZ")
# Claude Code's own outbound traffic, off; what is left goes to the refusing proxy.
QUIET_ENV = {
    "DISABLE_TELEMETRY": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_MAX_RETRIES": "0",  # a scripting mistake fails the session now, not in 10 tries
}


# --- the pinned CLI ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaudeCli:
    command: tuple[str, ...]
    version: str
    launcher: str  # "native binary", "native binary (postinstall run by hand)" or "cli-wrapper"


def pinned_version() -> str:
    return str(json.loads((CLI_DIR / "package.json").read_text())["dependencies"][PACKAGE])


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail when the environment requires the end-to-end tests (CI)."""
    if os.environ.get(REQUIRED_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRED_ENV}=1 requires the Claude Code tests")
    pytest.skip(reason)


def install_cli() -> ClaudeCli:
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        unavailable("npm and node are needed to install the pinned Claude Code CLI "
                    f"(tests/e2e/claude_code); found npm={npm}, node={node}")
    with _locked(CLI_DIR / "node_modules.lock"):
        if _stamp_wanted() != _stamp_found():
            _npm_ci(npm)
        cli = launcher(node)
    return cli


def _stamp_wanted() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((CLI_DIR / name).read_bytes())
    return digest.hexdigest()


def _stamp_found() -> str | None:
    try:
        return (CLI_DIR / "node_modules" / _STAMP).read_text().strip()
    except OSError:
        return None


def _npm_ci(npm: str) -> None:
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CLI_DIR,
                          capture_output=True, text=True, timeout=NPM_CI_TIMEOUT_S)
    if done.returncode != 0:
        unavailable(f"`npm ci` in {CLI_DIR} failed ({done.returncode}): "
                    f"{(done.stderr or done.stdout)[-2000:]}")
    (CLI_DIR / "node_modules" / _STAMP).write_text(_stamp_wanted() + "\n")


def _is_native(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
        return path.stat().st_size > 1_000_000 and head.startswith(_NATIVE_MAGIC)
    except OSError:
        return False


def launcher(node: str, package: Path = CLI_DIR / "node_modules" / PACKAGE) -> ClaudeCli:
    """How to start the installed package: its native binary, placed by the postinstall (run
    again here if npm skipped it), else ``node cli-wrapper.cjs``; checked by --version."""
    binary = package / "bin" / "claude.exe"
    launcher = "native binary"
    if not _is_native(binary):  # npm skipped the postinstall (allowScripts, --ignore-scripts)
        subprocess.run([node, "install.cjs"], cwd=package, capture_output=True, timeout=300)
        launcher = "native binary (postinstall run by hand)"
    command: tuple[str, ...] = (str(binary),)
    if not _is_native(binary):
        command, launcher = (node, str(package / "cli-wrapper.cjs")), "cli-wrapper"
    done = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ.get("PATH", ""), "HOME": str(CLI_DIR),
                               **QUIET_ENV})
    version = done.stdout.strip()
    if done.returncode != 0 or pinned_version() not in version:
        raise AssertionError(f"{' '.join(command)} --version: {done.returncode} "
                             f"{version!r} {done.stderr[-1000:]!r}; expected {pinned_version()}")
    return ClaudeCli(command, version, launcher)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One installer at a time (several test sessions may start together)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- the network around it ---------------------------------------------------------------------


class RefusingProxy:
    """An HTTP proxy on 127.0.0.1 that refuses every request (403) and records its first
    line (``CONNECT host:443 HTTP/1.1``)."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._attempts: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    @property
    def attempts(self) -> list[str]:
        with self._lock:
            return list(self._attempts)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with connection:
                connection.settimeout(2)
                with contextlib.suppress(OSError):
                    line = connection.recv(4096).split(b"\r\n", 1)[0]
                    with self._lock:
                        self._attempts.append(line.decode(errors="replace"))
                    connection.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                                       b"Connection: close\r\n\r\n")

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._socket.close()


# --- one session --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """What one ``claude -p`` run printed (stream-json) and left behind."""

    returncode: int
    events: list[dict[str, Any]]
    stderr: str
    debug_log: str
    wall_s: float

    @property
    def session_id(self) -> str:
        return next(str(e["session_id"]) for e in self.events if e.get("session_id"))

    @property
    def result(self) -> dict[str, Any]:
        found = [e for e in self.events if e.get("type") == "result"]
        assert found, f"no result event; stderr: {self.stderr[-2000:]}"
        return found[-1]

    @property
    def init(self) -> dict[str, Any]:
        return next(e for e in self.events if e.get("subtype") == "init")

    def hook_responses(self, event: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("subtype") == "hook_response"
                and (event is None or e.get("hook_event") == event)]

    def describe(self) -> str:
        return (f"exit {self.returncode}; stderr: {self.stderr[-1500:]}\n"
                f"events: {json.dumps(self.events)[-3000:]}")


@dataclass
class ClaudeCode:
    """Claude Code as a user runs it: its own HOME, a scripted model, no other network."""

    cli: ClaudeCli
    home: Path
    model: FakeAnthropic
    proxy: RefusingProxy
    env: dict[str, str] = field(default_factory=dict)
    logs: Path | None = None

    def environment(self) -> dict[str, str]:
        proxy = self.proxy.url
        no_proxy = "127.0.0.1,localhost"
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
            "LANG": "C.UTF-8", "TERM": "dumb", "USER": os.environ.get("USER", "tester"),
            "ANTHROPIC_BASE_URL": self.model.base_url,
            "ANTHROPIC_API_KEY": "sk-ant-e2e-dummy",
            "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "https_proxy": proxy,
            "http_proxy": proxy, "NO_PROXY": no_proxy, "no_proxy": no_proxy,
            **QUIET_ENV, **self.env,
        }

    def run(self, prompt: str, cwd: Path, *, allowed_tools: Sequence[str] = (),
            timeout: float = SESSION_TIMEOUT_S) -> Session:
        logs = self.logs or self.home
        debug = logs / f"claude-debug-{uuid.uuid4().hex[:8]}.log"
        command = [*self.cli.command, "-p", prompt, "--output-format", "stream-json",
                   "--verbose", "--include-hook-events", "--permission-mode", "default",
                   "--debug-file", str(debug)]
        if allowed_tools:
            command += ["--allowedTools", ",".join(allowed_tools)]
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=cwd, env=self.environment(),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stdout, stderr = _kill_group(process)
            stderr += f"\n[killed after {timeout}s]"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # hooks or helpers it left behind
        wall = time.monotonic() - started
        events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        log = debug.read_text(errors="replace") if debug.exists() else ""
        return Session(process.returncode, events, stderr, log, wall)


def _kill_group(process: subprocess.Popen[str]) -> tuple[str, str]:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.communicate(timeout=30)


# --- the model's side ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    name: str
    input: dict[str, Any]


def script_session(model: FakeAnthropic, marker: str, calls: Sequence[ToolCall],
                   final: str = "Done.") -> None:
    """In the conversation whose prompt holds ``marker``: call ``calls`` one per turn (the
    next one once the previous result is back), then answer ``final``."""

    def mine(conversation: Conversation) -> bool:
        return is_session(conversation, marker)

    def next_step(conversation: Conversation) -> Any:
        done = len(conversation.tool_results)
        if done < len(calls):
            return FakeAnthropic.tool_result(calls[done].input, name=calls[done].name)
        return FakeAnthropic.text(final)

    model.when(mine, next_step)


def is_session(conversation: Conversation, marker: str) -> bool:
    """Whether the session's prompt (its first user message) holds ``marker``."""
    users = conversation.texts("user")
    return bool(users) and marker in users[0]


def session_conversation(model: FakeAnthropic, marker: str) -> Conversation:
    """The last (most complete) request of the session whose prompt holds ``marker``."""
    mine = [c for c in model.conversations if is_session(c, marker)]
    assert mine, f"the model never saw a request with {marker!r}"
    return mine[-1]


def session_context(session: Session, conversation: Conversation) -> str:
    """The context the SessionStart hooks printed, checked to have reached the model: Claude
    Code sends it in a ``role: system`` message, "SessionStart hook additional context: ...",
    followed by its own attachments (agent types, MCP server instructions, skills)."""
    printed = [json.loads(h["stdout"])["hookSpecificOutput"]["additionalContext"]
               for h in session.hook_responses("SessionStart")
               if str(h.get("stdout", "")).lstrip().startswith("{")]
    system = conversation.text_of("system")
    for context in printed:
        assert f"{CONTEXT_PREFIX} {context.strip()}" in system, (context, system[:3000])
    return "\n".join(printed)


# --- repositories and installs ------------------------------------------------------------------


def git_repository(path: Path, origin: str) -> Path:
    """A git repository at ``path`` whose ``origin`` is ``origin``, with one commit."""
    path.mkdir(parents=True)
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for args in (["init", "-q", "-b", "main"], ["remote", "add", "origin", origin]):
        subprocess.run(["git", *args], cwd=path, check=True, env=env, timeout=30)
    (path / "README.md").write_text(f"# {path.name}\n")
    (path / "app.py").write_text("ID_KIND = 'uuid4'\n")
    subprocess.run(["git", "add", "."], cwd=path, check=True, env=env, timeout=30)
    subprocess.run(["git", "-c", "user.name=e2e", "-c", "user.email=e2e@example.com",
                    "commit", "-q", "-m", "initial"], cwd=path, check=True, env=env, timeout=30)
    return path


def install_claude_code(home: Path, data_dir: Path, mcp_port: int, *, scope: str = "user",
                        project_dir: Path | None = None,
                        options: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """`team-memory install claude-code` as a user types it (in ``project_dir``)."""
    args = [sys.executable, "-m", "team_memory", "install", "claude-code", "--scope", scope,
            "--home", str(home), "--data-dir", str(data_dir), *options]
    if project_dir is not None:
        args += ["--project-dir", str(project_dir)]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TEAM_MEMORY_", "ANTHROPIC_"))}
    env.update({"TEAM_MEMORY_MCP_PORT": str(mcp_port), "HOME": str(home)})
    done = subprocess.run(args, cwd=project_dir or home, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def mcp_entry(home: Path, scope: str, project_dir: Path | None) -> dict[str, Any]:
    """The team-memory MCP server entry install wrote for ``scope``."""
    path = home / ".claude.json" if scope == "user" else (project_dir or home) / ".mcp.json"
    entry: dict[str, Any] = json.loads(path.read_text())["mcpServers"][SERVER_NAME]
    return entry
