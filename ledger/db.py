"""The ledger's database: SQLite by default (``.handover/ledger.db``), PostgreSQL by URL.

Appends to the audit chain must be serialised across processes: SQLite transactions start with
``BEGIN IMMEDIATE`` (one writer at a time, others wait), PostgreSQL locks the chain head row.
A ledger opened with an :class:`~ledger.anchor.Anchor` (the audit key and the checkpoint sink)
MACs its events and, after each transaction that appended any, writes the new head to the sink
(ledger/anchor.py); one opened without it can read but not append.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from sqlalchemy import JSON, DateTime, TypeDecorator, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from ledger.anchor import Anchor, Checkpoint, write_checkpoint

# Where an appending transaction leaves its newest head for the checkpoint after its commit.
PENDING_CHECKPOINT = "handover.audit.checkpoint"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class LedgerBase(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


R = TypeVar("R", bound=LedgerBase)


def get_row(s: Session, model: type[R], key: Any, *, what: str) -> R:
    """The row of ``model`` with primary key ``key``.

    Raises:
        KeyError: ``no <what> <key>``: there is none.
    """
    row = s.get(model, key)
    if row is None:
        raise KeyError(f"no {what} {key}")
    return row


def update_row(
    s: Session, model: type[R], key: Any, changes: Mapping[str, object], *, what: str
) -> R:
    """The row of ``model`` with primary key ``key``, each column of ``changes`` set on it (an
    enum member is stored as its value).

    Raises:
        KeyError: ``no <what> <key>``: there is none.
    """
    row = get_row(s, model, key, what=what)
    for column, value in changes.items():
        setattr(row, column, value.value if isinstance(value, Enum) else value)
    return row


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their folder, WAL and immediate transactions."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front: two processes appending never both
            # read the same chain head.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


class LedgerDB:
    """Engine and sessions of one ledger; ``anchor``: its audit key and checkpoint sink."""

    def __init__(self, url: str, *, anchor: Anchor | None = None) -> None:
        self.url = url
        self.anchor = anchor
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # The hash of the first event names the chain in checkpoints (set on first use).
        self.chain_id: str | None = None
        event.listen(self.sessions, "after_commit", self._after_commit)
        event.listen(self.sessions, "after_rollback", self._after_rollback)

    def _after_commit(self, s: Session) -> None:
        # After the commit, not before: a checkpoint never names an event that was rolled back.
        cp: Checkpoint | None = s.info.pop(PENDING_CHECKPOINT, None)
        if cp is not None and self.anchor is not None:
            write_checkpoint(self.anchor, cp)

    def _after_rollback(self, s: Session) -> None:
        if s.info.pop(PENDING_CHECKPOINT, None) is not None:
            self.chain_id = None  # it may have come from a first event just rolled back

    def create_all(self) -> None:
        # Imported for their tables.
        from ledger import (  # noqa: F401
            approvals,
            audit,
            campaigns,
            cases,
            events,
            grants,
            holds,
            rate_buckets,
            replay,
            reviews,
            rotated_secrets,
            tasks,
            triggers,
        )

        LedgerBase.metadata.create_all(self.engine)
        self._add_new_columns()
        # The chain head exists before any append: two first appends in two processes would
        # otherwise both try to create it (PostgreSQL has no row to lock yet).
        from sqlalchemy.exc import IntegrityError

        try:
            with self.session() as s:
                if s.get(audit.ChainHead, 1) is None:
                    s.add(audit.ChainHead(id=1, seq=0, hash=audit.GENESIS))
        except IntegrityError:
            pass  # another process created it first

    def _add_new_columns(self) -> None:
        """Add the columns a newer Handover declares to a ledger an older one created.

        ``create_all`` makes missing tables only. Every column added since is additive and
        has a server-side default, so adding it in place keeps every row valid (a ledger is
        never rewritten).
        """
        from sqlalchemy import inspect, text

        insp = inspect(self.engine)
        missing = [
            (table.name, col)
            for table in LedgerBase.metadata.sorted_tables
            for col in table.columns
            if col.server_default is not None
            and col.name not in {c["name"] for c in insp.get_columns(table.name)}
        ]
        if not missing:  # the usual case: no write transaction (SQLite's lock) is taken
            return
        with self.engine.begin() as conn:
            for table_name, col in missing:
                ddl = col.type.compile(dialect=self.engine.dialect)
                default = col.server_default.arg  # type: ignore[union-attr]
                conn.execute(
                    text(
                        f"ALTER TABLE {table_name} ADD COLUMN {col.name} {ddl} "
                        f"DEFAULT {default!s} NOT NULL"
                    )
                )

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
