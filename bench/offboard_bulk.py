"""Benchmark of bulk offboarding (issue 8, benchmarks 1, 3 and 4), side by side with a plain
sequential script doing the same removals (``bench/baseline_offboard.py``).

1. A Prefect server and a ``scale:5000`` sandbox limited to 600 requests/min on every API (each
   API its own bucket); our client-side buckets for the org (SCIM and admin), the IdP and Jira
   are set to the same 600/min, and Slack's per-method tiers scaled to it. 200 joined, non-admin
   members are picked deterministically (evenly spaced in email order). The ``offboard-bulk``
   flow runs in a separate worker process (``--worker``): one approval for the batch, given from
   this process as HR (the policy's termination rule), then every leaver an ``offboard``
   subflow. Counted from the sandbox's own request log: calls per API and per offboarding, 429s;
   the bottleneck API's achieved rate as a fraction of the limit, over its busy window (idle
   gaps longer than ``IDLE_S``, such as the wait for the approval, are left out). Retries come
   from our HTTP clients' counters.
2. Orchestration overhead (benchmark 3), measured inside the worker: every task and flow call is
   timed from the caller's side and its body from the inside (Prefect's engine calls the body
   through ``call_with_parameters``), so Prefect's own share is ``call - body`` per task run and
   per flow run; every HTTP call (httpx, requests, urllib) and every wait for a token of our own
   buckets is timed too. Task and flow runs are also counted on the Prefect server.
3. Peak memory of the worker (benchmark 4): its RSS high-water mark (``VmHWM``, polled every
   0.1 s, with psutil's RSS as the fallback), and the CPU seconds of the worker, of this process
   (the sandbox runs in it) and of the Prefect server during the run.
4. The sandbox is reset with the same seed and rate limit (the roster's managers sign in again,
   so they may receive content), and the baseline script offboards the same members,
   sequentially, in a process of its own (same figures).

``--warm N``: N warm worker processes (``handover warm-worker``'s serve, this script's
``--warm-worker`` mode, timed the same way and given the same settings as environment
variables) take the leavers, ``--workers`` at once in all; the bulk run waits for each. Their
timings are added to the worker's, and each one's peak RSS and CPU are shown.

``--cached-members`` is a what-if, not production: the worker reads the org's member list at
most once a minute, as a proposed change to ``tasks.offboard.take_inventory`` would (it lists all
5 000 members for every leaver, for the look-alike check).

Heartbeats are off by default (PREFECT_NOTES.md: each sync flow run then skips a ~1 s join at
its end); ``--heartbeats`` keeps them, as production does.

Run: ``.venv/bin/python bench/offboard_bulk.py [--members 200] [--seed scale:5000] [--rate 600]
[--workers 8] [--warm N] [--heartbeats] [--cached-members] [--postgres] [--no-baseline]
[--raw FILE]``; try
``--members 20`` first.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

# Python puts this folder first on sys.path; keep it from shadowing top-level packages.
HERE = Path(__file__).resolve()
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE.parent]
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Benchmarks run on the sandbox: its published credentials, in sandbox mode (and our children).
os.environ["HANDOVER_SANDBOX"] = "1"

from cli.postgres import throwaway_postgres  # noqa: E402
from cli.stack import free_port, start_prefect_server, start_sandbox  # noqa: E402
from domain.identity import SELF_DECLARED  # noqa: E402

ADMIN = {"Authorization": "Bearer sandbox-admin-token"}
HR = "hr.partner@acme.com"  # the termination rule's approver (group hr)
REQUESTER = "it.ops@acme.com"
IDLE_S = 5.0  # a longer gap between two calls of one API is idleness, not work


# --------------------------------------------------------------------------------- the worker
class Timing:
    """Wall-clock totals of what worker threads are inside of, per kind (thread-safe)."""

    def __init__(self, prefect_api: str) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.count: Counter[str] = Counter()
        self.prefect_api = prefect_api
        self._lock = threading.Lock()

    def add(self, kind: str, seconds: float) -> None:
        with self._lock:
            self.total[kind] += seconds
            self.count[kind] += 1

    def wrap(self, fn: Callable[..., Any], kind: Callable[..., str] | str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.add(kind(*args, **kw) if callable(kind) else kind, time.perf_counter() - t)

        return timed

    def http_kind(self, url: object) -> str:
        # The Prefect client speaks httpx too: its calls are orchestration, not API work.
        return "prefect_http" if str(url).startswith(self.prefect_api) else "http"

    def install(self) -> None:
        """Time HTTP calls (ours and Prefect's), our buckets' waits, and every Prefect task and
        flow call (from the caller) and body (from the engine)."""
        import prefect.flow_engine
        import prefect.task_engine
        import requests
        from prefect.flows import Flow
        from prefect.tasks import Task
        from slack_sdk.web.base_client import BaseClient

        from connectors.rate import SharedBucket, TokenBucket

        sync_send = httpx.Client.send
        timing = self

        def send(client: httpx.Client, req: httpx.Request, *a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            resp = sync_send(client, req, *a, **k)
            kind = timing.http_kind(req.url)
            timing.add(kind, time.perf_counter() - t)
            if kind == "prefect_http" and resp.status_code == 503:
                timing.add("prefect_503", 0.0)  # SQLite "database is locked": retried in ~2 s
            return resp

        httpx.Client.send = send  # type: ignore[method-assign]
        requests.Session.send = self.wrap(requests.Session.send, "http")  # type: ignore[method-assign]
        BaseClient._perform_urllib_http_request = self.wrap(  # type: ignore[method-assign]
            BaseClient._perform_urllib_http_request, "http"
        )
        original = httpx.AsyncClient.send

        async def asend(client: httpx.AsyncClient, req: httpx.Request, *a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            resp = await original(client, req, *a, **k)
            kind = timing.http_kind(req.url)
            timing.add(f"async_{kind}", time.perf_counter() - t)
            if kind == "prefect_http" and resp.status_code == 503:
                timing.add("prefect_503", 0.0)  # SQLite "database is locked": retried in ~2 s
            return resp

        httpx.AsyncClient.send = asend  # type: ignore[method-assign]
        TokenBucket.acquire = self.wrap(TokenBucket.acquire, "bucket_wait")  # type: ignore[method-assign]
        # The shared buckets (HANDOVER_RATE_LIMITS=shared, the default) wait in theirs.
        SharedBucket.acquire = self.wrap(SharedBucket.acquire, "bucket_wait")  # type: ignore[method-assign]
        Task.__call__ = self.wrap(  # type: ignore[method-assign]
            Task.__call__, lambda task, *a, **k: f"task_call:{task.fn.__name__}"
        )
        Flow.__call__ = self.wrap(  # type: ignore[method-assign]
            Flow.__call__, lambda flow, *a, **k: f"flow_call:{flow.fn.__name__}"
        )
        prefect.task_engine.call_with_parameters = self.wrap(  # type: ignore[attr-defined]
            prefect.task_engine.call_with_parameters,  # type: ignore[attr-defined]
            lambda fn, *a, **k: f"task_body:{fn.__name__}",
        )
        prefect.flow_engine.call_with_parameters = self.wrap(  # type: ignore[attr-defined]
            prefect.flow_engine.call_with_parameters,  # type: ignore[attr-defined]
            lambda fn, *a, **k: f"flow_body:{fn.__name__}",
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: {"s": round(v, 3), "n": self.count[k]} for k, v in sorted(self.total.items())}


def cache_member_list(max_age_s: float = 60.0) -> None:
    """What-if (``--cached-members``): the org's member list read at most once a minute in
    this process, as a proposed change to ``tasks.offboard.take_inventory`` would (its look-alike
    check lists every member for every leaver). Not what production does today."""
    from connectors.org import SandboxOrg

    listing = SandboxOrg.list_members
    lock = threading.Lock()
    cache: list[tuple[float, list[Any]]] = []

    def list_members(org: SandboxOrg) -> Any:
        with lock:  # one listing at a time; the others wait for it
            if not cache or time.monotonic() - cache[0][0] > max_age_s:
                cache[:] = [(time.monotonic(), list(listing(org)))]
            return iter(cache[0][1])

    SandboxOrg.list_members = list_members  # type: ignore[method-assign]


def worker(cfg_path: Path) -> None:
    """The bulk flow in this process (started by :func:`run_flow`); writes its figures."""
    cfg = json.loads(cfg_path.read_text())
    timing = Timing(os.environ["PREFECT_API_URL"])
    timing.install()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from cli.stack import local_runtime
    from tasks.runtime import Runtime, use_runtime

    rt = local_runtime(cfg["url"], Path(cfg["home"]), ledger_url=cfg["ledger_url"])
    rate = cfg["rate"]
    rt = Runtime.from_settings(
        rt.settings.model_copy(
            update={
                "org_scim_rate_per_minute": rate,
                "org_admin_rate_per_minute": rate,
                "idp_rate_per_minute": rate,
                "jira_rate_per_minute": rate,
                # Slack's per-method tiers (50/min) scaled to the sandbox's limit too: each
                # leaver's receiver is told by DM, and at 50/min those DMs alone would take 4
                # minutes for 200 leavers (real Slack: about 1 message a second per channel).
                "slack_rate_scale": rate / 50,
            }
        )
    )
    if cfg["cached_members"]:
        cache_member_list()
    from flows.offboard_bulk import offboard_bulk

    updates = {} if cfg["heartbeats"] else {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    t0 = time.perf_counter()
    with temporary_settings(updates=updates), use_runtime(rt):
        res = offboard_bulk(
            emails=cfg["emails"],
            reason="termination",
            requester=REQUESTER,
            max_workers=cfg["workers"],
        )
    wall = time.perf_counter() - t0
    apis = {"org_admin": rt.org.admin, "org_scim": rt.org.scim.api, "idp": rt.idp.http}  # type: ignore[union-attr]
    Path(cfg["out"]).write_text(
        json.dumps(
            {
                "status": res["status"],
                "counts": res["counts"],
                "elapsed_s": res.get("elapsed_s"),
                "flow_wall_s": wall,
                "approval": res.get("approval", ""),
                "not_good": [m for m in res["members"] if m["status"] not in ("done",)][:20],
                "timing": timing.as_dict(),
                "client": {k: v.stats.as_dict() for k, v in apis.items()},
            }
        )
    )


def warm_env(cfg: dict[str, Any]) -> dict[str, str]:
    """The ``HANDOVER_*`` settings of a warm worker: the coordinator's runtime (local_runtime
    over the sandbox, the same ledger and roster) and the same rate limits, as environment
    variables — how ``handover up`` hands them to its workers."""
    from connectors.settings import SANDBOX_IDP_PATHS

    url, home, rate = cfg["url"], Path(cfg["home"]), cfg["rate"]
    return {
        "HANDOVER_ORG_URL": url,
        "HANDOVER_IDP_KIND": "scim",
        "HANDOVER_IDP_URL": f"{url}{SANDBOX_IDP_PATHS['scim']}",
        "HANDOVER_SLACK_API_URL": f"{url}/slack/api/",
        "HANDOVER_JIRA_URL": f"{url}/jira",
        "HANDOVER_OIDC_ISSUER": f"{url}/idp/oidc",
        "HANDOVER_LEDGER_URL": cfg["ledger_url"] or f"sqlite:///{home / 'ledger.db'}",
        "HANDOVER_ROSTER": str(home / "roster.csv"),
        "HANDOVER_HOME": str(home),
        "HANDOVER_ORG_SCIM_RATE_PER_MINUTE": str(rate),
        "HANDOVER_ORG_ADMIN_RATE_PER_MINUTE": str(rate),
        "HANDOVER_IDP_RATE_PER_MINUTE": str(rate),
        "HANDOVER_JIRA_RATE_PER_MINUTE": str(rate),
        "HANDOVER_SLACK_RATE_SCALE": str(rate / 50),
    }


def bucket_figures() -> dict[str, dict[str, float]]:
    """This process's shared buckets (those of the runtimes it built): per backend, the
    grants taken (a transaction each), the tokens dropped unspent when a lease ended, and the
    seconds waited."""
    from connectors.rate import SharedBucket
    from tasks.runtime import _from_settings

    out: dict[str, dict[str, float]] = {}
    for _settings, rt in list(_from_settings._built):
        for limiter in (rt.org.admin.limiter,):  # type: ignore[attr-defined]
            if isinstance(limiter, SharedBucket):
                out[limiter.backend] = {
                    "leases": limiter.leases,
                    "dropped": limiter.dropped,
                    "waited_s": round(limiter.waited, 1),
                }
    return out


def warm_worker(cfg_path: Path) -> None:
    """A warm worker (``handover warm-worker``'s serve) in this process, timed like the
    coordinator; its timing is written every second until it is stopped."""
    cfg = json.loads(cfg_path.read_text())
    timing = Timing(os.environ["PREFECT_API_URL"])
    timing.install()
    from prefect.task_worker import serve

    from flows.warm import offboard_warm

    def dump() -> None:
        while True:
            Path(cfg["out"]).write_text(
                json.dumps({"timing": timing.as_dict(), "buckets": bucket_figures()})
            )
            time.sleep(1.0)

    threading.Thread(target=dump, daemon=True).start()
    serve(offboard_warm, limit=cfg["limit"])


def start_warm_workers(cfg: dict[str, Any], tmp: Path, n: int, limit: int) -> list[Any]:
    """``n`` warm worker processes (this script, ``--warm-worker``), each ``limit`` at once,
    with the heartbeats the coordinator's settings say; returned once the server sees them."""
    from flows.warm import warm_workers

    procs = []
    from cli.warm_cmd import WARM_ENV

    env = {**os.environ, **warm_env(cfg), **WARM_ENV}
    if cfg["heartbeats"]:  # else Prefect's default: none, as in the coordinator
        env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = "30"
    for i in range(n):
        wcfg = tmp / f"warm-{i}.json"
        wcfg.write_text(json.dumps({**cfg, "limit": limit, "out": str(tmp / f"warm-{i}-out.json")}))
        log = open(tmp / f"warm-{i}.log", "wb")  # noqa: SIM115 (kept by the child)
        procs.append(
            subprocess.Popen(
                [sys.executable, str(HERE), "--warm-worker", str(wcfg)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    deadline = time.monotonic() + 120
    while warm_workers() < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"the warm workers did not subscribe: see {tmp}/warm-*.log")
        time.sleep(0.5)
    return procs


def stop_warm_workers(procs: list[Any], tmp: Path) -> list[dict[str, Any]]:
    """Each warm worker's figures (timing, peak RSS, CPU), then each stopped."""
    import psutil

    out = []
    for i, proc in enumerate(procs):
        ps = psutil.Process(proc.pid)
        times = ps.cpu_times()
        figures = json.loads((tmp / f"warm-{i}-out.json").read_text())
        figures["peak_rss_mb"] = max(_hwm_mb(proc.pid), ps.memory_info().rss / 2**20)
        figures["cpu_s"] = times.user + times.system
        out.append(figures)
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


# ------------------------------------------------------------------------------- the bench
def sandbox_log(url: str, since: int) -> list[dict[str, Any]]:
    return httpx.get(  # type: ignore[no-any-return]
        f"{url}/_sandbox/requests", params={"since": since, "limit": 200_000}, timeout=60
    ).json()["requests"]


def last_seq(url: str) -> int:
    reqs = httpx.get(f"{url}/_sandbox/requests", params={"limit": 1}).json()["requests"]
    return int(reqs[-1]["seq"]) if reqs else 0


def set_rate(url: str, rate: int) -> None:
    httpx.put(f"{url}/_sandbox/faults", json={"rate_limit": rate}, timeout=10).raise_for_status()


def prepare(url: str, rate: int) -> None:
    """The rate limit on every API; the roster's managers sign in today, so they may receive
    content (the product's 30-day rule) whatever the seed made of their last login."""
    set_rate(url, rate)
    rows = httpx.get(f"{url}/_sandbox/roster", timeout=60).json()["rows"]
    for manager in sorted({r["manager"] for r in rows if r.get("manager")}):
        httpx.post(f"{url}/_sandbox/members/{manager}/login", timeout=10)


def pick_members(url: str, n: int) -> list[str]:
    """``n`` joined members who are not admins, evenly spaced in email order (deterministic)."""
    members: list[dict[str, Any]] = []
    while True:
        page = httpx.get(
            f"{url}/admin/v1/members",
            params={"offset": len(members), "limit": 1000},
            headers=ADMIN,
            timeout=60,
        ).json()
        members += page["members"]
        if not page["members"] or len(members) >= page["total"]:
            break
    people = sorted(
        m["email"] for m in members if m["status"] == "joined" and m["org_role"] != "admin"
    )
    if len(people) < n:
        raise SystemExit(f"the org has {len(people)} joined non-admin members; asked for {n}")
    step = len(people) // n
    return people[::step][:n]


def traffic(log: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """Calls per API, 429s, and the busiest API's achieved rate over its busy window."""
    answered = [r for r in log if r["status"] != 429]
    per_api = Counter(r["api"] for r in answered)
    if not per_api:
        return {"per_api": {}, "429s": 0, "bottleneck": "", "busy_s": 0.0, "rate_fraction": 0.0}
    api = per_api.most_common(1)[0][0]
    times = sorted(datetime.fromisoformat(r["at"]).timestamp() for r in answered if r["api"] == api)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    busy = sum(g for g in gaps if g <= IDLE_S) + 60.0 / limit  # the last call's own slot
    # The busiest minute: the most calls in any 60 s window, as a fraction of the limit.
    peak, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - 60.0:
            j += 1
        peak = max(peak, i - j + 1)
    return {
        "per_api": dict(per_api),
        "peak_minute_fraction": peak / limit,
        "429s": sum(r["status"] == 429 for r in log),
        "bottleneck": api,
        "busy_s": busy,
        "idle_s": sum(g for g in gaps if g > IDLE_S),
        "rate_fraction": len(times) / (busy / 60.0) / limit,
        "endpoints": dict(Counter(endpoint(r) for r in answered if r["api"] == api).most_common()),
    }


def endpoint(rec: dict[str, Any]) -> str:
    """``GET /members/{}?offset`` and the like: a call's method, path without its emails and
    ids, and its query's keys (where the calls of an API go)."""
    parts = ["{}" if "@" in p or p.isdigit() else p for p in rec["path"].split("/")[3:] if p]
    keys = sorted({kv.split("=", 1)[0] for kv in rec["query"].split("&") if kv} - {"limit"})
    return f"{rec['method']} /{'/'.join(parts)}" + (f"?{','.join(keys)}" if keys else "")


def approve_batch(svc: Any, stop: threading.Event, seen: list[tuple[str, float]]) -> None:
    """HR approves each approval once its flow run is paused (the batch's, and any other)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    from approvals.handler import decide
    from domain.records import ApprovalState
    from ledger.approvals import list_approvals

    done: set[str] = set()
    with get_client(sync_client=True) as client:
        while not stop.is_set():
            for a in list_approvals(svc.ledger, state=ApprovalState.PENDING):
                if a.id in done or not a.flow_run_id:
                    continue
                state = client.read_flow_run(UUID(a.flow_run_id)).state
                if state is not None and state.is_paused():
                    decide(
                        svc,
                        a.id,
                        approver=HR,
                        decision="approve",
                        plan_hash=a.plan_hash,
                        verified=SELF_DECLARED,
                    )
                    done.add(a.id)
                    seen.append((a.subject, time.time()))
            time.sleep(0.2)


def prefect_counts(api_url: str) -> dict[str, int]:
    """Task runs and flow runs the server holds (the server is this bench's own)."""
    out = {}
    # The server is started authenticated (cli.stack): this process holds its credential.
    user, _, password = os.environ.get("PREFECT_API_AUTH_STRING", "").partition(":")
    auth = (user, password) if user else None
    for kind in ("task_runs", "flow_runs"):
        r = httpx.post(f"{api_url}/{kind}/count", json={}, timeout=30, auth=auth)
        r.raise_for_status()
        out[kind] = int(r.json())
    return out


def _hwm_mb(pid: int) -> float:
    """The process's RSS high-water mark (``VmHWM``: the peak since its exec, which the forked
    parent's pages do not inflate as they do ``ru_maxrss``); 0 when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_process(args: list[str], *, poll: float = 0.1) -> tuple[int, float, float, float]:
    """Run a Python process of ours; (exit code, wall s, peak RSS MB, CPU s).

    The peak is the largest ``VmHWM`` seen while polling (Linux), else the largest RSS polled
    with psutil.
    """
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args])
    ps = psutil.Process(proc.pid)
    peak = cpu = 0.0
    while proc.poll() is None:
        peak = max(peak, _hwm_mb(proc.pid))
        with contextlib.suppress(psutil.Error):
            peak = max(peak, ps.memory_info().rss / 2**20)
            times = ps.cpu_times()
            cpu = times.user + times.system
        time.sleep(poll)
    return proc.returncode, time.perf_counter() - t0, peak, cpu


def run_flow(
    url: str, tmp: Path, emails: list[str], args: argparse.Namespace, api_url: str, server_pid: int
) -> dict[str, Any]:
    import psutil

    from cli.stack import local_runtime

    # The same ledger as the worker's: HR decides here.
    svc = local_runtime(url, tmp, ledger_url=args.ledger_url)
    cfg = tmp / "worker.json"
    out = tmp / "worker-out.json"
    cfg.write_text(
        json.dumps(
            {
                "url": url,
                "home": str(tmp),
                "emails": emails,
                "rate": args.rate,
                "workers": args.workers,
                "heartbeats": args.heartbeats,
                "cached_members": args.cached_members,
                "out": str(out),
                "ledger_url": args.ledger_url,
            }
        )
    )
    warm = (
        start_warm_workers(
            json.loads(cfg.read_text()), tmp, args.warm, -(-args.workers // args.warm)
        )
        if args.warm
        else []
    )
    stop = threading.Event()
    approvals: list[tuple[str, float]] = []
    approver = threading.Thread(target=approve_batch, args=(svc, stop, approvals), daemon=True)
    approver.start()
    seq0 = last_seq(url)
    load0 = os.getloadavg()[0]
    server = psutil.Process(server_pid)
    server_cpu0, own_cpu0 = _cpu(server), time.process_time()
    code, wall, peak, cpu = run_process([str(HERE), "--worker", str(cfg)])
    warm_figures = stop_warm_workers(warm, tmp)
    cpu_s = {
        "worker": cpu,
        **{f"warm_worker_{i}": w["cpu_s"] for i, w in enumerate(warm_figures)},
        "sandbox_and_bench": time.process_time() - own_cpu0,
        "prefect_server": _cpu(server) - server_cpu0,
    }
    stop.set()
    if code != 0:
        raise SystemExit(f"the worker failed (exit {code})")
    res = json.loads(out.read_text())
    for w in warm_figures:  # the leavers' time is the warm workers' when they ran them
        for k, v in w["timing"].items():
            t = res["timing"].setdefault(k, {"s": 0.0, "n": 0})
            t["s"] += v["s"]
            t["n"] += v["n"]
    res.update(
        warm_peak_rss_mb=[w["peak_rss_mb"] for w in warm_figures],
        warm_buckets=[w.get("buckets", {}) for w in warm_figures],
        traffic=traffic(sandbox_log(url, seq0), args.rate),
        process_wall_s=wall,
        peak_rss_mb=peak,
        approvals=[s for s, _ in approvals],
        load=(load0, os.getloadavg()[0]),
        cpu_s=cpu_s,
        prefect=prefect_counts(api_url),
    )
    return res


def run_baseline(url: str, tmp: Path, emails: list[str], *, rate: int, seed: str) -> dict[str, Any]:
    """The same world again (reset, same seed and limit); the script on the same leavers."""
    httpx.post(f"{url}/_sandbox/reset", json={"seed": seed}, timeout=600).raise_for_status()
    prepare(url, rate)
    roster = tmp / "baseline-roster.csv"
    roster.write_text(httpx.get(f"{url}/_sandbox/roster", params={"format": "csv"}).text)
    listing = tmp / "leavers.txt"
    listing.write_text("\n".join(emails) + "\n")
    out = tmp / "baseline-out.json"
    seq0 = last_seq(url)
    own_cpu0 = time.process_time()
    code, wall, peak, cpu = run_process(
        [
            str(HERE.parent / "baseline_offboard.py"),
            "--url",
            url,
            "--emails-file",
            str(listing),
            "--roster",
            str(roster),
            "--json-out",
            str(out),
        ]
    )
    if code != 0:
        raise SystemExit(f"the baseline failed (exit {code})")
    res: dict[str, Any] = json.loads(out.read_text())
    res.update(
        traffic=traffic(sandbox_log(url, seq0), rate),
        process_wall_s=wall,
        peak_rss_mb=peak,
        cpu_s={"baseline": cpu, "sandbox_and_bench": time.process_time() - own_cpu0},
    )
    return res


def _cpu(proc: Any) -> float:
    """User + system CPU seconds of a process and its children so far."""
    import psutil

    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def overhead(timing: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Where the leavers' time went, summed over the worker's threads.

    The leavers' time is their subflow calls plus the batch's planning task calls (which run
    outside any subflow). Prefect's share is every task and flow call minus its body; the API's
    is every HTTP call to a backend plus every wait for a token of our own buckets; the rest is
    our own code (ledger, planning, parsing).
    """

    def total(prefix: str) -> float:
        return sum(v["s"] for k, v in timing.items() if k.startswith(prefix))

    def runs(prefix: str) -> int:
        return int(sum(v["n"] for k, v in timing.items() if k.startswith(prefix)))

    def one(key: str) -> float:
        return float(timing.get(key, {}).get("s", 0.0))

    # A warm worker's background task is started by its engine, not called: its body has no
    # call to be subtracted from (and holds the leaver's offboard flow call, counted below).
    task_over = total("task_call:") - (total("task_body:") - one("task_body:offboard_warm"))
    flow_over = total("flow_call:") - total("flow_body:")
    sub_over = one("flow_call:offboard") - one("flow_body:offboard")
    leavers = one("flow_call:offboard") + one("task_call:take_batch_inventory")
    api = one("http") + one("bucket_wait")
    prefect = task_over + sub_over
    task_runs, flow_runs = runs("task_call:"), runs("flow_call:")  # calls, not engine starts
    return {
        "task_runs": task_runs,
        "flow_runs": flow_runs,
        "overhead_per_task_ms": 1000 * task_over / max(1, task_runs),
        "overhead_per_flow_ms": 1000 * flow_over / max(1, flow_runs),
        "leavers_s": leavers,
        "api_s": api,
        "http_s": one("http"),
        "bucket_wait_s": one("bucket_wait"),
        "prefect_s": prefect,
        "own_code_s": leavers - api - prefect,
        "prefect_fraction": prefect / leavers if leavers else 0.0,
        "prefect_vs_api": prefect / api if api else 0.0,
        "prefect_http_s": one("prefect_http") + one("async_prefect_http"),
        "prefect_503s": runs("prefect_503"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=200)
    ap.add_argument("--seed", default="scale:5000")
    ap.add_argument("--rate", type=int, default=600, help="requests/min per API (both sides)")
    ap.add_argument("--workers", type=int, default=8, help="the bulk flow's max_workers")
    ap.add_argument("--heartbeats", action="store_true", help="keep flow-run heartbeats on")
    ap.add_argument(
        "--cached-members",
        action="store_true",
        help="what-if: the worker reads the member list once a minute (a proposed change)",
    )
    ap.add_argument(
        "--postgres",
        action="store_true",
        help="the Prefect server and the ledger on a throw-away PostgreSQL (Debian's postgresql)",
    )
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--raw", type=Path, help="also write every measurement to this JSON file")
    ap.add_argument(
        "--warm",
        type=int,
        default=0,
        help="warm worker processes the leavers fan out to (0: every leaver in the bulk run's "
        "own process); together they run --workers at once",
    )
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--warm-worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return
    if args.warm_worker:
        warm_worker(args.warm_worker)
        return
    tmp = Path(tempfile.mkdtemp(prefix="handover-bench-bulk-"))
    with contextlib.ExitStack() as stack:
        args.ledger_url = None
        db_url = None
        if args.postgres:
            pg = stack.enter_context(throwaway_postgres(free_port()))
            args.ledger_url, db_url = pg.url("ledger"), pg.url("prefect", "asyncpg")
        bench(args, tmp, db_url)


def bench(args: argparse.Namespace, tmp: Path, db_url: str | None) -> None:
    """Start the Prefect server and the sandbox, run the flow (and the baseline), report."""
    prefect = start_prefect_server(tmp / "prefect", db_url=db_url)
    sb = start_sandbox(db=tmp / "sandbox.db", seed=args.seed)
    try:
        prepare(sb.url, args.rate)
        emails = pick_members(sb.url, args.members)
        flow = run_flow(sb.url, tmp, emails, args, prefect.url, prefect.proc.pid)
        base = (
            None
            if args.no_baseline
            else run_baseline(sb.url, tmp, emails, rate=args.rate, seed=args.seed)
        )
        if args.raw:
            args.raw.write_text(json.dumps({"flow": flow, "baseline": base}, indent=1))
        report(flow, base, args)
    finally:
        sb.stop()
        prefect.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _calls(res: dict[str, Any], members: int) -> str:
    per_api = res["traffic"]["per_api"]
    total = sum(per_api.values())
    parts = ", ".join(
        f"{k} {v / members:.1f}" for k, v in sorted(per_api.items(), key=lambda x: -x[1])
    )
    return f"{total / members:.1f} ({parts})"


def report(flow: dict[str, Any], base: dict[str, Any] | None, args: argparse.Namespace) -> None:
    """The side-by-side table, the overhead lines, and the JSON line of headline figures."""
    n = args.members
    cores = os.cpu_count() or 0
    ram = round(psutil_total_gib())
    o = overhead(flow["timing"])
    ft, bt = flow["traffic"], (base or {}).get("traffic", {})
    done = flow["counts"].get("done", 0)
    client = flow["client"]
    retries = sum(int(c["retries"]) for c in client.values())
    what_if = " — WHAT-IF: member list cached a minute (not production)"
    db = "PostgreSQL (Prefect server and ledger)" if args.postgres else "SQLite"
    print(
        f"\nbulk offboarding of {n} members — seed {args.seed}, {args.rate} requests/min per API,"
        f" max_workers {args.workers}, heartbeats {'on' if args.heartbeats else 'off'}, "
        + (f"{args.warm} warm workers" if args.warm else "every leaver in the bulk run's process")
        + (what_if if args.cached_members else "")
    )
    print(
        f"machine: {cores} cores, {ram} GiB, Python {sys.version.split()[0]}, {db}; load average"
        f" {flow['load'][0]:.1f} before, {flow['load'][1]:.1f} after"
    )
    rows = [
        ("", "offboard-bulk (Prefect)", "baseline (sequential httpx)"),
        ("offboarded", f"{done}/{n} ({flow['status']})", f"{base['removed']}/{n}" if base else "—"),
        ("wall time", f"{flow['elapsed_s']:.1f} s", f"{base['wall_s']:.1f} s" if base else "—"),
        (
            f"rate on {ft['bottleneck']} / limit",
            f"{ft['rate_fraction']:.3f} (busy {ft['busy_s']:.0f} s)",
            f"{bt['rate_fraction']:.3f} (busy {bt['busy_s']:.0f} s)" if base else "—",
        ),
        (
            "busiest minute / limit",
            f"{ft['peak_minute_fraction']:.3f}",
            f"{bt['peak_minute_fraction']:.3f}" if base else "—",
        ),
        ("429s received", str(ft["429s"]), str(bt["429s"]) if base else "—"),
        ("retries", str(retries), str(base["retries"]) if base else "—"),
        ("API calls per offboarding", _calls(flow, n), _calls(base, n) if base else "—"),
        ("approvals", str(len(flow["approvals"])), "none"),
        (
            "peak RSS of the process",
            f"{flow['peak_rss_mb']:.0f} MB",
            f"{base['peak_rss_mb']:.0f} MB" if base else "—",
        ),
    ]
    if flow["warm_peak_rss_mb"]:
        rss = ", ".join(f"{x:.0f}" for x in flow["warm_peak_rss_mb"])
        rows.append((f"peak RSS of each of {args.warm} warm workers", f"{rss} MB", "—"))
        leases = "; ".join(
            f"{b['leases']} grants, {b['dropped']} tokens dropped"
            for w in flow["warm_buckets"]
            for b in w.values()
        )
        rows.append(("org admin bucket of each warm worker", leases or "—", "—"))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)))
    pc = flow["prefect"]
    print(
        f"\norchestration (summed over the worker's threads): the leavers' time"
        f" {o['leavers_s']:.0f} s = API {o['api_s']:.0f} s (HTTP {o['http_s']:.0f} s, waiting for"
        f" our buckets {o['bucket_wait_s']:.0f} s) + Prefect {o['prefect_s']:.0f} s"
        f" ({100 * o['prefect_fraction']:.1f} %) + our own code {o['own_code_s']:.0f} s"
    )
    print(
        f"task runs {o['task_runs']} (server: {pc['task_runs']}), Prefect overhead"
        f" {o['overhead_per_task_ms']:.0f} ms each; flow runs {o['flow_runs']} (server:"
        f" {pc['flow_runs']}), {o['overhead_per_flow_ms']:.0f} ms each; Prefect API time"
        f" {o['prefect_http_s']:.0f} s, {o['prefect_503s']} answers 503 (SQLite busy)"
    )
    c = flow["cpu_s"]
    line = (
        f"CPU during the run (s): worker {c['worker']:.0f}, sandbox (+ this bench)"
        f" {c['sandbox_and_bench']:.0f}, Prefect server {c['prefect_server']:.0f}"
        + "".join(f", {k.replace('_', ' ')} {v:.0f}" for k, v in c.items() if k.startswith("warm"))
        + ": per"
        f" offboarding {sum(c.values()) / n:.2f} s"
    )
    if base:
        b = base["cpu_s"]
        line += f"; the baseline: script {b['baseline']:.0f}, sandbox {b['sandbox_and_bench']:.0f}"
    print(line)
    per_leaver = ", ".join(f"{k} {v / n:.1f}" for k, v in ft["endpoints"].items())
    print(f"{ft['bottleneck']} calls per offboarding: {per_leaver}")
    if flow["not_good"]:
        print("not done:", json.dumps(flow["not_good"])[:2000])
    figures = {
        "bench": "offboard_bulk",
        "what_if": "cached_members" if args.cached_members else None,
        "heartbeats": args.heartbeats,
        "postgres": args.postgres,
        "members": n,
        "offboarded": done,
        "rate_fraction": round(ft["rate_fraction"], 3),
        "429s": ft["429s"],
        "retries": retries,
        "calls_per_offboarding": round(sum(ft["per_api"].values()) / n, 1),
        "bottleneck_calls_per_offboarding": round(ft["per_api"][ft["bottleneck"]] / n, 1),
        "approvals": len(flow["approvals"]),
        "prefect_fraction": round(o["prefect_fraction"], 3),
        "task_runs": pc["task_runs"],
        "flow_runs": pc["flow_runs"],
        "baseline_rate_fraction": round(bt["rate_fraction"], 3) if base else None,
        "baseline_429s": bt["429s"] if base else None,
        "baseline_calls_per_offboarding": round(sum(bt["per_api"].values()) / n, 1)
        if base
        else None,
        "ratio_wall_vs_baseline": round(flow["elapsed_s"] / base["wall_s"], 2) if base else None,
        "wall_s": round(flow["elapsed_s"], 1),
        "baseline_wall_s": round(base["wall_s"], 1) if base else None,
        "overhead_per_task_ms": round(o["overhead_per_task_ms"], 1),
        "overhead_per_flow_ms": round(o["overhead_per_flow_ms"], 1),
        "peak_worker_rss_mb": round(flow["peak_rss_mb"], 1),
        "warm_workers": args.warm,
        "peak_warm_worker_rss_mb": [round(x, 1) for x in flow["warm_peak_rss_mb"]],
        "peak_minute_fraction": round(ft["peak_minute_fraction"], 3),
        "baseline_peak_rss_mb": round(base["peak_rss_mb"], 1) if base else None,
        "cpu_s_per_offboarding": round(sum(flow["cpu_s"].values()) / n, 2),
        "load_avg": [round(x, 2) for x in flow["load"]],
        "cores": cores,
    }
    print(json.dumps(figures))


def psutil_total_gib() -> float:
    import psutil

    return float(psutil.virtual_memory().total) / 2**30


if __name__ == "__main__":
    main()
