"""Where the hook finds the server, its API key and the data directory (spool, state)."""

from __future__ import annotations

import os
from pathlib import Path

from team_memory_core.hook_protocol import LOCAL_KEY_FILE, SPOOL_FILE, default_data_dir


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
        path = default_data_dir() if directory is None else Path(directory)
        return cls(server, path, _api_key(path), self_capture=capture == "claude")

    @property
    def spool(self) -> Path:
        return self.data_dir / SPOOL_FILE


def _api_key(data_dir: Path) -> str | None:
    key = os.environ.get("TEAM_MEMORY_API_KEY", "").strip()
    if key:
        return key
    try:
        return (data_dir / LOCAL_KEY_FILE).read_text().strip() or None
    except OSError:
        return None
