"""The runtime the task tests call ``the_task.fn(stack.rt, ...)`` with: the demo sandbox over
loopback (a stateful fake of every vendor), its HR roster and a tmp ledger; no Prefect server
(``.fn`` runs the bare function). Fakes for the failures the sandbox cannot be asked for on
cue, to wrap a connector of a replaced runtime: ``dataclasses.replace(rt, org=Down(rt.org,
"get_member"))``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connectors.errors import ConnectorError
from sandbox.app import create_app
from tests.conftest import serve
from tests.flows.offboard_stack import OffboardStack, make_stack


def demo_stack(tmp_path: Path) -> Iterator[OffboardStack]:
    """The demo sandbox and a runtime over it (a fixture: ``pytest.fixture(...)``)."""
    sb = serve(create_app(None, seed="demo", rng_seed=5))
    yield make_stack(sb, tmp_path)
    sb.stop()


class Down:
    """Stands for a connector: ``down`` operations fail as a vendor outage does; the others go
    to the real connector."""

    def __init__(self, real: Any, *down: str, system: str = "org") -> None:
        self._real, self._down, self._system = real, set(down), system

    def __getattr__(self, name: str) -> Any:
        if name not in self._down:
            return getattr(self._real, name)

        def fail(*args: Any, **kwargs: Any) -> Any:
            raise ConnectorError("503 unavailable", system=self._system, operation=name)

        return fail


class Ignoring:
    """Stands for the org: ``ignored`` writes answer as if done but change nothing (a backend
    that acknowledges and drops a write)."""

    def __init__(self, real: Any, *ignored: str) -> None:
        self._real, self._ignored = real, set(ignored)

    def __getattr__(self, name: str) -> Any:
        if name in self._ignored:
            return lambda *args, **kwargs: "deleted"
        return getattr(self._real, name)


class Without:
    """Stands for a connector that lacks the ``missing`` operations (a backend without a
    capability, e.g. real Amplitude's SCIM without invitations)."""

    def __init__(self, real: Any, *missing: str) -> None:
        self._real, self._missing = real, set(missing)

    def __getattr__(self, name: str) -> Any:
        if name in self._missing:
            raise AttributeError(name)
        return getattr(self._real, name)
