"""A throw-away PostgreSQL server for the tests, when this machine can start one (Debian's
``postgresql``, started as ``handover up --postgres`` and the benchmarks start theirs:
``cli.postgres``, durability off because nothing in it outlives the session).
``HANDOVER_TEST_PG_URL`` points at an existing server instead.

The ledger's tests run on it as well as on SQLite; each xdist worker's Prefect server keeps its
runs in it (tests/conftest.py: ``prefect_server``), as production does.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from cli.postgres import PostgresUnavailable, create_database, throwaway_postgres


@contextmanager
def pg_server(port: int) -> Iterator[str | None]:
    """A PostgreSQL server URL (SQLAlchemy, psycopg), or None when this machine cannot start
    one; the cluster (``cli.postgres.throwaway_postgres``) is removed on exit."""
    if url := os.environ.get("HANDOVER_TEST_PG_URL"):
        yield url
        return
    with ExitStack() as stack:
        try:
            pg = stack.enter_context(throwaway_postgres(port))
        except PostgresUnavailable:
            yield None
            return
        yield pg.url("postgres")


def fresh_database(server: str, prefix: str) -> str:
    """A new, empty database on ``server``; its URL (same driver)."""
    return create_database(server, f"{prefix}_{uuid.uuid4().hex[:12]}")
