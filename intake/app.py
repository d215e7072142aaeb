"""The front door (FastAPI): signed inbound requests become decisions, resumes and runs.

Today: ``POST /slack/interactions`` (Approve / Deny buttons), ``GET /healthz`` and, when a
launcher is given, ``POST /hooks/hr`` (signed HR events → offboarding runs: intake/hooks.py).
Every request is authenticated before anything else: Slack's v0 HMAC signature over the raw body
within a five-minute window (``slack_sdk.signature.SignatureVerifier``), and a signature is
accepted once (a replayed body is refused). Slack wants an answer within three seconds, so the
decision is recorded at once and the message update and the flow's wake-up run after the
answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from slack_sdk.signature import SignatureVerifier

from approvals.handler import (
    DecisionRefused,
    acknowledge,
    message_ref,
    record_decision,
    wake_flow,
)
from approvals.services import Services
from approvals.watchdog import sweep
from domain.blocks import APPROVE_ACTION, DENY_ACTION, parse_decision_value
from domain.expiry import EXTEND_ACTION, parse_extend_value
from domain.records import GrantStatus
from intake.hooks import hr_router
from intake.jira_hook import jira_router
from intake.launch import Launcher, launch_due
from ledger.grants import grants
from ledger.replay import first_time

log = logging.getLogger("handover.intake")

MAX_BODY = 64 * 1024  # Slack's interaction payloads are a few KB


class SlackUser(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=64)


class SlackAction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    action_id: str = Field(max_length=255)
    value: str = Field("", max_length=2000)


class SlackContainer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    channel_id: str | None = None
    message_ts: str | None = None


class BlockActions(BaseModel):
    """The part of a ``block_actions`` payload we use."""

    model_config = ConfigDict(extra="ignore")
    type: str
    user: SlackUser
    actions: list[SlackAction] = Field(min_length=1, max_length=5)
    container: SlackContainer = Field(default_factory=SlackContainer)


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


def create_intake(
    svc: Services,
    *,
    sweep_every: float | None = None,
    launcher: Launcher | None = None,
    onboard_launcher: Launcher | None = None,
    extend_launcher: Launcher | None = None,
) -> FastAPI:
    """The intake app over ``svc``; with ``sweep_every`` it also runs the approval watchdog.

    With ``launcher`` (how runs are started: ``intake.launch``) it also takes HR webhooks, and
    the watchdog starts scheduled HR events when their effective date comes. With
    ``onboard_launcher`` it takes Jira access-request webhooks (``POST /hooks/jira``). With
    ``extend_launcher`` the Extend button of a temporary-access reminder (``extend``, value
    ``grant:<id>``) starts an extension run (``extend_grant(grant_id, requester)``).
    """
    launchers: dict[str, Launcher] = {}
    if launcher is not None:
        launchers["hr"] = launcher
    if onboard_launcher is not None:
        launchers["jira"] = onboard_launcher
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if sweep_every:
            threading.Thread(target=watchdog, name="approval-watchdog", daemon=True).start()
        yield
        stop.set()

    def watchdog() -> None:
        while not stop.wait(sweep_every or 60):
            # The watchdog must outlive a bad sweep; the next one retries.
            with contextlib.suppress(Exception):
                sweep(svc)
            if launchers:
                with contextlib.suppress(Exception):
                    launch_due(svc, launchers)

    app = FastAPI(title="Handover intake", version="1", lifespan=lifespan)
    verifier = SignatureVerifier(svc.settings.slack_signing_secret.get_secret_value())
    app.state.services = svc
    if launcher is not None:
        app.include_router(hr_router(svc, launcher))
    if onboard_launcher is not None:
        app.include_router(jira_router(svc, onboard_launcher))

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True}

    @app.post("/slack/interactions")
    async def slack_interactions(request: Request, background: BackgroundTasks) -> JSONResponse:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return _refuse(413, "request body too large")
        ts = request.headers.get("x-slack-request-timestamp", "")
        sig = request.headers.get("x-slack-signature", "")
        if not ts or not sig or not verifier.is_valid(body=raw, timestamp=ts, signature=sig):
            return _refuse(401, "invalid or stale Slack signature")
        if not first_time(svc.ledger, "slack", ts, sig, now=svc.clock()):
            return _refuse(401, "replayed request")
        try:
            form = parse_qs(raw.decode("utf-8"), strict_parsing=True)
            payload = BlockActions.model_validate(json.loads(form["payload"][0]))
        except (ValueError, KeyError, UnicodeDecodeError, ValidationError):
            return _refuse(400, "expected a form field 'payload' holding a block_actions JSON")
        if payload.type != "block_actions":
            return JSONResponse({"ok": True, "ignored": payload.type})
        action = payload.actions[0]
        if action.action_id == EXTEND_ACTION:
            return extend(payload, action, background)
        if action.action_id not in (APPROVE_ACTION, DENY_ACTION):
            return JSONResponse({"ok": True, "ignored": action.action_id})
        try:
            approval_id, plan_hash = parse_decision_value(action.value)
        except ValueError as exc:
            return _refuse(400, str(exc))
        approver = svc.messenger.email_of(payload.user.id) if svc.messenger else None
        if not approver:
            return _refuse(403, "this Slack user has no email Handover knows")
        decision = "approve" if action.action_id == APPROVE_ACTION else "deny"
        try:
            outcome = record_decision(
                svc,
                approval_id,
                approver=approver,
                decision=decision,
                plan_hash=plan_hash,
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

    def extend(
        payload: BlockActions, action: SlackAction, background: BackgroundTasks
    ) -> JSONResponse:
        """Extend clicked: start an extension run (its approval goes through the gate)."""
        if extend_launcher is None:
            return JSONResponse({"ok": True, "ignored": action.action_id})
        try:
            grant_id = parse_extend_value(action.value)
        except ValueError as exc:
            return _refuse(400, str(exc))
        requester = svc.messenger.email_of(payload.user.id) if svc.messenger else None
        if not requester:
            return _refuse(403, "this Slack user has no email Handover knows")
        found = [g for g in grants(svc.ledger) if g.id == grant_id]
        if not found or found[0].status is not GrantStatus.ACTIVE:
            state = found[0].status.value if found else "unknown"
            return JSONResponse(
                {"ok": True, "started": False, "message": f"grant {grant_id} is {state}"}
            )
        params = {"grant_id": grant_id, "requester": requester}

        def start() -> None:
            try:
                extend_launcher(params)
            except Exception as exc:  # the click is answered; the person can click again
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
