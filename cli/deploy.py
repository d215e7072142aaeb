"""Deployments on a Prefect server: the work pool, ``prefect.yaml``, and a process worker.

How the code reaches a run: nothing is built or pushed. ``prefect.yaml`` has one pull step,
``set_working_directory: {{ $HANDOVER_ROOT }}``, resolved in the *worker's* environment when a
run starts; the process worker then starts ``python -m prefect.engine`` there, which imports the
deployment's entrypoint (``flows/offboard.py:offboard``) from that checkout. A flow run inherits
the worker's environment, so the worker is where ``HANDOVER_*`` settings (org, IdP, Slack and
Jira URLs and tokens, ``HANDOVER_LEDGER_URL``, ``HANDOVER_ROSTER``) are given.

``deploy_all`` runs the real ``prefect --no-prompt deploy --all --prefect-file …`` (what a
user runs by hand, so the file is the single source of truth: names, schedules, pool) after
creating the process work pool if it is missing (the CLI only warns about a missing pool).

Prefect is imported inside the functions: ``PREFECT_API_URL`` must be set first
(``cli.stack.start_prefect_server`` sets it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cli.recover import HEARTBEAT_SECONDS, ensure_crash_detection

REPO = Path(__file__).resolve().parents[1]
PREFECT_YAML = REPO / "prefect.yaml"
POOL = "handover-process"
# The deployments the front door and the watchdog start runs of (prefect.yaml names them).
OFFBOARD_DEPLOYMENT = "offboard/offboard"
ONBOARD_DEPLOYMENT = "onboard/onboard"


class DeployError(RuntimeError):
    """``prefect deploy`` failed or a deployment of ``prefect.yaml`` is missing afterwards."""


def prefect_bin() -> str:
    """The ``prefect`` executable of this venv."""
    return shutil.which("prefect", path=os.path.dirname(sys.executable)) or "prefect"


def deployment_names(prefect_yaml: Path = PREFECT_YAML, root: Path | None = None) -> list[str]:
    """``flow-name/deployment-name`` of every deployment in ``prefect_yaml``.

    The flow name is read from the ``@flow(name=…)`` of the entrypoint (imported here), which
    is what ``run_deployment`` and ``prefect deployment run`` want.
    """
    from prefect.flows import Flow, load_flow_from_entrypoint

    spec = yaml.safe_load(prefect_yaml.read_text())
    root = root or prefect_yaml.resolve().parent
    names = []
    for d in spec.get("deployments") or []:
        path, _, fn = d["entrypoint"].partition(":")
        flow: Flow[..., Any] = load_flow_from_entrypoint(f"{root / path}:{fn}")
        names.append(f"{flow.name}/{d['name']}")
    return names


def pools_in(prefect_yaml: Path = PREFECT_YAML) -> set[str]:
    spec = yaml.safe_load(prefect_yaml.read_text())
    return {(d.get("work_pool") or {}).get("name") or POOL for d in spec.get("deployments") or []}


def ensure_work_pool(name: str = POOL) -> bool:
    """Create the process work pool ``name`` (with Prefect's default job template) if missing.

    Returns:
        True when it was created, False when it already existed.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            pass
        try:
            client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type=ProcessWorker.type,
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                    description="Handover runbooks (process worker started by handover up)",
                )
            )
        except ObjectAlreadyExists:  # created meanwhile by another deploy
            return False
        return True


def deploy_env(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment, plus ``HANDOVER_ROOT`` and ``extra``."""
    return {
        **os.environ,
        "HANDOVER_ROOT": str(root),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        **(extra or {}),
    }


def deploy_all(
    prefect_yaml: Path = PREFECT_YAML,
    *,
    root: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180,
) -> list[str]:
    """Create the work pool(s) if missing and every deployment of ``prefect_yaml`` on the
    server at ``PREFECT_API_URL`` (re-deploying updates them in place).

    ``root`` (default: the file's folder) is the checkout the entrypoints are relative to
    (``HANDOVER_ROOT``); ``env`` adds to the environment ``{{ $VAR }}`` placeholders are
    resolved from (``HANDOVER_ROSTER`` for the access review's ``roster``).

    Returns:
        The deployments' full names (``offboard/offboard``, ``expire-access/expire-access``…),
        each checked to exist on the server.

    Raises:
        DeployError: ``prefect deploy`` failed (its output is in the message) or a deployment
            is missing afterwards.
    """
    prefect_yaml = prefect_yaml.resolve()
    root = (root or prefect_yaml.parent).resolve()
    for pool in pools_in(prefect_yaml):
        ensure_work_pool(pool)
    proc = subprocess.run(
        [
            prefect_bin(),
            "--no-prompt",
            "deploy",
            "--all",
            "--prefect-file",
            str(prefect_yaml),
        ],
        cwd=root,
        env=deploy_env(root, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise DeployError(
            f"prefect deploy failed ({proc.returncode}):\n{proc.stdout[-4000:]}"
            f"\n{proc.stderr[-4000:]}"
        )
    names = deployment_names(prefect_yaml, root)
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        missing = []
        for name in names:
            try:
                client.read_deployment_by_name(name)
            except ObjectNotFound:
                missing.append(name)
    if missing:
        raise DeployError(
            f"not deployed: {', '.join(missing)}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    ensure_crash_detection()  # a run whose process dies becomes Crashed (then is resumed)
    return names


@dataclass
class Worker:
    """A ``prefect worker start`` subprocess, in its own process group (so a Ctrl-C meant for
    ``handover up`` reaches it only through ``stop``).

    Its flow runs are not in that group: the process worker starts each run
    (``python -m prefect.engine``) in a session of its own, and on SIGINT waits for them, which
    for a run paused at a gate is forever. :meth:`stop` therefore ends the runs itself."""

    proc: subprocess.Popen[bytes]
    pool: str
    log: Path | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10) -> None:
        """Stop the worker and end its flow runs, leaving no process behind.

        SIGTERM to each of its flow-run processes, on which Prefect ends the run **Crashed**
        ("Execution was aborted by a termination signal"), a run paused at a gate included: the
        recovery sweep (``cli.recover.resume_crashed``, which ``handover up`` runs at start)
        starts it again, and the re-run finds its case and its approval in the ledger. Then
        SIGINT to the worker's group; after ``grace`` seconds in all, SIGTERM then SIGKILL (a
        background worker ignores its first SIGTERM: PREFECT_NOTES.md) to the worker's group
        and SIGKILL to any run left."""
        if self.proc.poll() is not None:
            return
        deadline = time.monotonic() + grace
        # The runs first, while their worker is there: signalled after it had gone, a paused
        # run was seen to end without telling the server, and it stayed Paused for good.
        runs = _descendants(self.proc.pid)
        _signal(runs, signal.SIGTERM)
        while _signal(runs, None) and time.monotonic() < deadline:
            time.sleep(0.1)
        # A run the worker took meanwhile (it polls every second) goes the same way.
        late = [p for p in _descendants(self.proc.pid) if p not in runs]
        runs += late
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        _signal(late, signal.SIGTERM)
        for sig, wait in (
            (None, max(2.0, deadline - time.monotonic())),
            (signal.SIGTERM, 5.0),
            (signal.SIGKILL, 5.0),
        ):
            if sig is not None:
                _signal(runs, signal.SIGKILL)
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Anything left in the worker's group (a stuck child) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        _signal(runs, signal.SIGKILL)


# A process as seen once: its pid and its start time (clock ticks since boot), so that a pid
# the kernel gave to another process since is never signalled.
_Seen = tuple[int, str]


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command (field 2) may hold spaces and parentheses: count from the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]  # a zombie has ended already


def _descendants(pid: int) -> list[_Seen]:
    """The processes under ``pid``, from Linux's ``/proc/<pid>/task/<tid>/children`` (none
    where there is no such file: elsewhere a worker's runs outlive ``stop``)."""
    out: list[_Seen] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in threads:
            try:
                kids = Path(f"/proc/{parent}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for kid in map(int, kids):
                started = _start_time(kid)
                if started is not None:
                    out.append((kid, started))
                    todo.append(kid)
    return out


def _signal(procs: list[_Seen], sig: signal.Signals | None) -> int:
    """Send ``sig`` (None: no signal) to each process of ``procs`` that is still the one seen;
    how many there still were."""
    left = 0
    for pid, started in procs:
        if _start_time(pid) == started:
            left += 1
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
    return left


def start_worker(
    pool: str = POOL,
    *,
    env: dict[str, str] | None = None,
    root: Path = REPO,
    log: Path | None = None,
    name: str | None = None,
) -> Worker:
    """Start ``prefect worker start --pool POOL`` polling every second.

    Args:
        pool: the process work pool (``ensure_work_pool`` / ``deploy_all`` create it).
        env: ``HANDOVER_*`` settings (and anything else) for the flow runs, over this
            process's environment; ``PREFECT_API_URL`` is inherited.
        root: the checkout runs execute in (``HANDOVER_ROOT``, the pull step's directory).
        log: where the worker's and its runs' output goes (default: inherited).
    """
    worker_env: dict[str, Any] = deploy_env(
        root,
        {
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            # Heartbeats let the crash-detection automation see a run whose process died.
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
            **(env or {}),
        },
    )
    cmd = [prefect_bin(), "worker", "start", "--pool", pool, "--type", "process"]
    if name:
        cmd += ["--name", name]
    out = open(log, "ab") if log else None  # noqa: SIM115 (kept open for the child)
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=worker_env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
    finally:
        if out:
            out.close()  # the child has its own descriptor
    return Worker(proc=proc, pool=pool, log=log)


def wait_for_worker(pool: str = POOL, timeout: float = 60) -> None:
    """Wait until a worker of ``pool`` is ONLINE on the server."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import WorkerFilter, WorkerFilterStatus

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            online = client.read_workers_for_work_pool(
                pool, worker_filter=WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"]))
            )
            if online:
                return
            time.sleep(0.5)
    raise TimeoutError(f"no worker of {pool!r} came online within {timeout} s")
