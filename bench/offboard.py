"""Benchmark of the offboarding runbook on the demo sandbox, with the whole stack warm
(a Prefect server, the sandbox, the ledger):

1. normal offboardings (termination, approved through the CLI path as HR): wall time from
   the start to the verified end, and API calls per offboarding (counted in the sandbox's own
   request log, per API);
2. emergency offboardings triggered the way HR triggers them: each a signed ``POST /hooks/hr``
   (``employee.terminated`` with ``security_risk: true``) to a running intake (uvicorn over
   loopback, the thread launcher of ``handover demo``), one after the other. Latency, p50 and
   p95 (target p95 ≤ 5 s), from the POST to the *verified* lockout: the end of the flow's
   ``verify_offboarding`` task (read from the Prefect server), counted only when the run ends
   ``done`` with every check passing (``member_removed``, ``idp_user_inactive``,
   ``not_reprovisioned``, ``old_keys_rejected``, …). Also shown: POST → member removed (the
   ``offboard.remove_member`` audit event) and POST → end of the run (the record step's ticket
   comment and Slack DMs come after the verification).

3. the emergency path per IdP kind (``HANDOVER_IDP_KIND`` scim, okta, entra: the sandbox's one
   IdP through each vendor's API): the same signed webhook, timed to the leaver's IdP sessions
   ended (the ``offboard.end_idp_sessions`` audit event; a generic SCIM IdP has no API for it)
   and to the member removed from the org.

4. the production path (``--deployed N``): ``handover up`` started in a directory of its own, as
   a person starts it (a subprocess: its Prefect server, sandbox, intake, deployments and a
   process worker polling every second, ``PREFECT_WORKER_QUERY_SECONDS=1``), found through its
   state file (``.handover/stack.json``). N signed HR emergencies to its intake, one after the
   other; each runs on the stack's warm worker (flows/warm.py: a background task in a process
   that is already running), then the same again with ``handover up --no-warm-worker``, where
   each runs as a flow run of the ``offboard`` deployment on the process worker (a new Python
   process per run). Timed from the POST to the member gone from the org (the sandbox's
   admin API answers 404, polled every 50 ms) and to the verified lockout (the run's
   ``verify_offboarding`` task completed, on that stack's Prefect server). Sections 2 and 3 run
   on the in-process launcher of ``handover demo``, this one on the path production takes.

Run: ``.venv/bin/python bench/offboard.py [--normal 5] [--emergency 20] [--per-kind 3]
[--deployed 6]``.
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
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

# Python puts this folder first on sys.path; keep it from shadowing top-level packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Benchmarks run on the sandbox: its published credentials, in sandbox mode (and our children).
os.environ["HANDOVER_SANDBOX"] = "1"

from cli.stack import start_prefect_server, start_sandbox  # noqa: E402
from domain.identity import SELF_DECLARED  # noqa: E402
from domain.tasks import is_ok  # noqa: E402
from sandbox.seeds import DEMO_PLANTED as PLANTED  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def open_valves(tmp: Path) -> None:
    """Point HANDOVER_POLICY at the default policy with its safety valves opened wide.

    Twenty HR emergencies in a row from one source are far past the default ``emergency_limit``
    and ``termination_burst`` (docs/security.md): from the fourth on, each would wait for a
    quorum. This benchmark measures the lockout itself, so nothing here waits for one.
    """
    import yaml

    from approvals.policy import DEFAULT_POLICY

    data = yaml.safe_load(DEFAULT_POLICY.read_text())
    data["emergency_limit"] = None
    data["termination_burst"] = None
    path = tmp / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    os.environ["HANDOVER_POLICY"] = str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--normal", type=int, default=3)
    ap.add_argument("--emergency", type=int, default=20)
    ap.add_argument("--per-kind", type=int, default=3, help="emergencies per IdP kind")
    ap.add_argument(
        "--deployed", type=int, default=6, help="emergencies through `handover up` (0: none)"
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="handover-bench-"))
    prefect = start_prefect_server(tmp / "prefect")
    open_valves(tmp)
    sb = start_sandbox(db=None, seed="demo")
    try:
        from cli.stack import local_runtime
        from tasks.runtime import use_runtime

        # Every offboarding here, and those the intake launches in threads, runs on this.
        with use_runtime(local_runtime(sb.url, tmp, idp_kind="scim")) as rt:
            figures = run(sb.url, rt, args)
        # Section 3 on a demo world of its own: sections 1 and 2 may take every ordinary member.
        kinds = start_sandbox(db=None, seed="demo")
        try:
            figures |= by_idp_kind(kinds.url, tmp, args.per_kind)
        finally:
            kinds.stop()
        if args.deployed:
            figures |= deployed(tmp / "up", args.deployed, warm=True)
            figures |= deployed(tmp / "up-cold", args.deployed, warm=False)
        print(json.dumps(figures))
    finally:
        sb.stop()
        prefect.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def admin_client(sandbox: str) -> httpx.Client:
    """The sandbox's org admin API, with its published development token."""
    return httpx.Client(
        base_url=f"{sandbox}/admin/v1", headers={"Authorization": "Bearer sandbox-admin-token"}
    )


def ordinary_members(sandbox: str, need: int) -> list[str]:
    """The demo org's joined members and viewers, but its planted cases; exits when there are
    fewer than ``need``."""
    with admin_client(sandbox) as admin:
        people = [
            m["email"]
            for m in admin.get("/members", params={"status": "joined"}).json()["members"]
            if m["org_role"] in ("member", "viewer")
            and m["email"].endswith("@acme.com")
            and m["email"] not in PLANTED
        ]
    if len(people) < need:
        raise SystemExit(f"the demo org has {len(people)} ordinary members; asked for {need}")
    return people


def run(url: str, rt: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Sections 1 and 2, printed; their headline figures."""
    from approvals.handler import decide
    from domain.records import ApprovalState
    from flows.offboard import offboard
    from ledger.approvals import list_approvals

    svc = rt  # the runtime is also the gate's services (approvals.services.Services)
    need = args.normal + args.emergency
    people = ordinary_members(url, need)
    stop = threading.Event()

    def approver() -> None:  # HR approves every pending termination (the CLI path)
        while not stop.is_set():
            for a in list_approvals(rt.ledger, state=ApprovalState.PENDING):
                if not a.decisions:
                    decide(
                        svc,
                        a.id,
                        approver="hr.partner@acme.com",
                        decision="approve",
                        plan_hash=a.plan_hash,
                        verified=SELF_DECLARED,
                    )
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
    stop.set()
    verified, removed, ended, held = emergencies(url, svc, people[args.normal : need])
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
    p50, p95 = statistics.median(verified), pct(verified, 0.95)
    print(
        f"emergency (HR webhook → verified lockout): {len(verified)} runs, p50 {p50:.2f} s, "
        f"p95 {p95:.2f} s (target ≤ 5 s)"
    )
    print(
        f"  webhook → member removed: p50 {statistics.median(removed):.2f} s, "
        f"p95 {pct(removed, 0.95):.2f} s; webhook → run ended (ticket, DMs): "
        f"p50 {statistics.median(ended):.2f} s, p95 {pct(ended, 0.95):.2f} s"
    )
    print(
        f"  our Slack rate-limit buckets held runs back {sum(held):.2f} s in all "
        f"(max {max(held):.2f} s in one run)"
    )
    return {
        "bench": "offboard",
        "emergency_p95_fraction_of_target": round(p95 / 5.0, 3),
        "api_calls_per_offboarding": round(mean_calls, 1),
        "normal_runs": n,
        "emergency_runs": len(verified),
        "emergency_trigger": "hr_webhook",
        "normal_wall_p50_s": round(statistics.median(normal), 2),
        "emergency_p50_s": round(p50, 2),
        "emergency_p95_s": round(p95, 2),
        "emergency_removed_p95_s": round(pct(removed, 0.95), 2),
        "emergency_run_end_p95_s": round(pct(ended, 0.95), 2),
        "emergency_slack_bucket_wait_max_s": round(max(held), 2),
        "cores": cores,
    }


def by_idp_kind(url: str, tmp: Path, n: int) -> dict[str, Any]:
    """Section 3: ``n`` emergencies through each IdP kind's API; printed, and as figures."""
    from cli.stack import local_runtime
    from tasks.runtime import use_runtime

    people = ordinary_members(url, 3 * n)
    out: dict[str, Any] = {}
    print("emergency per IdP kind (HR webhook → sessions ended → member removed):")
    for i, kind in enumerate(("scim", "okta", "entra")):
        home = tmp / f"idp-{kind}"
        home.mkdir()
        mine = people[i * n : (i + 1) * n]
        sessions: list[float] = []
        with use_runtime(local_runtime(url, home, idp_kind=kind)) as rt:
            _, removed, _, _ = emergencies(url, rt, mine, sessions=sessions)
        line = f"  {kind:5}: {len(removed)} runs, "
        if sessions:
            line += (
                f"sessions ended p50 {statistics.median(sessions):.2f} s, "
                f"max {max(sessions):.2f} s; "
            )
            out[f"emergency_{kind}_sessions_ended_p50_s"] = round(statistics.median(sessions), 2)
        else:
            line += "sessions: no API to end them (the plan says so); "
        line += f"member removed p50 {statistics.median(removed):.2f} s, max {max(removed):.2f} s"
        print(line)
        out[f"emergency_{kind}_removed_p50_s"] = round(statistics.median(removed), 2)
        out[f"emergency_{kind}_removed_max_s"] = round(max(removed), 2)
    return out


def emergency_event(email: str) -> bytes:
    """HR's termination of ``email`` with ``security_risk``: the emergency trigger."""
    return json.dumps(
        {
            "event_id": f"bench-{uuid.uuid4().hex[:12]}",
            "type": "employee.terminated",
            "employee": {"email": email},
            "security_risk": True,
        }
    ).encode()


def slack_waited(svc: Any) -> float:
    """Seconds the runtime's client-side Slack limiters have made callers wait, so far (all
    methods)."""
    made = svc.messenger.limits.made().items()
    return sum(getattr(b, "waited", 0.0) for (name, _), b in made if name.startswith("slack"))


def emergencies(
    url: str, svc: Any, people: list[str], *, sessions: list[float] | None = None
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Offboard each of ``people`` through a signed HR webhook with ``security_risk``;
    ``sessions`` gets the seconds from the POST to the IdP sessions ended, where they were.

    Returns:
        Seconds from the POST to the verified lockout, to the member's removal, and to the
        end of the run, per person; and how long Slack's buckets held each run back.
    """
    from cli.stack import serve_app
    from flows.offboard import offboard
    from intake.app import create_intake
    from intake.hooks import sign_hr
    from intake.launch import thread_launcher
    from ledger.audit import records

    launcher = thread_launcher(offboard)
    intake = serve_app(create_intake(svc, launcher=launcher), name="intake")
    secret = svc.settings.hr_webhook_secret.get_secret_value()
    verified, removed, ended, held = [], [], [], []
    try:
        with httpx.Client(base_url=intake.url, timeout=10) as http:
            for email in people:
                body = emergency_event(email)
                headers = sign_hr(secret, body)
                waited = slack_waited(svc)
                t0 = time.time()
                r = http.post("/hooks/hr", content=body, headers=headers)
                assert r.status_code == 202 and r.json()["status"] == "started", r.text
                ref = r.json()["run"]
                result = launcher.wait(ref, timeout=120)
                ended.append(time.time() - t0)
                held.append(slack_waited(svc) - waited)
                assert isinstance(result, dict), result
                checks = result["verification"]
                assert result["status"] == "done" and checks.get("member_removed") == "pass", result
                # is_ok: Okta's sessions ended are reported by it (it cannot list them).
                assert all(is_ok(v) for v in checks.values()), checks
                verified.append(verify_ended(f"hr-{ref}").timestamp() - t0)
                events = records(svc.ledger, subject=email)
                (gone,) = [e for e in events if e.action == "offboard.remove_member"]
                removed.append(gone.at.timestamp() - t0)
                if sessions is not None:
                    # Its audit event's subject is the step's target (the IdP user's id).
                    sessions += [
                        e.at.timestamp() - t0
                        for e in records(svc.ledger, flow_run_id=str(result["run_id"]))
                        if e.action == "offboard.end_idp_sessions"
                    ]
    finally:
        intake.stop()
    return verified, removed, ended, held


def verify_ended(flow_run_name: str, timeout: float = 30) -> datetime:
    """When the ``verify_offboarding`` task of that flow run completed (the Prefect server's
    record; task states reach it asynchronously, so wait for it)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name]))
            )
            tasks = (
                client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [runs[0].id]}))
                if runs
                else []
            )
            done = [
                t
                for t in tasks
                if t.name.startswith("verify_offboarding")
                and t.state is not None
                and t.state.is_completed()
                and t.end_time is not None
            ]
            if done:
                return done[0].end_time  # type: ignore[return-value]
            time.sleep(0.2)
    raise TimeoutError(f"no completed verify_offboarding task for {flow_run_name}")


def deployed(cwd: Path, n: int, *, warm: bool) -> dict[str, Any]:
    """Section 4: ``n`` emergencies through a running ``handover up`` (with its warm worker, or
    ``--no-warm-worker``: the process worker's path); printed, and as figures."""
    import signal
    import subprocess

    from cli.deploy import REPO
    from cli.stack import free_port
    from intake.hooks import sign_hr

    cwd.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HANDOVER_"))}
    env |= {
        "PYTHONPATH": str(REPO),
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # the premise: a worker polling every second
        "PREFECT_UI_ENABLED": "false",
        "HANDOVER_POLICY": os.environ["HANDOVER_POLICY"],  # the valves opened (open_valves)
    }
    ports = [str(free_port()) for _ in range(3)]
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "up",
            "--port",
            ports[0],
            "--intake-port",
            ports[1],
            "--prefect-port",
            ports[2],
            *([] if warm else ["--no-warm-worker"]),
        ],
        cwd=cwd,
        env=env,
        stdout=open(cwd / "up.log", "w"),  # noqa: SIM115 (closed with the process)
        stderr=subprocess.STDOUT,
    )
    state_file = cwd / ".handover" / "stack.json"
    try:
        deadline = time.monotonic() + 420
        while not state_file.exists():
            if up.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"handover up did not start: {(cwd / 'up.log').read_text()}")
            time.sleep(0.5)
        state = json.loads(state_file.read_text())
        auth = tuple((cwd / ".handover" / "prefect" / "api-auth").read_text().strip().split(":", 1))
        removed, verified = deployed_emergencies(state, auth, n, sign_hr)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(120)
    p50, p95 = statistics.median(removed), pct(removed, 0.95)
    path = (
        "HR webhook → the warm worker's background task"
        if warm
        else "HR webhook → run_deployment → process worker polling every 1 s (--no-warm-worker)"
    )
    print(
        f"emergency through `handover up` ({path}): {len(removed)} runs, member removed p50 "
        f"{p50:.2f} s, p95 {p95:.2f} s, max {max(removed):.2f} s (target p95 ≤ 5 s); verified "
        f"lockout p50 {statistics.median(verified):.2f} s, p95 {pct(verified, 0.95):.2f} s"
    )
    key = "emergency_deployed" if warm else "emergency_cold"
    return {
        f"{key}_runs": len(removed),
        f"{key}_removed_p50_s": round(p50, 2),
        f"{key}_removed_p95_s": round(p95, 2),
        f"{key}_verified_p95_s": round(pct(verified, 0.95), 2),
        f"{key}_p95_fraction_of_target": round(p95 / 5.0, 3),
    }


def deployed_emergencies(
    state: dict[str, Any], auth: tuple[str, ...], n: int, sign_hr: Any
) -> tuple[list[float], list[float]]:
    """Seconds from each signed POST to the member gone, and to the verified lockout."""
    sandbox, intake, api = state["sandbox_url"], state["intake_url"], state["prefect_api_url"]
    admin = admin_client(sandbox)
    people = ordinary_members(sandbox, n)[-n:]
    removed, verified = [], []
    for email in people:
        body = emergency_event(email)
        t0 = time.time()
        r = httpx.post(
            f"{intake}/hooks/hr", content=body, headers=sign_hr("sandbox-hr-secret", body)
        )
        assert r.status_code == 202 and r.json()["status"] == "started", r.text
        run_id = r.json()["run"]
        while admin.get(f"/members/{email}").status_code != 404:
            if time.time() - t0 > 120:
                raise TimeoutError(f"{email} still in the org after 120 s")
            time.sleep(0.05)
        removed.append(time.time() - t0)
        verified.append(verify_done(api, auth, run_id).timestamp() - t0)
    return removed, verified


def verify_done(api: str, auth: tuple[str, ...], run_id: str, timeout: float = 120) -> datetime:
    """When that run's ``verify_offboarding`` task completed (its Prefect server's record);
    ``run_id`` is a flow run's id, or ``warm:<task run id>``: the flow run that background task
    ran (named ``handover-warm-<id>``, flows/warm.py)."""
    runs = (
        {"name": {"any_": [f"handover-warm-{run_id.removeprefix('warm:')}"]}}
        if run_id.startswith("warm:")
        else {"id": {"any_": [run_id]}}
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.post(
            f"{api}/task_runs/filter",
            json={"flow_runs": runs},
            auth=auth,  # type: ignore[arg-type]
            timeout=10,
        )
        r.raise_for_status()
        done = [
            t
            for t in r.json()
            if t["name"].startswith("verify_offboarding")
            and t["state_type"] == "COMPLETED"
            and t.get("end_time")
        ]
        if done:
            return datetime.fromisoformat(done[0]["end_time"])
        time.sleep(0.2)
    raise TimeoutError(f"no completed verify_offboarding task in flow run {run_id}")


if __name__ == "__main__":
    main()
