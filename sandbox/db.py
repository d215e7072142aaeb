"""The sandbox's storage: one SQLite database (through SQLAlchemy) shared by every fake system.

Every sandbox model derives from :class:`Base`; the whole world lives in one file so that a
restart on the same ``--db`` keeps its state, and ``/_sandbox/reset`` can wipe it in one go.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, String, TypeDecorator, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime; SQLite forgets the zone, so it is put back on read."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of every sandbox table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Setting(Base):
    """Small key/value store for world-wide state that must survive a restart (clock offset)."""

    __tablename__ = "sandbox_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)


def make_engine(db_path: str | Path | None) -> Engine:
    """Create the engine for a database file (``None`` or ``":memory:"``: in memory)."""
    if db_path in (None, ":memory:"):
        from sqlalchemy.pool import StaticPool

        engine = create_engine(
            "sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool
        )
    else:
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            f"sqlite:///{db_path}", connect_args={"check_same_thread": False, "timeout": 30}
        )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling breaks SAVEPOINTs; let SQLAlchemy emit BEGIN
        # (the recipe of SQLAlchemy's SQLite dialect docs).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # WAL lets readers proceed while one request writes; foreign keys keep the fakes honest.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


class Database:
    """Engine, session factory and the write lock of one sandbox world.

    SQLite allows one writer at a time; rather than let concurrent requests fail with
    ``database is locked``, every unit of work takes one process-wide lock. The sandbox serves
    a few hundred requests per second at most, far above any vendor's published rate limit.
    """

    def __init__(self, db_path: str | Path | None) -> None:
        self.engine = make_engine(db_path)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.lock = threading.RLock()

    def image(self) -> bytes:
        """The whole database as bytes (SQLite's serialization)."""
        with self.lock, self.engine.connect() as conn:
            raw: Any = conn.connection.driver_connection
            return bytes(raw.serialize())

    def load_image(self, image: bytes) -> None:
        """Replace the whole database by an :meth:`image` (of an in-memory world: its one
        connection holds it)."""
        with self.lock, self.engine.connect() as conn:
            raw: Any = conn.connection.driver_connection
            raw.deserialize(image)

    def create_all(self) -> None:
        """Create every table that the imported sandbox modules declared."""
        Base.metadata.create_all(self.engine)

    def drop_all(self) -> None:
        """Drop every table (used by ``/_sandbox/reset``)."""
        Base.metadata.drop_all(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any exception."""
        with self.lock, self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
