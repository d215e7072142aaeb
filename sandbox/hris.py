"""The HR systems' read APIs, imitated over the seeded roster: BambooHR, HiBob, Merge HRIS and
Personio's person read, plus ``/_sandbox/hr/employees`` to change a person's HR status.

The people are the seed's HR roster (``sandbox.seeds.roster_rows``: the same people, managers,
departments and statuses as ``/_sandbox/roster``, which the demo's roster file is made from),
with the changes a test made through the control route on top. Each vendor gives each person
its own kind of id (BambooHR small integers, HiBob long numeric strings, Merge UUIDs, Personio
integers), stable for a given roster.

Faithful to each vendor's documented API:

- **BambooHR** (``/bamboohr/api/gateway.php/{company}/v1``): ``GET /employees/{id}?fields=…``
  (only the fields asked for, plus ``id``), ``GET /employees/directory`` (current employees
  only, as BambooHR's directory), ``POST /reports/custom?format=JSON&onlyCurrent=…`` (the
  fields asked for; leavers when ``onlyCurrent=false``). Basic auth with the API key as user and
  any password; refusals are 401 with ``X-BambooHR-Error-Message``; an unknown id is 404. Dates
  read ``0000-00-00`` when empty.
- **HiBob** (``/hibob/v1``): ``POST /people/search`` with ``fields``, ``filters``
  (``fieldPath`` ``root.id``/``root.email``, operator ``equals``) and ``showInactive``; answers
  ``{"employees": [...]}`` with fields nested by path. Basic auth: service user id and token.
- **Merge HRIS** (``/merge/api/hris/v1``): ``GET /employees`` (``cursor``, ``page_size`` ≤ 100
  (default 100), ``expand=manager``) answering ``{"next", "previous", "results"}``, and
  ``GET /employees/{id}``. ``Authorization: Bearer <key>`` and ``X-Account-Token``; refusals are
  401 ``{"detail": …}`` as Merge (Django REST framework) answers them.
- **Personio** (``/personio/v2``): ``POST /auth/token`` (client credentials, form-encoded) and
  ``GET /persons/{id}`` with the bearer token; errors as ``application/problem+json``.

Published sandbox credentials: the key/token ``sandbox-hr-api-token``, Merge's account token
``sandbox-merge-account-token``, HiBob's service user and Personio's client id
``sandbox-hr-user``.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import uuid
from datetime import date
from typing import Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from sandbox.control import world_of
from sandbox.db import Setting

HR_TOKEN = "sandbox-hr-api-token"
MERGE_ACCOUNT_TOKEN = "sandbox-merge-account-token"
HR_USER = "sandbox-hr-user"
_CHANGES = "hr_changes"
_TOKENS = "personio_tokens"

router = APIRouter(tags=["HR systems"])
control_router = APIRouter(prefix="/_sandbox/hr", tags=["sandbox control"])


# ------------------------------------------------------------------------------- the people
def _people(request: Request) -> list[dict[str, Any]]:
    """The seeded roster with the control route's changes, each with its vendors' ids."""
    from sandbox import seeds

    with world_of(request).db.session() as s:
        rows = seeds.roster_rows(s)
        changes = s.get(Setting, _CHANGES)
        changed: dict[str, dict[str, Any]] = dict(changes.value) if changes else {}
    out = []
    for i, row in enumerate(rows):
        person = {**row, **changed.get(row["email"], {})}
        first, _, last = str(person["name"]).partition(" ")
        person.update(
            first=first,
            last=last,
            bamboohr_id=str(101 + i),
            hibob_id=str(3332883804594373000 + i),
            merge_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"merge:{row['email']}")),
            personio_id=str(1_000_001 + i),
        )
        out.append(person)
    return out


def _by(people: list[dict[str, Any]], key: str, value: str) -> dict[str, Any] | None:
    return next((p for p in people if p[key] == value), None)


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


# ------------------------------------------------------------------------------- BambooHR
def _bamboo_refused(message: str) -> Response:
    return Response(status_code=401, headers={"X-BambooHR-Error-Message": message})


def _bamboo_auth(request: Request) -> Response | None:
    creds = _basic(request)
    if creds is None or not secrets.compare_digest(creds[0], HR_TOKEN):
        return _bamboo_refused("Invalid API key")
    return None


def _bamboo_fields(p: dict[str, Any]) -> dict[str, Any]:
    gone = p["status"] == "terminated"
    end = p.get("end_date") or ""
    return {
        "id": p["bamboohr_id"],
        "workEmail": p["email"],
        "displayName": p["name"],
        "firstName": p["first"],
        "lastName": p["last"],
        "status": "Inactive" if p["status"] != "active" else "Active",
        "employmentHistoryStatus": "Terminated" if gone else "Full-Time",
        "terminationDate": end if end else "0000-00-00",
        "supervisorEmail": p.get("manager") or None,
        "department": p.get("department") or "",
    }


def _pick(record: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    return {"id": record["id"], **{f: record.get(f) for f in fields if f != "id"}}


@router.get("/bamboohr/api/gateway.php/{company}/v1/employees/directory")
def bamboo_directory(company: str, request: Request) -> Any:
    """BambooHR's employee directory: current employees only."""
    if (refused := _bamboo_auth(request)) is not None:
        return refused
    people = [_bamboo_fields(p) for p in _people(request) if p["status"] != "terminated"]
    fields = ["displayName", "firstName", "lastName", "workEmail", "department"]
    return {
        "fields": [{"id": f, "type": "text", "name": f} for f in fields],
        "employees": [_pick(p, fields) for p in people],
    }


@router.get("/bamboohr/api/gateway.php/{company}/v1/employees/{employee_id}")
def bamboo_employee(company: str, employee_id: str, request: Request, fields: str = "") -> Any:
    """One employee's requested fields (``?fields=a,b``), or 404."""
    if (refused := _bamboo_auth(request)) is not None:
        return refused
    person = _by(_people(request), "bamboohr_id", employee_id)
    if person is None:
        return Response(status_code=404, headers={"X-BambooHR-Error-Message": "not found"})
    wanted = [f for f in fields.split(",") if f] or ["firstName", "lastName"]
    return _pick(_bamboo_fields(person), wanted)


class CustomReport(BaseModel):
    title: str = ""
    fields: list[str] = Field(min_length=1)


@router.post("/bamboohr/api/gateway.php/{company}/v1/reports/custom")
def bamboo_report(
    company: str, body: CustomReport, request: Request, onlyCurrent: str = "true"
) -> Any:
    """A custom report of the requested fields; leavers only with ``onlyCurrent=false``."""
    if (refused := _bamboo_auth(request)) is not None:
        return refused
    people = _people(request)
    if onlyCurrent.lower() != "false":
        people = [p for p in people if p["status"] != "terminated"]
    return {
        "title": body.title,
        "fields": [{"id": f, "type": "text", "name": f} for f in body.fields],
        "employees": [_pick(_bamboo_fields(p), body.fields) for p in people],
    }


# ---------------------------------------------------------------------------------- HiBob
class HibobFilter(BaseModel):
    fieldPath: str
    operator: Literal["equals"]
    values: list[str]


class HibobSearch(BaseModel):
    fields: list[str] = Field(default_factory=list)
    filters: list[HibobFilter] = Field(default_factory=list)
    showInactive: bool = False


def _hibob_record(p: dict[str, Any], manager: dict[str, Any] | None) -> dict[str, Any]:
    boss = None
    if manager is not None:
        boss = {
            "id": manager["hibob_id"],
            "email": manager["email"],
            "displayName": manager["name"],
            "firstName": manager["first"],
            "surname": manager["last"],
        }
    return {
        "root": {"id": p["hibob_id"], "email": p["email"], "displayName": p["name"]},
        "work": {"department": p.get("department") or "", "reportsTo": boss},
        "internal": {
            "status": "Active" if p["status"] == "active" else "Inactive",
            "terminationDate": p.get("end_date") or None,
        },
    }


def _nest(record: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """The requested field paths, nested as HiBob answers them (``root.*`` at the top)."""
    out: dict[str, Any] = {}
    for path in fields:
        section, _, name = path.partition(".")
        value = record.get(section, {}).get(name)
        if section == "root":
            out[name] = value
        else:
            out.setdefault(section, {})[name] = value
    return out


@router.post("/hibob/v1/people/search")
def hibob_search(body: HibobSearch, request: Request) -> Any:
    """Search people (active only unless ``showInactive``), filtered by ``root.id`` or
    ``root.email`` equality, answering the requested field paths."""
    creds = _basic(request)
    if creds is None or creds[0] != HR_USER or not secrets.compare_digest(creds[1], HR_TOKEN):
        return JSONResponse({"error": "Unauthorized"}, status_code=401)
    people = _people(request)
    emails = {p["email"]: p for p in people}
    chosen = [p for p in people if body.showInactive or p["status"] == "active"]
    for f in body.filters:
        key = {"root.id": "hibob_id", "root.email": "email"}.get(f.fieldPath)
        if key is None:
            return JSONResponse(
                {"error": f"unsupported filter field {f.fieldPath}"}, status_code=400
            )
        chosen = [p for p in chosen if p[key] in f.values]
    fields = body.fields or ["root.id", "root.email", "root.displayName"]
    return {
        "employees": [
            _nest(_hibob_record(p, emails.get(p.get("manager") or "")), fields) for p in chosen
        ]
    }


# ---------------------------------------------------------------------------------- Merge
def _merge_refused(request: Request) -> JSONResponse | None:
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer ") or not secrets.compare_digest(auth[7:], HR_TOKEN):
        return JSONResponse({"detail": "Invalid API key."}, status_code=401)
    account = request.headers.get("x-account-token", "")
    if not secrets.compare_digest(account, MERGE_ACCOUNT_TOKEN):
        return JSONResponse({"detail": "Invalid account token."}, status_code=401)
    return None


def _merge_employee(p: dict[str, Any], by_email: dict[str, Any], expand: bool) -> dict[str, Any]:
    boss = by_email.get(p.get("manager") or "")
    manager: Any = None
    if boss is not None:
        manager = _merge_employee(boss, {}, False) if expand else boss["merge_id"]
    end = p.get("end_date") or ""
    return {
        "id": p["merge_id"],
        "remote_id": p["bamboohr_id"],
        "first_name": p["first"],
        "last_name": p["last"],
        "display_full_name": p["name"],
        "work_email": p["email"],
        "manager": manager,
        "employment_status": "INACTIVE" if p["status"] == "terminated" else "ACTIVE",
        "termination_date": f"{end}T00:00:00Z" if end else None,
        "remote_was_deleted": False,
    }


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _offset(cursor: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        return int(text.removeprefix("o:")) if text.startswith("o:") else None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


@router.get("/merge/api/hris/v1/employees")
def merge_employees(
    request: Request, cursor: str = "", page_size: int = 100, expand: str = ""
) -> Any:
    """A page of employees and the ``next``/``previous`` cursors (null at either end)."""
    if (refused := _merge_refused(request)) is not None:
        return refused
    start = _offset(cursor) if cursor else 0
    if start is None or not 1 <= page_size <= 100:
        return JSONResponse({"detail": "Invalid cursor or page_size."}, status_code=400)
    people = _people(request)
    by_email = {p["email"]: p for p in people}
    page = people[start : start + page_size]
    nxt = start + page_size
    return {
        "next": _cursor(nxt) if nxt < len(people) else None,
        "previous": _cursor(max(0, start - page_size)) if start > 0 else None,
        "results": [_merge_employee(p, by_email, expand == "manager") for p in page],
    }


@router.get("/merge/api/hris/v1/employees/{employee_id}")
def merge_employee(employee_id: str, request: Request, expand: str = "") -> Any:
    """One employee, or 404 ``{"detail": "Not found."}``."""
    if (refused := _merge_refused(request)) is not None:
        return refused
    people = _people(request)
    person = _by(people, "merge_id", employee_id)
    if person is None:
        return JSONResponse({"detail": "Not found."}, status_code=404)
    return _merge_employee(person, {p["email"]: p for p in people}, expand == "manager")


# ------------------------------------------------------------------------------- Personio
def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


@router.post("/personio/v2/auth/token")
async def personio_token(request: Request) -> Any:
    """Client credentials (form-encoded) → a bearer token valid for a day."""
    # Form-encoded, read by hand: python-multipart (Starlette's form parser) is not a dependency.
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
    if (
        form.get("grant_type") != "client_credentials"
        or form.get("client_id") != HR_USER
        or not secrets.compare_digest(form.get("client_secret", ""), HR_TOKEN)
    ):
        return _problem(401, "Unauthorized", "invalid client credentials")
    token = secrets.token_urlsafe(24)
    with world_of(request).db.session() as s:
        row = s.get(Setting, _TOKENS)
        tokens = list(row.value["tokens"]) if row else []
        s.merge(Setting(key=_TOKENS, value={"tokens": [*tokens[-50:], token]}))
    return {"access_token": token, "token_type": "Bearer", "expires_in": 86400}


@router.get("/personio/v2/persons/{person_id}")
def personio_person(person_id: str, request: Request) -> Any:
    """One person, or 404."""
    auth = request.headers.get("authorization", "")
    with world_of(request).db.session() as s:
        row = s.get(Setting, _TOKENS)
        tokens = set(row.value["tokens"]) if row else set()
    if not auth.startswith("Bearer ") or auth[7:] not in tokens:
        return _problem(401, "Unauthorized", "missing or invalid bearer token")
    person = _by(_people(request), "personio_id", person_id)
    if person is None:
        return _problem(404, "Not Found", f"person {person_id} not found")
    return {
        "id": person["personio_id"],
        "first_name": person["first"],
        "last_name": person["last"],
        "email": person["email"],
        "status": "INACTIVE" if person["status"] == "terminated" else "ACTIVE",
    }


# -------------------------------------------------------------------------------- control
class HrChange(BaseModel):
    """A change of a person's HR record: status and end (termination) date."""

    email: str
    status: Literal["active", "terminated", "leave"]
    end_date: date | None = None


@control_router.post("/employees")
def set_employee(change: HrChange, request: Request) -> Any:
    """Set a roster person's HR status and end date (what HR does in its UI); 404 if unknown."""
    email = change.email.strip().lower()
    if _by(_people(request), "email", email) is None:
        return JSONResponse({"error": f"{email} is not on the HR roster"}, status_code=404)
    with world_of(request).db.session() as s:
        row = s.get(Setting, _CHANGES)
        changed = dict(row.value) if row else {}
        changed[email] = {
            "status": change.status,
            "end_date": change.end_date.isoformat() if change.end_date else "",
        }
        s.merge(Setting(key=_CHANGES, value=changed))
    return {"ok": True, "email": email}


@control_router.get("/employees")
def list_employees(request: Request) -> Any:
    """Every HR person with each vendor's id for them (how a test names them in a webhook)."""
    keep = ("email", "name", "status", "manager", "end_date", "bamboohr_id", "hibob_id")
    return {
        "employees": [
            {
                **{k: p.get(k) for k in keep},
                "merge_id": p["merge_id"],
                "personio_id": p["personio_id"],
            }
            for p in _people(request)
        ]
    }
