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

    Known gap: on SIGINT Prefect's worker waits for the flow-run processes it started, and
    those run in sessions of their own, outside the group ``stop`` signals. A run waiting at a
    gate keeps the worker until ``stop`` kills it, and its process is left running: seen after
    a test, still waiting 9 minutes later, and deaf to SIGTERM."""

    proc: subprocess.Popen[bytes]
    pool: str
    log: Path | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10) -> None:
        """SIGINT (a background worker ignores its first SIGTERM: PREFECT_NOTES.md), then
        SIGTERM, then SIGKILL, to the worker's process group."""
        if self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Anything left in the worker's group (a stuck child) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


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
