"""Benchmark of the sandbox world: seeding ``scale:N`` and the latency of the lookups every
runbook makes (member lookup through SCIM and the admin API, assets by owner), over loopback.

Targets (issue 2): seeding scale:10000 under 30 s; each lookup under 20 ms.
Run: ``.venv/bin/python bench/sandbox.py [--members 10000] [--samples 200]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

# This file is named like the ``sandbox`` package it measures; Python puts the script's folder
# first on sys.path, which would shadow the package, so take that entry out before importing.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from cli.stack import start_sandbox  # noqa: E402
from sandbox.world import Credentials  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()
    creds = Credentials()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        sb = start_sandbox(db=Path(tmp) / "bench.db", seed=f"scale:{args.members}")
        seed_s = time.perf_counter() - t0
        try:
            rng = random.Random(7)
            emails = [
                f"user{rng.randrange(args.members):06d}@scale.example" for _ in range(args.samples)
            ]
            scim = httpx.Client(
                base_url=f"{sb.url}/scim/1",
                headers={"Authorization": f"Bearer {creds.org_scim_key}"},
            )
            admin = httpx.Client(
                base_url=f"{sb.url}/admin/v1",
                headers={"Authorization": f"Bearer {creds.org_admin_token}"},
            )
            summary = httpx.get(f"{sb.url}/_sandbox/summary", timeout=30).json()
            probes = {
                "scim_user_by_email": lambda e: scim.get(
                    "/Users", params={"filter": f'userName eq "{e}"'}
                ),
                "admin_member_detail": lambda e: admin.get(f"/members/{e}"),
                "admin_assets_by_owner": lambda e: admin.get("/assets", params={"owner": e}),
            }
            results: dict[str, dict[str, float]] = {}
            for name, call in probes.items():
                call(emails[0]).raise_for_status()  # warm up
                times = []
                for e in emails:
                    t = time.perf_counter()
                    call(e).raise_for_status()
                    times.append((time.perf_counter() - t) * 1000)
                results[name] = {
                    "p50_ms": round(statistics.median(times), 2),
                    "p95_ms": round(percentile(times, 0.95), 2),
                    "max_ms": round(max(times), 2),
                }
        finally:
            sb.stop()
    cores = os.cpu_count()
    print(f"sandbox benchmark — {args.members} members, {summary['assets']} assets, {cores} cores")
    print(f"{'measure':<26}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for name, r in results.items():
        print(f"{name:<26}{r['p50_ms']:>10}{r['p95_ms']:>10}{r['max_ms']:>10}")
    print(f"seeding scale:{args.members}: {seed_s:.1f} s (target < 30 s)")
    worst_p95 = max(r["p95_ms"] for r in results.values())
    print(
        json.dumps(
            {
                "bench": "sandbox",
                "members": args.members,
                "assets": summary["assets"],
                "seed_fraction_of_target": round(seed_s / 30, 3),
                "worst_p95_fraction_of_target": round(worst_p95 / 20, 3),
                "seed_s": round(seed_s, 2),
                **{f"{k}_p95_ms": v["p95_ms"] for k, v in results.items()},
                "cores": cores,
            }
        )
    )


if __name__ == "__main__":
    main()
