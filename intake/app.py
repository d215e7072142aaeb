"""The front door (FastAPI): signed inbound requests become decisions, resumes and runs.

Today: ``POST /slack/interactions`` (Approve / Deny / Extend buttons), ``GET /healthz``, the web
console under ``/console`` (intake/console/), a rotated secret's page ``/secrets/<id>`` and,
when launchers are given, ``POST /hooks/hr`` (signed HR events → offboarding runs:
intake/hooks.py), the HR vendors' own webhooks ``POST /hooks/hr/{hibob,bamboohr,personio,merge}``
(intake/hr_vendors.py) and ``POST /hooks/jira`` (Access Request tickets → onboarding runs:
intake/jira_hook.py).
Every request is read under a 64 KiB cap and authenticated before anything else: for Slack, its
v0 HMAC-SHA256 signature over the raw body (``v0:<timestamp>:<body>``) within a five-minute
window of the wall clock, and a signature is accepted once (a replayed body is refused).
Malformed signature headers (a non-numeric timestamp, non-hex or non-ASCII signatures) and
bodies that are not UTF-8 are refused like any bad signature, never by an exception.
A signed click then counts only from the configured workspace and app, from a full member (not
deactivated, not a guest, not a bot) whose Slack email is an active IdP user's address; it is
recorded under that user's canonical address (``approvals.people.slack_clicker``, one check for
every button and the Can't do modal). A refused click records nothing.
Slack wants an answer within three seconds, so the decision is recorded at once and the message
update and the flow's wake-up run after the answer. Only reading the body happens on the event
loop; the rest of a click (the ledger, Slack's ``users.info``, the IdP) runs in the thread pool,
so a slow Slack delays that click only, never ``/healthz`` or the webhooks.

An Extend click starts an extension run unless one of the same grant is still going (one
extension approval per grant at a time, intake/keyed.py); the second click is answered "already
waiting for approval" and nobody is asked again.

``/openapi.json`` (and ``/docs``, ``/redoc``) describe what each route reads, although the routes
read raw bodies (to check signatures): intake/wire.py. They are served in sandbox mode only
(``HANDOVER_SANDBOX=1``): elsewhere they are 404, like any unknown path.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import parse_qs

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from approvals.handler import (
    DecisionRefused,
    acknowledge,
    message_ref,
    record_decision,
    wake_flow,
)
from approvals.people import Clicker, ClickRefused, slack_clicker
from approvals.services import Services
from approvals.tasks import TaskRefusedInput, announce_answer, record_answer
from approvals.tasks import ask_why as ask_why_cant
from domain.blocks import (
    APPROVE_ACTION,
    CANT_REASON,
    CANT_VIEW,
    DENY_ACTION,
    TASK_CANT_ACTION,
    TASK_DONE_ACTION,
    parse_decision_value,
)
from domain.expiry import EXTEND_ACTION, parse_extend_value
from domain.records import GrantStatus
from domain.tasks import TaskState
from intake.console import install_console
from intake.hooks import hr_router
from intake.hr_vendors import hr_vendor_router
from intake.jira_hook import jira_router
from intake.keyed import claim_run
from intake.launch import Launcher, start_event
from intake.secrets_page import secrets_router
from intake.wire import (
    MAX_BODY,
    answers,
    header,
    inline_schema,
    raw_body_doc,
    read_capped,
    refuse,
    too_large,
)
from ledger.grants import grants
from ledger.replay import first_time

log = logging.getLogger("handover.intake")

EXTEND_SOURCE = "extend"  # the ledger's source of extension runs, one per grant at a time
WINDOW_SECONDS = 300  # Slack's own advice: refuse requests older than five minutes
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class SlackUser(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=64)


class SlackTeam(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field("", max_length=64)


class FromSlack(BaseModel):
    """Who clicked, in which workspace, through which app: every interaction payload's own."""

    model_config = ConfigDict(extra="ignore")
    user: SlackUser
    # Missing in a forged body: then "" and refused by the workspace check, never assumed.
    team: SlackTeam = Field(default_factory=SlackTeam)
    api_app_id: str = Field("", max_length=64)


class SlackAction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    action_id: str = Field(max_length=255)
    value: str = Field("", max_length=2000)


class SlackContainer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    # Slack's ids are short; these are handed back to chat.update.
    channel_id: str | None = Field(None, max_length=64)
    message_ts: str | None = Field(None, max_length=64)


class BlockActions(FromSlack):
    """The part of a ``block_actions`` payload we use."""

    type: str
    actions: list[SlackAction] = Field(min_length=1, max_length=5)
    container: SlackContainer = Field(default_factory=SlackContainer)
    trigger_id: str = Field("", max_length=200)  # opens a modal (Can't do), 3 s to use


class SubmittedView(BaseModel):
    model_config = ConfigDict(extra="ignore")
    callback_id: str = Field("", max_length=255)
    private_metadata: str = Field("", max_length=3000)
    state: dict[str, Any] = Field(default_factory=dict)

    def text(self, block_id: str, action_id: str) -> str:
        """The value typed into one input of the modal (empty when missing)."""
        # Any shape may come (a forged or broken body): nothing but dicts is followed.
        values = self.state.get("values")
        block = values.get(block_id) if isinstance(values, dict) else None
        field = block.get(action_id) if isinstance(block, dict) else None
        value = field.get("value") if isinstance(field, dict) else None
        return value if isinstance(value, str) else ""


class ViewSubmission(FromSlack):
    """The part of a ``view_submission`` payload we use (a modal's Send)."""

    type: Literal["view_submission"]
    view: SubmittedView


class SlackAnswer(BaseModel):
    """The answer to a click: recorded or not (and why), ignored, or an extension started."""

    ok: Literal[True]
    recorded: bool | None = None
    started: bool | None = None
    ignored: str | None = None
    message: str | None = None


def check_slack_signature(
    secret: str, timestamp: str, signature: str, body: bytes, *, now: float
) -> str | None:
    """None when ``signature`` is Slack's v0 signature of ``body`` at ``timestamp``, within
    five minutes of ``now``; else why not.

    Our own check rather than ``slack_sdk.signature.SignatureVerifier``, which raises on
    exactly what a forger sends (a non-numeric timestamp, a non-ASCII signature, a body that is
    not UTF-8): here each is a plain refusal. The HMAC is over the raw bytes, as Slack signs
    them.
    """
    if not timestamp or not signature:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature header"
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 20):
        return "malformed X-Slack-Request-Timestamp: expected unix seconds"
    scheme, _, given = signature.partition("=")
    if scheme != "v0" or not _HEX64.fullmatch(given):
        return "malformed X-Slack-Signature: expected v0=<64 hex digits>"
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        return "invalid Slack signature"
    if abs(now - int(timestamp)) > WINDOW_SECONDS:
        return "stale Slack signature: outside the 5-minute window"
    return None


_SLACK_OPENAPI = raw_body_doc(
    media_type="application/x-www-form-urlencoded",
    schema={
        "type": "object",
        "required": ["payload"],
        "properties": {
            "payload": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": inline_schema(BlockActions),
                "description": "a block_actions payload (JSON): the parts read",
            }
        },
    },
    headers=[
        header("X-Slack-Request-Timestamp", "unix seconds; within five minutes of now"),
        header("X-Slack-Signature", "v0=<hex HMAC-SHA256(secret, 'v0:<timestamp>:' + body)>"),
    ],
)
_SLACK_ANSWERS = answers(
    {200: (SlackAnswer, "the click is answered: recorded, refused with a message, or ignored")},
    {
        400: "not a block_actions form, or a malformed button value",
        401: "unsigned, badly signed, stale or replayed: nothing is written",
        403: "another workspace or app; a deactivated, guest or bot account; or an email "
        "that is no active IdP user: nothing is written",
        413: "body over 64 KiB",
        503: "the signing secret is not configured, or Slack or the IdP cannot be asked now",
    },
)


def create_intake(
    svc: Services,
    *,
    launcher: Launcher | None = None,
    onboard_launcher: Launcher | None = None,
    extend_launcher: Launcher | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The intake app over ``svc``.

    With ``launcher`` (how runs are started: ``intake.launch``) it also takes HR webhooks; an
    event with a future effective date is recorded and started by the watchdog process when
    the date comes (``handover watchdog``: ``intake.launch.launch_due``). With
    ``onboard_launcher`` it takes Jira access-request webhooks (``POST /hooks/jira``). With
    ``extend_launcher`` the Extend button of a temporary-access reminder (``extend``, value
    ``grant:<id>``) starts an extension run (``extend_grant(grant_id, requester)``).

    The approval watchdog and the launch of due events run in a process of their own
    (``handover watchdog``: approvals/watchdog.py), not here.

    Slack's signature window is checked against ``wall_clock`` (unix seconds), not
    ``svc.clock``: Slack stamps requests with real time, while a test or the sandbox may move
    the services' clock by days.
    """
    # The API's description is a map for whoever probes the door: served in sandbox mode only.
    docs = svc.settings.sandbox
    app = FastAPI(
        title="Handover intake",
        version="1",
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    slack_secret = svc.settings.slack_signing_secret.get_secret_value()
    app.state.services = svc
    if launcher is not None:
        app.include_router(hr_router(svc, launcher))
        app.include_router(hr_vendor_router(svc, launcher))  # HiBob, BambooHR, Personio, Merge
    if onboard_launcher is not None:
        app.include_router(jira_router(svc, onboard_launcher))
    app.include_router(secrets_router(svc, wall_clock=wall_clock))  # rotated secrets: once
    install_console(app, svc, wall_clock=wall_clock)  # the web console, /console

    def clicker(payload: FromSlack) -> Clicker | ClickRefused:
        """Who clicked (the IdP's address), or why the click does not count: one check for
        every button and modal (approvals/people.py)."""
        return slack_clicker(
            svc, user_id=payload.user.id, team_id=payload.team.id, app_id=payload.api_app_id
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        # On the event loop, touching nothing: it answers while every worker thread waits on
        # Slack or the ledger (a sync route would queue for a thread behind them).
        return {"ok": True}

    @app.post("/slack/interactions", openapi_extra=_SLACK_OPENAPI, responses=_SLACK_ANSWERS)
    async def slack_interactions(request: Request, background: BackgroundTasks) -> JSONResponse:
        """A Slack button click (``block_actions``), signed by Slack."""
        raw = await read_capped(request, MAX_BODY)
        if raw is None:
            return too_large()
        # Everything after reading the body may block (the ledger's lock, Slack's users.info
        # with its retries, the IdP): off the event loop, so that other requests and /healthz
        # are answered meanwhile.
        return await run_in_threadpool(interaction, raw, request.headers, background)

    def interaction(raw: bytes, headers: Headers, background: BackgroundTasks) -> JSONResponse:
        """The click, once its body is read: authenticated, then handled (sync: thread pool)."""
        if not slack_secret:
            # An empty key would make every signature forgeable: take no clicks at all.
            return refuse(503, "the Slack signing secret is not configured")
        ts = headers.get("x-slack-request-timestamp", "")
        sig = headers.get("x-slack-signature", "")
        why = check_slack_signature(slack_secret, ts, sig, raw, now=wall_clock())
        if why:
            return refuse(401, why)
        if not first_time(svc.ledger, "slack", ts, sig.lower(), now=svc.clock()):
            return refuse(401, "replayed request")
        try:
            form = parse_qs(raw.decode("utf-8"), strict_parsing=True)
            data = json.loads(form["payload"][0])
            if isinstance(data, dict) and data.get("type") == "view_submission":
                return cant_submitted(ViewSubmission.model_validate(data), background)
            payload = BlockActions.model_validate(data)
        except (ValueError, KeyError, UnicodeDecodeError, RecursionError, ValidationError):
            return refuse(400, "expected a form field 'payload' holding a block_actions JSON")
        if payload.type != "block_actions":
            return JSONResponse({"ok": True, "ignored": payload.type})
        action = payload.actions[0]
        if action.action_id == EXTEND_ACTION:
            return extend(payload, action, background)
        if action.action_id == TASK_DONE_ACTION:
            return task_done(payload, action, background)
        if action.action_id == TASK_CANT_ACTION:
            return ask_why(payload, action)
        if action.action_id not in (APPROVE_ACTION, DENY_ACTION):
            return JSONResponse({"ok": True, "ignored": action.action_id})
        return decide(payload, action, background)

    def decide(
        payload: BlockActions, action: SlackAction, background: BackgroundTasks
    ) -> JSONResponse:
        """Approve or Deny clicked: the decision recorded, then the message and the run."""
        try:
            approval_id, plan_hash = parse_decision_value(action.value)
        except ValueError as exc:
            return refuse(400, str(exc))
        who = clicker(payload)
        if isinstance(who, ClickRefused):
            return refuse(who.status, who.message)
        approver = who.email
        decision = "approve" if action.action_id == APPROVE_ACTION else "deny"
        try:
            outcome = record_decision(
                svc,
                approval_id,
                approver=approver,
                decision=decision,
                plan_hash=plan_hash,
                verified=who.verified,
                channel="slack",
            )
        except DecisionRefused as exc:
            return JSONResponse({"ok": True, "recorded": False, "message": str(exc)})
        ref = message_ref(payload.container.channel_id, payload.container.message_ts)

        def after_answer() -> None:
            acknowledge(svc, outcome, approver=approver, decision=decision, ref=ref)
            if outcome.recorded and outcome.approval is not None:
                wake_flow(outcome.approval)

        background.add_task(after_answer)
        return JSONResponse({"ok": True, "recorded": outcome.recorded, "message": outcome.message})

    def task_done(
        payload: BlockActions, action: SlackAction, background: BackgroundTasks
    ) -> JSONResponse:
        """Done clicked on a human task, by one of its assignees: recorded, then the run woken."""
        who = clicker(payload)
        if isinstance(who, ClickRefused):
            return refuse(who.status, who.message)
        try:
            task, closed = record_answer(
                svc,
                action.value,
                by=who.email,
                state=TaskState.DONE,
                verified=who.verified,
                channel="slack",
            )
        except TaskRefusedInput as exc:
            return JSONResponse({"ok": True, "recorded": False, "message": str(exc)})
        if closed:
            background.add_task(announce_answer, svc, task)
        message = "recorded" if closed else f"already {task.state.value} by {task.decided_by}"
        return JSONResponse({"ok": True, "recorded": closed, "message": message})

    def ask_why(payload: BlockActions, action: SlackAction) -> JSONResponse:
        """Can't do clicked on a human task, by one of its assignees: the modal that asks why
        (opened now: Slack's trigger lasts 3 seconds). Nothing is recorded until it is sent."""
        who = clicker(payload)
        if isinstance(who, ClickRefused):
            return refuse(who.status, who.message)
        try:
            message = ask_why_cant(svc, action.value, by=who.email, trigger_id=payload.trigger_id)
        except TaskRefusedInput as exc:
            return JSONResponse({"ok": True, "recorded": False, "message": str(exc)})
        return JSONResponse({"ok": True, "recorded": False, "message": message})

    def cant_submitted(sent: ViewSubmission, background: BackgroundTasks) -> JSONResponse:
        """The Can't do modal sent: the task refused with the reason typed, by who sent it
        (an assignee); the run ends blocked with it. A refused answer shows in the modal."""
        if sent.view.callback_id != CANT_VIEW:
            return JSONResponse({"ok": True, "ignored": sent.view.callback_id})
        who = clicker(sent)
        if isinstance(who, ClickRefused):
            return refuse(who.status, who.message)
        reason = sent.view.text(CANT_REASON, CANT_REASON)
        try:
            task, closed = record_answer(
                svc,
                sent.view.private_metadata,
                by=who.email,
                state=TaskState.CANT,
                verified=who.verified,
                note=reason,
                channel="slack",
            )
        except TaskRefusedInput as exc:
            return JSONResponse({"response_action": "errors", "errors": {CANT_REASON: str(exc)}})
        if closed:
            background.add_task(announce_answer, svc, task)
        return JSONResponse({"response_action": "clear"})  # closes the modal

    def extend(
        payload: BlockActions, action: SlackAction, background: BackgroundTasks
    ) -> JSONResponse:
        """Extend clicked: start an extension run (its approval goes through the gate), unless
        one of this grant is still going: one extension approval per grant at a time."""
        if extend_launcher is None:
            return JSONResponse({"ok": True, "ignored": action.action_id})
        try:
            grant_id = parse_extend_value(action.value)
        except ValueError as exc:
            return refuse(400, str(exc))
        who = clicker(payload)
        if isinstance(who, ClickRefused):
            return refuse(who.status, who.message)
        requester = who.email
        found = [g for g in grants(svc.ledger) if g.id == grant_id]
        if not found or found[0].status is not GrantStatus.ACTIVE:
            state = found[0].status.value if found else "unknown"
            return JSONResponse(
                {"ok": True, "started": False, "message": f"grant {grant_id} is {state}"}
            )
        got = claim_run(
            svc.ledger,
            extend_launcher,
            source=EXTEND_SOURCE,
            key=f"grant:{grant_id}",
            digest="",
            params=lambda _name: {"grant_id": grant_id, "requester": requester},
            now=svc.clock(),
            restart="always",
        )
        if got.status != "claimed":
            return JSONResponse(
                {
                    "ok": True,
                    "started": False,
                    "message": f"an extension of grant {grant_id} is already waiting for approval",
                }
            )

        def start() -> None:
            try:
                start_event(
                    svc.ledger,
                    extend_launcher,
                    EXTEND_SOURCE,
                    got.name,
                    got.params,
                    forget_on_failure=True,
                )
            except Exception as exc:  # the claim is forgotten: the person can click again
                log.warning("could not start the extension of grant %s: %s", grant_id, exc)

        background.add_task(start)
        return JSONResponse(
            {
                "ok": True,
                "started": True,
                "message": f"extension of grant {grant_id} requested: an approval is asked",
            }
        )

    return app
