"""The Claude Code hook entry point: ``python -m team_memory.hook EVENT`` (also
``team-memory hook EVENT``). A thin HTTP client of the running Team Memory server.

It must never slow Claude Code down, so it imports only the standard library (the CLI's typer,
pydantic or the embedder would cost hundreds of milliseconds), sends one small request with a
short timeout, and always exits 0. When the server cannot be reached, the event is appended to
a local spool (JSONL, fsync'ed, under an exclusive lock) and a later hook call replays it in a
detached process. Replays are safe: every event carries an idempotency key (the tool_use_id, or
a hash of the payload and the time it was captured) that the server de-duplicates.

SessionStart prints the context to inject (hookSpecificOutput.additionalContext).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from team_memory import self_capture
from team_memory_core.project_identity import PROJECT_HEADER, project_for

EVENT_KINDS = {"PostToolUse": "tool", "UserPromptSubmit": "prompt", "Stop": "stop",
               "SessionEnd": "session_end"}
HOOK_EVENTS = ("SessionStart", *EVENT_KINDS)
DEFAULT_SERVER = "http://127.0.0.1:8765"
SEND_TIMEOUT_S = 1.0
CONTEXT_TIMEOUT_S = 2.0
REPLAY_TIMEOUT_S = 30.0
REPLAY_BATCH = 200
SPOOL_NAME = "hook-spool.jsonl"
CLAIMED_SUFFIX = ".replaying"
# The tools whose use is worth distilling: the ones that change the repository. The installed
# PostToolUse matcher names exactly these, so Claude Code starts no hook process for reads,
# searches or Team Memory's own tools (it waits for every hook before its next model request).
SUMMARISED_TOOLS = ("Bash", "Edit", "MultiEdit", "Write", "NotebookEdit")
_EXCERPT = 300
_MESSAGE = 1200


class HookConfig:
    def __init__(self, server: str, data_dir: Path, api_key: str | None,
                 self_capture: bool = False) -> None:
        self.server = server.rstrip("/")
        self.data_dir = data_dir
        self.api_key = api_key
        # Installed with --self-capture: the session's Claude records its decisions at Stop.
        self.self_capture = self_capture

    @classmethod
    def resolve(cls, server: str | None = None, data_dir: str | None = None,
                capture: str | None = None) -> HookConfig:
        if server is None:
            host = os.environ.get("TEAM_MEMORY_MCP_HOST", "127.0.0.1")
            port = os.environ.get("TEAM_MEMORY_MCP_PORT", "8765")
            server = f"http://{host}:{port}"
        directory = data_dir or os.environ.get("TEAM_MEMORY_DATA_DIR")
        if directory is None:
            from team_memory_core.settings import default_data_dir  # slow path: pydantic

            path = default_data_dir()
        else:
            path = Path(directory)
        return cls(server, path, _api_key(path), self_capture=capture == "claude")

    @property
    def spool(self) -> Path:
        return self.data_dir / SPOOL_NAME


def _api_key(data_dir: Path) -> str | None:
    key = os.environ.get("TEAM_MEMORY_API_KEY", "").strip()
    if key:
        return key
    try:
        return (data_dir / "local-api-key").read_text().strip() or None
    except OSError:
        return None


# --- event records ---------------------------------------------------------------------------


def _cut(value: object, limit: int = _EXCERPT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                            default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _files(tool_input: dict[str, Any]) -> list[str]:
    found = [tool_input[k] for k in ("file_path", "notebook_path", "path")
             if isinstance(tool_input.get(k), str)]
    return found[:20]


def describe_tool(tool: str, tool_input: dict[str, Any], response: object) -> str:
    """A short summary of one tool call: what was done and how it ended; never file contents."""
    if tool == "Bash":
        result = response if isinstance(response, dict) else {"stdout": response}
        out = _cut(result.get("stdout") or "", 240)
        err = _cut(result.get("stderr") or "", 160)
        flags = " (interrupted)" if result.get("interrupted") else ""
        summary = f"$ {_cut(tool_input.get('command', ''))}{flags}"
        return summary + (f"\nstdout: {out}" if out else "") + (f"\nstderr: {err}" if err else "")
    if tool in ("Edit", "MultiEdit"):
        edits = tool_input.get("edits") or [tool_input]
        changes = "; ".join(f"{_cut(e.get('old_string', ''), 120)!r} -> "
                            f"{_cut(e.get('new_string', ''), 160)!r}"
                            for e in edits[:3] if isinstance(e, dict))
        return f"edited {tool_input.get('file_path', '')}: {changes}"
    if tool == "Write":
        content = tool_input.get("content")
        lines = len(content.splitlines()) if isinstance(content, str) else 0
        return f"wrote {tool_input.get('file_path', '')} ({lines} lines)"
    # NotebookEdit, the last of SUMMARISED_TOOLS
    return f"edited notebook {tool_input.get('notebook_path', '')}"


def _summary(event: str, payload: dict[str, Any]) -> tuple[str | None, list[str], str] | None:
    """(tool, files, summary) of an event, or None when it is not worth sending."""
    if event == "PostToolUse":
        tool = str(payload.get("tool_name") or "")
        if tool not in SUMMARISED_TOOLS:
            return None
        tool_input = payload.get("tool_input")
        tool_input = tool_input if isinstance(tool_input, dict) else {}
        return tool, _files(tool_input), describe_tool(tool, tool_input,
                                                       payload.get("tool_response"))
    if event == "UserPromptSubmit":
        return None, [], _cut(payload.get("prompt") or "", _MESSAGE)
    if event == "Stop":
        return None, [], _cut(payload.get("last_assistant_message") or "", _MESSAGE)
    return None, [], _cut(payload.get("reason") or "", 100)


def event_record(event: str, payload: dict[str, Any], project: str,
                 now_ns: int | None = None) -> dict[str, Any] | None:
    session_id = payload.get("session_id")
    described = _summary(event, payload)
    if described is None or not isinstance(session_id, str) or not session_id:
        return None  # without a session id the event belongs to no session to distill
    tool, files, summary = described
    now_ns = now_ns or time.time_ns()
    kind = EVENT_KINDS[event]
    natural = payload.get("tool_use_id")
    if isinstance(natural, str) and natural:
        key = f"{kind}:{natural}"
    else:
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()
                                + str(now_ns).encode()).hexdigest()[:32]
        key = f"{kind}:{digest}"
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1000:06d}Z"
    return {"key": key[:200], "session_id": session_id[:200],
            "kind": kind, "project": project, "tool": tool, "files": files,
            "summary": summary, "at": at}


# --- transport -------------------------------------------------------------------------------


class Delivery:
    SENT, REJECTED, UNREACHABLE = "sent", "rejected", "unreachable"


def post(config: HookConfig, path: str, body: dict[str, Any],
         timeout: float) -> tuple[str, dict[str, Any]]:
    """(outcome, JSON answer); REJECTED is a 400 (retrying cannot help), anything else that
    is not a success counts as UNREACHABLE (spool and retry later)."""
    headers = {"Content-Type": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    try:
        status, raw = _request(config.server, path, json.dumps(body).encode(), headers, timeout)
        answer = json.loads(raw or b"{}")
    except (OSError, ValueError) as error:
        return Delivery.UNREACHABLE, {"error": str(error) or type(error).__name__}
    answer = answer if isinstance(answer, dict) else {}
    if status < 300:
        return Delivery.SENT, answer
    outcome = Delivery.REJECTED if status in (400, 413, 422) else Delivery.UNREACHABLE
    return outcome, answer


def _request(server: str, path: str, body: bytes, headers: dict[str, str],
             timeout: float) -> tuple[int, bytes]:
    parts = urlsplit(server)
    if parts.scheme == "https":
        return _request_tls(server, path, body, headers, timeout)
    # http.client costs ~35 ms of imports (email.*) on every hook; one POST does not need it.
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return _parse_response(b"".join(chunks))


def _parse_response(raw: bytes) -> tuple[int, bytes]:
    head, sep, payload = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not sep or not lines[0].startswith(b"HTTP/"):
        raise ValueError("not an HTTP response")
    status = int(lines[0].split()[1])
    if any(line.lower().replace(b" ", b"") == b"transfer-encoding:chunked" for line in lines):
        payload = _dechunk(payload)
    return status, payload


def _dechunk(data: bytes) -> bytes:
    out: list[bytes] = []
    position = 0
    while True:
        end = data.index(b"\r\n", position)
        size = int(data[position:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2:end + 2 + size])
        position = end + 2 + size + 2


def _request_tls(server: str, path: str, body: bytes, headers: dict[str, str],
                 timeout: float) -> tuple[int, bytes]:
    import http.client

    parts = urlsplit(server)
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        return response.status, response.read()
    except http.client.HTTPException as error:
        raise OSError(str(error)) from error
    finally:
        conn.close()


# --- spool -----------------------------------------------------------------------------------


def _redacted(record: dict[str, Any]) -> dict[str, Any]:
    # Only on the (rare) spool path: keeps secrets off the disk without slowing every hook.
    from team_memory_core.rules.redaction import redact

    return {**record, "summary": redact(record["summary"]).text,
            "files": [redact(f).text for f in record["files"]]}


def spool(config: HookConfig, records: list[dict[str, Any]]) -> None:
    """Append records durably; safe against concurrent hooks and a concurrent replay."""
    data = "".join(json.dumps(_redacted(r)) + "\n" for r in records).encode()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(config.spool, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(config.spool).st_ino
            except FileNotFoundError:
                current = -1
            if current != os.fstat(fd).st_ino:
                continue  # a replay claimed the file while we waited: append to a new one
            os.write(fd, data)
            os.fsync(fd)
            return
        finally:
            os.close(fd)


def has_spool(config: HookConfig) -> bool:
    try:
        if config.spool.stat().st_size > 0:
            return True
        return any(p.name.endswith(CLAIMED_SUFFIX) for p in config.data_dir.iterdir())
    except OSError:
        return False


def _claim(config: HookConfig) -> None:
    """Move the live spool aside (under its lock) so new events start a fresh file."""
    try:
        fd = os.open(config.spool, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_size > 0:
            target = config.spool.with_name(f"{SPOOL_NAME}.{time.time_ns()}-{os.getpid()}"
                                            f"{CLAIMED_SUFFIX}")
            os.rename(config.spool, target)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def replay(config: HookConfig) -> int:
    """Deliver every spooled record; returns how many were delivered (or dropped as invalid).
    Records that still cannot be delivered stay spooled."""
    _claim(config)
    delivered = 0
    for claimed in sorted(config.data_dir.glob(f"{SPOOL_NAME}.*{CLAIMED_SUFFIX}")):
        delivered += _replay_file(config, claimed)
    return delivered


def _replay_file(config: HookConfig, path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # another replay is on it
        records = _read_records(fd)
        done = 0
        while done < len(records):
            batch = records[done:done + REPLAY_BATCH]
            outcome, _ = post(config, "/hooks/events", {"events": batch}, REPLAY_TIMEOUT_S)
            if outcome == Delivery.UNREACHABLE:
                break
            done += len(batch)
        if done == len(records):
            os.unlink(path)
        else:
            _rewrite(fd, records[done:])
        return done
    finally:
        os.close(fd)


def _read_records(fd: int) -> list[dict[str, Any]]:
    with os.fdopen(os.dup(fd), "rb") as handle:
        lines = handle.read().splitlines()
    records = []
    for line in lines:
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))  # a torn last line is dropped, not fatal
    return records


def _rewrite(fd: int, records: list[dict[str, Any]]) -> None:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def replay_in_background(config: HookConfig) -> None:
    import subprocess

    subprocess.Popen(
        [sys.executable, "-m", "team_memory.hook", "replay", "--server", config.server,
         "--data-dir", str(config.data_dir)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
    )


# --- the hook events -------------------------------------------------------------------------


def capture(config: HookConfig, event: str,
            payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(what became of the event: sent, spooled, rejected or skipped; the server's answer)."""
    project = project_for(str(payload.get("cwd") or os.getcwd()))
    record = event_record(event, payload, project)
    if record is None:
        return "skipped", {}
    outcome, answer = post(config, "/hooks/events", {"events": [record]}, SEND_TIMEOUT_S)
    if outcome == Delivery.UNREACHABLE:
        spool(config, [record])
        return "spooled", answer
    if outcome == Delivery.REJECTED:
        print(f"team-memory: event rejected: {answer.get('error')}", file=sys.stderr)
        return "rejected", answer
    if has_spool(config):
        replay_in_background(config)
    return "sent", answer


def capture_event(config: HookConfig, event: str, payload: dict[str, Any]) -> str:
    """Send the event; with self-capture, also keep the session's counters and, at Stop, ask
    Claude to save the turn's decisions (the hook's stdout, else empty)."""
    outcome, answer = capture(config, event, payload)
    if not config.self_capture:
        return ""
    session_id = payload.get("session_id")
    if event == "PostToolUse" and outcome != "skipped" and isinstance(session_id, str):
        self_capture.note_change(config.data_dir, session_id)
    elif event == "Stop" and outcome == "sent":  # not when the server cannot take the saves
        return self_capture.ask_on_stop(config.data_dir, payload,
                                        server_distills=bool(answer.get("capture"))) or ""
    elif event == "SessionEnd":
        self_capture.forget_session(config.data_dir, session_id)
    return ""


def session_context(config: HookConfig, payload: dict[str, Any]) -> str:
    project = project_for(str(payload.get("cwd") or os.getcwd()))
    body = {"session_id": str(payload.get("session_id") or ""), "project": project,
            "source": payload.get("source"), "self_capture": config.self_capture}
    outcome, answer = post(config, "/hooks/context", body, CONTEXT_TIMEOUT_S)
    if outcome != Delivery.SENT:
        return (f"Team Memory ({project}): the server at {config.server} did not answer "
                f"({answer.get('error', 'unavailable')}); this session's events are kept "
                "locally and sent when it is back.")
    if has_spool(config):
        replay_in_background(config)
    return str(answer.get("context", ""))


def request_headers(config: HookConfig, cwd: str, with_key: bool) -> dict[str, str]:
    """What Claude Code's ``headersHelper`` prints for the MCP connection: the project this
    directory belongs to (the identity the hooks send) and, for project-scope installs whose
    committed config holds no key, the key from the environment or the data dir."""
    headers = {PROJECT_HEADER: project_for(cwd)}
    if with_key and config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    return headers


def _options(args: list[str]) -> tuple[list[str], dict[str, str]]:
    positional, options = [], {}
    iterator = iter(args)
    for arg in iterator:
        if arg.startswith("--"):
            options[arg[2:]] = next(iterator, "")
        else:
            positional.append(arg)
    return positional, options


def run(event: str, payload: dict[str, Any], config: HookConfig) -> str:
    """Handle one hook event; returns what to print on stdout (may be empty)."""
    if event == "SessionStart":
        return json.dumps({"hookSpecificOutput": {
            "hookEventName": "SessionStart",
            "additionalContext": session_context(config, payload)}})
    if event in EVENT_KINDS:
        return capture_event(config, event, payload)
    raise ValueError(f"unknown hook event {event!r}; expected one of {', '.join(HOOK_EVENTS)}")


def main(argv: list[str] | None = None) -> int:
    positional, options = _options(sys.argv[1:] if argv is None else argv)
    if not positional:
        print(f"usage: team-memory hook {{{'|'.join(HOOK_EVENTS)}|replay|headers}} "
              "[--server URL] [--data-dir DIR] [--auth key] [--capture claude]",
              file=sys.stderr)
        return 2
    try:
        config = HookConfig.resolve(options.get("server"), options.get("data-dir"),
                                    options.get("capture"))
        if positional[0] == "replay":
            replay(config)
            return 0
        if positional[0] == "headers":
            with_key = options.get("auth") == "key"
            sys.stdout.write(json.dumps(request_headers(config, os.getcwd(), with_key)) + "\n")
            return 0
        raw = sys.stdin.read()
        payload = json.loads(raw) if raw.strip() else {}
        output = run(positional[0], payload if isinstance(payload, dict) else {}, config)
    except Exception as error:  # a hook must never break Claude Code: report and go on
        print(f"team-memory hook: {type(error).__name__}: {error}", file=sys.stderr)
        return 0
    if output:
        sys.stdout.write(output + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
