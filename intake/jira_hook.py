"""``POST /hooks/jira``: signed Jira webhooks about Access Request tickets become onboarding runs.

Order of work, as for the HR hook (intake/hooks.py): authenticate first, then parse, then answer.

1. **Size**: at most 64 KiB are read (413 beyond; intake/wire.py).
2. **Signature**: ``X-Hub-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw body with
   ``HANDOVER_JIRA_WEBHOOK_SECRET`` (Jira's own webhook signing), compared in constant time;
   anything else is a 401 and writes nothing. An empty secret refuses every delivery (503).
3. **Shape**: JSON (400 otherwise) validated by ``JiraWebhook``: ``webhookEvent``, and for the
   events we act on an ``issue`` whose ``key`` is a Jira key (``ACC-12``: ASCII capitals,
   digits and ``_``, a hyphen, a number); 422 naming each bad field. Only
   ``jira:issue_created`` / ``jira:issue_updated`` of issue type "Access Request" start a run;
   anything else is answered 200 ``{"ignored": …}``. Nothing else of the body is used: the
   runbook reads the ticket itself (the webhook body is not trusted for the request) and
   answers a bad ticket with a comment naming each bad line (``domain.access_request``).
4. **Once**: the delivery is claimed in the ledger (source ``jira``) under
   ``<issue key>:<webhookEvent>:<timestamp>`` — all three signed, so a replayed body is a
   duplicate whatever headers come with it (Jira's ``X-Atlassian-Webhook-Identifier`` is not
   signed: a replay with a fresh one would otherwise start again). Without a ``timestamp`` the
   body's SHA-256 stands in for it. A redelivery is answered 200 and starts nothing.
5. **Start**: the injected launcher starts ``onboard(ticket=KEY)``; 202 ``{"run": <reference>}``.
   The runbook does nothing twice for a ticket it already handled, so the ``issue_updated``
   its own comment and transition cause is harmless.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from approvals.services import Services
from intake.deliveries import HEX64, Claim, claim_and_start, hmac_hex, read_signed
from intake.launch import Launcher
from intake.wire import answers, header, inline_schema, raw_body_doc
from ledger.events import EventRecord

SOURCE = "jira"
SIGNATURE_HEADER = "X-Hub-Signature"
ACCESS_REQUEST = "access request"
EVENTS = {"jira:issue_created", "jira:issue_updated"}
# A Jira issue key: the project key (ASCII capitals, digits, underscores), a hyphen, a number.
JIRA_KEY = r"^[A-Z][A-Z0-9_]{0,49}-[1-9][0-9]{0,9}$"


def sign_jira(secret: str, body: bytes) -> dict[str, str]:
    """The headers of a signed Jira webhook delivery of ``body`` (tests, the demo)."""
    return {
        SIGNATURE_HEADER: f"sha256={hmac_hex(secret, body)}",
        "Content-Type": "application/json",
    }


def check_jira_signature(secret: str, header: str, body: bytes) -> str | None:
    """None when ``header`` signs ``body``; else why not."""
    if not header:
        return f"missing {SIGNATURE_HEADER} header"
    scheme, sep, given = header.strip().partition("=")
    # compare_digest takes ASCII only: anything but 64 hex digits is refused before it.
    if not sep or scheme.lower() != "sha256" or not HEX64.fullmatch(given.strip()):
        return f"{SIGNATURE_HEADER} must be sha256=<64 hex digits>"
    if not hmac.compare_digest(hmac_hex(secret, body), given.strip().lower()):
        return "invalid signature"
    return None


class JiraIssueType(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field("", max_length=255)


class JiraIssueFields(BaseModel):
    model_config = ConfigDict(extra="ignore")
    issuetype: JiraIssueType | None = None


class JiraIssue(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str = Field(max_length=64, pattern=JIRA_KEY, description="e.g. ACC-12")
    fields: JiraIssueFields = Field(default_factory=JiraIssueFields)


class JiraWebhook(BaseModel):
    """The part of a Jira webhook we read (Jira sends much more; the rest is ignored)."""

    model_config = ConfigDict(extra="ignore")

    webhookEvent: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_:.-]+$")
    issue: JiraIssue | None = None
    timestamp: int | None = Field(None, ge=0, le=10**15, description="epoch milliseconds")

    @model_validator(mode="after")
    def _issue_for_issue_events(self) -> JiraWebhook:
        if self.webhookEvent in EVENTS and self.issue is None:
            raise ValueError(f"{self.webhookEvent} needs its issue (issue.key)")
        return self

    @property
    def acted_on(self) -> bool:
        """An issue event about an Access Request: what starts an onboarding."""
        kind = self.issue.fields.issuetype if self.issue else None
        name = kind.name if kind else ""
        return self.webhookEvent in EVENTS and name.strip().casefold() == ACCESS_REQUEST


class JiraAnswer(BaseModel):
    """How a delivery stands: started (202), a duplicate or ignored (200)."""

    ok: Literal[True]
    event_id: str | None = None
    status: Literal["started"] | None = None
    run: str | None = None
    duplicate: bool = False
    ignored: str | None = Field(None, description="the event, when it is not one we act on")


_OPENAPI = raw_body_doc(
    schema=inline_schema(JiraWebhook),
    headers=[header(SIGNATURE_HEADER, "sha256=<hex HMAC-SHA256(secret, raw body)>")],
)
_ANSWERS = answers(
    {
        200: (JiraAnswer, "a redelivery (duplicate), or an event we do not act on (ignored)"),
        202: (JiraAnswer, "an onboarding run was started"),
    },
    {
        400: "the body is not JSON",
        401: "unsigned or badly signed: nothing is written",
        413: "body over 64 KiB",
        422: "the webhook is invalid; each bad field is named",
        503: "the secret is not configured, or the run could not be started (retry)",
    },
)


def jira_router(svc: Services, launcher: Launcher) -> APIRouter:
    """The ``POST /hooks/jira`` route over ``svc``; runs are started through ``launcher``."""
    router = APIRouter()

    def repeated(ev: EventRecord) -> JSONResponse:
        return JSONResponse(
            {"ok": True, "event_id": ev.event_id, "duplicate": True, "run": ev.run_ref or None}
        )

    @router.post("/hooks/jira", openapi_extra=_OPENAPI, responses=_ANSWERS)
    async def jira_hook(request: Request) -> JSONResponse:
        """A Jira webhook (``JiraWebhook``), signed: an Access Request starts one onboarding."""
        got = await read_signed(
            request,
            JiraWebhook,
            secret=svc.settings.jira_webhook_secret,
            unset="the Jira webhook secret is not configured",
            signature_header=SIGNATURE_HEADER,
            verify=check_jira_signature,
            what="Jira webhook",
        )
        if isinstance(got, JSONResponse):
            return got
        hook, raw = got
        if not hook.acted_on or hook.issue is None:
            return JSONResponse({"ok": True, "ignored": hook.webhookEvent})
        digest = hashlib.sha256(raw).hexdigest()
        # Only signed content names the delivery (see the module docstring, step 4).
        stamp = str(hook.timestamp) if hook.timestamp is not None else f"sha256:{digest[:32]}"
        claim = Claim(
            source=SOURCE,
            event_id=f"{hook.issue.key}:{hook.webhookEvent}:{stamp}",
            digest=digest,
            kind=hook.webhookEvent,
            params={"ticket": hook.issue.key},
        )
        return await run_in_threadpool(
            claim_and_start, svc, launcher, claim, now=svc.clock(), label="Jira", repeated=repeated
        )

    return router
