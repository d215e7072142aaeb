"""One run at a time per ticket or per grant: the front door's per-key idempotency.

A Jira ticket (``ACC-12``) or a temporary grant (``grant:7``) has at most one run going. Its
runs are rows of the ledger's inbound events named ``<key>#<n>`` (n = 1, 2, …), so claiming
the next name is a unique insert: two requests racing for the same key claim one name, and the
one that loses is answered with the winner's run. A key's newest run decides what a new request
does (``claim_run``):

- no run yet → the next name is claimed and the caller starts its run;
- a run whose launch is under way, or that has not ended (running, or paused at its approval
  gate) → nothing is started: ``running``, with whether the request differs from the one that
  run was started for;
- a run that has ended (asked of the launcher: ``intake.launch.run_ended``) → a new run, when
  ``restart`` says so (always, or only for a request that differs); otherwise ``handled``.

A launcher that cannot tell whether a run has ended (Prefect unreachable) is answered as
"still running": the door never fans out because it could not look.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from intake.launch import Launcher, run_ended
from ledger.db import LedgerDB
from ledger.events import EventRecord, claim_event, latest_keyed

Restart = Literal["always", "changed"]
"""When a key's ended run is followed by a new one: for every request, or only for a
request that differs from the one the ended run was started for."""


@dataclass(frozen=True)
class KeyedRun:
    """Where a key's runs stand after a request.

    ``status``: ``claimed`` (this request claimed ``name``: the caller starts it), ``running``
    (the key's run ``name`` has not ended: nothing to start) or ``handled`` (it ended, and the
    request is the one it was started for). ``run``: its reference ("" while it is launched).
    ``changed``: the request differs from the one run ``name`` was started for.
    """

    status: Literal["claimed", "running", "handled"]
    name: str
    run: str
    changed: bool
    params: dict[str, Any]


def claim_run(
    db: LedgerDB,
    launcher: Launcher,
    *,
    source: str,
    key: str,
    digest: str,
    params: Callable[[str], dict[str, Any]],
    now: datetime,
    restart: Restart,
) -> KeyedRun:
    """Claim the next run of ``key`` unless one is going (see the module docstring).

    Args:
        db: the ledger.
        launcher: what started the key's runs (asked whether the newest has ended).
        source: the events' source (``jira``, ``extend``).
        key: what the runs are about (a ticket key, ``grant:<id>``).
        digest: a digest of the request (compared with the one the newest run was started
            for).
        params: the run's parameters, given its name (``<key>#<n>``).
        now: the time of the request.
        restart: when an ended run is followed by a new one.
    """
    current = latest_keyed(db, source, key)
    if current is not None:
        changed = current.payload_digest != digest
        # A launch under way ("" reference) counts as running: its run will exist.
        ended = bool(current.run_ref) and run_ended(launcher, current.run_ref) is True
        if not ended:
            return _standing("running", current, changed)
        if restart == "changed" and not changed:
            return _standing("handled", current, changed)
    n = _number(current) + 1
    name = f"{key}#{n}"
    ev, new = claim_event(
        db, source, name, payload_digest=digest, now=now, kind="run", params=params(name)
    )
    if not new:  # another request claimed it a moment ago: that run handles this one too
        return _standing("running", ev, ev.payload_digest != digest)
    return KeyedRun("claimed", name, "", changed=False, params=ev.params)


def _standing(status: Literal["running", "handled"], ev: EventRecord, changed: bool) -> KeyedRun:
    return KeyedRun(status, ev.event_id, ev.run_ref, changed=changed, params=ev.params)


def _number(ev: EventRecord | None) -> int:
    return 0 if ev is None else int(ev.event_id.rsplit("#", 1)[1])
