"""The deployment test stack: a demo sandbox over loopback and the worker's settings for it
(the sandbox's URLs, a tmp SQLite ledger and the sandbox's HR roster), shared by the tests that
deploy prefect.yaml into the session's real Prefect server and run a real process worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.stack import Running, start_sandbox
from cli.up import sandbox_env


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    """Poll ``check`` every half second until it answers something truthy; that answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def sandbox() -> Iterator[Running]:
    sb = start_sandbox(db=None, seed="demo")
    yield sb
    sb.stop()


@pytest.fixture
def worker_env(sandbox: Running, tmp_path: Path) -> dict[str, str]:
    """The worker's settings: the demo sandbox, a tmp ledger (SQLite) and the sandbox's roster."""
    return sandbox_env(sandbox.url, tmp_path)
