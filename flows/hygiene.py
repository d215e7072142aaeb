"""Invitation hygiene (issues 6 and 7; seed 003 "Monitor Invitation Status"), daily:
read → decide → apply → record.

Unaccepted 48 h after it was sent → resent once and the requester told; 14 days after it was
first sent (or expired) → revoked and its ticket commented on; accepted → recorded. The flow
only composes: ``domain.invitations`` decides, ``tasks.invitations`` writes, each action at
most once (the ledger remembers), so a second sweep at the same time does nothing.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, field_validator

from domain.invitations import Action, hygiene_actions, lookalike_warnings
from ledger.audit import last_seq
from tasks.invitations import apply_action, read_invitations, recall, remember_pending
from tasks.runtime import runtime


def parse_now(value: str | None) -> datetime | None:
    """An ISO 8601 time (a time without a zone is UTC); None stays None.

    Raises:
        ValueError: not an ISO 8601 time.
    """
    if value is None or not value.strip():
        return None
    t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class HygieneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    now: datetime | None = None
    dry_run: bool = False

    @field_validator("now", mode="before")
    @classmethod
    def _iso(cls, v: Any) -> Any:
        return parse_now(v) if isinstance(v, str) or v is None else v


def _plan(actions: list[Action], blockers: list[str]) -> dict[str, Any]:
    steps = [{"kind": a.kind.value, "target": a.email, "reason": a.reason} for a in actions]
    digest = hashlib.sha256(
        json.dumps([[a.kind.value, a.key] for a in actions], sort_keys=True).encode()
    ).hexdigest()
    return {"hash": digest, "steps": steps, "blockers": blockers}


def _artifact(actions: list[Action], effects: dict[str, str], notes: dict[str, str]) -> None:
    rows = [
        {
            "#": i + 1,
            "action": a.kind.value,
            "invitation": a.email,
            "sent": a.sent_at.isoformat(timespec="minutes"),
            "effect": effects.get(a.id, "not done"),
            "notes": notes.get(a.id, ""),
            "reason": a.reason,
        }
        for i, a in enumerate(actions)
    ]
    create_table_artifact(
        rows or [{"#": 0, "action": "none", "reason": "nothing to do"}],
        key="invitation-hygiene",
        description="Invitation hygiene: actions of this sweep",
    )


@flow(name="invitation-hygiene", log_prints=False)
def invitation_hygiene(now: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Sweep the org's invitations once.

    Args:
        now: the org's time (ISO 8601); default the runtime's clock. Pass the org's clock when
            it is not the orchestrator's (the sandbox's clock can be moved).
        dry_run: decide only; nothing is written anywhere (not even the ledger).

    Returns:
        ``run_id``, ``status`` (done | planned | nothing_to_do | failed | blocked), ``now``,
        ``plan`` (``hash``, ``steps`` of kind/target/reason, ``blockers``), ``effects``
        (``kind:email`` → effect), ``notes``, ``verification`` (empty), ``warnings``
        (look-alike invitations never resent), ``failures`` and ``audit_seq``.
    """
    req = HygieneRequest(now=now, dry_run=dry_run)
    log = get_run_logger()
    rt = runtime()
    at = req.now or rt.clock()
    run_id = str(flow_run.id or "")
    snap = read_invitations()
    memory = recall(create=not req.dry_run)
    actions = (
        []
        if snap.blocker
        else hygiene_actions(
            snap.invitations,
            at,
            already_resent=memory.resent,
            already_recorded=memory.recorded,
            seen_pending=memory.seen_pending,
            members=snap.members,
        )
    )
    warnings = lookalike_warnings(snap.invitations, snap.members, at)
    blockers = [snap.blocker] if snap.blocker else []

    def result(status: str, effects: dict[str, str], **extra: Any) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "status": status,
            "now": at.isoformat(),
            "plan": _plan(actions, blockers),
            "effects": effects,
            "verification": {},
            "warnings": warnings,
            "audit_seq": last_seq(rt.ledger),
            **extra,
        }

    if blockers:
        return result("blocked", {})
    if req.dry_run:
        return result("planned" if actions else "nothing_to_do", {})
    assert memory.case_id is not None
    remember_pending(snap.invitations, memory)
    effects: dict[str, str] = {}
    notes: dict[str, str] = {}
    failures: list[str] = []
    for a in actions:
        try:
            out = apply_action(a, case_id=memory.case_id, flow_run_id=run_id)
        except Exception as exc:  # one invitation must not stop the others
            failures.append(f"{a.id}: {exc}")
            log.error("invitation hygiene: %s failed: %s", a.id, exc)
            continue
        effects[a.id] = out["effect"]
        notes[a.id] = "; ".join(out["notes"])
    _artifact(actions, effects, notes)
    status = "failed" if failures else ("done" if actions else "nothing_to_do")
    return result(status, effects, notes=notes, failures=failures)
