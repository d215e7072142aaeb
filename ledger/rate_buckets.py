"""Rate-limit buckets shared by every process of a deployment: one row per (backend, base URL)
holding its tokens and when they were counted, in the ledger's database, which every worker,
the intake and the CLI already share (``connectors/rate.py``: the leases spent from them).

Each operation is one short transaction that locks the row: ``SELECT … FOR UPDATE`` on
PostgreSQL, the write lock of SQLite's ``BEGIN IMMEDIATE`` (ledger/db.py) there, so two
processes never both spend the same tokens. Time is the database's own clock (``clock`` in
tests), so workers on several machines count the same seconds.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Float, String, Table, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnClause

from ledger.db import LedgerBase, LedgerDB


class RateBucketRow(LedgerBase):
    __tablename__ = "rate_buckets"

    backend: Mapped[str] = mapped_column(String(200), primary_key=True)
    base_url: Mapped[str] = mapped_column(String(500), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    stamp: Mapped[float] = mapped_column(Float)  # seconds since the epoch, the database's clock


_T: Table = RateBucketRow.__table__  # type: ignore[assignment]

# The database's clock, seconds since the epoch (SQLite's 'now' has milliseconds).
_NOW = {
    "sqlite": "(julianday('now') - 2440587.5) * 86400.0",
    "postgresql": "extract(epoch FROM clock_timestamp())",
}


def refilled(tokens: float, stamp: float, now: float, *, rate: float, capacity: float) -> float:
    """The tokens of a bucket counted ``tokens`` at ``stamp``, at ``now``: ``rate`` a second
    more, ``capacity`` at most (a clock that went back adds none)."""
    return min(capacity, tokens + max(0.0, now - stamp) * rate)


class SqlBucketStore:
    """The shared buckets of one ledger (a :class:`connectors.rate.BucketStore`)."""

    def __init__(self, db: LedgerDB, *, clock: Callable[[], float] | None = None) -> None:
        self.db = db
        self._clock = clock
        self.transactions = 0  # for benchmarks

    def _locked(
        self, conn: Connection, backend: str, base_url: str, capacity: float
    ) -> tuple[float, float, float]:
        """``(tokens, stamp, now)`` of the row, locked for this transaction (a full bucket
        first if there was none); one round trip once the row exists."""
        now_sql: ColumnClause[float] = literal_column(_NOW[conn.dialect.name])
        query = (
            select(_T.c.tokens, _T.c.stamp, now_sql)
            .where(_T.c.backend == backend, _T.c.base_url == base_url)
            .with_for_update()
        )
        row = conn.execute(query).one_or_none()
        if row is None:
            # Two processes may both find none: the second insert does nothing.
            now = (
                self._clock()
                if self._clock is not None
                else float(conn.execute(select(now_sql)).scalar_one())
            )
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(
                dialect.insert(_T)
                .values(backend=backend, base_url=base_url, tokens=capacity, stamp=now)
                .on_conflict_do_nothing()
            )
            row = conn.execute(query).one()
        now = self._clock() if self._clock is not None else float(row[2])
        return float(row[0]), float(row[1]), now

    def _store(
        self, conn: Connection, backend: str, base_url: str, tokens: float, now: float
    ) -> None:
        conn.execute(
            update(_T)
            .where(_T.c.backend == backend, _T.c.base_url == base_url)
            .values(tokens=tokens, stamp=now)
        )

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
        """Reserve ``want`` tokens if the bucket holds them within ``ahead`` seconds.

        Returns:
            ``(want, seconds until they are there)`` (0.0: now); or ``(0, seconds until they
            could be reserved)``.
        """
        self.transactions += 1
        with self.db.engine.begin() as conn:
            tokens, stamp, now = self._locked(conn, backend, base_url, capacity)
            tokens = refilled(tokens, stamp, now, rate=rate, capacity=capacity)
            short = (want - tokens) / rate  # until want tokens are there
            if short > ahead:
                # Nothing written: the refill is the same when counted later.
                return 0, short - ahead
            # The bucket goes below zero for a reservation: whoever comes next waits for it.
            self._store(conn, backend, base_url, tokens - want, now)
            return want, max(0.0, short)

    def penalize(
        self, backend: str, base_url: str, *, seconds: float, rate: float, capacity: float
    ) -> None:
        """Empty the bucket and owe ``seconds`` of refill: nobody takes a token for that long."""
        self.transactions += 1
        with self.db.engine.begin() as conn:
            tokens, stamp, now = self._locked(conn, backend, base_url, capacity)
            tokens = refilled(tokens, stamp, now, rate=rate, capacity=capacity)
            self._store(conn, backend, base_url, min(tokens, 0.0) - seconds * rate, now)

    def tokens(self, backend: str, base_url: str) -> float | None:
        """The tokens counted at the row's last change (None: never used); for tests and
        benchmarks."""
        with self.db.engine.connect() as conn:
            return conn.execute(
                select(_T.c.tokens).where(_T.c.backend == backend, _T.c.base_url == base_url)
            ).scalar_one_or_none()
