"""A runtime of fakes for the task unit tests, which call ``the_task.fn(rt, ...)`` (no Prefect
server, nothing installed process-wide): a real ledger in a tmp directory, the default approval
policy, a fixed clock, and whatever stands for each connector (a fake of its capability
Protocols; ``None`` for one the test never touches).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from approvals.policy import load_policy
from connectors.settings import Settings
from ledger import open_ledger
from tasks.runtime import Runtime
from tests.anchors import anchor_in


def fake_runtime(
    tmp_path: Path,
    *,
    now: datetime,
    settings: Settings | None = None,
    org: Any = None,
    idp: Any = None,
    messenger: Any = None,
    tickets: Any = None,
) -> Runtime:
    """A :class:`tasks.runtime.Runtime` over ``tmp_path``'s ledger at the fixed time ``now``."""
    return Runtime(
        settings=settings or Settings(home=tmp_path),
        ledger=open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", anchor=anchor_in(tmp_path)),
        policy=load_policy(),
        org=org,
        idp=idp,
        messenger=messenger,
        tickets=tickets,
        clock=lambda: now,
    )
