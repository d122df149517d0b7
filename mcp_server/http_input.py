"""Request bodies of the custom routes (/hooks, /api): refused by their size before they are
read whole, and parsed into a clear 400 whatever their shape (deep nesting included)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from mcp_server.errors import InvalidInput


class BodyTooLarge(Exception):
    """Answered 413: the declared or streamed body passed the route's limit."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to pass ``limit`` bytes: by Content-Length
    before reading anything, else while streaming (chunked bodies declare no length)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(_too_large(limit))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(_too_large(limit))
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise InvalidInput("the JSON body is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidInput(f"the body is not valid JSON: {error}") from None


def _too_large(limit: int) -> str:
    return f"request body is larger than {limit:,} bytes"
