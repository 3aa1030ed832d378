"""Per-key token buckets, in the process.

Each key gets `burst` requests at once and `rate_per_s` more every second. The buckets
live in each process: with N processes a key may make up to N times the rate in all, which
is what a limit against a runaway producer needs; a fleet-wide quota would cost a
database round trip per request (docs/security.md). The answer carries the IETF
`RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and `RateLimit-Policy` fields
(draft-ietf-httpapi-ratelimit-headers-07), and `Retry-After` when refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.clock import MonotonicClock, monotonic
from app.errors import RateLimited


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, *, rate_per_s: float, burst: int, clock: MonotonicClock = monotonic) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def take(self, key_id: str) -> dict[str, str]:
        """Spend one request of `key_id`; the headers to answer with. Raises
        `RateLimited` (with those headers) when its bucket is empty."""
        now = self._clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(float(self._burst), now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return self._headers(bucket.tokens)
        wait_s = max(1, math.ceil((1 - bucket.tokens) / self._rate))
        raise RateLimited(retry_after_s=wait_s, headers=self._headers(bucket.tokens, wait_s))

    def _headers(self, tokens: float, reset_s: int | None = None) -> dict[str, str]:
        if reset_s is None:  # when the bucket is full again
            reset_s = math.ceil((self._burst - tokens) / self._rate)
        window_s = max(1, math.ceil(self._burst / self._rate))
        return {
            "RateLimit-Limit": str(self._burst),
            "RateLimit-Remaining": str(math.floor(tokens)),
            "RateLimit-Reset": str(reset_s),
            "RateLimit-Policy": f"{self._burst};w={window_s}",
        }
