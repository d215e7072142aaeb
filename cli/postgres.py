"""A PostgreSQL server on loopback from Debian's ``postgresql`` binaries, for ``handover up
--postgres`` (the Prefect server's runs and the ledger, as in production: SQLite has one writer
and answers 503 "database is locked" under concurrent runs) and for the benchmarks.

- ``handover up --postgres``: a cluster of its own under ``.handover/postgres`` (kept between
  runs, durable: fsync on), started with the stack and stopped with it (as root, its data lives
  in a directory of the ``postgres`` user: :func:`cluster_dir`). Password
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
import hashlib
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


def cluster_dir(root: Path) -> Path:
    """Where the cluster's own files (data, sockets, log) live: under ``root``; as root, in a
    directory of the ``postgres`` user named after ``root`` (``initdb`` refuses to run as
    root, and the ``postgres`` user may not reach into root's home or ``/tmp/pytest-of-root``)."""
    if os.geteuid() != 0:
        return root
    name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return Path("/var/lib/postgresql/handover") / name


@dataclass
class LocalPostgres:
    """A running cluster: its port and the password of the ``handover`` role."""

    root: Path  # ours: the password and the libpq password file
    cluster: Path  # the server's: data, sockets, log (:func:`cluster_dir`)
    port: int
    password: str
    bindir: Path

    def url(self, database: str, driver: str = "psycopg", *, password: bool = True) -> str:
        """The SQLAlchemy URL of ``database`` (``asyncpg`` for the Prefect server); without
        the ``password`` it is read from :meth:`passfile`'s file (``PGPASSFILE``)."""
        who = f"{USER}:{self.password}" if password else USER
        return f"postgresql+{driver}://{who}@127.0.0.1:{self.port}/{database}"

    def passfile(self) -> Path:
        """A libpq password file (0600) for this cluster: with ``PGPASSFILE`` pointing at it,
        psycopg connects by a URL that holds no password, so the runbook processes'
        environment, the state file and the banner never carry it."""
        path = self.root / "pgpass"
        _write_private(path, f"127.0.0.1:{self.port}:*:{USER}:{self.password}")
        return path

    def stop(self, *, immediate: bool = False) -> None:
        mode = ["-m", "immediate"] if immediate else ["-w"]
        subprocess.run(
            _as_owner(
                [str(self.bindir / "pg_ctl"), "-D", str(self.cluster / "data"), *mode, "stop"]
            ),
            capture_output=True,
        )


def _write_private(path: Path, line: str) -> None:
    # Created 0600 before the secret is written: never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(line + "\n")


def _init(cluster: Path, bindir: Path, password: str) -> None:
    """A new cluster whose superuser is ``handover`` with ``password`` (SCRAM on loopback)."""
    pwfile = cluster / "pwfile"
    _write_private(pwfile, password)
    if os.geteuid() == 0:  # the postgres user reads it once, for initdb
        shutil.chown(pwfile, "postgres")
    try:
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(cluster / "data"),
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


def _prepare(root: Path, cluster: Path, bindir: Path) -> str:
    """The cluster's directories, made (and the cluster initialised) on first use; its
    password."""
    root.mkdir(parents=True, exist_ok=True)
    cluster.mkdir(parents=True, exist_ok=True)
    (cluster / "run").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        for d in (cluster, cluster / "run"):
            shutil.chown(d, "postgres")
    pw_path = root / "password"
    if not (cluster / "data").exists():
        password = secrets.token_urlsafe(24)
        _init(cluster, bindir, password)
        _write_private(pw_path, password)
    return pw_path.read_text().strip()


def start_postgres(root: Path, port: int, *, durable: bool = True) -> LocalPostgres:
    """Start the cluster of ``root`` (made on first use) on 127.0.0.1:``port``, with the
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
    cluster = cluster_dir(root)
    password = _prepare(root, cluster, bindir)
    options = f"-p {port} -k {cluster / 'run'} -c listen_addresses=127.0.0.1 -c max_connections=200"
    if not durable:  # a throw-away cluster: nothing in it outlives the run
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    data, log = str(cluster / "data"), str(cluster / "server.log")
    _run([str(bindir / "pg_ctl"), "-D", data, "-w", "-l", log, "-o", options, "start"], "pg_ctl")
    pg = LocalPostgres(root, cluster, port, password, bindir)
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
    try:
        pg = start_postgres(tmp, port, durable=False)
    except PostgresUnavailable:
        shutil.rmtree(cluster_dir(tmp), ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        yield pg
    finally:
        pg.stop(immediate=True)
        shutil.rmtree(pg.cluster, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
