"""Client-side rate limiting: one limiter per backend (and base URL), sized to its published
limit, so a bulk run waits for tokens instead of bouncing off 429s.

Two kinds of limiter answer :class:`Limiter` (``acquire()``/``penalize()``):

- :class:`TokenBucket`, one per process: threads block in :meth:`TokenBucket.acquire`; fair
  enough for our use (a lock around a monotonic refill). Two processes each have their own, so
  together they may send twice the limit.
- :class:`SharedBucket`, one per process over a bucket every process shares (a
  :class:`BucketStore`: a row of the ledger's database, ``ledger/rate_buckets.py``). Up to
  :data:`PER_CALL_UP_TO` calls a second, each call takes its own token in one short
  transaction, reserved up to :data:`RESERVE_AHEAD_SECONDS` before it is there: the callers
  of every process queue in the bucket (the next one waits for its turn, no polling) and
  each spends its token the moment it is there, so the bucket is a plain token bucket of
  ``burst`` tokens across processes. A faster backend's calls would make too many
  transactions: there a process takes a *lease* of a few tokens in one transaction and spends
  them locally. A lease may be reserved up to ``lease_s`` seconds before its tokens are there;
  it is valid for ``lease_s`` seconds from then only, and the shared bucket holds
  ``burst - rate * lease_s`` tokens at most. Either way, whatever the number of processes,
  the calls of any window of ``T`` seconds number at most ``burst + rate * T``: what the
  bucket gave in ``T + lease_s`` seconds. A lease's tokens left unspent when it ends are
  dropped (what kept two processes at 0.86 of a 600/min limit with 1 s leases, against
  0.92 with a token per call: docs/performance.md).

Which kind a connector gets: :func:`limiter_for` answers from the :class:`Limits` in use, the
process-wide one unless :func:`use_shared_limits` set shared ones for the connectors built in
its block (``tasks/runtime.py`` does for every runtime built from the settings,
``HANDOVER_RATE_LIMITS``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Protocol

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

# How long a lease of a shared bucket may be spent (seconds), at most: one second's worth of
# tokens per transaction keeps the database's traffic to a few transactions a second per
# process while a lease never outlives a server's one-second view of our rate for long.
LEASE_SECONDS = 1.0
# Up to this many calls a second (at the limit, across the fleet), a call takes its own token
# from the shared bucket: a transaction each (about a millisecond uncontended, measured by
# bench/rate_shared.py) is cheap at that rate, and nothing is leased, so nothing is dropped.
# Past it, leases of LEASE_SECONDS keep the transactions few.
PER_CALL_UP_TO = 20.0
# How far ahead a call may reserve its own token: the queue a bucket holds (20 callers at
# 600/min); a caller further back waits and asks again. As short as a lease's reach (reserved
# up to LEASE_SECONDS ahead, valid as long), so after a 429 no process sends for longer.
RESERVE_AHEAD_SECONDS = 2.0


class Limiter(Protocol):
    """What a connector needs of a rate limiter."""

    @property
    def per_minute(self) -> float:
        """The limit, requests per minute."""
        ...

    def acquire(self) -> float:
        """Take one token, sleeping until one is there.

        Returns:
            The seconds waited.
        """
        ...

    def penalize(self, seconds: float) -> None:
        """After a 429, hold every caller back for ``seconds`` (the server's Retry-After)."""
        ...


def default_burst(per_minute: float) -> int:
    """A twentieth of a minute's allowance (at least 1).

    Why small: it keeps the achieved rate smooth, so the server's own bucket (often a tenth of
    a minute's allowance) never sees more than it can take at once.
    """
    return max(1, int(per_minute // 20))


class TokenBucket:
    """``per_minute`` tokens per minute, holding at most ``burst``; this process's alone."""

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
        self.capacity = float(burst if burst is not None else default_burst(per_minute))
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


class BucketStore(Protocol):
    """Token buckets every process shares, one per (backend, base URL), each refilled at
    ``rate`` tokens a second up to ``capacity``; every operation is atomic across processes."""

    def take(
        self,
        backend: str,
        base_url: str,
        *,
        want: int,
        rate: float,
        capacity: float,
        ahead: float = 0.0,
    ) -> tuple[int, float]:
        """Reserve ``want`` tokens if the bucket holds them within ``ahead`` seconds (a full
        bucket on first use); a reservation takes them from the bucket at once (it may go below
        zero: the next caller waits for it).

        Returns:
            ``(want, seconds until they are there)``, 0.0 when they are; or ``(0, seconds until
            they could be reserved)``.
        """
        ...

    def penalize(
        self, backend: str, base_url: str, *, seconds: float, rate: float, capacity: float
    ) -> None:
        """Empty the bucket and owe ``seconds`` worth of tokens: nobody takes one for that
        long."""
        ...


class SharedBucket:
    """``per_minute`` tokens per minute across every process whose :class:`BucketStore` is the
    same, spent here from leases of the shared bucket.

    ``burst`` is the fleet's, as a :class:`TokenBucket`'s. ``lease_seconds`` (by default 0
    up to :data:`PER_CALL_UP_TO` calls a second, else :data:`LEASE_SECONDS`): 0 takes a token
    per call, reserved up to :data:`RESERVE_AHEAD_SECONDS` ahead and spent when it is there.
    Otherwise a lease of at most ``lease_max`` tokens is spent within ``lease_s`` seconds of
    when its tokens are there (``clock``: this process's monotonic clock); tokens left when it
    ends are dropped, never returned, so they are never spent late. The lease's size adapts
    to this process's demand: it doubles while leases are used up and shrinks to what was
    spent when one ends unused, so an idle process does not hold tokens a busy one is waiting
    for.
    """

    def __init__(
        self,
        store: BucketStore,
        backend: str,
        base_url: str,
        per_minute: float,
        *,
        burst: int | None = None,
        lease_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.store, self.backend, self.base_url = store, backend, base_url
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else default_burst(per_minute))
        if lease_seconds is None:
            lease_seconds = 0.0 if self.rate <= PER_CALL_UP_TO else LEASE_SECONDS
        # A lease may last as long as the burst allows with one token to spare, and hold one
        # lease's time's worth of tokens. A lease of one token is spent at once by the caller
        # that took it: it needs no time, and the bucket keeps the whole burst.
        span = min(lease_seconds, max(0.0, (self.burst - 1.0) / self.rate))
        most = math.floor(self.rate * span)
        if most <= 1:
            most, span = 1, 0.0
        self.lease_s, self.lease_max = span, most
        # A token of its own is spent by its caller the moment it is there (no lease time), so
        # it may be reserved further ahead: callers queue in the bucket instead of polling it.
        self.ahead = span if most > 1 else RESERVE_AHEAD_SECONDS
        # Tokens granted up to lease_s before a window may be spent in it: the shared bucket
        # holds that much less than the burst.
        self.capacity = self.burst - self.rate * span
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._left = 0  # tokens of the current lease not yet spent
        self._from = 0.0  # when the current lease's tokens are there (clock)
        self._until = 0.0  # when the current lease ends (clock)
        self._spent = 0  # tokens of the current lease spent
        self._want = 1  # the next lease's size
        self._empty_until = 0.0  # the shared bucket has no token before then (clock)
        self.leases = 0  # transactions that granted tokens (for benchmarks)
        self.dropped = 0  # tokens of leases that ended unspent (for benchmarks)
        self.waited = 0.0

    def __repr__(self) -> str:
        return f"SharedBucket({self.backend!r}, {self.base_url!r}, {self.per_minute}/min)"

    def acquire(self) -> float:
        """Take one token, from this process's lease or a new one; sleep until it is there.
        Returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                got, wait = self._try_take()
            if wait > 0.0:
                self._sleep(wait)
                waited += wait
            if got:
                with self._lock:
                    self.waited += waited
                return waited

    def _try_take(self) -> tuple[bool, float]:
        """``(True, seconds until the token taken is there)``, or ``(False, seconds to wait
        before trying again)`` (under the lock)."""
        start = self._clock()
        if self._left > 0 and start < self._until:
            self._left -= 1
            self._spent += 1
            return True, max(0.0, self._from - start)
        if start < self._empty_until:
            # The store said when to come back: this process's other threads do not ask it
            # again meanwhile.
            return False, self._empty_until - start
        self._next_size()
        granted, wait = self.store.take(
            self.backend,
            self.base_url,
            want=self._want,
            rate=self.rate,
            capacity=self.capacity,
            ahead=self.ahead,
        )
        if granted < 1:
            self._empty_until = start + wait
            return False, max(wait, 1e-3)
        # Usable from when the last of them is there, counted from after the transaction, until
        # lease_s later, counted from before it: both on the safe side of the database's time.
        self._from, self._until = self._clock() + wait, start + wait + self.lease_s
        self._left, self._spent = granted - 1, 1
        self.leases += 1
        return True, wait

    def _next_size(self) -> None:
        """Size the next lease from how the last one went (called under the lock)."""
        if self._spent == 0:
            return  # no lease yet, or a wait: keep the size asked for
        if self._left == 0:
            self._want = min(self.lease_max, self._want * 2)
        else:  # it ended unused: this process needs about what it spent
            self._want = max(1, self._spent)
            self.dropped += self._left
        self._left = self._spent = 0

    def penalize(self, seconds: float) -> None:
        """After a 429, hold every process back for ``seconds``: the shared bucket owes them,
        and this process's lease is dropped. Another process stops when the lease it holds
        ends (reserved at most ``lease_s`` ahead, valid ``lease_s``)."""
        with self._lock:
            self._left = self._spent = 0  # the next lease keeps the size asked for
            self._empty_until = 0.0
            self.store.penalize(
                self.backend,
                self.base_url,
                seconds=seconds,
                rate=self.rate,
                capacity=self.capacity,
            )


LimiterFactory = Callable[[str, str, float], Limiter]


class Limits:
    """The limiters of one scope, one per (backend, base URL), made on first use by
    ``factory(backend, base_url, per_minute)``."""

    def __init__(self, factory: LimiterFactory | None = None) -> None:
        self.factory: LimiterFactory = factory or (lambda _b, _u, pm: TokenBucket(pm))
        self._made: dict[tuple[str, str], Limiter] = {}
        self._lock = threading.Lock()

    def limiter_for(self, backend: str, base_url: str, per_minute: float | None = None) -> Limiter:
        """The limiter of ``backend`` at ``base_url`` (its published limit unless
        ``per_minute`` says otherwise; a new limit makes a new limiter)."""
        key = (backend, base_url.rstrip("/"))
        with self._lock:
            limiter = self._made.get(key)
            if limiter is None or (per_minute is not None and limiter.per_minute != per_minute):
                limiter = self.factory(*key, per_minute or PUBLISHED_LIMITS.get(backend, 600))
                self._made[key] = limiter
            return limiter

    def made(self) -> dict[tuple[str, str], Limiter]:
        """The limiters made so far, by (backend, base URL); for benchmarks."""
        with self._lock:
            return dict(self._made)


def shared_limits(store: BucketStore) -> Limits:
    """Limits whose limiters are :class:`SharedBucket` s of ``store``."""
    return Limits(lambda backend, url, pm: SharedBucket(store, backend, url, pm))


PROCESS_LIMITS = Limits()
_in_use: ContextVar[Limits] = ContextVar("handover_limits", default=PROCESS_LIMITS)


def current_limits() -> Limits:
    """The limits in use here: those of the innermost :func:`use_shared_limits`, else the
    process-wide ones."""
    return _in_use.get()


@contextmanager
def use_limits(limits: Limits) -> Iterator[Limits]:
    """Connectors built inside this block (and in copies of its context) take their limiters
    from ``limits``."""
    token = _in_use.set(limits)
    try:
        yield limits
    finally:
        _in_use.reset(token)


def use_shared_limits(store: BucketStore | None) -> AbstractContextManager[Limits]:
    """:func:`use_limits` of limiters shared through ``store`` with every process that uses
    the same store (``None``: this process's own buckets)."""
    return use_limits(shared_limits(store) if store is not None else PROCESS_LIMITS)


def limiter_for(backend: str, base_url: str, per_minute: float | None = None) -> Limiter:
    """The limiter in use here of one backend at one URL (created on first use)."""
    return current_limits().limiter_for(backend, base_url, per_minute)
