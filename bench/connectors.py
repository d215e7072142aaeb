"""Benchmark of the connectors against a rate-limited sandbox: the request rate achieved as a
fraction of the configured limit, for a bulk read (SCIM member lookups) and a bulk write
(project-role changes through the admin API), with 8 concurrent workers sharing one client-side
bucket per backend. Target (issue 3): ≥ 0.9 of the limit, zero failed operations.

Run: ``.venv/bin/python bench/connectors.py [--limit 600] [--ops 300] [--workers 8]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

# Python puts this folder first on sys.path; keep it from shadowing top-level packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
# Benchmarks run on the sandbox: its published credentials, in sandbox mode (and our children).
os.environ["HANDOVER_SANDBOX"] = "1"

from cli.stack import start_sandbox  # noqa: E402
from connectors.org import SandboxOrg  # noqa: E402
from connectors.rate import TokenBucket  # noqa: E402
from connectors.settings import Settings  # noqa: E402
from domain.models import Role  # noqa: E402
from sandbox.world import FaultSettings  # noqa: E402


def measure(
    name: str, api: str, url: str, calls: list[Any], workers: int, limit: int
) -> dict[str, Any]:
    """Run ``calls`` concurrently; count the server's log for ``api`` during the run."""
    since = httpx.get(f"{url}/_sandbox/requests", params={"limit": 1}).json()
    start_seq = since["requests"][-1]["seq"] if since["requests"] else 0
    failures = 0

    def run(call: Any) -> bool:
        try:
            call()
            return True
        except Exception:
            return False

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        failures = sum(not ok for ok in pool.map(run, calls))
    elapsed = time.perf_counter() - t0
    log = httpx.get(
        f"{url}/_sandbox/requests", params={"since": start_seq, "api": api, "limit": 200_000}
    ).json()["requests"]
    answered = [r for r in log if r["status"] != 429]
    rate = len(answered) / elapsed * 60
    return {
        "name": name,
        "ops": len(calls),
        "failed": failures,
        "requests": len(answered),
        "429s": len(log) - len(answered),
        "seconds": round(elapsed, 1),
        "per_minute": round(rate, 1),
        "fraction_of_limit": round(rate / limit, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=600, help="requests/min per API (both sides)")
    ap.add_argument("--ops", type=int, default=300, help="operations per measure")
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        sb = start_sandbox(
            db=Path(tmp) / "bench.db",
            seed=f"scale:{max(args.ops, 1000)}",
            faults=FaultSettings(rate_limit=args.limit),
        )
        try:
            settings = Settings(org_url=sb.url)
            org = SandboxOrg.from_settings(
                settings,
                scim_limiter=TokenBucket(args.limit),
                admin_limiter=TokenBucket(args.limit),
                attempts=10,
            )
            emails = [f"user{i:06d}@scale.example" for i in range(3, 3 + args.ops)]
            read = measure(
                "bulk read: SCIM get_member",
                "org_scim",
                sb.url,
                [lambda e=e: org.scim.get_member(e) for e in emails[: args.ops]],
                args.workers,
                args.limit,
            )
            write = measure(
                "bulk write: admin set_project_role",
                "org_admin",
                sb.url,
                [
                    lambda e=e: org.set_project_role(e, "Development", Role.MEMBER)
                    for e in emails[: args.ops]
                ],
                args.workers,
                args.limit,
            )
            org.close()
        finally:
            sb.stop()
    cores = os.cpu_count()
    print(
        f"connectors benchmark — limit {args.limit}/min per API, {args.workers} workers, "
        f"{cores} cores"
    )
    cols = [
        "name",
        "ops",
        "failed",
        "requests",
        "429s",
        "seconds",
        "per_minute",
        "fraction_of_limit",
    ]
    print(" | ".join(cols))
    for r in (read, write):
        print(" | ".join(str(r[c]) for c in cols))
    print(
        json.dumps(
            {
                "bench": "connectors",
                "limit_per_min": args.limit,
                "read_fraction_of_limit": read["fraction_of_limit"],
                "write_fraction_of_limit": write["fraction_of_limit"],
                "failed_ops": read["failed"] + write["failed"],
                "429s": read["429s"] + write["429s"],
                "ops": 2 * args.ops,
                "read_s": read["seconds"],
                "write_s": write["seconds"],
                "cores": cores,
            }
        )
    )


if __name__ == "__main__":
    main()
