"""MCP clients saving back to back in a process of their own, as the sessions of other people
would: a test's own client then measures the server, not an event loop it shares with them.

    python -m tests.support.savers URL KEY CLIENTS NEW_PER_CLIENT OUT

Client ``n`` saves ``fact(n * 10_000 + i % NEW_PER_CLIENT)`` until SIGTERM; each outcome is one
JSON line in OUT, written as it happens: ``{"client": n, "id": ...}`` or ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TextIO

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.processes import ROOT
from tests.test_fault_tolerance import fact


def _client(url: str, key: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return Client(streamable_http_client(url, http_client=http))


async def _save(url: str, key: str, n: int, new_per_client: int, stop: asyncio.Event,
                out: TextIO) -> None:
    async with _client(url, key) as client:
        i = 0
        while not stop.is_set():  # a call in flight is finished: its outcome is written
            text = fact(n * 10_000 + i % new_per_client)
            i += 1
            result = await client.call_tool("save_memory", {"content": text})
            line = {"error": str(result.content)} if result.is_error \
                else {"client": n, "id": result.structured_content["id"]}  # type: ignore[index]
            out.write(json.dumps(line) + "\n")
            out.flush()


async def _main(url: str, key: str, clients: int, new_per_client: int, out: TextIO) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await asyncio.gather(*(_save(url, key, n, new_per_client, stop, out)
                           for n in range(1, clients + 1)))


@contextmanager
def saving(url: str, key: str, clients: int, new_per_client: int, out: Path,
           log: IO[bytes]) -> Iterator[None]:
    """The savers run while the block runs; at its end they finish their calls and exit
    (an exit code other than 0 fails the block)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.savers", url, key, str(clients),
         str(new_per_client), str(out)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        process.terminate()
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise
    assert code == 0, f"the savers exited with {code}"


def outcomes(out: Path) -> list[dict[str, object]]:
    """The outcomes written so far (a line being written is left for the next read)."""
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines(keepends=True)
            if line.endswith("\n")]


if __name__ == "__main__":
    target, api_key, count, per_client, path = sys.argv[1:]
    with Path(path).open("a") as written:
        asyncio.run(_main(target, api_key, int(count), int(per_client), written))
