"""The runtime bound with ``tasks.runtime.use_runtime`` reaches what a flow run does on the
session's real Prefect server: the sync flow itself and its direct task calls (the caller's
thread), ``.submit()`` on Prefect's ``ThreadPoolTaskRunner`` and a subflow run in
``flows.batch.run_all`` (copies of the context); and a task that takes the runtime does not make
Prefect try to hash it for a cache key (``tasks.runtime.UNCACHED``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tasks.runtime import Runtime
from tests.tasks.fakes import fake_runtime

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
CACHE_KEY_ERROR = "Error encountered when computing cache key"


@pytest.fixture
def rt(tmp_path: Path, prefect_server: str) -> Runtime:
    return fake_runtime(tmp_path, now=NOW)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def prefect_logs() -> Iterator[Records]:
    """What Prefect's loggers say during the test (they do not propagate to the root)."""
    handler = Records()
    logger = logging.getLogger("prefect")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_flows_tasks_submits_and_subflows_see_the_bound_runtime(rt: Runtime) -> None:
    from prefect import flow, task
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.batch import run_all
    from tasks.runtime import this_runs_runtime, use_runtime

    @task
    def seen_by_a_task() -> bool:
        return this_runs_runtime() is rt

    @flow
    def child() -> bool:
        return this_runs_runtime() is rt

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def parent() -> dict[str, Any]:
        return {
            "flow": this_runs_runtime() is rt,
            "task": seen_by_a_task(),
            "submitted": [f.result() for f in [seen_by_a_task.submit() for _ in range(3)]],
            "subflows": run_all([1, 2], lambda _: child(), workers=2, name="child", said=str),
        }

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), use_runtime(rt):
        out = parent()
    assert out == {"flow": True, "task": True, "submitted": [True] * 3, "subflows": [True] * 2}


def test_a_task_that_takes_the_runtime_is_not_hashed(rt: Runtime, prefect_logs: Records) -> None:
    from prefect import flow, task
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from tasks.cases import audit_seq
    from tasks.runtime import UNCACHED

    @task(cache_policy=UNCACHED)
    def uncached(rt: Runtime) -> int:
        return audit_seq(rt)

    @task
    def default_policy(rt: Runtime) -> int:
        return audit_seq(rt)

    @flow
    def with_uncached() -> int:
        return uncached(rt)

    @flow
    def with_default_policy() -> int:
        return default_policy(rt)

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        assert with_uncached() == 0
        assert not [m for m in prefect_logs.messages if CACHE_KEY_ERROR in m]
        # The same task with Prefect's default cache policy: the error this guards against.
        assert with_default_policy() == 0
    assert [m for m in prefect_logs.messages if CACHE_KEY_ERROR in m]
