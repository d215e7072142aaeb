"""A PostgreSQL server on loopback from Debian's ``postgresql`` binaries, for ``handover up
--postgres`` (the Prefect server's runs and the ledger, as in production: SQLite has one writer
and answers 503 "database is locked" under concurrent runs) and for the benchmarks.

- ``handover up --postgres``: a cluster of its own under ``.handover/postgres`` (kept between
  runs, durable: fsync on), started with the stack and stopped with it. Password
  authentication (SCRAM) on 127.0.0.1 only: the password is made once and kept 0600 in
  ``.handover/postgres/password``; the URLs that carry it go to the Prefect server and to the
  runbook processes' environment, never to a log or the banner.
- the benchmarks and the tests: a throw-away cluster in a temporary directory, durability off
  (nothing in it outlives the run), removed on exit.

As root (CI containers), ``initdb`` refuses to run: the cluster then belongs to Debian's
``postgres`` user, through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

USER = "handover"
DATABASES = ("prefect", "ledger")  # the Prefect server's and the ledger's


class PostgresUnavailable(RuntimeError):
    """This machine cannot start a PostgreSQL server (the message says why and what to do)."""


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's binaries (Debian: /usr/lib/postgresql/<v>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    return [runuser, "-u", "postgres", "--", *cmd] if runuser else cmd


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(_as_owner(cmd), capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PostgresUnavailable(f"{what} failed: {last[0]}")


@dataclass
class LocalPostgres:
    """A running cluster: its port and the password of the ``handover`` role."""

    root: Path
    port: int
    password: str
    bindir: Path

    def url(self, database: str, driver: str = "psycopg") -> str:
        """The SQLAlchemy URL of ``database`` (``asyncpg`` for the Prefect server)."""
        return f"postgresql+{driver}://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        subprocess.run(
            _as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-w", "stop"]),
            capture_output=True,
        )


def _init(root: Path, bindir: Path, password: str) -> None:
    """A new cluster whose superuser is ``handover`` with ``password`` (SCRAM on loopback)."""
    pwfile = root / "pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    if os.geteuid() == 0:  # the postgres user reads it once, for initdb
        shutil.chown(pwfile, "postgres")
    try:
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(root / "data"),
                "-U",
                USER,
                "--pwfile",
                str(pwfile),
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
            ],
            "initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)


def start_postgres(root: Path, port: int, *, durable: bool = True) -> LocalPostgres:
    """Start the cluster under ``root`` (made on first use) on 127.0.0.1:``port``, with the
    databases of :data:`DATABASES`.

    Raises:
        PostgresUnavailable: no PostgreSQL installed, or it would not start (why).
    """
    bindir = pg_bin()
    if bindir is None:
        raise PostgresUnavailable(
            "no PostgreSQL on this machine: install Debian's postgresql "
            "(apt-get install postgresql), or pass --prefect-db-url and HANDOVER_LEDGER_URL"
        )
    if os.geteuid() == 0 and subprocess.run(["id", "postgres"], capture_output=True).returncode:
        raise PostgresUnavailable("running as root, and there is no postgres user to own the data")
    root.mkdir(parents=True, exist_ok=True)
    pw_path = root / "password"
    if not (root / "data").exists():
        password = secrets.token_urlsafe(24)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
        _init(root, bindir, password)
        fd = os.open(pw_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
    password = pw_path.read_text().strip()
    sockets = root / "run"
    sockets.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(sockets, "postgres")
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=200"
    if not durable:  # a throw-away cluster: nothing in it outlives the run
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    data = str(root / "data")
    log = str(root / "server.log")
    _run([str(bindir / "pg_ctl"), "-D", data, "-w", "-l", log, "-o", options, "start"], "pg_ctl")
    pg = LocalPostgres(root, port, password, bindir)
    for name in DATABASES:
        create_database(pg.url("postgres"), name)
    return pg


def create_database(server: str, name: str) -> str:
    """``name`` on the server of ``server`` (an existing one is kept); its URL."""
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                with engine.connect() as c:
                    exists = c.execute(
                        text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                    ).first()
                    if not exists:
                        c.execute(text(f'CREATE DATABASE "{name}"'))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)  # the server may still be opening its doors
    finally:
        engine.dispose()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


@contextmanager
def throwaway_postgres(port: int) -> Iterator[LocalPostgres]:
    """A cluster in a temporary directory, durability off, removed on exit.

    Raises:
        PostgresUnavailable: as :func:`start_postgres`.
    """
    tmp = Path(tempfile.mkdtemp(prefix="handover-pg-"))
    os.chmod(tmp, 0o755)
    try:
        pg = start_postgres(tmp, port, durable=False)
    except PostgresUnavailable:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        yield pg
    finally:
        subprocess.run(
            _as_owner(
                [str(pg.bindir / "pg_ctl"), "-D", str(tmp / "data"), "-m", "immediate", "stop"]
            ),
            capture_output=True,
        )
        shutil.rmtree(tmp, ignore_errors=True)
