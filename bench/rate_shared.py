"""Benchmark of rate limits shared by several worker processes (issue 18): two (or more) OS
processes read org members through the sandbox's admin API as fast as their client-side limiter
lets them, against a sandbox limited to ``--rate-limit`` requests/min per API.

Each mode runs the same load in the same sandbox (its rate buckets new for each):

- ``process``: every process its own token bucket at the limit (``HANDOVER_RATE_LIMITS=process``,
  the behaviour before issue 18): together they ask for N times the limit and meet 429s;
- ``shared``: the limiters of the connectors built from the settings, sharing one bucket in the
  ledger's database (the default): SQLite file, or PostgreSQL with ``--postgres`` (a throw-away
  cluster of Debian's ``postgresql``) or ``--ledger-url``.

Counted from the sandbox's own request log over the window the processes ran (they start
together, on one signal, and stop at one deadline): requests answered per minute as a fraction
of the limit (the initial burst included), the same from ``STARTUP_S`` seconds after the start
to the deadline (``steady_fraction``), 429s received; from the processes: their calls, and
their leases and ledger transactions per 100 calls (a transaction that finds the bucket empty
takes no lease).

Run: ``.venv/bin/python bench/rate_shared.py [--processes 2] [--threads 4] [--seconds 20]
[--rate-limit 600] [--postgres | --ledger-url URL] [--modes process,shared]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

# Python puts this folder first on sys.path; keep it from shadowing top-level packages.
HERE = Path(__file__).resolve()
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE.parent]
sys.path.insert(0, str(HERE.parents[1]))
# Benchmarks run on the sandbox: its published credentials, in sandbox mode (and our children).
os.environ["HANDOVER_SANDBOX"] = "1"

API = "org_admin"
SEED_MEMBERS = 1000
STARTUP_S = 3.0


def worker(
    mode: str, url: str, ledger_url: str, limit: int, threads: int, go: Any, out: Any
) -> None:
    """One worker process: the org connector as a runtime builds it from the settings, its
    threads reading members from the start to the deadline ``go`` carries."""
    from approvals.services import settings_buckets
    from connectors.org import SandboxOrg
    from connectors.rate import SharedBucket, use_shared_limits
    from connectors.settings import Settings
    from ledger import LedgerDB

    # Each 429 of the `process` mode would be a warning line: counted from the sandbox instead.
    logging.getLogger("handover.connectors").setLevel(logging.ERROR)
    settings = Settings(
        org_url=url, org_admin_rate_per_minute=limit, ledger_url=ledger_url, rate_limits=mode
    )
    db = LedgerDB(ledger_url)
    with use_shared_limits(settings_buckets(settings, db)):
        org = SandboxOrg.from_settings(settings, attempts=20)
    emails = [f"user{i:06d}@scale.example" for i in range(3, 3 + SEED_MEMBERS)]
    out.put(("ready", os.getpid()))
    start, deadline = go.get()
    # All start at the same moment, the one the window is counted from.
    time.sleep(max(0.0, start - time.time()))
    calls = [0] * threads

    def run(k: int) -> None:
        n = k
        while time.time() < deadline:
            org.get_member(emails[n % len(emails)])
            calls[k] += 1
            n += threads

    pool = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    limiter = org.admin.limiter
    shared = isinstance(limiter, SharedBucket)
    out.put(
        (
            "done",
            {
                "calls": sum(calls),
                "ended": time.time(),
                "retries": org.admin.stats.retries,
                "transactions": getattr(limiter.store, "transactions", 0) if shared else 0,
                "leases": getattr(limiter, "leases", 0),
            },
        )
    )
    db.dispose()


def transaction_ms(ledger_url: str, n: int = 300) -> float:
    """Milliseconds one lease's transaction takes on this ledger, uncontended (median of ``n``)."""
    from ledger import LedgerDB
    from ledger.rate_buckets import SqlBucketStore

    db = LedgerDB(ledger_url)
    store = SqlBucketStore(db)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        store.take("bench", "http://x", want=1, rate=1e6, capacity=1e6)
        times.append(time.perf_counter() - t)
    db.dispose()
    return round(1000 * statistics.median(times), 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_mode(mode: str, url: str, ledger_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """The load of ``args.processes`` workers in ``mode``; its figures."""
    # Reads change nothing: the same world, its rate-limit buckets new (full).
    httpx.put(
        f"{url}/_sandbox/faults", json={"rate_limit": args.rate_limit}, timeout=60
    ).raise_for_status()
    ctx = multiprocessing.get_context("spawn")
    out, go = ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(
            target=worker,
            args=(mode, url, ledger_url, args.rate_limit, args.threads, go, out),
        )
        for _ in range(args.processes)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        assert out.get(timeout=120)[0] == "ready"
    since = httpx.get(f"{url}/_sandbox/requests", params={"limit": 1}).json()["requests"]
    start_seq = since[-1]["seq"] if since else 0
    t0 = time.time() + 0.5
    for _ in procs:
        go.put((t0, t0 + args.seconds))
    done = [out.get(timeout=args.seconds + 300)[1] for _ in procs]
    for p in procs:
        p.join(timeout=60)
    window = max(d["ended"] for d in done) - t0
    log = httpx.get(
        f"{url}/_sandbox/requests", params={"since": start_seq, "api": API, "limit": 200_000}
    ).json()["requests"]
    answered = sum(r["status"] != 429 for r in log)
    # The steady rate: the answers from STARTUP_S seconds after the start (the bucket's initial
    # burst spent) to the deadline (what threads still waiting then send is left out), by the
    # sandbox's clock, which is the wall clock here (nothing moved it).
    at = [datetime.fromisoformat(r["at"]).timestamp() for r in log if r["status"] != 429]
    steady = sum(t0 + STARTUP_S <= x < t0 + args.seconds for x in at)
    steady_per_minute = steady / (args.seconds - STARTUP_S) * 60
    calls = sum(d["calls"] for d in done)
    per_minute = answered / window * 60
    return {
        "mode": mode,
        "calls": calls,
        "answered": answered,
        "429s": len(log) - answered,
        "window_s": round(window, 1),
        "per_minute": round(per_minute, 1),
        "fraction_of_limit": round(per_minute / args.rate_limit, 3),
        "steady_fraction": round(steady_per_minute / args.rate_limit, 3),
        "leases_per_100_calls": round(100 * sum(d["leases"] for d in done) / calls, 1)
        if calls
        else 0.0,
        "transactions_per_100_calls": round(100 * sum(d["transactions"] for d in done) / calls, 1)
        if calls
        else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4, help="threads per process")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long the load runs")
    ap.add_argument("--rate-limit", type=int, default=600, help="requests/min per API")
    ap.add_argument("--modes", default="process,shared")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--postgres", action="store_true", help="the ledger on a new cluster")
    where.add_argument("--ledger-url", help="the ledger's SQLAlchemy URL (default: SQLite)")
    args = ap.parse_args()

    from cli.stack import start_sandbox
    from ledger import open_ledger
    from sandbox.world import FaultSettings

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="handover-rate-")))
        ledger_url = args.ledger_url or f"sqlite:///{tmp / 'ledger.db'}"
        backend = "sqlite" if ledger_url.startswith("sqlite") else "postgresql"
        if args.postgres:
            from tests.postgres import fresh_database, pg_server

            server = stack.enter_context(pg_server(free_port()))
            if server is None:
                sys.exit("no PostgreSQL on this machine (Debian's postgresql)")
            ledger_url, backend = fresh_database(server, "ratebench"), "postgresql"
        open_ledger(ledger_url).dispose()  # its tables, before the workers start
        sb = start_sandbox(
            db=tmp / "sandbox.db",
            seed=f"scale:{SEED_MEMBERS}",
            faults=FaultSettings(rate_limit=args.rate_limit),
        )
        stack.callback(sb.stop)
        rows = [run_mode(m, sb.url, ledger_url, args) for m in args.modes.split(",")]
        lease_ms = transaction_ms(ledger_url)

    cores = os.cpu_count()
    print(
        f"shared rate limits — {args.processes} processes x {args.threads} threads, "
        f"{args.seconds:g} s, limit {args.rate_limit}/min on {API}, ledger on {backend}, "
        f"{cores} cores"
    )
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    print(f"one lease's transaction on the {backend} ledger, uncontended: median {lease_ms} ms")
    figures: dict[str, Any] = {
        "bench": "rate_shared",
        "processes": args.processes,
        "limit_per_min": args.rate_limit,
        "ledger": backend,
    }
    for r in rows:
        m = r["mode"]
        figures |= {
            f"{m}_fraction_of_limit": r["fraction_of_limit"],
            f"{m}_steady_fraction": r["steady_fraction"],
            f"{m}_429s": r["429s"],
            f"{m}_transactions_per_100_calls": r["transactions_per_100_calls"],
        }
    figures |= {"lease_transaction_ms": lease_ms, "seconds": args.seconds, "cores": cores}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
