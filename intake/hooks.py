"""``POST /hooks/hr``: signed HR events become offboarding runs, each event once.

Order of work, as for Slack (intake/app.py): authenticate first, then parse, then answer fast.

1. **Size**: at most 64 KiB are read (413 beyond, before the body is even parsed; a lying
   Content-Length or a chunked body is cut off while reading: intake/wire.py).
2. **Signature**: ``X-Handover-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
   HMAC-SHA256(``HANDOVER_HR_WEBHOOK_SECRET``, ``f"{t}."`` + raw body), compared in constant
   time; ``t`` within five minutes of our clock (either way). Several ``v1`` may be given
   (secret rotation); unknown schemes are ignored. Anything else is a 401 and writes nothing.
3. **Shape**: the JSON is validated by ``HrEvent`` (400 when it is not JSON, 422 listing each
   bad field by name; the input is never echoed raw). Unknown fields are ignored. The OpenAPI
   document (``/openapi.json``) carries ``HrEvent``'s JSON schema and the signature header.
4. **Once**: the event id is claimed in the ledger (``inbound_events``). A retried delivery
   (same id, same content) is answered 200 with the same run reference and starts nothing; the
   same id with different content is a 409.
5. **Start or schedule**: an effective date in the future is stored and answered 202
   ``{"status": "scheduled", "at": …}`` (the sweep, ``intake.launch.launch_due``, starts it
   then); otherwise the injected launcher starts the offboarding and we answer 202
   ``{"status": "started", "run": <reference>}``. An answer may carry ``warnings``: things
   accepted as sent that a person should look at (below).

Choices worth knowing:

- ``effective_date`` is an ISO 8601 date or date-time. A date means 00:00 UTC that day (one
  reading whatever the sender's or our zone; in the Americas that is the evening before, in
  Asia the morning of). For an exact moment, send a date-time: it
  must carry its offset (``Z``, ``+02:00``); a naive one is refused rather than guessed. An
  effective date now or past starts the run at once.
- Emails are ``domain.models.PlainEmail``: trimmed, lower-cased, only letters, digits and
  ``. _ + - '`` before the @ (no quoting, brackets, commas, semicolons, braces, backticks: the
  stuff of injection strings), and no invisible or control characters (bidi overrides,
  zero-width joiners). Look-alike *letters* (Cyrillic U+0430 for a Latin "a", fullwidth or
  accented forms) are letters: such an address is syntactically valid and accepted as
  written, and the answer's ``warnings`` names each non-ASCII character, so the sender sees
  it; the runbook matches emails exactly, so it never touches the look-alike's namesake, and
  it reports look-alike accounts.
- The content that must match for a retry is the validated event (fields we use, normalised),
  not the raw bytes: a sender that re-serialises or adds a delivery counter is still retrying.
- ``manager`` (an email, or ``{"email": …}``) becomes the run's receiver of content; the
  planner then blocks (the approver chooses) if that person cannot receive it, rather than
  silently giving the content to someone else.
- ``security_risk: true`` (a JSON boolean; ``employee.terminated`` and ``contract.ended``
  only — a role change keeps the person, so it is refused there) is HR telling us the leaver
  is a risk (the runbook seed: "immediately if security risk"). The offboarding then starts
  *now* as an emergency: reason ``security_incident``, since that is the reason the runbook
  ties to ``emergency`` (``flows.offboard.OffboardRequest`` refuses either without the other;
  the plan then locks out first, asks no pre-approval, opens a post-hoc review by security and
  transfers after), whatever the ``effective_date`` says (a warning says it was ignored). The
  event's own type is kept in the ledger. Without it (the default), HR events never start an
  emergency.
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
    StrictBool,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from starlette.concurrency import run_in_threadpool

from approvals.services import Services
from domain.models import PlainEmail, visible
from intake.deliveries import HEX64, Claim, claim_and_start, hmac_hex, read_signed, standing
from intake.launch import Launcher
from intake.wire import answers, header, inline_schema, raw_body_doc, refuse
from ledger.events import EventRecord

WINDOW_SECONDS = 300
SOURCE = "hr"
SIGNATURE_HEADER = "X-Handover-Signature"

# What each HR event type means for the offboarding runbook (domain.plan.Reason values).
REASONS: dict[str, str] = {
    "employee.terminated": "termination",
    "contract.ended": "contract_end",
    "role.changed": "role_change",
}
# Event types where HR may flag the leaver as a security risk (an emergency offboarding).
RISK_TYPES = ("employee.terminated", "contract.ended")

log = logging.getLogger("handover.intake")

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

HrEmail = Annotated[
    PlainEmail, WithJsonSchema({"type": "string", "format": "idn-email", "maxLength": 320})
]
"""An email at the HR door: a ``domain.models.PlainEmail`` (normalised, then plain)."""


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


# The schema says what a sender may send: a date or a date-time (the validator decides more).
EffectiveDate = Annotated[
    datetime | None,
    BeforeValidator(_effective_at),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date"},
                {"type": "string", "format": "date-time"},
                {"type": "null"},
            ],
            "description": "ISO 8601 date (00:00 UTC that day) or date-time with its offset",
        }
    ),
]


class HrPerson(BaseModel):
    model_config = ConfigDict(extra="ignore")
    email: HrEmail


def _manager_schema(schema: dict[str, Any]) -> None:
    # The manager may also be sent as a bare email (``HrEvent._manager_as_email``).
    schema.setdefault("anyOf", []).insert(1, {"type": "string", "format": "idn-email"})


ProjectName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(visible)]


class HrEvent(BaseModel):
    """An HR event as the HR system sends it (the fields we use; others are ignored)."""

    model_config = ConfigDict(extra="ignore")

    event_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    type: Literal["employee.terminated", "contract.ended", "role.changed"]
    employee: HrPerson
    effective_date: EffectiveDate = None
    manager: HrPerson | None = Field(None, json_schema_extra=_manager_schema)
    keep_projects: list[ProjectName] = Field(default_factory=list, max_length=50)
    # ASCII digits: a regex \d would take Arabic-Indic or fullwidth digits too.
    ticket: str | None = Field(None, max_length=64, pattern=r"^([A-Z][A-Z0-9]+-[0-9]+)?$")
    security_risk: StrictBool = False

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
        if self.security_risk and self.type not in RISK_TYPES:
            raise ValueError(
                f"security_risk only applies to {' and '.join(RISK_TYPES)} (a role change "
                "keeps the person; a security engineer starts an emergency offboarding)"
            )
        return self

    @property
    def reason(self) -> str:
        # The offboarding runbook's emergency reason: it is what locks out first.
        return "security_incident" if self.security_risk else REASONS[self.type]

    def flow_params(self) -> dict[str, Any]:
        """The offboarding flow's parameters (``flows.offboard.offboard``) for this event."""
        return {
            "email": self.employee.email,
            "reason": self.reason,
            "emergency": self.security_risk,
            "ticket": self.ticket or "",
            "receiver": self.manager.email if self.manager else None,
            "keep_projects": list(self.keep_projects),
            "requester": f"hr-system:{self.event_id}",
        }

    def warnings(self) -> list[str]:
        """What was accepted as sent but deserves a person's look."""
        out = [w for w in (_non_ascii("employee.email", self.employee.email),) if w]
        if self.manager:
            out += [w for w in (_non_ascii("manager.email", self.manager.email),) if w]
        if self.security_risk and self.effective_date is not None:
            out.append(
                f"security_risk: effective_date {self.effective_date.isoformat()} ignored; "
                "the emergency offboarding starts now"
            )
        return out

    def digest(self) -> str:
        """What must match for a redelivery to count as the same event (normalised)."""
        # security_risk is left out when false, so events stored before the field existed
        # keep their digest (a retry of one is still a retry).
        skip = None if self.security_risk else {"security_risk"}
        data = self.model_dump(mode="json", exclude=skip)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _non_ascii(field: str, email: str) -> str | None:
    """A warning naming the non-ASCII characters of ``email`` (look-alikes), or None."""
    odd = sorted({c for c in email if not c.isascii()})
    if not odd:
        return None
    names = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, '?')}" for c in odd[:5])
    more = f" and {len(odd) - 5} more" if len(odd) > 5 else ""
    return (
        f"{field} {email!a} is not plain ASCII ({names}{more}): it is matched exactly as "
        "written, never as the address it may look like"
    )


def sign_hr(secret: str, body: bytes, t: int | None = None) -> dict[str, str]:
    """The headers of a signed HR webhook delivery of ``body`` at unix time ``t`` (default now).

    For tests, the demo and ``handover sandbox`` tooling: what an HR system configured with
    ``secret`` sends.
    """
    ts = int(time.time()) if t is None else int(t)
    mac = hmac_hex(secret, f"{ts}.".encode() + body)
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
    expected = hmac_hex(secret, f"{ts}.".encode() + body)
    # Only well-formed candidates reach compare_digest (it takes ASCII), at most a few of them.
    candidates = [m.lower() for m in macs[:5] if HEX64.fullmatch(m)]
    if not any(hmac.compare_digest(expected, m) for m in candidates):
        return "signature does not match (HMAC-SHA256 of '<t>.' + the raw body)"
    if abs(now - int(ts)) > WINDOW_SECONDS:
        return "signature timestamp outside the 5-minute window (clock skew, or a replay)"
    return None


class HrAnswer(BaseModel):
    """How an HR event stands, as answered to the sender (200 for a redelivery, else 202)."""

    ok: Literal[True]
    event_id: str
    status: Literal["started", "scheduled", "cancelled"]
    run: str | None = Field(None, description="the run's reference; null while it is launched")
    at: datetime | None = Field(None, description="when a scheduled event starts")
    duplicate: bool = Field(False, description="true: this event was received before")
    warnings: list[str] = Field(default_factory=list)


_OPENAPI = raw_body_doc(
    schema=inline_schema(HrEvent),
    headers=[
        header(
            SIGNATURE_HEADER,
            "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, '<t>.' + raw body)>; 5-minute window",
        )
    ],
)
_ANSWERS = answers(
    {
        200: (HrAnswer, "a redelivery of an event already received: how it stands"),
        202: (HrAnswer, "started (a run reference) or scheduled (its effective date)"),
    },
    {
        400: "the body is not JSON",
        401: "unsigned, badly signed, or outside the 5-minute window: nothing is written",
        409: "this event_id was received before with other content",
        413: "body over 64 KiB",
        422: "the event is invalid; each bad field is named",
        503: "the secret is not configured, or the run could not be started (retry)",
    },
)


def accept_event(
    svc: Services,
    launcher: Launcher,
    event: HrEvent,
    *,
    same_id_is_retry: bool = False,
    detail: str = "",
) -> JSONResponse:
    """Claim ``event`` once and start (or schedule) its offboarding: the generic route's and
    every HR vendor adapter's last step (intake/hr_vendors.py). Synchronous: thread pool.

    ``same_id_is_retry``: a repeated event id is a redelivery whatever its content (vendor
    adapters, whose ids are derived from the event: a later read may differ), not a 409.
    """
    now = svc.clock()
    at = event.effective_date
    # A security risk is locked out now, whatever date HR gave.
    later = at is not None and at > now and not event.security_risk
    claim = Claim(
        source=SOURCE,
        event_id=event.event_id,
        digest=event.digest(),
        kind=event.type,
        params=event.flow_params(),
        scheduled_at=at if later else None,
        warnings=event.warnings(),
    )

    def repeated(ev: EventRecord) -> JSONResponse:
        if ev.payload_digest != claim.digest and not same_id_is_retry:
            return refuse(
                409,
                f"event {event.event_id} was already received with different content; "
                "a new event needs a new event_id",
            )
        return JSONResponse(standing(ev, duplicate=True, warnings=claim.warnings), status_code=200)

    risk = ", security risk: emergency" if event.security_risk else ""
    return claim_and_start(
        svc,
        launcher,
        claim,
        now=now,
        label="HR",
        repeated=repeated,
        detail=detail or f" ({event.type}{risk})",
    )


def hr_router(svc: Services, launcher: Launcher) -> APIRouter:
    """The ``POST /hooks/hr`` route over ``svc``; runs are started through ``launcher``."""
    router = APIRouter()

    @router.post("/hooks/hr", openapi_extra=_OPENAPI, responses=_ANSWERS)
    async def hr_hook(request: Request) -> JSONResponse:
        """An HR event (``HrEvent``), signed: starts or schedules one offboarding, once."""
        got = await read_signed(
            request,
            HrEvent,
            secret=svc.settings.hr_webhook_secret,
            unset="the HR webhook secret is not configured",
            signature_header=SIGNATURE_HEADER,
            verify=lambda key, given, raw: check_signature(
                key, given, raw, now=svc.clock().timestamp()
            ),
            what="HR event",
            whole="event",
        )
        if isinstance(got, JSONResponse):
            return got
        event, _ = got
        return await run_in_threadpool(accept_event, svc, launcher, event)

    return router
