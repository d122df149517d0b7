"""Per-key request rate limit: a token bucket per API key, in this process's memory.

Each server process keeps its own buckets, so N processes behind a load balancer allow up to
N times the configured rate; the limit protects a process and the database from one runaway
client, it is not a billing quota.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """``per_minute`` requests per key per minute, in bursts of up to ``per_minute``; 0 = off."""

    per_minute: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[UUID | None, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self, key: UUID | None) -> float:
        """Take one request's token; returns 0 if allowed, else the seconds until one is free."""
        if self.per_minute <= 0:
            return 0.0
        rate = self.per_minute / 60.0
        now = self.clock()
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket(float(self.per_minute), now))
            bucket.tokens = min(self.per_minute, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / rate


def retry_after_s(wait_seconds: float) -> int:
    """The Retry-After of a refused request: whole seconds, at least 1."""
    return max(1, math.ceil(wait_seconds))


def retry_message(wait_seconds: float) -> str:
    return f"rate limit exceeded, retry in {retry_after_s(wait_seconds)} s"
