"""Benchmark of the offboarding runbook on the demo sandbox, with the whole stack warm
(a Prefect server, the sandbox, the ledger):

1. normal offboardings (termination, approved through the CLI path as HR): wall time from
   the start to the verified end, and API calls per offboarding (counted in the sandbox's own
   request log, per API);
2. emergency offboardings (security_incident: no pre-approval): trigger → verified lockout
   latency, p50 and p95 (target p95 ≤ 5 s).

Run: ``.venv/bin/python bench/offboard.py [--normal 5] [--emergency 20]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

# Python puts this folder first on sys.path; keep it from shadowing top-level packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from cli.stack import start_prefect_server, start_sandbox  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--normal", type=int, default=3)
    ap.add_argument("--emergency", type=int, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="handover-bench-"))
    prefect = start_prefect_server(tmp / "prefect")
    sb = start_sandbox(db=None, seed="demo")
    try:
        run(sb.url, tmp, args)
    finally:
        sb.stop()
        prefect.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def run(url: str, tmp: Path, args: argparse.Namespace) -> None:
    from approvals.handler import decide
    from cli.stack import local_runtime
    from domain.records import ApprovalState
    from flows.offboard import offboard
    from ledger.approvals import list_approvals

    rt, svc = local_runtime(url, tmp)
    admin = httpx.Client(
        base_url=f"{url}/admin/v1", headers={"Authorization": "Bearer sandbox-admin-token"}
    )
    planted = {
        "dana.sole@acme.com",
        "mike.stale@acme.com",
        "gina.groups@acme.com",
        "sofia.lead@acme.com",
        "frank.former@acme.com",
        "leo.leave@acme.com",
        "jon.smith@acme.com",
    }
    people = [
        m["email"]
        for m in admin.get("/members", params={"status": "joined"}).json()["members"]
        if m["org_role"] in ("member", "viewer")
        and m["email"].endswith("@acme.com")
        and m["email"] not in planted
    ]
    need = args.normal + args.emergency
    if len(people) < need:
        raise SystemExit(f"the demo org has {len(people)} ordinary members; asked for {need}")
    stop = threading.Event()

    def approver() -> None:  # HR approves every pending termination (the CLI path)
        while not stop.is_set():
            for a in list_approvals(rt.ledger, state=ApprovalState.PENDING):
                if not a.decisions:
                    decide(svc, a.id, approver="hr.partner@acme.com", decision="approve")
            time.sleep(0.05)

    threading.Thread(target=approver, daemon=True).start()
    offboard(email=people[0], reason="termination", dry_run=True)  # warm the stack
    normal, calls = [], []
    for email in people[: args.normal]:
        seq = httpx.get(f"{url}/_sandbox/requests", params={"limit": 1}).json()["requests"]
        start_seq = seq[-1]["seq"] if seq else 0
        t = time.perf_counter()
        r = offboard(email=email, reason="termination", requester="it.ops@acme.com")
        normal.append(time.perf_counter() - t)
        assert r["status"] == "done" and all(v == "pass" for v in r["verification"].values()), r
        log = httpx.get(
            f"{url}/_sandbox/requests", params={"since": start_seq, "limit": 100_000}
        ).json()["requests"]
        calls.append(Counter(x["api"] for x in log))
    lockout = []
    for email in people[args.normal : need]:
        t = time.perf_counter()
        r = offboard(
            email=email, reason="security_incident", emergency=True, requester="sec.lead@acme.com"
        )
        lockout.append(time.perf_counter() - t)
        assert r["status"] == "done" and all(v == "pass" for v in r["verification"].values()), r
    stop.set()
    per_api = Counter[str]()
    for c in calls:
        per_api.update(c)
    n = len(calls)
    mean_calls = sum(per_api.values()) / n
    cores = os.cpu_count()
    print(f"offboarding benchmark — demo sandbox, warm stack, {cores} cores")
    print(
        f"normal (termination, approved): {n} runs, wall p50 {statistics.median(normal):.2f} s,"
        f" max {max(normal):.2f} s; API calls per offboarding {mean_calls:.1f} "
        f"({', '.join(f'{k} {v / n:.1f}' for k, v in sorted(per_api.items()))})"
    )
    p50, p95 = statistics.median(lockout), pct(lockout, 0.95)
    print(
        f"emergency (trigger → verified lockout): {len(lockout)} runs, p50 {p50:.2f} s, "
        f"p95 {p95:.2f} s (target ≤ 5 s)"
    )
    print(
        json.dumps(
            {
                "bench": "offboard",
                "emergency_p95_fraction_of_target": round(p95 / 5.0, 3),
                "api_calls_per_offboarding": round(mean_calls, 1),
                "normal_runs": n,
                "emergency_runs": len(lockout),
                "normal_wall_p50_s": round(statistics.median(normal), 2),
                "emergency_p50_s": round(p50, 2),
                "emergency_p95_s": round(p95, 2),
                "cores": cores,
            }
        )
    )


if __name__ == "__main__":
    main()
