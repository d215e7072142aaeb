"""The HR system's own API: the roster of access reviews and the employee an HR webhook names.

One class per vendor, each offering :class:`~connectors.capabilities.Roster` (``get(email)``,
``entries()``; Personio: not offered, see below) and :class:`~connectors.capabilities.HrDirectory`
(``employee(id)``), over :class:`connectors.http.HttpApi` (rate limit, retries of 429/5xx
honouring ``Retry-After``, errors mapped once: a refused credential is an ``AuthError``).
Chosen by ``HANDOVER_HR_API`` (:func:`make_hr_api`); the payloads stay in this module and become
:class:`domain.models.RosterEntry` / ``HrEmployee``.

What each vendor documents, and what is read:

- **HiBob** (``https://api.hibob.com/v1``): ``POST /people/search`` with ``fields`` (field paths
  ``root.id``, ``root.email``, ``root.displayName``, ``work.department``, ``work.reportsTo``,
  ``internal.status``, ``internal.terminationDate``), ``filters`` (``root.id equals …``) and
  ``showInactive: true`` (leavers are inactive); answered ``{"employees": [...]}`` with each
  field nested under its path. Basic auth: the service user's id and token. No paging.
- **BambooHR** (``https://api.bamboohr.com/api/gateway.php/<company>``): one employee by
  ``GET /v1/employees/{id}?fields=…``; every employee, leavers included, by the custom report
  ``POST /v1/reports/custom?format=JSON&onlyCurrent=false`` (the employee directory lists
  current employees only, so a leaver would read as unknown rather than terminated). Basic
  auth: the API key as user, any password (``x``). A missing date reads ``0000-00-00``.
- **Merge HRIS** (``https://api.merge.dev/api/hris/v1``): ``GET /employees`` (cursor paging:
  ``next``/``previous``, ``page_size`` ≤ 100) and ``GET /employees/{id}``, both with
  ``expand=manager`` (the manager as an object, not an id). ``Authorization: Bearer <key>``
  and ``X-Account-Token`` (the linked HR system).
- **Personio** (``https://api.personio.de/v2``): ``GET /persons/{id}`` with a bearer token from
  ``POST /auth/token`` (client credentials: ``HANDOVER_HR_API_USER`` the client id,
  ``HANDOVER_HR_API_TOKEN`` the secret), renewed before it expires. Only the single read is
  built (the employee a Personio webhook names); Personio's manager and termination date live
  on employments, so it is not a roster source here.

Why httpx through ``HttpApi`` rather than the vendors' SDKs: none of the four publishes a
maintained synchronous Python SDK covering these reads (Merge's ``MergePythonClient`` is large
and generated), and ``HttpApi`` already gives every connector the same limits, retries and error
tree; each read here is one or two calls.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from datetime import date
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from connectors.errors import NotFoundError
from connectors.http import HttpApi
from connectors.settings import Settings
from domain.models import HrEmployee, RosterEntry, RosterStatus

SYSTEM = "hr"
BACKEND = "hris"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _date(value: Any) -> date | None:
    """An ISO date (or the date part of a date-time); BambooHR's ``0000-00-00`` is none."""
    if not isinstance(value, str) or not value or value.startswith("0000"):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _entry(vendor_id: str, data: dict[str, Any]) -> HrEmployee | None:
    """An ``HrEmployee`` from mapped fields; None for a record without a usable work email (it
    cannot be matched to an account, so it has no place in a roster keyed by email)."""
    try:
        return HrEmployee.model_validate({"id": vendor_id, **data})
    except ValidationError:
        return None


def _status(*, terminated: bool, inactive: bool) -> RosterStatus:
    if terminated:
        return RosterStatus.TERMINATED
    return RosterStatus.LEAVE if inactive else RosterStatus.ACTIVE


class _ByEmail:
    """``get(email)`` over ``entries()`` (each read afresh: HR is the source of truth)."""

    def entries(self) -> list[RosterEntry]:
        raise NotImplementedError

    def get(self, email: str) -> RosterEntry | None:
        """The entry with this email (case-insensitive), or None when HR does not know it.

        Raises:
            ConnectorError: the HR system refused or could not answer.
        """
        wanted = email.strip().lower()
        return next((e for e in self.entries() if e.email == wanted), None)


# ------------------------------------------------------------------------------------ HiBob
_HIBOB_FIELDS = [
    "root.id",
    "root.email",
    "root.displayName",
    "work.department",
    "work.reportsTo",
    "internal.status",
    "internal.terminationDate",
]


class HibobApi(_ByEmail):
    """HiBob's People API (service user ``HANDOVER_HR_API_USER`` / ``HANDOVER_HR_API_TOKEN``)."""

    vendor = "hibob"

    def __init__(self, settings: Settings, *, client: httpx.Client | None = None) -> None:
        auth = _basic(settings.hr_api_user, settings.hr_api_token.get_secret_value())
        self.api = HttpApi(
            system=SYSTEM,
            backend=BACKEND,
            base_url=settings.hr_api_url,
            headers={"Authorization": auth, "Accept": "application/json"},
            client=client,
            rejected="HiBob refused the service user (HANDOVER_HR_API_USER/TOKEN)",
        )

    def __repr__(self) -> str:
        return f"HibobApi({self.api.base_url!r})"

    def _search(self, filters: list[dict[str, Any]], operation: str) -> list[HrEmployee]:
        body = {"fields": _HIBOB_FIELDS, "filters": filters, "showInactive": True}
        data = self.api.json("POST", "/people/search", json=body, operation=operation) or {}
        out = []
        for raw in data.get("employees") or []:
            work = raw.get("work") or {}
            internal = raw.get("internal") or {}
            boss = work.get("reportsTo") or {}
            end = _date(internal.get("terminationDate"))
            inactive = str(internal.get("status", "")).lower() == "inactive"
            mapped = {
                "email": raw.get("email") or "",
                "name": raw.get("displayName") or raw.get("email") or "?",
                "status": _status(terminated=inactive and end is not None, inactive=inactive),
                "manager": boss.get("email") or None,
                "department": work.get("department") or "",
                "end_date": end,
            }
            if (e := _entry(str(raw.get("id", "")), mapped)) is not None:
                out.append(e)
        return out

    def entries(self) -> list[RosterEntry]:
        """Every employee, leavers included (``showInactive``).

        Raises:
            AuthError: the service user was refused.
            ConnectorError: HiBob could not answer.
        """
        return list(self._search([], "people_search"))

    def employee(self, employee_id: str) -> HrEmployee | None:
        """The employee with this HiBob id (``root.id``), or None.

        Raises:
            AuthError: the service user was refused.
        """
        found = self._search(
            [{"fieldPath": "root.id", "operator": "equals", "values": [employee_id]}],
            "people_search",
        )
        return found[0] if found else None


# --------------------------------------------------------------------------------- BambooHR
_BAMBOO_FIELDS = [
    "workEmail",
    "displayName",
    "firstName",
    "lastName",
    "status",
    "employmentHistoryStatus",
    "terminationDate",
    "supervisorEmail",
    "department",
]


class BambooHrApi(_ByEmail):
    """BambooHR's API for one company (``…/api/gateway.php/<company>``), the API key as user."""

    vendor = "bamboohr"

    def __init__(self, settings: Settings, *, client: httpx.Client | None = None) -> None:
        self.api = HttpApi(
            system=SYSTEM,
            backend=BACKEND,
            base_url=settings.hr_api_url,
            headers={
                "Authorization": _basic(settings.hr_api_token.get_secret_value(), "x"),
                "Accept": "application/json",
            },
            client=client,
            rejected="BambooHR refused the API key (HANDOVER_HR_API_TOKEN)",
        )

    def __repr__(self) -> str:
        return f"BambooHrApi({self.api.base_url!r})"

    @staticmethod
    def _map(raw: dict[str, Any]) -> HrEmployee | None:
        end = _date(raw.get("terminationDate"))
        history = str(raw.get("employmentHistoryStatus") or "").lower()
        inactive = str(raw.get("status") or "").lower() == "inactive"
        name = raw.get("displayName") or " ".join(
            p for p in (raw.get("firstName"), raw.get("lastName")) if p
        )
        mapped = {
            "email": raw.get("workEmail") or "",
            "name": name or "?",
            "status": _status(terminated=history == "terminated", inactive=inactive),
            "manager": raw.get("supervisorEmail") or None,
            "department": raw.get("department") or "",
            "end_date": end,
        }
        return _entry(str(raw.get("id", "")), mapped)

    def entries(self) -> list[RosterEntry]:
        """Every employee, leavers included (a custom report with ``onlyCurrent=false``).

        Raises:
            AuthError: the API key was refused.
        """
        data = self.api.json(
            "POST",
            "/v1/reports/custom",
            params={"format": "JSON", "onlyCurrent": "false"},
            json={"title": "Handover roster", "fields": ["id", *_BAMBOO_FIELDS]},
            operation="custom_report",
        )
        rows = (data or {}).get("employees") or []
        return [e for e in (self._map(r) for r in rows) if e is not None]

    def employee(self, employee_id: str) -> HrEmployee | None:
        """The employee with this BambooHR id, or None (404).

        Raises:
            AuthError: the API key was refused.
        """
        try:
            raw = self.api.json(
                "GET",
                f"/v1/employees/{quote(employee_id, safe='')}",
                params={"fields": ",".join(_BAMBOO_FIELDS)},
                operation="get_employee",
                subject=employee_id,
            )
        except NotFoundError:
            return None
        return self._map({"id": employee_id, **(raw or {})})


# ------------------------------------------------------------------------------------ Merge
class MergeApi(_ByEmail):
    """Merge's unified HRIS API (``Bearer`` key and the linked account's ``X-Account-Token``)."""

    vendor = "merge"
    PAGE_SIZE = 100

    def __init__(
        self, settings: Settings, *, client: httpx.Client | None = None, page_size: int = 100
    ) -> None:
        self.page_size = page_size
        self.api = HttpApi(
            system=SYSTEM,
            backend=BACKEND,
            base_url=settings.hr_api_url,
            headers={
                "Authorization": f"Bearer {settings.hr_api_token.get_secret_value()}",
                "X-Account-Token": settings.hr_api_account_token.get_secret_value(),
                "Accept": "application/json",
            },
            client=client,
            rejected="Merge refused the API key or account token (HANDOVER_HR_API_TOKEN/"
            "HANDOVER_HR_API_ACCOUNT_TOKEN)",
        )

    def __repr__(self) -> str:
        return f"MergeApi({self.api.base_url!r})"

    @staticmethod
    def _map(raw: dict[str, Any]) -> HrEmployee | None:
        boss = raw.get("manager")
        state = str(raw.get("employment_status") or "").upper()
        end = _date(raw.get("termination_date"))
        name = raw.get("display_full_name") or " ".join(
            p for p in (raw.get("first_name"), raw.get("last_name")) if p
        )
        mapped = {
            "email": raw.get("work_email") or "",
            "name": name or "?",
            # Merge's INACTIVE is a leaver; a leave of absence stays ACTIVE there.
            "status": _status(terminated=state == "INACTIVE", inactive=False),
            "manager": boss.get("work_email") if isinstance(boss, dict) else None,
            "department": "",
            "end_date": end,
        }
        return _entry(str(raw.get("id", "")), mapped)

    def _pages(self) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"page_size": self.page_size, "expand": "manager"}
            if cursor:
                params["cursor"] = cursor
            page = self.api.json("GET", "/employees", params=params, operation="list_employees")
            yield from (page or {}).get("results") or []
            cursor = (page or {}).get("next")
            if not cursor:
                return

    def entries(self) -> list[RosterEntry]:
        """Every employee of the linked HR system, page after page (``next`` cursors).

        Raises:
            AuthError: the key or the account token was refused.
        """
        return [e for e in (self._map(r) for r in self._pages()) if e is not None]

    def employee(self, employee_id: str) -> HrEmployee | None:
        """The employee with this Merge id, or None (404).

        Raises:
            AuthError: the key or the account token was refused.
        """
        try:
            raw = self.api.json(
                "GET",
                f"/employees/{quote(employee_id, safe='')}",
                params={"expand": "manager"},
                operation="get_employee",
                subject=employee_id,
            )
        except NotFoundError:
            return None
        return self._map(raw or {})


# --------------------------------------------------------------------------------- Personio
class PersonioApi:
    """Personio's v2 Persons API: one person by id (client credentials → bearer token)."""

    vendor = "personio"

    def __init__(self, settings: Settings, *, client: httpx.Client | None = None) -> None:
        self._client_id = settings.hr_api_user
        self._secret = settings.hr_api_token
        self._token = ""
        self._expires = 0.0
        self._lock = threading.Lock()
        self.api = HttpApi(
            system=SYSTEM,
            backend=BACKEND,
            base_url=settings.hr_api_url,
            headers={"Accept": "application/json"},
            client=client,
            rejected="Personio refused the client credentials (HANDOVER_HR_API_USER/TOKEN)",
        )

    def __repr__(self) -> str:
        return f"PersonioApi({self.api.base_url!r})"

    def _bearer(self) -> str:
        with self._lock:
            if not self._token or time.monotonic() > self._expires:
                resp = self.api.client.post(
                    f"{self.api.base_url}/auth/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": self._client_id,
                        "client_secret": self._secret.get_secret_value(),
                    },
                    headers={"Accept": "application/json"},
                )
                if resp.status_code != 200:
                    from connectors.errors import error_for_status
                    from connectors.http import error_message

                    raise error_for_status(
                        resp.status_code,
                        f"{self.api.rejected}: {error_message(resp)}",
                        system=SYSTEM,
                        operation="auth_token",
                    )
                body = resp.json()
                self._token = str(body.get("access_token", ""))
                # Renewed a minute early, so a token never expires between check and call.
                self._expires = time.monotonic() + float(body.get("expires_in", 3600)) - 60
                # HttpApi sends its headers with every call: the fresh token goes there.
                self.api._headers["Authorization"] = f"Bearer {self._token}"
            return self._token

    def employee(self, employee_id: str) -> HrEmployee | None:
        """The person with this Personio id, or None (404).

        Raises:
            AuthError: the client credentials were refused.
        """
        self._bearer()
        try:
            raw = self.api.json(
                "GET",
                f"/persons/{quote(employee_id, safe='')}",
                operation="get_person",
                subject=employee_id,
            )
        except NotFoundError:
            return None
        raw = raw or {}
        inactive = str(raw.get("status") or "").upper() == "INACTIVE"
        mapped = {
            "email": raw.get("email") or "",
            "name": " ".join(p for p in (raw.get("first_name"), raw.get("last_name")) if p) or "?",
            "status": _status(terminated=inactive, inactive=False),
        }
        return _entry(str(raw.get("id", employee_id)), mapped)


HrApi = HibobApi | BambooHrApi | MergeApi | PersonioApi


def make_hr_api(settings: Settings, *, client: httpx.Client | None = None) -> HrApi | None:
    """The HR API ``HANDOVER_HR_API`` names (None: none configured).

    Raises:
        SettingsError: it names no known vendor.
    """
    match settings.hr_api_checked():
        case "hibob":
            return HibobApi(settings, client=client)
        case "bamboohr":
            return BambooHrApi(settings, client=client)
        case "merge":
            return MergeApi(settings, client=client)
        case "personio":
            return PersonioApi(settings, client=client)
    return None
