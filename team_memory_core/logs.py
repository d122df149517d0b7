"""Logging setup: plain text by default, JSON lines (with the current trace and span ids) on
request."""

from __future__ import annotations

import json
import logging
import sys

from team_memory_core.settings import Settings
from team_memory_core.telemetry import current_trace_ids


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = current_trace_ids()
        if ids is not None:
            payload["trace_id"], payload["span_id"] = ids
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)


class NoQueryString(logging.Filter):
    """Drops the query string from request paths in uvicorn's log lines.

    uvicorn's access line (and its WebSocket lines) print the path with its query string, so
    ``/api/search?q=<what someone searched for>`` would land in every log pipeline. The path
    stays, the query goes: a log line never carries search text or other parameters.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_path_only(arg) for arg in record.args)
        return True


def _path_only(arg: object) -> object:
    if isinstance(arg, str) and arg.startswith("/") and "?" in arg:
        return arg.split("?", 1)[0]
    return arg


class ReconnectsOnOneLine(logging.Filter):
    """asyncpg's pool logs a full traceback each time it fails to reconnect to a PostgreSQL
    that is down (with a backoff up to a minute): the reason, on the line itself, is all an
    operator needs; a traceback in the log reads as a crash."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
            record.args = None
            record.exc_info = None
        return True


def keep_queries_out_of_server_logs() -> None:
    """Install :class:`NoQueryString` on uvicorn's loggers (after uvicorn configured them)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, NoQueryString) for f in logger.filters):
            logger.addFilter(NoQueryString())


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("httpx", "mcp.server.lowlevel.server", "uvicorn.access", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    pool_log = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, ReconnectsOnOneLine) for f in pool_log.filters):
        pool_log.addFilter(ReconnectsOnOneLine())
