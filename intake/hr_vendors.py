"""The HR vendors' own webhooks: ``POST /hooks/hr/hibob``, ``/hooks/hr/bamboohr``,
``/hooks/hr/personio``, ``/hooks/hr/merge``. Each is verified in its vendor's documented scheme,
mapped onto the generic :class:`intake.hooks.HrEvent` and started like the generic route's
events (``intake.hooks.accept_event``: claimed once in the ledger, scheduled when its effective
date is ahead, an emergency when HR says "revoke access now").

Order of work, as for the generic route: at most 64 KiB read (413); a vendor whose secret is
empty is not configured and every delivery is refused (503); the signature (401, nothing
written); the body (400 not JSON, 422 not the vendor's shape); then the event.

Each vendor, as its documentation says (fixtures: tests/intake/fixtures/hr/):

- **HiBob** (Webhooks v2): ``Bob-Signature`` = base64(HMAC-SHA512(secret, raw body)). No
  timestamp, so no window: a replayed body is the same event and is answered as a redelivery
  (200, nothing started). ``employee.left`` is sent at midnight of the termination's effective
  date → a termination starting now; ``employee.access.revoked.immediately`` ("Revoke access
  immediately" in a termination flow, sent as soon as the flow is approved) → the emergency
  offboarding (reason ``security_incident``, as the generic route's ``security_risk``). The
  payload names only ``data.employeeId``: the email and manager are read from HiBob's API
  (``HANDOVER_HR_API=hibob``). Bob's connection test ("Ping test") is answered 200.
- **BambooHR** (event-based): ``X-BambooHR-Signature`` = hex HMAC-SHA256(private key, raw body
  followed by ``X-BambooHR-Timestamp``), the timestamp (unix seconds) within five minutes, and a
  (timestamp, signature) pair accepted once: a replay is 401. ``employee.updated`` carries only
  ``data.employeeId`` and ``changedFields``; when those include the employment status or the
  termination date, the employee is read from BambooHR's API (``HANDOVER_HR_API=bamboohr``) and a
  terminated one is offboarded at ``terminationDate`` (scheduled while it is ahead).
- **Personio** (v2): no signature; the webhook's token is sent as the whole ``Authorization``
  header and compared as is. No timestamp: a replay is a redelivery. ``employment.terminated``
  is sent on the termination date → a termination starting now; the payload is "dataless"
  (ids only), the person is read from Personio's Persons API (``HANDOVER_HR_API=personio``).
- **Merge HRIS**: ``X-Merge-Webhook-Signature`` = base64url(HMAC-SHA256(webhook key, raw
  body)). No timestamp: a replay is a redelivery. ``Employee.changed`` (and ``employee.updated``)
  carries the whole Employee: ``employment_status`` ``INACTIVE`` or a ``termination_date`` is a
  leaver, offboarded at that date (scheduled while it is ahead).

Event ids (the ledger's de-duplication key) are derived from what the event says: for BambooHR
and Merge the employee and the termination date (one leaver, one run, however many updates say
it), for HiBob and Personio a digest of the body (their retries resend it). Any other event type,
or an update that is not a termination, is answered 200 ``ignored`` and writes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from approvals.services import Services
from domain.models import HrEmployee, RosterStatus
from intake.hooks import HrEvent, accept_event
from intake.launch import Launcher
from intake.wire import (
    MAX_BODY,
    answers,
    header,
    inline_schema,
    invalid,
    raw_body_doc,
    read_capped,
    refuse,
    too_large,
)
from ledger.replay import first_time

log = logging.getLogger("handover.intake")

WINDOW_SECONDS = 300  # BambooHR's timestamp: five minutes either way
HIBOB_HEADER = "Bob-Signature"
BAMBOO_SIGNATURE = "X-BambooHR-Signature"
BAMBOO_TIMESTAMP = "X-BambooHR-Timestamp"
MERGE_HEADER = "X-Merge-Webhook-Signature"
# BambooHR fields whose change may be a termination (API aliases, as in changedFields).
BAMBOO_TERMINATION_FIELDS = {"employmentHistoryStatus", "terminationDate", "status"}
MERGE_EVENTS = {"employee.changed", "hris.employee.changed", "employee.updated"}


# ------------------------------------------------------------------------ vendors' payloads
class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class HibobData(_Loose):
    employeeId: str = Field(min_length=1, max_length=64, coerce_numbers_to_str=True)


class HibobEvent(_Loose):
    """A HiBob Webhooks v2 event (the fields read)."""

    companyId: int | str
    type: str = Field(max_length=100)
    triggeredAt: str = Field("", max_length=64)
    version: str = Field("", max_length=16)
    data: HibobData


class BambooData(_Loose):
    employeeId: str = Field(min_length=1, max_length=64, coerce_numbers_to_str=True)
    changedFields: list[str] = Field(default_factory=list, max_length=200)


class BambooEvent(_Loose):
    """A BambooHR event-based webhook (the fields read)."""

    type: str = Field(max_length=100)
    timestamp: str = Field("", max_length=64)
    data: BambooData


class PersonioEvent(_Loose):
    """A Personio v2 webhook: its documented envelope (the payload holds ids only)."""

    company_id: int | str
    event_name: str = Field(max_length=100)
    occurred_at: str = Field(max_length=64)
    payload: dict[str, Any]

    def person_id(self) -> str:
        person = self.payload.get("person")
        found = person.get("id") if isinstance(person, dict) else None
        found = found or self.payload.get("person_id") or self.payload.get("id")
        return str(found) if isinstance(found, str | int) and str(found) else ""


class MergeHook(_Loose):
    event: str = Field(max_length=100)


class MergeEmployee(_Loose):
    id: str = Field(min_length=1, max_length=64)
    work_email: str | None = None
    manager: str | dict[str, Any] | None = None
    employment_status: str | None = None
    termination_date: str | None = None


class MergeEvent(_Loose):
    """A Merge "changed data" webhook on an Employee (the fields read)."""

    hook: MergeHook
    data: MergeEmployee


# ------------------------------------------------------------------------------- signatures
def _hmac(secret: str, data: bytes, algo: Callable[..., Any]) -> bytes:
    return hmac.new(secret.encode(), data, algo).digest()


def sign_hibob(secret: str, body: bytes) -> dict[str, str]:
    """The headers HiBob sends with ``body`` (for tests and the demo)."""
    mac = base64.b64encode(_hmac(secret, body, hashlib.sha512)).decode()
    return {HIBOB_HEADER: mac, "Content-Type": "application/json"}


def sign_bamboohr(secret: str, body: bytes, t: int) -> dict[str, str]:
    """The headers BambooHR sends with ``body`` at unix time ``t``."""
    mac = hmac.new(secret.encode(), body + str(t).encode(), hashlib.sha256).hexdigest()
    return {BAMBOO_SIGNATURE: mac, BAMBOO_TIMESTAMP: str(t), "Content-Type": "application/json"}


def personio_headers(token: str) -> dict[str, str]:
    """The headers Personio sends for a webhook configured with ``token``."""
    return {"Authorization": token, "Content-Type": "application/json"}


def sign_merge(key: str, body: bytes) -> dict[str, str]:
    """The headers Merge sends with ``body``."""
    mac = base64.urlsafe_b64encode(_hmac(key, body, hashlib.sha256)).decode()
    return {MERGE_HEADER: mac, "Content-Type": "application/json"}


def _same(expected: str, given: str) -> bool:
    # compare_digest takes ASCII strings only: anything else is simply not the signature.
    return given.isascii() and hmac.compare_digest(expected, given.strip())


def check_hibob(secret: str, headers: Headers, raw: bytes, now: float) -> str | None:
    given = headers.get(HIBOB_HEADER, "")
    if not given:
        return f"missing {HIBOB_HEADER} header"
    if not _same(sign_hibob(secret, raw)[HIBOB_HEADER], given):
        return "signature does not match (base64 HMAC-SHA512 of the raw body)"
    return None


def check_bamboohr(secret: str, headers: Headers, raw: bytes, now: float) -> str | None:
    sig, ts = headers.get(BAMBOO_SIGNATURE, ""), headers.get(BAMBOO_TIMESTAMP, "")
    if not sig or not ts:
        return f"missing {BAMBOO_SIGNATURE} or {BAMBOO_TIMESTAMP} header"
    if not (ts.isascii() and ts.isdigit() and len(ts) <= 20):
        return f"malformed {BAMBOO_TIMESTAMP}: expected unix seconds"
    if not _same(sign_bamboohr(secret, raw, int(ts))[BAMBOO_SIGNATURE], sig.lower()):
        return "signature does not match (hex HMAC-SHA256 of the raw body + the timestamp)"
    if abs(now - int(ts)) > WINDOW_SECONDS:
        return "signature timestamp outside the 5-minute window (clock skew, or a replay)"
    return None


def check_personio(secret: str, headers: Headers, raw: bytes, now: float) -> str | None:
    given = headers.get("authorization", "")
    if not given:
        return "missing Authorization header (the webhook's token)"
    if not _same(secret, given):
        return "the Authorization header is not the webhook's token"
    return None


def check_merge(secret: str, headers: Headers, raw: bytes, now: float) -> str | None:
    given = headers.get(MERGE_HEADER, "")
    if not given:
        return f"missing {MERGE_HEADER} header"
    expected = sign_merge(secret, raw)[MERGE_HEADER]
    # Padding is optional in base64url: compare without it.
    if not _same(expected.rstrip("="), given.strip().rstrip("=")):
        return "signature does not match (base64url HMAC-SHA256 of the raw body)"
    return None


# ------------------------------------------------------------------------------- the mapping
@dataclass(frozen=True)
class Leaver:
    """What a vendor event says: who leaves (an email, or an id to read), when, how urgently."""

    event_id: str
    vendor_type: str
    employee_id: str = ""
    email: str = ""
    manager: str = ""
    effective: str | None = None
    revoke_now: bool = False
    # Read the employee, then keep the event only if HR says they are terminated.
    only_if_terminated: bool = False
    use_end_date: bool = False


def _digest(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:40]


def map_hibob(ev: HibobEvent, data: Any) -> Leaver | str:
    if ev.type not in ("employee.left", "employee.access.revoked.immediately"):
        return f"HiBob event {ev.type[:60]!r} is not a termination"
    return Leaver(
        event_id=f"hibob:{_digest(data)}",
        vendor_type=ev.type,
        employee_id=ev.data.employeeId,
        revoke_now=ev.type == "employee.access.revoked.immediately",
    )


def map_bamboohr(ev: BambooEvent, data: Any) -> Leaver | str:
    if ev.type != "employee.updated":
        return f"BambooHR event {ev.type[:60]!r} is not a termination"
    if not BAMBOO_TERMINATION_FIELDS & set(ev.data.changedFields):
        return "no employment status or termination date among the changed fields"
    return Leaver(
        event_id="",  # from the read: the employee and their termination date
        vendor_type=ev.type,
        employee_id=ev.data.employeeId,
        only_if_terminated=True,
        use_end_date=True,
    )


def map_personio(ev: PersonioEvent, data: Any) -> Leaver | str:
    if ev.event_name != "employment.terminated":
        return f"Personio event {ev.event_name[:60]!r} is not a termination"
    person = ev.person_id()
    if not person:
        return "employment.terminated without a person id"
    return Leaver(
        event_id=f"personio:{_digest(data)}", vendor_type=ev.event_name, employee_id=person
    )


def map_merge(ev: MergeEvent, data: Any) -> Leaver | str:
    if ev.hook.event.lower() not in MERGE_EVENTS:
        return f"Merge event {ev.hook.event[:60]!r} is not an employee change"
    emp = ev.data
    end = (emp.termination_date or "")[:10] or None
    if (emp.employment_status or "").upper() != "INACTIVE" and end is None:
        return "the employee is not terminated (employment_status, termination_date)"
    boss = emp.manager
    return Leaver(
        event_id=f"merge:{emp.id}:terminated:{end or 'now'}",
        vendor_type=ev.hook.event,
        employee_id="" if emp.work_email else emp.id,
        email=emp.work_email or "",
        manager=str(boss.get("work_email") or "") if isinstance(boss, dict) else "",
        effective=end,
    )


@dataclass(frozen=True)
class Vendor:
    """One HR vendor's door: its secret setting, check, payload model and mapping."""

    name: str
    label: str
    secret: str  # the Settings attribute
    header: str
    scheme: str
    check: Callable[[str, Headers, bytes, float], str | None]
    model: type[BaseModel]
    mapper: Callable[[Any, Any], Leaver | str]
    replay_once: bool = False


VENDORS = (
    Vendor(
        "hibob",
        "HiBob",
        "hr_hibob_secret",
        HIBOB_HEADER,
        "base64(HMAC-SHA512(secret, raw body))",
        check_hibob,
        HibobEvent,
        map_hibob,
    ),
    Vendor(
        "bamboohr",
        "BambooHR",
        "hr_bamboohr_secret",
        BAMBOO_SIGNATURE,
        "hex HMAC-SHA256(key, raw body + X-BambooHR-Timestamp); 5-minute window; once",
        check_bamboohr,
        BambooEvent,
        map_bamboohr,
        replay_once=True,
    ),
    Vendor(
        "personio",
        "Personio",
        "hr_personio_token",
        "Authorization",
        "the webhook's token, exactly",
        check_personio,
        PersonioEvent,
        map_personio,
    ),
    Vendor(
        "merge",
        "Merge",
        "hr_merge_key",
        MERGE_HEADER,
        "base64url(HMAC-SHA256(webhook key, raw body))",
        check_merge,
        MergeEvent,
        map_merge,
    ),
)


def _is_ping(raw: bytes) -> bool:
    """Bob's connection test: the text ``Ping test``, or ``{"text": "Ping test"}``."""
    text = raw.strip()
    return text in (b"Ping test", b'"Ping test"') or text.replace(b" ", b"") == (
        b'{"text":"Pingtest"}'
    )


def _ignored(why: str) -> JSONResponse:
    return JSONResponse({"ok": True, "ignored": why}, status_code=200)


def _read(svc: Services, vendor: Vendor, employee_id: str) -> HrEmployee | JSONResponse:
    """The employee ``employee_id`` from the vendor's API, or the refusal to answer."""
    hr = svc.hr
    if hr is None or getattr(hr, "vendor", "") != vendor.name:
        return refuse(
            503,
            f"{vendor.label} events name employees by id only: set HANDOVER_HR_API="
            f"{vendor.name} (and its credentials) so they can be read",
        )
    try:
        found = hr.employee(employee_id)
    except Exception as exc:  # a connector error: the vendor retries a 5xx
        log.warning("%s: reading employee %s failed: %s", vendor.label, employee_id, exc)
        return refuse(503, f"could not read employee {employee_id} from {vendor.label}: {exc}")
    if found is None:
        return refuse(422, f"{vendor.label} knows no employee {employee_id[:64]}")
    return found


def _event(svc: Services, vendor: Vendor, leaver: Leaver) -> HrEvent | JSONResponse:
    """The generic HR event for ``leaver`` (reading the employee where the event names an id)."""
    email, manager, effective, event_id = leaver.email, leaver.manager, leaver.effective, ""
    if leaver.employee_id:
        person = _read(svc, vendor, leaver.employee_id)
        if isinstance(person, JSONResponse):
            return person
        if leaver.only_if_terminated and person.status is not RosterStatus.TERMINATED:
            return _ignored(f"{vendor.label} says employee {leaver.employee_id} is not terminated")
        email, manager = person.email, manager or (person.manager or "")
        if leaver.use_end_date and person.end_date is not None:
            effective = person.end_date.isoformat()
        end = person.end_date.isoformat() if person.end_date else "now"
        event_id = f"{vendor.name}:{person.id}:terminated:{end}"
    try:
        return HrEvent.model_validate(
            {
                "event_id": leaver.event_id or event_id,
                "type": "employee.terminated",
                "employee": {"email": email},
                "effective_date": None if leaver.revoke_now else effective,
                "manager": manager if manager and manager != email.lower() else None,
                "security_risk": leaver.revoke_now,
            }
        )
    except ValidationError as exc:
        return invalid(f"{vendor.label} event", exc, whole="event")


def _handle(
    svc: Services, launcher: Launcher, vendor: Vendor, raw: bytes, headers: Headers
) -> JSONResponse:
    """One delivery, once its body is read (synchronous: the thread pool)."""
    secret = getattr(svc.settings, vendor.secret).get_secret_value()
    if not secret:
        return refuse(503, f"{vendor.label} webhooks are not configured (no secret)")
    if vendor.name == "hibob" and _is_ping(raw):
        return _ignored("ping")  # Bob's connection test: answered, nothing written
    why = vendor.check(secret, headers, raw, svc.clock().timestamp())
    if why:
        return refuse(401, why)
    if vendor.replay_once:
        ts = headers.get(BAMBOO_TIMESTAMP, "")
        sig = headers.get(BAMBOO_SIGNATURE, "").lower()
        if not first_time(svc.ledger, vendor.name, ts, sig, now=svc.clock()):
            return refuse(401, "replayed request (this timestamp and signature were seen)")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return refuse(400, "the body is not JSON (UTF-8)")
    try:
        ev = vendor.model.model_validate(data)
    except ValidationError as exc:
        return invalid(f"{vendor.label} event", exc, whole="event")
    leaver = vendor.mapper(ev, data)
    if isinstance(leaver, str):
        return _ignored(leaver)
    event = _event(svc, vendor, leaver)
    if isinstance(event, JSONResponse):
        return event
    urgent = ", revoke access now: emergency" if leaver.revoke_now else ""
    return accept_event(
        svc,
        launcher,
        event,
        same_id_is_retry=True,
        detail=f" ({vendor.label} {leaver.vendor_type}{urgent})",
    )


class VendorAnswer(BaseModel):
    """How a vendor's event stands: as the generic route answers (``HrAnswer``), or
    ``ignored`` with why (not a termination, a ping)."""

    ok: Literal[True]
    event_id: str | None = None
    status: Literal["started", "scheduled", "cancelled"] | None = None
    run: str | None = None
    at: datetime | None = None
    duplicate: bool = False
    warnings: list[str] = Field(default_factory=list)
    ignored: str | None = Field(None, description="why nothing was started or written")


_ANSWERS = answers(
    {
        200: (VendorAnswer, "a redelivery (how it stands), or an event ignored (why)"),
        202: (VendorAnswer, "started (a run reference) or scheduled (its effective date)"),
    },
    {
        400: "the body is not JSON",
        401: "unsigned, badly signed, stale or replayed: nothing is written",
        413: "body over 64 KiB",
        422: "not the vendor's event shape, or an employee the HR system does not know",
        503: "the vendor is not configured, its API cannot be read, or the run could not start",
    },
)


def hr_vendor_router(svc: Services, launcher: Launcher) -> APIRouter:
    """``POST /hooks/hr/<vendor>`` for each HR vendor over ``svc``; runs through ``launcher``."""
    router = APIRouter()
    for vendor in VENDORS:
        _add(router, svc, launcher, vendor)
    return router


def _add(router: APIRouter, svc: Services, launcher: Launcher, vendor: Vendor) -> None:
    doc = raw_body_doc(
        schema=inline_schema(vendor.model), headers=[header(vendor.header, vendor.scheme)]
    )

    async def hook(request: Request) -> JSONResponse:
        raw = await read_capped(request, MAX_BODY)
        if raw is None:
            return too_large()
        return await run_in_threadpool(_handle, svc, launcher, vendor, raw, request.headers)

    hook.__doc__ = f"A {vendor.label} webhook, verified in {vendor.label}'s own scheme."
    router.add_api_route(
        f"/hooks/hr/{vendor.name}",
        hook,
        methods=["POST"],
        name=f"hr_{vendor.name}",
        openapi_extra=doc,
        responses=_ANSWERS,
    )
