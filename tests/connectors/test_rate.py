"""Rate limiters (``connectors/rate.py``): the lease arithmetic of a :class:`SharedBucket` on a
real shared store (the ledger's, on SQLite) with an injected clock and sleep, so every figure is
exact; and which limiter a connector gets (``use_shared_limits``). Several real processes on one
shared bucket: ``tests/ledger/test_rate_buckets.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.rate import (
    PROCESS_LIMITS,
    SharedBucket,
    TokenBucket,
    current_limits,
    limiter_for,
    use_shared_limits,
)
from ledger import LedgerDB, open_ledger
from ledger.rate_buckets import SqlBucketStore

URL = "https://org.example"


class FakeTime:
    """A clock that only sleeping moves, shared by the store and the limiters."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def db(tmp_path: Path) -> Iterator[LedgerDB]:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield ledger
    ledger.dispose()


@pytest.fixture
def t() -> FakeTime:
    return FakeTime()


def bucket(db: LedgerDB, t: FakeTime, per_minute: float = 600, **kw: Any) -> SharedBucket:
    """A limiter as one process has it: its own store object over the shared database."""
    store = SqlBucketStore(db, clock=t.clock)
    return SharedBucket(store, "org_admin", URL, per_minute, clock=t.clock, sleep=t.sleep, **kw)


def lease_bucket(db: LedgerDB, t: FakeTime) -> SharedBucket:
    """A limiter of 600/min that takes leases of up to 1 s (a faster backend's way)."""
    return bucket(db, t, lease_seconds=1.0)


@pytest.mark.parametrize(
    ("per_minute", "lease_seconds", "lease_s", "lease_max", "capacity"),
    [
        # 10/s, burst 30, leases of up to 1 s asked for: 10 tokens, so the shared bucket
        # holds 20.
        (600, 1.0, 1.0, 10, 20.0),
        # By default a token per call up to 20 calls a second: no lease time, the bucket
        # keeps the whole burst.
        (600, None, 0.0, 1, 30.0),
        (1200, None, 0.0, 1, 60.0),
        # 100/min, burst 5: a lease could hold one token only: it is spent at once.
        (100, 1.0, 0.0, 1, 5.0),
        (20, 1.0, 0.0, 1, 1.0),
        # 6000/min, burst 300: leases by default, one of 1 s holds 100.
        (6000, None, 1.0, 100, 200.0),
    ],
)
def test_a_lease_lasts_and_holds_what_the_burst_allows(
    db: LedgerDB,
    t: FakeTime,
    per_minute: float,
    lease_seconds: float | None,
    lease_s: float,
    lease_max: int,
    capacity: float,
) -> None:
    b = bucket(db, t, per_minute, lease_seconds=lease_seconds)
    assert (b.lease_s, b.lease_max, b.capacity) == (lease_s, lease_max, pytest.approx(capacity))
    # Whatever was leased in the lease's time before a window may be spent in it: the fleet's
    # calls in any window of T seconds are at most the burst plus T seconds' worth.
    assert b.capacity + b.rate * b.lease_s == pytest.approx(b.burst)


def test_leases_double_while_used_up_and_the_rate_holds(db: LedgerDB, t: FakeTime) -> None:
    b = lease_bucket(db, t)
    store = b.store
    assert isinstance(store, SqlBucketStore)
    for _ in range(15):
        assert b.acquire() == 0.0
    # Leases of 1, 2, 4 and 8 from the full shared bucket (20): four transactions.
    assert store.transactions == 4 and t.slept == []
    # The next lease (10, at most a second's worth) is reserved: 5 are there, the rest in 0.5 s.
    assert b.acquire() == pytest.approx(0.5)
    for _ in range(120 - 16):
        b.acquire()
    # Then 10 tokens a second, a lease of 10 reserved a second ahead: one transaction each,
    # never one that finds nothing. The 120th call is in the lease ready at 10.5 s.
    assert t.now - 1_000.0 == pytest.approx(10.5)
    assert b.leases == 15 and store.transactions == 15


def test_a_lease_ends_after_its_time_and_its_leftover_is_dropped(db: LedgerDB, t: FakeTime) -> None:
    b = lease_bucket(db, t)
    for _ in range(1 + 2 + 4):  # leases of 1, 2, 4: the next one asks for 8
        b.acquire()
    b.acquire()  # a lease of 8, one spent
    b.acquire()
    b.acquire()
    left = SqlBucketStore(db).tokens("org_admin", URL)
    assert left == pytest.approx(20 - 15)
    t.now += 1.0  # the lease's time is over: its 5 unspent tokens are not spent late
    b.acquire()
    # One second refilled 10 into the shared 5 (at most 20): the 5 dropped are not given back;
    # the new lease is sized to what the last one spent (3).
    assert SqlBucketStore(db).tokens("org_admin", URL) == pytest.approx(15 - 3)
    assert b.leases == 5 and b.dropped == 5


@pytest.mark.parametrize("lease_seconds", [None, 1.0])
def test_two_limiters_on_one_bucket_together_stay_within_the_limit(
    db: LedgerDB, t: FakeTime, lease_seconds: float | None
) -> None:
    a, b = bucket(db, t, lease_seconds=lease_seconds), bucket(db, t, lease_seconds=lease_seconds)
    for granted in range(1, 401):
        (a if granted % 3 else b).acquire()
        elapsed = t.now - 1_000.0
        assert granted <= b.burst + b.rate * elapsed + 1e-9  # the clock's rounding


def test_a_429_holds_back_the_other_process(db: LedgerDB, t: FakeTime) -> None:
    a, b = lease_bucket(db, t), lease_bucket(db, t)
    a.acquire()
    b.acquire()
    a.penalize(5.0)  # the server said Retry-After: 5
    # b's next lease waits for the 5 s owed and the 2 tokens it asks for (10/s).
    assert b.acquire() == pytest.approx(5.2)
    # a's own lease was dropped with the penalty.
    assert a.acquire() > 0.0


def test_a_limit_changed_makes_a_new_limiter(db: LedgerDB) -> None:
    with use_shared_limits(SqlBucketStore(db)) as limits:
        first = limiter_for("idp", URL, 600)
        assert limiter_for("idp", URL + "/") is first
        assert limiter_for("idp", URL, 1200) is not first
        assert limits.made()[("idp", URL)].per_minute == 1200


def test_use_shared_limits_decides_what_connectors_built_in_it_get(db: LedgerDB) -> None:
    assert isinstance(limiter_for("org_admin", URL), TokenBucket)
    with use_shared_limits(SqlBucketStore(db)) as limits:
        shared = limiter_for("org_admin", URL)
        assert isinstance(shared, SharedBucket) and current_limits() is limits
        assert shared.per_minute == 600  # the published limit
    with use_shared_limits(None):
        assert current_limits() is PROCESS_LIMITS
    assert isinstance(limiter_for("org_admin", URL), TokenBucket)


def test_a_token_per_call_queues_the_callers_in_the_bucket(db: LedgerDB, t: FakeTime) -> None:
    a, b = bucket(db, t), bucket(db, t)
    store = b.store
    assert isinstance(store, SqlBucketStore)
    # The whole burst at once, then a token every 0.1 s for whichever process asks: each call
    # one transaction that reserves its token, none that finds the bucket empty.
    assert [(a if i % 2 else b).acquire() for i in range(30)] == [0.0] * 30
    assert a.acquire() == pytest.approx(0.1)
    assert b.acquire() == pytest.approx(0.1)
    assert a.leases + b.leases == 32 and a.dropped == b.dropped == 0
    # Two callers queued ahead of the clock (threads of two processes): the second is told to
    # wait for its turn, 0.1 s after the first's.
    first = store.take("org_admin", URL, want=1, rate=10.0, capacity=30.0, ahead=a.ahead)
    second = store.take("org_admin", URL, want=1, rate=10.0, capacity=30.0, ahead=a.ahead)
    assert first == (1, pytest.approx(0.1)) and second == (1, pytest.approx(0.2))
    # Queued up to 2 s ahead only: further back, a caller is told when to ask again.
    for _ in range(18):
        store.take("org_admin", URL, want=1, rate=10.0, capacity=30.0, ahead=a.ahead)
    assert store.take("org_admin", URL, want=1, rate=10.0, capacity=30.0, ahead=a.ahead) == (
        0,
        pytest.approx(0.1),
    )


def test_a_token_bucket_is_a_limiter_of_this_process_only(t: FakeTime) -> None:
    b = TokenBucket(600, clock=t.clock, sleep=t.sleep)
    for _ in range(30):
        assert b.acquire() == 0.0
    assert b.acquire() == pytest.approx(0.1)
    b.penalize(2.0)
    assert b.acquire() == pytest.approx(2.1)


def test_after_a_429_another_process_spends_only_the_lease_it_holds(
    db: LedgerDB, t: FakeTime
) -> None:
    a, b = lease_bucket(db, t), lease_bucket(db, t)
    for _ in range(1 + 2 + 4):  # b's leases of 1, 2, 4; it holds one of 8 after the next call
        b.acquire()
    b.acquire()
    a.penalize(5.0)
    # b spends the 7 left of its lease (they were there before the 429) ...
    assert [b.acquire() for _ in range(7)] == [0.0] * 7
    # ... and then waits out the Retry-After with everyone else.
    assert b.acquire() >= 5.0
