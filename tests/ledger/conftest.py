"""Ledger fixtures: every test runs on SQLite, and on PostgreSQL when this machine can start
one (Debian's postgresql: a throw-away cluster owned by the ``postgres`` user, trust auth on
loopback). ``HANDOVER_TEST_PG_URL`` points at an existing server instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ledger import LedgerDB, open_ledger
from tests.conftest import free_port


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    return [runuser, "-u", "postgres", "--", *cmd] if runuser else cmd


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str | None]:
    """A PostgreSQL server URL, or None when this machine cannot start one."""
    if url := os.environ.get("HANDOVER_TEST_PG_URL"):
        yield url
        return
    bindir = _pg_bin()
    if bindir is None or (
        os.geteuid() == 0
        and subprocess.run(["id", "postgres"], capture_output=True).returncode != 0
    ):
        yield None
        return
    tmp = Path(tempfile.mkdtemp(prefix="handover-pg-"))
    os.chmod(tmp, 0o777)
    data = tmp / "data"
    port = free_port()
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-w",
                    "-l",
                    str(tmp / "log"),
                    "-o",
                    f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError):
        yield None
        return
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(tmp, ignore_errors=True)


def _fresh_pg_db(server: str) -> str:
    name = f"ledger_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + 20
    while True:
        try:
            with engine.connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    engine.dispose()
    return server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str | None) -> str:
    """A new, empty ledger database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    if pg_url is None:
        pytest.skip("no PostgreSQL on this machine")
    return _fresh_pg_db(pg_url)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[LedgerDB]:
    db = open_ledger(ledger_url)
    yield db
    db.dispose()
