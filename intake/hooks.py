"""``POST /hooks/hr``: signed HR events become offboarding runs, each event once.

Order of work, as for Slack (intake/app.py): authenticate first, then parse, then answer fast.

1. **Size**: at most 64 KiB are read (413 beyond, before the body is even parsed).
2. **Signature**: ``X-Handover-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
   HMAC-SHA256(``HANDOVER_HR_WEBHOOK_SECRET``, ``f"{t}."`` + raw body), compared in constant
   time; ``t`` within five minutes of our clock (either way). Several ``v1`` may be given
   (secret rotation); unknown schemes are ignored. Anything else is a 401 and writes nothing.
3. **Shape**: the JSON is validated by ``HrEvent`` (400 when it is not JSON, 422 listing each
   bad field). Unknown fields are ignored.
4. **Once**: the event id is claimed in the ledger (``inbound_events``). A retried delivery
   (same id, same content) is answered 200 with the same run reference and starts nothing; the
   same id with different content is a 409.
5. **Start or schedule**: an effective date in the future is stored and answered 202
   ``{"status": "scheduled", "at": …}`` (the sweep, ``intake.launch.launch_due``, starts it
   then); otherwise the injected launcher starts the offboarding and we answer 202
   ``{"status": "started", "run": <reference>}``.

Choices worth knowing:

- ``effective_date`` is an ISO 8601 date or date-time. A date means 00:00 UTC that day (one
  reading whatever the sender's or our zone; in the Americas that is the evening before, in
  Asia the morning of). For an exact moment, send a date-time: it
  must carry its offset (``Z``, ``+02:00``); a naive one is refused rather than guessed. An
  effective date now or past starts the run at once.
- Emails are those of ``domain.models.Email`` (trimmed, lower-cased) and, at this door, also
  *plain*: no quoting, brackets, commas, semicolons, and no invisible or control characters
  (bidi overrides, zero-width joiners). Look-alike *letters* (Cyrillic U+0430 for a Latin "a")
  are letters: such an address is syntactically valid and accepted as written; the runbook
  matches emails exactly, so it never touches the look-alike's namesake, and it reports
  look-alike accounts.
- The content that must match for a retry is the validated event (fields we use, normalised),
  not the raw bytes: a sender that re-serialises or adds a delivery counter is still retrying.
- ``manager`` (an email, or ``{"email": …}``) becomes the run's receiver of content; the
  planner then blocks (the approver chooses) if that person cannot receive it, rather than
  silently giving the content to someone else.
- HR events never start an emergency offboarding: that is a security engineer's call.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
import unicodedata
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from starlette.concurrency import run_in_threadpool

from approvals.services import Services
from domain.models import Email
from intake.launch import Launcher, start_event
from ledger.events import SCHEDULED, STARTED, EventRecord, claim_event

MAX_BODY = 64 * 1024
WINDOW_SECONDS = 300
SOURCE = "hr"
SIGNATURE_HEADER = "X-Handover-Signature"

# What each HR event type means for the offboarding runbook (domain.plan.Reason values).
REASONS: dict[str, str] = {
    "employee.terminated": "termination",
    "contract.ended": "contract_end",
    "role.changed": "role_change",
}

log = logging.getLogger("handover.intake")

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Specials that are only legal inside a quoted local part (RFC 5322); we take none of them.
_SPECIALS = set('"(),:;<>[\\]')
_LABEL = re.compile(r"[^\W_]+(?:-+[^\W_]+)*")  # letters (any script) and digits, inner hyphens


def _visible(value: str) -> str:
    """Refuse control, format (bidi, zero-width), private-use and unassigned characters."""
    bad = [c for c in value if unicodedata.category(c).startswith("C")]
    if bad:
        names = ", ".join(sorted({f"U+{ord(c):04X}" for c in bad})[:5])
        raise ValueError(f"contains invisible or control characters ({names})")
    return value


def _plain_email(value: str) -> str:
    _visible(value)
    local, _, domain = value.partition("@")
    if any(c in _SPECIALS for c in local) or not all(
        _LABEL.fullmatch(label) and len(label) <= 63 for label in domain.split(".")
    ):
        raise ValueError(
            f"{value[:100]!r} is not a plain email address (no quotes, brackets, commas, "
            "semicolons or colons; domain labels of letters, digits and hyphens)"
        )
    return value


HrEmail = Annotated[Email, AfterValidator(_plain_email)]
"""An email at the HR door: a ``domain.models.Email`` (normalised first), and plain."""


def _effective_at(value: Any) -> datetime | None:
    """An ISO date (00:00 UTC that day) or an ISO date-time with an offset, as aware UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 date (2025-03-31) or date-time with an offset")
    v = value.strip()
    try:
        if _DATE.fullmatch(v):
            d = date.fromisoformat(v)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        at = datetime.fromisoformat(v)
    except ValueError:
        raise ValueError(
            f"{v[:40]!r} is not an ISO 8601 date (2025-03-31) or date-time (2025-03-31T17:00:00Z)"
        ) from None
    if at.tzinfo is None:
        raise ValueError("a date-time needs its offset (Z or +02:00): it is not guessed")
    try:
        return at.astimezone(UTC)
    except OverflowError:  # at the very edges of year 1 and year 9999
        raise ValueError(f"{v[:40]!r} is out of range") from None


class HrPerson(BaseModel):
    model_config = ConfigDict(extra="ignore")
    email: HrEmail


ProjectName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_visible)]


class HrEvent(BaseModel):
    """An HR event as the HR system sends it (the fields we use; others are ignored)."""

    model_config = ConfigDict(extra="ignore")

    event_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    type: Literal["employee.terminated", "contract.ended", "role.changed"]
    employee: HrPerson
    effective_date: Annotated[datetime | None, BeforeValidator(_effective_at)] = None
    manager: HrPerson | None = None
    keep_projects: list[ProjectName] = Field(default_factory=list, max_length=50)
    ticket: str | None = Field(None, max_length=64, pattern=r"^([A-Z][A-Z0-9]+-\d+)?$")

    @field_validator("manager", mode="before")
    @classmethod
    def _manager_as_email(cls, v: Any) -> Any:
        return {"email": v} if isinstance(v, str) else v

    @field_validator("keep_projects")
    @classmethod
    def _strip(cls, v: list[str]) -> list[str]:
        out = [p.strip() for p in v]
        if not all(out):
            raise ValueError("project names must not be blank")
        return out

    @model_validator(mode="after")
    def _consistent(self) -> HrEvent:
        # The runbook refuses these too, but after the 202: say it to the sender instead.
        if self.keep_projects and self.type != "role.changed":
            raise ValueError("keep_projects only applies to type role.changed")
        if self.manager and self.manager.email == self.employee.email:
            raise ValueError("the manager cannot be the employee who leaves")
        return self

    @property
    def reason(self) -> str:
        return REASONS[self.type]

    def flow_params(self) -> dict[str, Any]:
        """The offboarding flow's parameters (``flows.offboard.offboard``) for this event."""
        return {
            "email": self.employee.email,
            "reason": self.reason,
            "ticket": self.ticket or "",
            "receiver": self.manager.email if self.manager else None,
            "keep_projects": list(self.keep_projects),
            "requester": f"hr-system:{self.event_id}",
        }

    def digest(self) -> str:
        """What must match for a redelivery to count as the same event (normalised)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def sign_hr(secret: str, body: bytes, t: int | None = None) -> dict[str, str]:
    """The headers of a signed HR webhook delivery of ``body`` at unix time ``t`` (default now).

    For tests, the demo and ``handover sandbox`` tooling: what an HR system configured with
    ``secret`` sends.
    """
    ts = int(time.time()) if t is None else int(t)
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {SIGNATURE_HEADER: f"t={ts},v1={mac}", "Content-Type": "application/json"}


def check_signature(secret: str, header: str, body: bytes, *, now: float) -> str | None:
    """None when ``header`` signs ``body`` within the window at ``now``; else why not."""
    if not header:
        return f"missing {SIGNATURE_HEADER} header"
    stamps: list[str] = []
    macs: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            stamps = []
            break
        if key == "t":
            stamps.append(value)
        elif key == "v1":
            macs.append(value)
    if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit() or not macs:
        return (
            f"malformed {SIGNATURE_HEADER} header: expected "
            "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.' + body>"
        )
    ts = stamps[0][:20]
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    # Only well-formed candidates reach compare_digest (it takes ASCII), at most a few of them.
    candidates = [m.lower() for m in macs[:5] if _HEX64.fullmatch(m)]
    if not any(hmac.compare_digest(expected, m) for m in candidates):
        return "signature does not match (HMAC-SHA256 of '<t>.' + the raw body)"
    if abs(now - int(ts)) > WINDOW_SECONDS:
        return "signature timestamp outside the 5-minute window (clock skew, or a replay)"
    return None


def _refuse(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message, **extra}, status_code=status)


def _explain(exc: ValidationError) -> list[dict[str, str]]:
    """Each bad field and what is wrong with it, in words a sender's engineer can act on."""
    out = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(p) for p in err["loc"]) or "event"
        out.append({"field": field, "message": err["msg"].removeprefix("Value error, ")})
    return out


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The raw body, or None when it is larger than ``limit`` (never read past it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            return None
    return bytes(buf)


def _state(ev: EventRecord, *, duplicate: bool) -> dict[str, Any]:
    """How an event stands, as answered to the sender."""
    out: dict[str, Any] = {"ok": True, "event_id": ev.event_id, "status": ev.status}
    if ev.status == SCHEDULED and ev.scheduled_at is not None:
        out["at"] = ev.scheduled_at.isoformat()
    elif ev.status == STARTED:
        out["run"] = ev.run_ref or None  # None: its launch is still under way
    if duplicate:
        out["duplicate"] = True
    return out


def hr_router(svc: Services, launcher: Launcher) -> APIRouter:
    """The ``POST /hooks/hr`` route over ``svc``; runs are started through ``launcher``."""
    router = APIRouter()

    def accept(event: HrEvent) -> JSONResponse:
        # Synchronous (ledger and launcher may block): run in the thread pool.
        now = svc.clock()
        at = event.effective_date
        later = at is not None and at > now
        params = event.flow_params()
        ev, new = claim_event(
            svc.ledger,
            SOURCE,
            event.event_id,
            payload_digest=event.digest(),
            now=now,
            kind=event.type,
            params=params,
            scheduled_at=at if later else None,
        )
        if not new:
            if ev.payload_digest != event.digest():
                return _refuse(
                    409,
                    f"event {event.event_id} was already received with different content; "
                    "a new event needs a new event_id",
                )
            return JSONResponse(_state(ev, duplicate=True), status_code=200)
        if later:
            log.info("HR event %s (%s) scheduled for %s", event.event_id, event.type, at)
            return JSONResponse(_state(ev, duplicate=False), status_code=202)
        try:
            ref = start_event(
                svc.ledger, launcher, SOURCE, event.event_id, params, forget_on_failure=True
            )
        except Exception as exc:
            # Forgotten: the sender retries on a 5xx and its retry claims the event afresh.
            log.error("HR event %s: could not start the run: %s", event.event_id, exc)
            return _refuse(503, "could not start the run; retry later")
        log.info("HR event %s (%s) started run %s", event.event_id, event.type, ref)
        return JSONResponse(
            {"ok": True, "event_id": event.event_id, "status": STARTED, "run": ref},
            status_code=202,
        )

    @router.post("/hooks/hr")
    async def hr_hook(request: Request) -> JSONResponse:
        raw = await _read_capped(request, MAX_BODY)
        if raw is None:
            return _refuse(413, f"request body too large (at most {MAX_BODY} bytes)")
        secret = svc.settings.hr_webhook_secret.get_secret_value()
        if not secret:
            # An empty key would make every signature forgeable: refuse to take events at all.
            return _refuse(503, "the HR webhook secret is not configured")
        why = check_signature(
            secret, request.headers.get(SIGNATURE_HEADER, ""), raw, now=svc.clock().timestamp()
        )
        if why:
            return _refuse(401, why)
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return _refuse(400, "the body is not JSON (UTF-8)")
        try:
            event = HrEvent.model_validate(data)
        except ValidationError as exc:
            problems = _explain(exc)
            summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            return _refuse(422, f"invalid HR event: {summary}", fields=problems)
        return await run_in_threadpool(accept, event)

    return router
