"""Client-side rate limiting: one token bucket per backend, shared by every task in a process.

Sized to the backend's published limit (Amplitude SCIM: 100 requests/min per org), a bulk run
waits for tokens instead of bouncing off 429s. Threads block in :meth:`TokenBucket.acquire`;
the bucket is fair enough for our use (a lock around a monotonic refill).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Published limits, requests per minute. Slack's tier-3 methods allow ~50/min per method;
# Jira Cloud has no fixed published number (it answers 429 with Retry-After), so it gets a
# conservative default.
PUBLISHED_LIMITS: dict[str, int] = {
    "org_scim": 100,
    "org_admin": 600,
    "idp": 600,
    "slack": 50,
    "jira": 300,
}


class TokenBucket:
    """``per_minute`` tokens per minute, holding at most ``burst``."""

    def __init__(
        self,
        per_minute: float,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        # A small burst keeps the achieved rate smooth, so the server's own bucket (often a
        # tenth of a minute's allowance) never sees more than it can take at once.
        self.capacity = float(burst if burst is not None else max(1, int(per_minute // 20)))
        self.tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self.stamp = clock()
        self._lock = threading.Lock()
        self.waited = 0.0

    def acquire(self) -> float:
        """Take one token, sleeping until one is there; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    self.waited += waited
                    return waited
                wait = (1.0 - self.tokens) / self.rate
            self._sleep(wait)
            waited += wait

    def penalize(self, seconds: float) -> None:
        """After a 429, hold everyone back for ``seconds`` (the server's Retry-After)."""
        with self._lock:
            self.tokens = min(self.tokens, 0.0) - seconds * self.rate


_registry: dict[tuple[str, str], TokenBucket] = {}
_registry_lock = threading.Lock()


def limiter_for(backend: str, base_url: str, per_minute: float | None = None) -> TokenBucket:
    """The process-wide bucket of one backend at one URL (created on first use)."""
    key = (backend, base_url.rstrip("/"))
    with _registry_lock:
        bucket = _registry.get(key)
        if bucket is None or (per_minute is not None and bucket.per_minute != per_minute):
            bucket = TokenBucket(per_minute or PUBLISHED_LIMITS.get(backend, 600))
            _registry[key] = bucket
        return bucket
