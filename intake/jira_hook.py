"""``POST /hooks/jira``: signed Jira webhooks about access-request tickets become onboarding runs.

Order of work, as for the HR hook (intake/hooks.py): authenticate first, then parse, then answer.

1. **Size**: at most 64 KiB are read (413 beyond; intake/wire.py).
2. **Signature**: ``X-Hub-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw body with
   ``HANDOVER_JIRA_WEBHOOK_SECRET`` (Jira's own webhook signing), compared in constant time;
   anything else is a 401 and writes nothing. An empty secret refuses every delivery (503).
3. **Shape**: JSON (400 otherwise) validated by ``JiraWebhook``: ``webhookEvent``, and for the
   events we act on an ``issue`` whose ``key`` is a Jira key (``ACC-12``: ASCII capitals,
   digits and ``_``, a hyphen, a number); 422 naming each bad field. Only
   ``jira:issue_created`` / ``jira:issue_updated`` of an access request start a run — by
   ``domain.request_kind``, the one rule the runbook applies too: an issue type or JSM request
   type among ``HANDOVER_JIRA_REQUEST_TYPES``, or the label ``HANDOVER_JIRA_REQUEST_LABEL``
   (the JSM "Customer Request Type" field is recognised by its value,
   ``{"requestType": {"name": …}}``, since its id differs per site). Anything else is answered
   200 ``{"ignored": …}``, writes nothing and comments nothing: a Jira sends every Bug and
   Story of the project to the hook. The runbook reads the ticket itself
   (the webhook body is not trusted for the request) and answers a bad ticket with a comment
   naming each bad line (``domain.access_request``).
4. **Once per delivery**: the delivery is recorded in the ledger (source ``jira``, status
   ``noted``) under ``<issue key>:<webhookEvent>:<timestamp>`` — all three signed, so a
   replayed body is a duplicate whatever headers come with it (Jira's
   ``X-Atlassian-Webhook-Identifier`` is not signed: a replay with a fresh one would otherwise
   count again). Without a ``timestamp`` the body's SHA-256 stands in for it. A redelivery is
   answered 200 ``duplicate`` and does nothing more.
5. **One run per ticket** (intake/keyed.py): a ticket's runs are named ``<KEY>#<n>``; the run
   is started with ``onboard(ticket=KEY, requester="jira:<KEY>#<n>")`` (the requester is the
   Prefect idempotency key of a deployment launch: ``intake.launch.event_key``), answered 202
   ``started``. Every other delivery starts nothing and is answered 200 with the run that
   handles the ticket:

   - ``running``: the ticket's run has not ended (it may wait days at its approval gate). When
     the delivery's request differs from the one the run was started for (the description or
     the labels were edited), the ticket gets one comment per run saying the run handles the
     request as it read it and the change is not part of it (a paused run's approvers decide
     the plan they were shown; re-planning a paused run is the runbook's work, not the door's).
   - ``handled``: the run has ended and the request is unchanged (a comment, a transition,
     the run's own closing comment and transition).

   A ticket whose run has ended and whose request changed gets a new run: the next update
   after the end starts it (Jira sends one for the run's own closing comment). The runbook
   itself does nothing twice for a ticket it already handled.

The request's digest covers the signed body's ``issue.fields.description`` and
``issue.fields.labels`` (what the runbook reads the request from); the runbook still reads the
ticket itself and never the webhook body for the request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any, Literal

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from approvals.services import Services
from domain.request_kind import RequestKinds, request_type_name
from intake.deliveries import HEX64, hmac_hex, read_signed
from intake.keyed import KeyedRun, claim_run
from intake.launch import Launcher, start_event
from intake.wire import answers, header, inline_schema, raw_body_doc, refuse
from ledger.events import claim_event, note_event_run, release_event

SOURCE = "jira"
SIGNATURE_HEADER = "X-Hub-Signature"
EVENTS = {"jira:issue_created", "jira:issue_updated"}
# A Jira issue key: the project key (ASCII capitals, digits, underscores), a hyphen, a number.
JIRA_KEY = r"^[A-Z][A-Z0-9_]{0,49}-[1-9][0-9]{0,9}$"

log = logging.getLogger("handover.intake")


def already_handled(ref: str, name: str) -> str:
    """The one comment a ticket gets when its request is edited while its run is going."""
    return (
        f"Handover: this ticket is already being handled in run {ref or name} ({name}). That "
        "run decides the request as it read the ticket when it started; the change just made "
        "is not part of it. Once the run has ended, the next update of this ticket starts a "
        "run for the changed request."
    )


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
    # extra="allow": the custom fields are kept, so JSM's request type can be found among them.
    model_config = ConfigDict(extra="allow")
    issuetype: JiraIssueType | None = None
    # Only digested (has the request changed?) and checked for the label: any JSON is taken.
    description: Any = None
    labels: Any = None

    def request_type(self) -> str:
        """The JSM request type's name, from whichever custom field holds one (its id differs
        per site: ``customfield_10010`` on Cloud); "" when none does."""
        for name, value in (self.model_extra or {}).items():
            if name.startswith("customfield_") and (found := request_type_name(value)):
                return found
        return ""


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

    def acted_on(self, kinds: RequestKinds) -> bool:
        """An issue event about an access request (by ``kinds``): what starts an onboarding."""
        if self.webhookEvent not in EVENTS or self.issue is None:
            return False
        f = self.issue.fields
        labels = f.labels if isinstance(f.labels, list) else []
        return kinds.admits(
            issue_type=f.issuetype.name if f.issuetype else "",
            labels=[x for x in labels if isinstance(x, str)],
            request_type=f.request_type(),
        )

    def request_digest(self) -> str:
        """A digest of what the runbook reads the request from: the description and labels."""
        fields = self.issue.fields if self.issue else JiraIssueFields()
        seen = {"description": fields.description, "labels": fields.labels}
        return hashlib.sha256(json.dumps(seen, sort_keys=True).encode()).hexdigest()


class JiraAnswer(BaseModel):
    """How a delivery stands: started (202); the ticket's run still going or done with this
    request, a duplicate, or ignored (200)."""

    ok: Literal[True]
    event_id: str | None = None
    status: Literal["started", "running", "handled"] | None = None
    run: str | None = Field(None, description="the run handling the ticket; null while launched")
    ticket_run: str | None = Field(None, description="that run's name: <issue key>#<n>")
    duplicate: bool = False
    ignored: str | None = Field(None, description="the event, when it is not one we act on")


_OPENAPI = raw_body_doc(
    schema=inline_schema(JiraWebhook),
    headers=[header(SIGNATURE_HEADER, "sha256=<hex HMAC-SHA256(secret, raw body)>")],
)
_ANSWERS = answers(
    {
        200: (
            JiraAnswer,
            "nothing started: the ticket's run is still going (running) or handled this "
            "request (handled), a redelivery (duplicate), or an event we do not act on",
        ),
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
    """The ``POST /hooks/jira`` route over ``svc``; runs are started through ``launcher``.

    Raises:
        SettingsError: the request types and label are not a valid configuration (the intake
            does not start rather than ignore every ticket).
    """
    router = APIRouter()
    kinds = svc.settings.request_kinds()

    def take(hook: JiraWebhook, raw: bytes, background: BackgroundTasks) -> JSONResponse:
        """Record the delivery, then start the ticket's run or answer with the one going.
        Synchronous (the ledger and the launcher may block): run in the thread pool."""
        assert hook.issue is not None
        key, now = hook.issue.key, svc.clock()
        digest = hashlib.sha256(raw).hexdigest()
        # Only signed content names the delivery (see the module docstring, step 4).
        stamp = str(hook.timestamp) if hook.timestamp is not None else f"sha256:{digest[:32]}"
        delivery = f"{key}:{hook.webhookEvent}:{stamp}"
        request = hook.request_digest()
        ev, new = claim_event(
            svc.ledger,
            SOURCE,
            delivery,
            payload_digest=digest,
            now=now,
            kind=hook.webhookEvent,
            params={"ticket": key, "request": request},
            noted=True,
        )
        if not new:
            return JSONResponse(
                {"ok": True, "event_id": ev.event_id, "duplicate": True, "run": ev.run_ref or None}
            )
        got = claim_run(
            svc.ledger,
            launcher,
            source=SOURCE,
            key=key,
            digest=request,
            params=lambda name: {"ticket": key, "requester": f"{SOURCE}:{name}"},
            now=now,
            restart="changed",
        )
        if got.status == "claimed":
            return start(delivery, got)
        # While the run is launched its reference is unknown: its name stands for it.
        note_event_run(svc.ledger, SOURCE, delivery, got.run or got.name)
        if got.status == "running" and got.changed:
            notice(key, got, background)
        log.info("Jira event %s: ticket run %s %s", delivery, got.name, got.status)
        answer = {"ok": True, "event_id": delivery, "status": got.status, "run": got.run or None}
        return JSONResponse({**answer, "ticket_run": got.name})

    def start(delivery: str, got: KeyedRun) -> JSONResponse:
        try:
            ref = start_event(
                svc.ledger, launcher, SOURCE, got.name, got.params, forget_on_failure=True
            )
        except Exception as exc:
            # Both forgotten: Jira retries on a 5xx and its retry starts afresh.
            release_event(svc.ledger, SOURCE, delivery, forget=True)
            log.error("Jira event %s: could not start run %s: %s", delivery, got.name, exc)
            return refuse(503, "could not start the run; retry later")
        note_event_run(svc.ledger, SOURCE, delivery, ref)
        log.info("Jira event %s started run %s (%s)", delivery, ref, got.name)
        answer = {"ok": True, "event_id": delivery, "status": "started", "run": ref}
        return JSONResponse({**answer, "ticket_run": got.name}, status_code=202)

    def notice(key: str, got: KeyedRun, background: BackgroundTasks) -> None:
        """Say on the ticket, once per run, that its edit is not part of the run going."""
        if svc.tickets is None:
            return
        once = f"{got.name}:notice"
        _, first = claim_event(
            svc.ledger, SOURCE, once, payload_digest="", now=svc.clock(), kind="notice", noted=True
        )
        if first:
            background.add_task(comment, key, once, already_handled(got.run, got.name))

    def comment(key: str, once: str, text: str) -> None:
        assert svc.tickets is not None
        try:
            svc.tickets.comment(key, text)
        except Exception as exc:  # Jira down: the next edit tries again
            release_event(svc.ledger, SOURCE, once, forget=True)
            log.warning("could not comment on %s: %s", key, exc)

    @router.post("/hooks/jira", openapi_extra=_OPENAPI, responses=_ANSWERS)
    async def jira_hook(request: Request, background: BackgroundTasks) -> JSONResponse:
        """A Jira webhook (``JiraWebhook``), signed: an access-request ticket has one
        onboarding run at a time; any other ticket is ignored."""
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
        if not hook.acted_on(kinds) or hook.issue is None:
            return JSONResponse({"ok": True, "ignored": hook.webhookEvent})
        return await run_in_threadpool(take, hook, raw, background)

    return router
