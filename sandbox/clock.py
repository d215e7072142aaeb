"""The sandbox clock: real time plus an offset that tests move forward (expiry, 30-day rules).

The offset is kept in the database so that a restarted sandbox keeps the time it was moved to.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sandbox.db import Database, Setting

_KEY = "clock"


class Clock:
    """Sandbox time; ``now()`` is what every fake system uses instead of the wall clock."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._offset = timedelta(0)

    def load(self) -> None:
        """Read the persisted offset (after start-up or a reset)."""
        with self._db.session() as s:
            row = s.get(Setting, _KEY)
            self._offset = timedelta(seconds=float(row.value["offset"])) if row else timedelta(0)

    def now(self) -> datetime:
        """The current sandbox time (aware, UTC)."""
        return datetime.now(UTC) + self._offset

    def set(self, when: datetime) -> datetime:
        """Jump to ``when`` (an aware datetime); time then keeps running from there."""
        return self._store(when - datetime.now(UTC))

    def advance(self, seconds: float) -> datetime:
        """Move time forward (or back, with a negative number) by ``seconds``."""
        return self._store(self._offset + timedelta(seconds=seconds))

    def reset(self) -> datetime:
        """Back to real time."""
        return self._store(timedelta(0))

    def _store(self, offset: timedelta) -> datetime:
        self._offset = offset
        with self._db.session() as s:
            s.merge(Setting(key=_KEY, value={"offset": offset.total_seconds()}))
        return self.now()
