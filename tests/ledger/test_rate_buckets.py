"""The shared rate-limit buckets (``ledger/rate_buckets.py``) on SQLite and PostgreSQL: the
store's arithmetic with an injected clock, and real OS processes spending one bucket together —
their combined count of calls over the window they ran never exceeds the limit over that window
plus the burst, and a 429 one of them met holds back the other.

Counts, not timings: each worker records, around every call, the wall clock before it asked
and after it got its token, so the window covers every grant whatever the machine's load.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

import pytest

from connectors.rate import SharedBucket, default_burst
from ledger import LedgerDB
from ledger.db import LedgerDB as _DB
from ledger.rate_buckets import SqlBucketStore, refilled

URL = "http://org.test"
LIMIT = 600  # per minute: 10 a second, a burst of 30


def test_refilled_counts_the_rate_up_to_the_capacity() -> None:
    assert refilled(2.0, 100.0, 100.5, rate=10, capacity=20) == 7.0
    assert refilled(2.0, 100.0, 110.0, rate=10, capacity=20) == 20.0
    assert refilled(-50.0, 100.0, 101.0, rate=10, capacity=20) == -40.0
    assert refilled(2.0, 100.0, 99.0, rate=10, capacity=20) == 2.0  # a clock gone back


def test_take_reserves_what_is_there_or_soon_will_be(ledger: LedgerDB) -> None:
    now = [500.0]
    store = SqlBucketStore(ledger, clock=lambda: now[0])
    kw: dict[str, Any] = {"rate": 10.0, "capacity": 20.0}
    assert store.take("idp", URL, want=8, **kw) == (8, 0.0)  # a new bucket is full
    assert store.take("idp", URL, want=12, **kw) == (12, 0.0)
    # Empty: 5 more are 0.5 s away, which is too far without looking ahead.
    assert store.take("idp", URL, want=5, **kw) == (0, pytest.approx(0.5))
    # Looking a second ahead, they are reserved, there in 0.5 s; the bucket owes them.
    assert store.take("idp", URL, want=5, ahead=1.0, **kw) == (5, pytest.approx(0.5))
    assert store.tokens("idp", URL) == pytest.approx(-5.0)
    # The next 10 are 1.5 s away: reservable in 0.5 s.
    assert store.take("idp", URL, want=10, ahead=1.0, **kw) == (0, pytest.approx(0.5))
    now[0] += 0.5
    assert store.take("idp", URL, want=10, ahead=1.0, **kw) == (10, pytest.approx(1.0))
    # Another backend, or the same one at another URL, is another bucket.
    assert store.take("idp", URL + "/2", want=3, **kw) == (3, 0.0)
    assert store.take("org_admin", URL, want=3, **kw) == (3, 0.0)


def test_penalize_owes_the_retry_after_to_every_store(ledger: LedgerDB) -> None:
    now = [500.0]
    one, other = (SqlBucketStore(ledger, clock=lambda: now[0]) for _ in range(2))
    kw: dict[str, Any] = {"rate": 10.0, "capacity": 20.0}
    one.take("slack", URL, want=1, **kw)
    one.penalize("slack", URL, seconds=3.0, **kw)
    assert other.take("slack", URL, want=1, **kw) == (0, pytest.approx(3.1))
    now[0] += 3.1
    assert other.take("slack", URL, want=1, **kw) == (1, 0.0)


def test_the_database_clock_counts_when_none_is_given(ledger: LedgerDB) -> None:
    store = SqlBucketStore(ledger)
    assert store.take("jira", URL, want=1, rate=1.0, capacity=5.0) == (1, 0.0)
    stamp_tokens = store.tokens("jira", URL)
    assert stamp_tokens is not None and 3.99 < stamp_tokens <= 4.0 + 1e-3


# ---------------------------------------------------------------------------- real processes
def _hammer(url: str, seconds: float, threads: int, out: Any, penalize: bool) -> None:
    """One worker process: ``threads`` threads calling ``acquire`` for ``seconds``; puts
    ``(grants, first_asked, last_granted)`` on ``out``. With ``penalize``: once, mid-way, a 429
    with Retry-After: 30, then stop."""
    db = _DB(url)
    limiter = SharedBucket(SqlBucketStore(db), "org_admin", URL, LIMIT)
    end = time.time() + seconds
    lock = threading.Lock()
    stamps: list[tuple[float, float]] = []

    def run() -> None:
        while time.time() < end:
            asked = time.time()
            limiter.acquire()
            with lock:
                stamps.append((asked, time.time()))

    if penalize:
        for _ in range(5):
            limiter.acquire()
        limiter.penalize(30.0)
        out.put((5, 0.0, 0.0))
        db.dispose()
        return
    pool = [threading.Thread(target=run) for _ in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    db.dispose()
    out.put((len(stamps), min(a for a, _ in stamps), max(g for _, g in stamps)))


def _run(url: str, *, workers: int, seconds: float, penalize: bool = False) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")  # no forked engine, no forked threads
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_hammer, args=(url, seconds, 4, out, penalize)) for _ in range(workers)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def test_two_processes_never_exceed_the_limit_together(ledger_url: str, ledger: LedgerDB) -> None:
    results = _run(ledger_url, workers=2, seconds=3.0)
    grants = sum(n for n, _, _ in results)
    window = max(last for _, _, last in results) - min(first for _, first, _ in results)
    assert all(n > 0 for n, _, _ in results)  # both got tokens
    assert grants <= LIMIT / 60 * window + default_burst(LIMIT)


def test_a_429_one_process_met_holds_back_the_other(ledger_url: str, ledger: LedgerDB) -> None:
    _run(ledger_url, workers=1, seconds=0.0, penalize=True)
    # Another process (this one), another store: not a token for the 30 s owed.
    limiter = SharedBucket(SqlBucketStore(ledger), "org_admin", URL, LIMIT)
    granted, wait = limiter.store.take(
        "org_admin", URL, want=1, rate=limiter.rate, capacity=limiter.capacity
    )
    assert granted == 0 and wait > 25.0
