"""The deployment test stack: a demo sandbox over loopback and the worker's settings for it
(the sandbox's URLs, a tmp SQLite ledger and the sandbox's HR roster), shared by the tests that
deploy prefect.yaml into the session's real Prefect server and run a real process worker.

A test takes the ``stack`` fixture (``DeployStack``): it starts the workers (stopped when the
test ends), builds this process's runtime over the worker's ledger, and waits for what the
worker does (printing the worker's log when it times out).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cli.deploy import POOL, Worker, start_worker, wait_for_worker
from cli.stack import Running, local_runtime, start_sandbox
from cli.up import sandbox_env


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180) -> Any:
    """Poll ``check`` every half second until it answers something truthy; that answer.

    ``timeout`` bounds a stuck run, it is no speed check: a Prefect server on SQLite may hold
    an API call for its 60 s busy timeout when the machine is loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def forget_crashed_runs() -> None:
    """Cancel every Crashed run of the session's server: a run the test left at its gate is
    Crashed when its worker stops (``Worker.stop``), and a later test's recovery sweep
    (``resume_crashed``) would otherwise start it again, on that test's worker and sandbox."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    crashed = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CRASHED]))
    )
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(flow_run_filter=crashed):
            client.set_flow_run_state(run.id, Cancelled(message="its test is over"), force=True)


@dataclass
class DeployStack:
    """The demo sandbox, the worker's settings for it (``env``), the test's tmp directory (the
    ledger, the roster, the workers' logs) and the test's finalizers."""

    sandbox: Running
    env: dict[str, str]
    home: Path
    request: pytest.FixtureRequest

    @property
    def url(self) -> str:
        """The sandbox's base URL."""
        return self.sandbox.url

    def worker(self, log: str = "worker.log") -> Worker:
        """A real process worker of the pool with ``env``, logging to ``log`` (in ``home``),
        stopped when the test ends; returned once the server sees it online."""
        w = start_worker(POOL, env=self.env, log=self.home / log)

        def finish() -> None:
            w.stop()
            forget_crashed_runs()

        self.request.addfinalizer(finish)
        wait_for_worker(POOL)
        return w

    def runtime(self) -> Any:
        """A runtime over the sandbox and the worker's ledger (``tasks.runtime.Runtime``: also
        the gate's and the intake's services)."""
        return local_runtime(self.sandbox.url, self.home)

    def wait(
        self, what: str, check: Callable[[], Any], timeout: float = 180, *, log: str = "worker.log"
    ) -> Any:
        """``wait_for``; when it fails (a timeout, or ``check`` asserting), the tail of the
        worker's ``log`` is printed first: it says what the worker did."""
        try:
            return wait_for(what, check, timeout=timeout)
        except AssertionError:
            print((self.home / log).read_text()[-6000:])
            raise


@pytest.fixture
def sandbox() -> Iterator[Running]:
    sb = start_sandbox(db=None, seed="demo")
    yield sb
    sb.stop()


@pytest.fixture
def worker_env(sandbox: Running, tmp_path: Path) -> dict[str, str]:
    """The worker's settings: the demo sandbox, a tmp ledger (SQLite) and the sandbox's roster."""
    return sandbox_env(sandbox.url, tmp_path)


@pytest.fixture
def stack(
    prefect_server: str,
    sandbox: Running,
    worker_env: dict[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> DeployStack:
    """The deployment stack of one test, on the session's real Prefect server."""
    return DeployStack(sandbox=sandbox, env=worker_env, home=tmp_path, request=request)
