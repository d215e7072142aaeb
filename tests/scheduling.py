"""The order in which pytest-xdist workers take the tests: the long ones first, one per worker.

``--dist worksteal`` splits the collection into one contiguous chunk per worker and lets a
worker that runs dry steal the *tail* of the longest queue. On its own that starts a long test
whenever its chunk gets to it: the chaos test (minutes) could start last and be the whole run's
tail, or two long tests could queue behind each other on one worker. This scheduler keeps
work stealing but plans the start: the tests of :data:`EXPECTED_SECONDS` go first, longest
first, each to the worker with the least planned work; the other tests follow in collection
order (module fixtures stay together) in even chunks. Stealing then evens out the rest.

The table is a hint measured on a 2-core machine: a missing or wrong entry only changes the
balance, never which tests run or what they check.
"""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import WorkStealingScheduling

# Node-id prefixes of the tests worth starting first, with their rough duration (seconds: set-up,
# call and teardown in a four-worker clean-clone run on 2 cores).
EXPECTED_SECONDS: dict[str, float] = {
    "tests/flows/test_chaos.py::": 245,
    "tests/cli/test_crash_recovery.py::": 135,
    "tests/intake/test_hostile.py::test_schemathesis_": 120,
    # Starts `handover up` (a Prefect server, the deployments, a worker: about a minute), then
    # checks two claims on it.
    "tests/cli/test_up.py::test_handover_up_refuses_unauthenticated_calls_and_another_": 90,
    "tests/cli/test_demo_interactive.py::": 75,
    "tests/cli/test_expiry_deployment.py::": 65,
    "tests/connectors/test_mixed_operations.py::test_500_": 50,
    "tests/cli/test_up.py::test_handover_up_postgres_": 50,
    "tests/flows/test_onboard_bulk_e2e.py::test_a_50_row_csv_": 45,
    "tests/cli/test_login.py::test_login_then_approve_": 30,
    "tests/cli/test_deployments.py::": 30,
    # Warm worker processes start in each (an interpreter importing Handover and Prefect).
    "tests/cli/test_warm_cmd.py::test_a": 30,
    # Prefect's throw-away server starts in it.
    "tests/cli/test_runbooks.py::test_a_dry_run_needs_no_prefect_server": 25,
    "tests/flows/test_offboard_e2e.py::test_a_run_killed_after_": 25,
    "tests/flows/test_offboard_bulk_e2e.py::test_ten_leavers_": 22,
}


def expected_seconds(nodeid: str) -> float:
    return max((s for p, s in EXPECTED_SECONDS.items() if nodeid.startswith(p)), default=0.0)


class LongestFirstScheduling(WorkStealingScheduling):
    """Work stealing with a planned start: the long tests first, spread over the workers."""

    def schedule(self) -> None:
        assert self.collection_is_completed
        if self.collection is not None:  # a worker joined later: plain work stealing
            self.check_schedule()
            return
        if not self._check_nodes_have_same_collection():
            self.log("**Different tests collected, aborting run**")
            return
        self.collection = next(iter(self.node2collection.values()))
        if not self.collection:
            return
        nodes = [n for n in self.nodes if not n.shutting_down]
        weight = [expected_seconds(nodeid) for nodeid in self.collection]
        long = sorted((i for i, w in enumerate(weight) if w), key=lambda i: -weight[i])
        rest = [i for i, w in enumerate(weight) if not w]
        plan: dict[Any, list[int]] = {n: [] for n in nodes}
        load = dict.fromkeys(nodes, 0.0)
        for i in long:
            node = min(nodes, key=lambda n: load[n])
            plan[node].append(i)
            load[node] += weight[i]
        # The rest in even contiguous chunks; the most loaded worker's chunk is taken last,
        # from its tail, by the others (stealing takes a queue's tail).
        for k, node in enumerate(nodes):
            plan[node].extend(rest[k * len(rest) // len(nodes) : (k + 1) * len(rest) // len(nodes)])
        for node in nodes:
            if plan[node]:
                self.node2pending[node].extend(plan[node])
                node.send_runtest_some(plan[node])
        self.check_schedule()


class Plugin:
    """Registered by tests/conftest.py when tests run under ``--dist worksteal``."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        return LongestFirstScheduling(config, log)
