"""What Handover records about itself: audit events, temporary grants, approval requests.

Pure data; the ledger stores them, the approval policy reasons about them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditEvent(BaseModel):
    """One thing the orchestrator did (or saw), before it is chained into the ledger."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(min_length=1, max_length=100)  # e.g. "org.remove_member"
    subject: str = Field("", max_length=320)  # the person the runbook is about
    target: str = Field("", max_length=500)  # what was acted on (asset 42, key 3, project P)
    actor: str = "handover"  # the orchestrator
    on_behalf_of: str = ""  # the human who asked or approved
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    effect: str = ""  # created | updated | deleted | noop(reason) | failed(reason)
    flow_run_id: str = ""
    ticket: str = ""
    plan_hash: str = ""


class AuditRecord(AuditEvent):
    """An event as stored: numbered, timed and chained."""

    seq: int
    at: datetime
    prev_hash: str
    hash: str
    mac: str = ""  # HMAC of ``hash`` under the audit key ("": an older Handover's event)


class GrantStatus(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"
    EXTENDED = "extended"


class Grant(BaseModel):
    """Temporary access: who has what, until when, on which ticket and whose sponsorship."""

    id: int | None = None
    subject: str
    project: str | None = None
    role: str | None = None
    module: str | None = None
    start: datetime
    end: datetime
    ticket: str = ""
    sponsor: str = ""
    status: GrantStatus = GrantStatus.ACTIVE
    last_reminder: str = ""  # which reminder was sent last ("3d", "1d"), so none is sent twice
    extended_from: datetime | None = None


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class Decision(BaseModel):
    """One person's answer, as received (whether it counted is decided by the policy)."""

    approver: str
    decision: str  # approve | deny
    at: datetime
    plan_hash: str
    comment: str = ""
    channel: str = "slack"  # slack | cli
    auth: str = ""  # how the approver was authenticated (domain.identity)
    counted: bool = False
    reason: str = ""  # why it did not count
    # Whether the ledger holds its audit event, authenticated by the audit key and naming this
    # approval, approver, answer and plan (ledger.approvals sets it on every decision it reads;
    # the tally counts no decision without it).
    authenticated: bool = True


class ApprovalRequest(BaseModel):
    id: str
    flow_run_id: str = ""
    runbook: str
    subject: str
    requester: str
    plan_hash: str
    rule: str
    required: list[list[str]] = Field(default_factory=list)  # one list of candidates per seat
    quorum: int = 1
    state: ApprovalState = ApprovalState.PENDING
    created_at: datetime
    expires_at: datetime
    escalated: bool = False
    decisions: list[Decision] = Field(default_factory=list)
    slack_refs: list[dict[str, str]] = Field(default_factory=list)
    ticket: str = ""
    # The plan as every channel shows it (Slack, the ticket, the CLI): each step in words.
    plan_lines: list[str] = Field(default_factory=list)
    plan_warnings: list[str] = Field(default_factory=list)
    org: str = ""
