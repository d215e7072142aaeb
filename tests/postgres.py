"""A throw-away PostgreSQL server for the tests, when this machine can start one (Debian's
``postgresql``: a cluster owned by the ``postgres`` user, trust auth on loopback, durability off
because nothing in it outlives the session). ``HANDOVER_TEST_PG_URL`` points at an existing
server instead.

The ledger's tests run on it as well as on SQLite; each xdist worker's Prefect server keeps its
runs in it (tests/conftest.py: ``prefect_server``), as production does.
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
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    return [runuser, "-u", "postgres", "--", *cmd] if runuser else cmd


@contextmanager
def pg_server(port: int) -> Iterator[str | None]:
    """A PostgreSQL server URL (SQLAlchemy, psycopg), or None when this machine cannot start
    one; the cluster is removed on exit."""
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
    options = (
        f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c max_connections=200 "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    ctl = [str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            _as_postgres(
                [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-N"]
            ),
            check=True,
            capture_output=True,
        )
        subprocess.run(
            _as_postgres([*ctl, "-w", "-l", str(tmp / "log"), "-o", options, "start"]),
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError):
        shutil.rmtree(tmp, ignore_errors=True)
        yield None
        return
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([*ctl, "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(tmp, ignore_errors=True)


def fresh_database(server: str, prefix: str) -> str:
    """A new, empty database on ``server``; its URL (same driver)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                with engine.connect() as c:
                    c.execute(text(f'CREATE DATABASE "{name}"'))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
    finally:
        engine.dispose()
    return server.rsplit("/", 1)[0] + "/" + name
