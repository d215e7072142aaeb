"""Fixtures of the gate tests: the demo sandbox over loopback (one per module) and a fresh
ledger, services and intake per test (tests/approvals/stack.py), on the session's Prefect
server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.app import create_app
from tests.approvals.stack import Stack, make_stack
from tests.conftest import LiveSandbox, serve


@pytest.fixture(scope="module")
def sandbox() -> Iterator[LiveSandbox]:
    sb = serve(create_app(None, seed="demo", rng_seed=3))
    yield sb
    sb.stop()


@pytest.fixture
def stack(sandbox: LiveSandbox, tmp_path: Path, prefect_server: str) -> Stack:
    return make_stack(sandbox, tmp_path)
