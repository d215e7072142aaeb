"""``POST /hooks/jira``: signed Jira webhooks about Access Request tickets become onboarding runs.

Order of work, as for the HR hook (intake/hooks.py): authenticate first, then parse, then answer.

1. **Size**: at most 64 KiB are read (413 beyond).
2. **Signature**: ``X-Hub-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw body with
   ``HANDOVER_JIRA_WEBHOOK_SECRET`` (Jira's own webhook signing), compared in constant time;
   anything else is a 401 and writes nothing. An empty secret refuses every delivery (503).
3. **Shape**: JSON with ``webhookEvent`` and ``issue.key`` (400 otherwise). Only
   ``jira:issue_created`` / ``jira:issue_updated`` of issue type "Access Request" start a run;
   anything else is answered 200 ``{"ignored": …}``.
4. **Once**: the delivery is claimed in the ledger (source ``jira``) under the
   ``X-Atlassian-Webhook-Identifier`` header when Jira sends one, else
   ``<issue key>:<webhookEvent>:<timestamp>``; a redelivery is answered 200 and starts nothing.
5. **Start**: the injected launcher starts ``onboard(ticket=KEY)``; 202 ``{"run": <reference>}``.
   The runbook reads the ticket itself (the webhook body is not trusted for the request) and
   does nothing twice for a ticket it already handled, so the ``issue_updated`` its own comment
   and transition cause is harmless.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from approvals.services import Services
from intake.launch import Launcher, start_event
from ledger.events import STARTED, claim_event

MAX_BODY = 64 * 1024
SOURCE = "jira"
SIGNATURE_HEADER = "X-Hub-Signature"
DELIVERY_HEADER = "X-Atlassian-Webhook-Identifier"
ACCESS_REQUEST = "access request"
EVENTS = {"jira:issue_created", "jira:issue_updated"}

log = logging.getLogger("handover.intake")


def sign_jira(secret: str, body: bytes) -> dict[str, str]:
    """The headers of a signed Jira webhook delivery of ``body`` (tests, the demo)."""
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {SIGNATURE_HEADER: f"sha256={mac}", "Content-Type": "application/json"}


def check_jira_signature(secret: str, header: str, body: bytes) -> str | None:
    """None when ``header`` signs ``body``; else why not."""
    if not header:
        return f"missing {SIGNATURE_HEADER} header"
    scheme, sep, given = header.strip().partition("=")
    if not sep or scheme.lower() != "sha256":
        return f"{SIGNATURE_HEADER} must be sha256=<hex>"
    want = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, given.strip().lower()):
        return "invalid signature"
    return None


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is longer than ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _issue_type(issue: dict[str, Any]) -> str:
    fields = issue.get("fields") or {}
    kind = fields.get("issuetype") if isinstance(fields, dict) else None
    name = kind.get("name") if isinstance(kind, dict) else kind
    return str(name or "")


def jira_router(svc: Services, launcher: Launcher) -> APIRouter:
    """The ``POST /hooks/jira`` route over ``svc``; runs are started through ``launcher``."""
    router = APIRouter()

    def accept(key: str, event: str, event_id: str, digest: str) -> JSONResponse:
        params = {"ticket": key}
        ev, new = claim_event(
            svc.ledger,
            SOURCE,
            event_id,
            payload_digest=digest,
            now=svc.clock(),
            kind=event,
            params=params,
        )
        if not new:
            return JSONResponse(
                {"ok": True, "event_id": event_id, "duplicate": True, "run": ev.run_ref or None}
            )
        try:
            ref = start_event(
                svc.ledger, launcher, SOURCE, event_id, params, forget_on_failure=True
            )
        except Exception as exc:
            log.error("Jira event %s: could not start the run: %s", event_id, exc)
            return _refuse(503, "could not start the run; retry later")
        log.info("Jira event %s (%s %s) started run %s", event_id, event, key, ref)
        return JSONResponse(
            {"ok": True, "event_id": event_id, "status": STARTED, "run": ref}, status_code=202
        )

    @router.post("/hooks/jira")
    async def jira_hook(request: Request) -> JSONResponse:
        raw = await _read_capped(request, MAX_BODY)
        if raw is None:
            return _refuse(413, f"request body too large (at most {MAX_BODY} bytes)")
        secret = svc.settings.jira_webhook_secret.get_secret_value()
        if not secret:
            return _refuse(503, "the Jira webhook secret is not configured")
        why = check_jira_signature(secret, request.headers.get(SIGNATURE_HEADER, ""), raw)
        if why:
            return _refuse(401, why)
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return _refuse(400, "the body is not JSON (UTF-8)")
        if not isinstance(data, dict):
            return _refuse(400, "expected a JSON object")
        event = str(data.get("webhookEvent") or "")
        issue = data.get("issue")
        key = issue.get("key") if isinstance(issue, dict) else None
        if not event or not isinstance(key, str) or not key:
            return _refuse(400, "expected webhookEvent and issue.key")
        if len(key) > 64 or not key.replace("-", "").isalnum():
            return _refuse(400, "issue.key is not a Jira key")
        if event not in EVENTS or _issue_type(issue).casefold() != ACCESS_REQUEST:  # type: ignore[arg-type]
            return JSONResponse({"ok": True, "ignored": event or "event"})
        delivery = request.headers.get(DELIVERY_HEADER, "").strip()[:128]
        event_id = delivery or f"{key}:{event}:{data.get('timestamp', '')}"
        digest = hashlib.sha256(raw).hexdigest()
        return await run_in_threadpool(accept, key, event, event_id, digest)

    return router
