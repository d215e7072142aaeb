"""Signed deliveries: what the HR and the Jira webhooks share, from the raw request to the run.

Both hooks take a delivery the same way (intake/hooks.py, intake/jira_hook.py), and only the
signature scheme, the model and the answers to a redelivery differ:

1. ``read_signed``: at most 64 KiB are read (413), an empty secret refuses every delivery
   (503), the signature is checked over the raw bytes (401, nothing written), then the body is
   parsed (400 when it is not JSON) and validated by the hook's model (422 naming each field).
2. ``claim_and_start``: the event is claimed in the ledger (``inbound_events``), once. A
   redelivery is answered by the hook; an event for later is answered 202 ``scheduled``; else
   the injected launcher starts its run, answered 202 ``started`` with the run reference, or
   503 when it could not start (the claim is forgotten, so the sender's retry starts afresh).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr, ValidationError

from approvals.services import Services
from intake.launch import Launcher, start_event
from intake.wire import MAX_BODY, invalid, read_capped, refuse, too_large
from ledger.events import SCHEDULED, STARTED, EventRecord, claim_event

M = TypeVar("M", bound=BaseModel)

HEX64 = re.compile(r"[0-9a-fA-F]{64}")
"""A hex SHA-256: only such a candidate reaches ``hmac.compare_digest`` (it takes ASCII)."""

log = logging.getLogger("handover.intake")


def hmac_hex(secret: str, data: bytes) -> str:
    """The hex HMAC-SHA256 of ``data`` under ``secret``."""
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


async def read_signed(
    request: Request,
    model: type[M],
    *,
    secret: SecretStr,
    unset: str,
    signature_header: str,
    verify: Callable[[str, str, bytes], str | None],
    what: str,
    whole: str = "body",
) -> tuple[M, bytes] | JSONResponse:
    """The delivery validated as ``model`` and its raw body, or the refusal to answer.

    Args:
        request: the delivery.
        model: what the body must be.
        secret: the shared signing secret; empty, every delivery is refused (503 ``unset``).
        unset: the message of that 503.
        signature_header: the header carrying the signature.
        verify: ``(secret, header value, raw body)`` → None when signed, else why not (401).
        what: the body's name in a 422 (``invalid <what>: …``).
        whole: the name of a problem of the body as a whole, in a 422.

    Returns:
        ``(model instance, raw body)``, or a refusal: 413, 503, 401, 400 or 422, checked in
        this order (nothing unsigned is parsed).
    """
    raw = await read_capped(request, MAX_BODY)
    if raw is None:
        return too_large()
    key = secret.get_secret_value()
    if not key:
        # An empty key would make every signature forgeable: refuse to take events at all.
        return refuse(503, unset)
    why = verify(key, request.headers.get(signature_header, ""), raw)
    if why:
        return refuse(401, why)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return refuse(400, "the body is not JSON (UTF-8)")
    try:
        return model.model_validate(data), raw
    except ValidationError as exc:
        return invalid(what, exc, whole=whole)


@dataclass(frozen=True)
class Claim:
    """An event to claim in the ledger and to start (``ledger.events.claim_event``).

    ``scheduled_at``: when its run starts (None: now). ``warnings``: said in the answers.
    """

    source: str
    event_id: str
    digest: str
    kind: str
    params: dict[str, Any]
    scheduled_at: datetime | None = None
    warnings: list[str] = field(default_factory=list)


def standing(ev: EventRecord, *, duplicate: bool, warnings: list[str]) -> dict[str, Any]:
    """How a claimed event stands, as answered to its sender."""
    out: dict[str, Any] = {"ok": True, "event_id": ev.event_id, "status": ev.status}
    if ev.status == SCHEDULED and ev.scheduled_at is not None:
        out["at"] = ev.scheduled_at.isoformat()
    elif ev.status == STARTED:
        out["run"] = ev.run_ref or None  # None: its launch is still under way
    if duplicate:
        out["duplicate"] = True
    if warnings:
        out["warnings"] = warnings
    return out


def claim_and_start(
    svc: Services,
    launcher: Launcher,
    claim: Claim,
    *,
    now: datetime,
    label: str,
    repeated: Callable[[EventRecord], JSONResponse],
    detail: str = "",
) -> JSONResponse:
    """Claim ``claim``'s event once and start its run (or leave it for its scheduled time).

    Synchronous (the ledger and the launcher may block): run it in the thread pool.

    Args:
        svc: the ledger.
        launcher: starts the run.
        claim: the event.
        now: the time of receipt.
        label: who sends it, in the log (``HR``, ``Jira``).
        repeated: the answer to a redelivery (the event was claimed before), given the
            stored event.
        detail: said after the event id in the log line of a start.

    Returns:
        ``repeated``'s answer; 202 ``scheduled`` (with ``at``) or ``started`` (with ``run``);
        503 when the launcher failed (the claim is forgotten: a retry claims it afresh).
    """
    ev, new = claim_event(
        svc.ledger,
        claim.source,
        claim.event_id,
        payload_digest=claim.digest,
        now=now,
        kind=claim.kind,
        params=claim.params,
        scheduled_at=claim.scheduled_at,
    )
    if not new:
        return repeated(ev)
    if claim.scheduled_at is not None:
        log.info(
            "%s event %s (%s) scheduled for %s",
            label,
            claim.event_id,
            claim.kind,
            claim.scheduled_at,
        )
        return JSONResponse(standing(ev, duplicate=False, warnings=claim.warnings), status_code=202)
    try:
        ref = start_event(
            svc.ledger, launcher, claim.source, claim.event_id, claim.params, forget_on_failure=True
        )
    except Exception as exc:
        # Forgotten: the sender retries on a 5xx and its retry claims the event afresh.
        log.error("%s event %s: could not start the run: %s", label, claim.event_id, exc)
        return refuse(503, "could not start the run; retry later")
    log.info("%s event %s%s started run %s", label, claim.event_id, detail, ref)
    out: dict[str, Any] = {"ok": True, "event_id": claim.event_id, "status": STARTED, "run": ref}
    if claim.warnings:
        out["warnings"] = claim.warnings
    return JSONResponse(out, status_code=202)
