"""Fixtures of the gate tests: the demo sandbox over loopback (one per module) and a fresh
ledger, services and intake per test (tests/approvals/stack.py), on the session's Prefect
server.

Nothing here imports prefect at import time: a conftest named on the command line is loaded
before ``tests/conftest.py:pytest_configure`` points Prefect at the session's server, and
prefect freezes its settings when imported (it would fall back to an ephemeral server).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sandbox.app import create_app
from tests.conftest import LiveSandbox, serve

if TYPE_CHECKING:
    from tests.approvals.stack import Stack


@pytest.fixture(scope="module")
def sandbox() -> Iterator[LiveSandbox]:
    sb = serve(create_app(None, seed="demo", rng_seed=3))
    yield sb
    sb.stop()


@pytest.fixture
def stack(sandbox: LiveSandbox, tmp_path: Path, prefect_server: str) -> Stack:
    from tests.approvals.stack import make_stack

    return make_stack(sandbox, tmp_path)
