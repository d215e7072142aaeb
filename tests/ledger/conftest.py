"""Ledger fixtures: every test runs on SQLite, and on PostgreSQL when this machine can start
one (tests/postgres.py; the ``pg_url`` fixture of tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import Anchor, LedgerDB, open_ledger
from tests.anchors import anchor_in
from tests.postgres import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str | None) -> str:
    """A new, empty ledger database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    if pg_url is None:
        pytest.skip("no PostgreSQL on this machine")
    return fresh_database(pg_url, "ledger")


@pytest.fixture
def anchor(tmp_path: Path) -> Anchor:
    """The test ledger's audit key and checkpoint file (in the test's own folder)."""
    return anchor_in(tmp_path)


@pytest.fixture
def ledger(ledger_url: str, anchor: Anchor) -> Iterator[LedgerDB]:
    db = open_ledger(ledger_url, anchor=anchor)
    yield db
    db.dispose()
