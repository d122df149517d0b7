"""One POST to the server with a short timeout, and what became of it."""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import urlsplit

from team_memory.hook.config import HookConfig


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
    import http.client  # only for https: see _request

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
