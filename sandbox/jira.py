"""Jira REST v2 fake (``/jira/rest/api/2``), as the ``jira`` package (3.x) speaks it.

A Jira Server 9 look-alike (so the client uses ``/search`` with ``startAt``, not Cloud's
``/search/jql``): ``serverInfo``, ``myself``, ``field``, ``issuetype``, ``project``, ``issue``
(create, get), ``comment``, ``transitions``, ``search`` with a JQL subset, and ``user`` (by
``accountId``, ``username`` or ``key``). Workflow: Open →
In Progress → Done, plus Rejected; transition names differ from status names, so clients pick
a transition by its target status (``to.name``), as real workflows require. Every call needs
HTTP Basic credentials; every error has Jira's ``{"errorMessages": [...], "errors": {...}}``.

People: every reporter is a Jira account with an ``accountId`` (as on Jira Cloud) besides its
Server ``name``/``key``. Like Cloud's profile visibility, an account may hide its email: an issue
then shows the reporter without ``emailAddress``, and only ``GET /user`` — asked by Handover's
account, which, like an app granted email access, may read it — tells it. An account may also
have no email at all (``/_sandbox/jira/users`` adds such people): nothing tells who it is but its
display name, which Handover never takes for an address. An *account-only* account is a Jira
Cloud person as Cloud shows them since its GDPR changes: ``accountId``, ``accountType``,
``displayName``, ``active`` and no ``name``/``key`` anywhere, found by ``GET /user?accountId=``
only (``?username=`` does not know it); with ``email_to_apps`` off its profile hides the email
from ``GET /user`` too (Cloud's "Only you and admins" visibility, for an app without the Email
API), and nothing tells its address.

Issue types per project, as organisations have them: the sandbox's own projects keep every
type (``ISSUE_TYPES``), while a project made with a scheme (``POST /_sandbox/jira/projects``;
``SOFTWARE_SCHEME`` is Jira Software's default one, which has no "Access Request") accepts only
its types (``POST /issue`` with another answers 400 ``{"errors": {"issuetype": "The issue type
selected is invalid."}}``) and lists only them in ``GET /project/{key}``'s ``issueTypes``. A
Jira Service Management project (``projectTypeKey: service_desk``) has *request types*, each
based on an issue type; an issue filed in one carries JSM's "Customer Request Type" field,
``customfield_10010`` as on Cloud (schema ``com.atlassian.servicedesk:vp-origin`` in
``GET /field``), whose value names the request type (``requestType.name``, ``issueTypeId``,
``serviceDeskId``) and its ``currentStatus``; other issues have it ``null``. As Jira's REST v2
does, ``POST /issue`` sets it from a plain string, the request type's id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from sqlalchemy import JSON, ForeignKey, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from sandbox.db import Base
from sandbox.world import World

ISSUE_TYPES = {
    "Access Request": "10100",
    "Task": "10002",
    "Offboarding": "10101",
    # Jira Software's standard types
    "Epic": "10000",
    "Story": "10001",
    "Sub-task": "10003",
    "Bug": "10004",
    "Improvement": "10005",
    "New Feature": "10006",
    # Jira Service Management's ITSM types (its request types are based on them)
    "Service Request": "10200",
    "Incident": "10201",
}
SUBTASKS = {"Sub-task"}
# Jira Software's default issue type scheme: no "Access Request".
SOFTWARE_SCHEME = ("Epic", "Story", "Task", "Sub-task", "Bug", "Improvement", "New Feature")
REQUEST_TYPE_FIELD = "customfield_10010"  # JSM's "Customer Request Type" on Jira Cloud
REQUEST_TYPE_SCHEMA = {
    "type": "sd-customerrequesttype",
    "custom": "com.atlassian.servicedesk:vp-origin",
    "customId": 10010,
}
BAD_ISSUE_TYPE = "The issue type selected is invalid."
# status name → (id, status category key, status category id)
STATUSES = {
    "Open": ("1", "new", 2),
    "In Progress": ("3", "indeterminate", 4),
    "Done": ("10001", "done", 3),
    "Rejected": ("10002", "done", 3),
}
# (id, name, from statuses, to status)
TRANSITIONS = (
    ("11", "Start Progress", ("Open",), "In Progress"),
    ("21", "Resolve", ("Open",), "Done"),
    ("31", "Reject", ("Open", "In Progress"), "Rejected"),
    ("41", "To Done", ("In Progress",), "Done"),
    ("51", "Stop Progress", ("In Progress",), "Open"),
    ("61", "Reopen", ("Done", "Rejected"), "Open"),
)
RESOLUTIONS = {"Done": "Done", "Rejected": "Won't Do"}
FIELDS = (  # (id, name, JQL clause names); what GET /field lists and the client caches
    ("issuekey", "Key", ["id", "issue", "issuekey", "key"]),
    ("summary", "Summary", ["summary"]),
    ("description", "Description", ["description"]),
    ("issuetype", "Issue Type", ["issuetype", "type"]),
    ("project", "Project", ["project"]),
    ("status", "Status", ["status"]),
    ("labels", "Labels", ["labels"]),
    ("reporter", "Reporter", ["reporter"]),
    ("assignee", "Assignee", ["assignee"]),
    ("created", "Created", ["created", "createdDate"]),
    ("updated", "Updated", ["updated", "updatedDate"]),
    ("resolution", "Resolution", ["resolution"]),
    ("comment", "Comment", ["comment"]),
)
CREATABLE = {"project", "summary", "description", "issuetype", "labels", "reporter", "assignee"}
NOT_FOUND = "Issue does not exist or you do not have permission to see it."
NOT_SETTABLE = "Field '{}' cannot be set. It is not on the appropriate screen, or unknown."


class JiraProject(Base):
    __tablename__ = "jira_projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    counter: Mapped[int] = mapped_column(default=0)  # last issue number handed out
    # The issue types of its scheme; None: every type (the sandbox's own projects).
    issue_types: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    service_desk: Mapped[bool] = mapped_column(default=False)  # a JSM project


class JiraRequestType(Base):
    """A JSM request type of a service desk project, based on one of its issue types."""

    __tablename__ = "jira_request_types"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(ForeignKey("jira_projects.key"))
    name: Mapped[str] = mapped_column(String(200))
    issuetype: Mapped[str] = mapped_column(String(64))


class JiraIssue(Base):
    __tablename__ = "jira_issues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    project: Mapped[str] = mapped_column(ForeignKey("jira_projects.key"))
    number: Mapped[int]
    issuetype: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(32), default="Open")
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    reporter: Mapped[str] = mapped_column(String(320))
    assignee: Mapped[str | None] = mapped_column(String(320), default=None)
    request_type: Mapped[int | None] = mapped_column(
        ForeignKey("jira_request_types.id"), default=None
    )
    created: Mapped[datetime]
    updated: Mapped[datetime]


class JiraUser(Base):
    """A Jira account: what an issue's ``reporter`` (by ``name``) refers to."""

    __tablename__ = "jira_users"

    account_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(320), unique=True)  # Server's username (and key)
    display_name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    email_visible: Mapped[bool] = mapped_column(default=True)  # shown in issues' user objects
    email_to_apps: Mapped[bool] = mapped_column(default=True)  # shown by GET /user to Handover
    account_only: Mapped[bool] = mapped_column(default=False)  # Cloud: no name/key shown
    active: Mapped[bool] = mapped_column(default=True)


class JiraComment(Base):
    __tablename__ = "jira_comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("jira_issues.id"), index=True)
    author: Mapped[str] = mapped_column(String(320))
    body: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime]


class JiraTransitionLog(Base):
    __tablename__ = "jira_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("jira_issues.id"), index=True)
    transition: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    author: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime]


class JiraError(Exception):
    """An error answered in Jira's shape, with ``errorMessages`` and per-field ``errors``."""

    def __init__(self, status: int, *messages: str, errors: dict[str, str] | None = None):
        super().__init__(*messages)
        self.status, self.messages, self.errors = status, list(messages), errors or {}

    def response(self) -> JSONResponse:
        body = {"errorMessages": self.messages, "errors": self.errors}
        return JSONResponse(body, status_code=self.status)


# ---- Python helpers (seeds and tests) ---------------------------------------------------------


def _next_id(session: Session, model: Any) -> int:
    # Explicit ids from 10000 up, as Jira numbers them, so an id is never taken for a key number.
    return int(session.scalar(select(func.max(model.id))) or 9999) + 1


def _project_row(session: Session, ref: str) -> JiraProject | None:
    col = JiraProject.id if ref.isdigit() else JiraProject.key
    return session.scalar(select(JiraProject).where(col == (int(ref) if ref.isdigit() else ref)))


def ensure_project(
    session: Session,
    key: str,
    name: str,
    *,
    issue_types: Iterable[str] | None = None,
    request_types: Iterable[tuple[str, str]] = (),
) -> str:
    """Create project ``key`` unless it exists (an existing one is kept as it is); return the
    key. ``issue_types``: its scheme (None: every type); ``request_types``: JSM request types
    as (name, issue type) — a service desk project.

    Raises:
        KeyError: an issue type that does not exist, or a request type's outside the scheme.
    """
    if _project_row(session, key) is not None:
        return key
    scheme = list(dict.fromkeys(issue_types)) if issue_types is not None else None
    asked = [*(scheme or ()), *(t for _, t in request_types)]
    for t in asked:
        if t not in ISSUE_TYPES or (scheme is not None and t not in scheme):
            raise KeyError(t)
    session.add(
        JiraProject(
            id=_next_id(session, JiraProject), key=key, name=name, issue_types=scheme,
            service_desk=bool(request_types),
        )
    )  # fmt: skip
    session.flush()
    for rt_name, itype in request_types:
        rid = int(session.scalar(select(func.max(JiraRequestType.id))) or 0) + 1
        session.add(JiraRequestType(id=rid, project=key, name=rt_name, issuetype=itype))
    session.flush()
    return key


def _scheme(p: JiraProject) -> list[str]:
    return list(p.issue_types) if p.issue_types is not None else list(ISSUE_TYPES)


def _account_id(name: str) -> str:
    """A Cloud-looking account id (``557058:<uuid>``), the same for a name in every world."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    return f"557058:{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def ensure_user(
    session: Session,
    name: str,
    *,
    display_name: str = "",
    email: str | None = None,
    email_visible: bool = True,
    email_to_apps: bool = True,
    account_only: bool = False,
) -> str:
    """The account id of the Jira account ``name``, created when missing (idempotent: an
    existing account is left as it is). ``email``: its address (``None``: none at all);
    ``email_visible``: whether issues show it (else only ``GET /user`` does);
    ``email_to_apps``: whether ``GET /user`` shows it to Handover's account (else nothing
    does); ``account_only``: a Cloud account, shown by ``accountId`` only (``name`` is then the
    sandbox's own handle for it, never shown)."""
    user = session.scalar(select(JiraUser).where(JiraUser.name == name))
    if user is None:
        user = JiraUser(
            account_id=_account_id(name),
            name=name,
            display_name=display_name or name,
            email=email.strip().lower() if email else None,
            email_visible=email_visible,
            email_to_apps=email_to_apps,
            account_only=account_only,
        )
        session.add(user)
        session.flush()
    return user.account_id


def _default_email(name: str) -> str:
    """The address an account created for a bare reporter name gets (as before accounts)."""
    return name if "@" in name else f"{name}@sandbox.invalid"


def _people(session: Session, names: Iterable[str | None]) -> dict[str, JiraUser]:
    wanted = sorted({n for n in names if n})
    if not wanted:
        return {}
    return {u.name: u for u in session.scalars(select(JiraUser).where(JiraUser.name.in_(wanted)))}


def create_issue(
    session: Session,
    now: datetime,
    *,
    project: str,
    issuetype: str,
    summary: str,
    description: str = "",
    labels: Iterable[str] = (),
    reporter: str = "handover",
    assignee: str | None = None,
    request_type: int | None = None,
) -> str:
    """Create an issue in status Open; return its key (``ACC-12``, numbered per project).
    ``request_type``: the id of one of the project's JSM request types.

    Raises:
        KeyError: the project does not exist, the issue type is not in its scheme, or the
            request type is not one of its own.
    """
    proj = _project_row(session, project)
    if proj is None or issuetype not in _scheme(proj):
        raise KeyError(project if proj is None else issuetype)
    if request_type is not None:
        found = session.get(JiraRequestType, request_type)
        if found is None or found.project != proj.key:
            raise KeyError(str(request_type))
    proj.counter += 1
    if session.scalar(select(JiraUser).where(JiraUser.name == reporter)) is None:
        ensure_user(session, reporter, email=_default_email(reporter))
    issue = JiraIssue(
        id=_next_id(session, JiraIssue), key=f"{proj.key}-{proj.counter}", project=proj.key,
        number=proj.counter, issuetype=issuetype, summary=summary, description=description,
        labels=list(labels), reporter=reporter, assignee=assignee, request_type=request_type,
        created=now, updated=now,
    )  # fmt: skip
    session.add(issue)
    session.flush()
    return issue.key


def _find(session: Session, key_or_id: str) -> JiraIssue | None:
    if key_or_id.isdigit():
        return session.get(JiraIssue, int(key_or_id))
    return session.scalar(select(JiraIssue).where(JiraIssue.key == key_or_id.upper()))


def _comments(session: Session, ids: list[int]) -> dict[int, list[JiraComment]]:
    out: dict[int, list[JiraComment]] = {i: [] for i in ids}
    q = select(JiraComment).where(JiraComment.issue_id.in_(ids)).order_by(JiraComment.id)
    for c in session.scalars(q):
        out[c.issue_id].append(c)
    return out


def get_issue(session: Session, key: str) -> dict[str, Any] | None:
    """A plain view of an issue (comments as bodies, transition history), or ``None``."""
    i = _find(session, key)
    if i is None:
        return None
    q = select(JiraTransitionLog).where(JiraTransitionLog.issue_id == i.id)
    history = [
        {"name": h.transition, "from": h.from_status, "to": h.to_status, "author": h.author,
         "at": _fmt(h.at)}
        for h in session.scalars(q.order_by(JiraTransitionLog.id))
    ]  # fmt: skip
    return {
        "id": str(i.id), "key": i.key, "project": i.project, "issuetype": i.issuetype,
        "summary": i.summary, "description": i.description, "status": i.status,
        "labels": list(i.labels), "reporter": i.reporter, "assignee": i.assignee,
        "created": _fmt(i.created), "updated": _fmt(i.updated),
        "comments": [c.body for c in _comments(session, [i.id])[i.id]], "transitions": history,
    }  # fmt: skip


# ---- JSON in Jira's shapes (``api`` is the base URL .../jira/rest/api/2) -----------------------


def _fmt(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"


def _user(
    api: str, name: str, account: JiraUser | None = None, *, full: bool = False
) -> dict[str, Any]:
    """A user object; with its account, that account's id and name, and its email where the
    account shows it (``full``: as ``GET /user`` shows it to Handover's account)."""
    if account is None:  # a name with no account (a comment's author, a project lead)
        return {"self": f"{api}/user?username={name}", "name": name, "key": name,
                "emailAddress": _default_email(name), "displayName": name,
                "active": True}  # fmt: skip
    out: dict[str, Any] = {"self": f"{api}/user?accountId={account.account_id}",
                           "accountId": account.account_id, "accountType": "atlassian"}  # fmt: skip
    if not account.account_only:  # Server's identifiers; Cloud shows none
        out |= {"name": account.name, "key": account.name}
    out |= {"displayName": account.display_name, "active": account.active, "timeZone": "UTC"}
    shown = account.email_to_apps and (full or account.email_visible)
    if account.email and shown:
        out["emailAddress"] = account.email
    return out


def _status(api: str, name: str) -> dict[str, Any]:
    sid, cat, cat_id = STATUSES[name]
    return {"self": f"{api}/status/{sid}", "id": sid, "name": name,
            "statusCategory": {"id": cat_id, "key": cat}}  # fmt: skip


def _issuetype(api: str, name: str) -> dict[str, Any]:
    tid = ISSUE_TYPES[name]
    return {"self": f"{api}/issuetype/{tid}", "id": tid, "name": name,
            "subtask": name in SUBTASKS}  # fmt: skip


def _project(api: str, p: JiraProject) -> dict[str, Any]:
    kind = "service_desk" if p.service_desk else "software" if p.issue_types else "business"
    return {"self": f"{api}/project/{p.id}", "id": str(p.id), "key": p.key, "name": p.name,
            "projectTypeKey": kind, "lead": _user(api, "handover"),
            "issueTypes": [_issuetype(api, n) for n in _scheme(p)]}  # fmt: skip


def _jsm(session: Session) -> bool:
    """Whether Jira Service Management is "installed": some project is a service desk (its
    request type field exists only then)."""
    return (
        session.scalar(select(JiraProject.id).where(JiraProject.service_desk).limit(1)) is not None
    )


def _request_types(session: Session, issues: Iterable[JiraIssue]) -> dict[int, JiraRequestType]:
    ids = sorted({i.request_type for i in issues if i.request_type is not None})
    if not ids:
        return {}
    q = select(JiraRequestType).where(JiraRequestType.id.in_(ids))
    return {r.id: r for r in session.scalars(q)}


_CATEGORY = {"new": "NEW", "indeterminate": "INDETERMINATE", "done": "DONE"}


def _request_type_value(
    api: str, i: JiraIssue, p: JiraProject, rt: JiraRequestType
) -> dict[str, Any]:
    """The "Customer Request Type" field's value, as JSM Cloud gives it in an issue."""
    base = api.removesuffix(V2)
    desk = f"{base}/rest/servicedeskapi/servicedesk/{p.id}"
    return {
        "_links": {"jiraRest": f"{api}/issue/{i.id}",
                   "web": f"{base}/servicedesk/customer/portal/{p.id}/{i.key}",
                   "self": f"{base}/rest/servicedeskapi/request/{i.id}"},
        "requestType": {"_expands": ["field"], "id": str(rt.id),
                        "_links": {"self": f"{desk}/requesttype/{rt.id}"}, "name": rt.name,
                        "description": "", "helpText": "",
                        "issueTypeId": ISSUE_TYPES[rt.issuetype], "serviceDeskId": str(p.id),
                        "portalId": str(p.id), "groupIds": []},
        "currentStatus": {"status": i.status,
                          "statusCategory": _CATEGORY[STATUSES[i.status][1]],
                          "statusDate": {"iso8601": _fmt(i.updated),
                                         "epochMillis": int(i.updated.timestamp() * 1000)}},
    }  # fmt: skip


def _comment(api: str, issue_id: int, c: JiraComment) -> dict[str, Any]:
    return {"self": f"{api}/issue/{issue_id}/comment/{c.id}", "id": str(c.id),
            "author": _user(api, c.author), "body": c.body, "created": _fmt(c.created),
            "updated": _fmt(c.created)}  # fmt: skip


def _issue(
    api: str,
    i: JiraIssue,
    p: JiraProject,
    comments: list[JiraComment],
    only: set[str] | None,
    people: dict[str, JiraUser],
    jsm: dict[int, JiraRequestType] | None = None,
) -> dict[str, Any]:
    """An issue as ``GET /issue`` shows it; ``jsm``: with JSM "installed", the request types
    of the issues shown (the request type field is then on every issue, null outside JSM)."""
    resolution = RESOLUTIONS.get(i.status)
    fields = {
        "summary": i.summary, "description": i.description or None,
        "issuetype": _issuetype(api, i.issuetype), "project": _project(api, p),
        "status": _status(api, i.status), "labels": list(i.labels),
        "reporter": _user(api, i.reporter, people.get(i.reporter)),
        "assignee": _user(api, i.assignee, people.get(i.assignee)) if i.assignee else None,
        "created": _fmt(i.created), "updated": _fmt(i.updated),
        "resolution": {"name": resolution} if resolution else None,
        "comment": {"comments": [_comment(api, i.id, c) for c in comments], "startAt": 0,
                    "maxResults": len(comments), "total": len(comments)},
    }  # fmt: skip
    if jsm is not None:
        rt = jsm.get(i.request_type) if i.request_type is not None else None
        fields[REQUEST_TYPE_FIELD] = _request_type_value(api, i, p, rt) if rt else None
    fields = {k: v for k, v in fields.items() if only is None or k in only}
    return {"id": str(i.id), "self": f"{api}/issue/{i.id}", "key": i.key, "fields": fields}


# ---- JQL: field (= | != | ~) value | field [not] in (v, ...), joined by AND; ORDER BY ---------

_TOKEN = re.compile(r"""\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|(!=|[=~(),])|([\w.@+\-]+))""")
_ALIASES = {"type": "issuetype", "issue": "key", "issuekey": "key", "id": "key"}
_TEXT_FIELDS = {"text", "summary", "description"}
_EQ_FIELDS = {"project", "status", "key", "labels", "issuetype", "reporter", "assignee"}
_ORDER_FIELDS = {"created", "updated", "key", "summary", "status"}


def _jql_error(msg: str) -> JiraError:
    return JiraError(400, f"Error in the JQL Query: {msg}")


def parse_jql(jql: str) -> tuple[list[tuple[str, str, list[str]]], list[tuple[str, bool]]]:
    """Clauses ``(field, op, values)`` with op ``= != ~ in, not in``; sort keys ``(field, desc)``.

    Raises:
        JiraError: 400, with a message in the manner of Jira's JQL parser.
    """
    toks: list[tuple[str, str]] = []  # (kind, text), kind: "str" (quoted), "op" or "word"
    pos, end = 0, len(jql.rstrip())
    while pos < end:
        m = _TOKEN.match(jql, pos)
        if m is None:
            where = f"(line 1, character {pos + 1})"
            raise _jql_error(f"The character '{jql[pos:].strip()[0]}' is reserved. {where}")
        q1, q2, op, word = m.groups()
        text = op or word or re.sub(r"\\(.)", r"\1", q1 if q1 is not None else q2)
        toks.append(("op" if op else "word" if word else "str", text))
        pos = m.end()
    toks.append(("end", "end of query"))
    at = 0

    def take(*words: str) -> str | None:
        """Consume the next token when it is one of ``words`` (keywords in any case)."""
        nonlocal at
        kind, text = toks[at]
        if kind in ("word", "op") and text.lower() in words:
            at += 1
            return text.lower()
        return None

    def value() -> str:
        nonlocal at
        kind, text = toks[at]
        if kind not in ("word", "str"):
            raise _jql_error(f"Expecting either a value, list or function but got '{text}'.")
        at += 1
        return text

    clauses: list[tuple[str, str, list[str]]] = []
    while toks[at][0] != "end" and toks[at][1].lower() != "order":
        if clauses and not take("and"):
            raise _jql_error(f"Expecting 'AND' but got '{toks[at][1]}'.")
        name = value()
        field = _ALIASES.get(name.lower(), name.lower())
        if field not in _TEXT_FIELDS | _EQ_FIELDS:
            raise _jql_error(f"Field '{name}' does not exist or you do not have permission.")
        op = take("=", "!=", "~", "in") or (take("not") and take("in") and "not in")
        if not op:
            raise _jql_error(f"Expecting operator but got '{toks[at][1]}'.")
        if (op == "~") != (field in _TEXT_FIELDS):
            raise _jql_error(f"The operator '{op}' is not supported by the '{name}' field.")
        if op in ("in", "not in"):
            if not take("("):
                raise _jql_error(f"Expecting '(' but got '{toks[at][1]}'.")
            values = [value()]
            while take(","):
                values.append(value())
            if not take(")"):
                raise _jql_error(f"Expecting ')' but got '{toks[at][1]}'.")
        else:
            values = [value()]
        clauses.append((field, op, values))
    order: list[tuple[str, bool]] = []
    if take("order"):
        if not take("by"):
            raise _jql_error(f"Expecting 'by' but got '{toks[at][1]}'.")
        while True:
            name = value().lower()
            if name not in _ORDER_FIELDS:
                raise _jql_error(f"Not able to sort using field '{name}'.")
            order.append((name, take("desc", "asc") == "desc"))
            if not take(","):
                break
    if toks[at][0] != "end":
        raise _jql_error(f"Unexpected '{toks[at][1]}'.")
    return clauses, order


def search(session: Session, jql: str) -> list[JiraIssue]:
    """The issues matching ``jql`` in its order (default: newest first).

    Raises:
        JiraError: 400 for invalid JQL, or a project, status or issue key that does not exist
            (Jira validates those values).
    """
    clauses, order = parse_jql(jql)
    projects = {p.key: p for p in session.scalars(select(JiraProject))}
    names = {v for p in projects.values() for v in (p.key.lower(), p.name.lower(), str(p.id))}
    for field, _, values in clauses:
        for v in values:
            if (field == "project" and v.lower() not in names) or (
                field == "status" and v.lower() not in {s.lower() for s in STATUSES}
            ):
                raise JiraError(400, f"The value '{v}' does not exist for the field '{field}'.")
            if field == "key" and _find(session, v) is None:
                raise JiraError(400, f"An issue with key '{v}' does not exist for field 'key'.")
    issues = list(session.scalars(select(JiraIssue).order_by(JiraIssue.id.desc())))
    comments = (
        _comments(session, [i.id for i in issues])
        if ("text", "~") in {c[:2] for c in clauses}
        else {}
    )

    def matches(i: JiraIssue, field: str, op: str, values: list[str]) -> bool:
        if op == "~":  # Jira's text search is word based; a case-insensitive substring is close
            hay = [i.summary] if field == "summary" else [i.description]
            if field == "text":  # summary, description and comments, as in Jira
                hay = [i.summary, i.description, *(c.body for c in comments[i.id])]
            return all(any(v.lower() in h.lower() for h in hay) for v in values)
        p = projects[i.project]
        have = {
            "project": {p.key.lower(), p.name.lower(), str(p.id)},
            "key": {i.key.lower(), str(i.id)}, "status": {i.status.lower()},
            "labels": {x.lower() for x in i.labels},
            "issuetype": {i.issuetype.lower()}, "reporter": {i.reporter.lower()},
            "assignee": {(i.assignee or "").lower()},
        }[field]  # fmt: skip
        return bool(have & {v.lower() for v in values}) == (op in ("=", "in"))

    out = [i for i in issues if all(matches(i, *c) for c in clauses)]
    sort_keys: dict[str, Callable[[JiraIssue], Any]] = {
        "created": lambda i: (i.created, i.id), "updated": lambda i: (i.updated, i.id),
        "key": lambda i: (i.project, i.number), "summary": lambda i: i.summary.lower(),
        "status": lambda i: int(STATUSES[i.status][0]),
    }  # fmt: skip
    for field, desc in reversed(order):  # stable sorts, least significant key first
        out.sort(key=sort_keys[field], reverse=desc)
    return out


# ---- HTTP ------------------------------------------------------------------------------------


def _authorized(request: Request, world: World) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        user, _, secret = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    c = world.credentials
    # both compared in constant time, so a wrong user name takes as long as a wrong token
    ok_user = hmac.compare_digest(user.encode(), c.jira_user.encode())
    ok_token = hmac.compare_digest(secret.encode(), c.jira_token.encode())
    return scheme.lower() == "basic" and ok_user and ok_token


class _JiraRoute(APIRoute):
    """Checks Basic auth and answers errors in Jira's shape. A route class rather than app-wide
    exception handlers, so that the other fakes keep their own error shapes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            if not _authorized(request, request.app.state.world):
                msg = (
                    "You are not authenticated. Authentication required to perform this operation."
                )
                return JiraError(401, msg).response()
            try:
                return await handler(request)
            except JiraError as e:
                return e.response()
            except RequestValidationError as e:  # bad JSON or parameters: Jira says 400
                return JiraError(400, *(str(err.get("msg")) for err in e.errors())).response()

        return run


router = APIRouter(prefix="/jira", route_class=_JiraRoute, tags=["jira"])
control_router = APIRouter(prefix="/_sandbox/jira", tags=["sandbox control"])
V2 = "/rest/api/2"


def _world(request: Request) -> World:
    world: World = request.app.state.world  # Starlette's State is untyped: one set per app
    return world


def _api(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}/jira{V2}"


def _me(request: Request) -> str:
    return _world(request).credentials.jira_user


def _load(s: Session, key: str) -> tuple[JiraIssue, JiraProject]:
    i = _find(s, key)
    if i is None:
        raise JiraError(404, NOT_FOUND)
    return i, s.scalars(select(JiraProject).where(JiraProject.key == i.project)).one()


def _only(fields: list[str] | None) -> set[str] | None:
    """``fields=a,b`` (or repeated) → the set to return; ``None`` for all of them."""
    names = {f.strip() for v in fields or () for f in v.split(",") if f.strip()}
    return None if not names or names & {"*all", "*navigable"} else names


def _name(value: Any) -> str | None:
    """A reference as ``{"name"|"key"|"id": ...}`` or a plain string."""
    if isinstance(value, dict):
        value = value.get("name") or value.get("key") or value.get("id")
    return str(value) if isinstance(value, str | int) and value != "" else None


@router.get(V2 + "/serverInfo")
def server_info(request: Request) -> dict[str, Any]:
    return {"baseUrl": _api(request).removesuffix(V2), "version": "9.12.2",
            "versionNumbers": [9, 12, 2], "deploymentType": "Server", "buildNumber": 912002,
            "serverTime": _fmt(_world(request).clock.now()),
            "serverTitle": "Handover sandbox"}  # fmt: skip


@router.get(V2 + "/myself")
def myself(request: Request) -> dict[str, Any]:
    return _user(_api(request), _me(request))


@router.get(V2 + "/user")
def user(
    request: Request,
    accountId: str | None = None,
    username: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """One account: by ``accountId`` (Cloud) or ``username``/``key`` (Server), as Jira answers
    ``GET /rest/api/2/user``; its email shown to Handover's account even when issues hide it."""
    ref = accountId or username or key
    if not ref:
        raise JiraError(400, "The username, key or accountId query parameters need to be provided")
    with _world(request).db.session() as s:
        col = JiraUser.account_id if accountId else JiraUser.name
        found = s.scalar(select(JiraUser).where(col == ref))
        if found is not None and found.account_only and not accountId:
            found = None  # a Cloud account has no username to be found by
        if found is None:
            raise JiraError(404, f"The user with the key '{ref}' does not exist")
        return _user(_api(request), found.name, found, full=True)


@router.get(V2 + "/field")
def fields(request: Request) -> list[dict[str, Any]]:
    """The system fields, and JSM's request type field where JSM is "installed"."""
    out = [{"id": fid, "key": fid, "name": name, "custom": False, "orderable": True,
            "navigable": True, "searchable": True, "clauseNames": clauses}
           for fid, name, clauses in FIELDS]  # fmt: skip
    with _world(request).db.session() as s:
        if _jsm(s):
            out.append({"id": REQUEST_TYPE_FIELD, "key": REQUEST_TYPE_FIELD,
                        "name": "Request Type", "untranslatedName": "Request Type",
                        "custom": True, "orderable": True, "navigable": True,
                        "searchable": True, "clauseNames": ["cf[10010]", "Request Type"],
                        "schema": REQUEST_TYPE_SCHEMA})  # fmt: skip
    return out


@router.get(V2 + "/issuetype")
def issue_types(request: Request) -> list[dict[str, Any]]:
    return [_issuetype(_api(request), n) for n in ISSUE_TYPES]


@router.get(V2 + "/project")
def projects(request: Request) -> list[dict[str, Any]]:
    with _world(request).db.session() as s:
        rows = s.scalars(select(JiraProject).order_by(JiraProject.key))
        return [_project(_api(request), p) for p in rows]


@router.get(V2 + "/project/{key}")
def project(request: Request, key: str) -> dict[str, Any]:
    with _world(request).db.session() as s:
        p = _project_row(s, key)
        if p is None:
            raise JiraError(404, f"No project could be found with key '{key}'.")
        return _project(_api(request), p)


@router.post(V2 + "/issue", status_code=201)
def create(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    f = body.get("fields")
    if not isinstance(f, dict):
        raise JiraError(400, "Can not deserialize the issue: 'fields' is missing.")
    world = _world(request)
    with world.db.session() as s:
        settable = CREATABLE | ({REQUEST_TYPE_FIELD} if _jsm(s) else set())
        errors = {k: NOT_SETTABLE.format(k) for k in f if k not in settable}
        ref = _name(f.get("project"))
        proj = _project_row(s, ref) if ref else None
        if proj is None:
            errors["project"] = f"{'valid ' if ref else ''}project is required"
        ref = _name(f.get("issuetype"))
        itype = next((n for n, tid in ISSUE_TYPES.items() if ref in (n, tid)), None)
        if itype is None:
            errors["issuetype"] = f"{'valid ' if ref else ''}issue type is required"
        elif proj is not None and itype not in _scheme(proj):
            errors["issuetype"] = BAD_ISSUE_TYPE
        rtype = _request_type_ref(s, proj, f.get(REQUEST_TYPE_FIELD), errors)
        summary = f.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        labels, description = f.get("labels") or [], f.get("description") or ""
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            errors["labels"] = "Labels must be a list of strings."
        elif bad := [x for x in labels if not x or " " in x]:
            errors["labels"] = f"The label '{bad[0]}' contains spaces which is invalid."
        if not isinstance(description, str):
            errors["description"] = "Operation value must be a string"
        given = f.get("reporter")
        if isinstance(given, dict) and given.get("accountId"):  # Cloud names people by id
            account = s.get(JiraUser, str(given["accountId"]))
            if account is None:
                errors["reporter"] = "Specified reporter is not a user."
            else:
                given = account.name
        if errors or proj is None or itype is None or not isinstance(summary, str):
            raise JiraError(400, errors=errors)
        reporter = _name(given) or _me(request)
        key = create_issue(s, world.clock.now(), project=proj.key, issuetype=itype,
                           summary=summary, description=description, labels=labels,
                           reporter=reporter, assignee=_name(f.get("assignee")),
                           request_type=rtype)  # fmt: skip
        i, _ = _load(s, key)
        return {"id": str(i.id), "key": i.key, "self": f"{_api(request)}/issue/{i.id}"}


def _request_type_ref(
    s: Session, proj: JiraProject | None, value: Any, errors: dict[str, str]
) -> int | None:
    """The request type id ``POST /issue`` sets: Jira takes a plain string (an object is
    refused), here the id of one of the project's request types."""
    if value is None:
        return None
    if not isinstance(value, str):
        errors[REQUEST_TYPE_FIELD] = "Operation value must be a string"
        return None
    found = s.get(JiraRequestType, int(value)) if value.isdigit() else None
    if found is None or proj is None or found.project != proj.key:
        errors[REQUEST_TYPE_FIELD] = f"The request type '{value}' is not valid for this project."
        return None
    return found.id


@router.get(V2 + "/issue/{key}")
def read_issue(
    request: Request, key: str, fields: list[str] | None = Query(None), expand: str = ""
) -> Any:
    with _world(request).db.session() as s:
        i, p = _load(s, key)
        people = _people(s, [i.reporter, i.assignee])
        jsm = _request_types(s, [i]) if _jsm(s) else None
        only = _only(fields)
        out = _issue(_api(request), i, p, _comments(s, [i.id])[i.id], only, people, jsm)
        if "transitions" in expand.split(","):  # Jira's expand: the issue and its moves at once
            out["transitions"] = _transitions(request, i)
        return out


def _transitions(request: Request, i: JiraIssue, tid: str | None = None) -> list[dict[str, Any]]:
    """The transitions available from the issue's status (``tid``: that one only)."""
    return [
        {"id": t, "name": name, "to": _status(_api(request), to), "hasScreen": False,
         "isGlobal": False, "isInitial": False, "isConditional": False}
        for t, name, sources, to in TRANSITIONS
        if i.status in sources and tid in (None, t)
    ]  # fmt: skip


@router.get(V2 + "/issue/{key}/comment")
def list_comments(request: Request, key: str, startAt: int = 0, maxResults: int = 1000) -> Any:
    with _world(request).db.session() as s:
        i, _ = _load(s, key)
        cs = _comments(s, [i.id])[i.id]
        page = [_comment(_api(request), i.id, c) for c in cs[startAt : startAt + maxResults]]
        return {"startAt": startAt, "maxResults": maxResults, "total": len(cs), "comments": page}


def _add_comment(s: Session, i: JiraIssue, author: str, body: Any, now: datetime) -> JiraComment:
    if not isinstance(body, str) or not body.strip():
        raise JiraError(400, errors={"comment": "Comment body can not be empty!"})
    c = JiraComment(id=_next_id(s, JiraComment), issue_id=i.id, author=author, body=body,
                    created=now)  # fmt: skip
    s.add(c)
    i.updated = now
    s.flush()
    return c


@router.post(V2 + "/issue/{key}/comment", status_code=201)
def add_comment(request: Request, key: str, body: dict[str, Any] = Body(...)) -> Any:
    world = _world(request)
    with world.db.session() as s:
        i, _ = _load(s, key)
        c = _add_comment(s, i, _me(request), body.get("body"), world.clock.now())
        return _comment(_api(request), i.id, c)


@router.get(V2 + "/issue/{key}/transitions")
def list_transitions(request: Request, key: str, transitionId: str | None = None) -> Any:
    with _world(request).db.session() as s:
        i, _ = _load(s, key)
        return {"expand": "transitions", "transitions": _transitions(request, i, transitionId)}


@router.post(V2 + "/issue/{key}/transitions", status_code=204)
def do_transition(request: Request, key: str, body: dict[str, Any] = Body(...)) -> Response:
    world = _world(request)
    with world.db.session() as s:
        i, _ = _load(s, key)
        t = body.get("transition")
        ref = _name({"id": t.get("id")}) if isinstance(t, dict) else None
        if ref is None:
            raise JiraError(400, "Missing 'transition' identifier")
        found = [x for x in TRANSITIONS if x[0] == ref and i.status in x[2]]
        if not found:
            raise JiraError(400, f"Transition id '{ref}' is not valid for this issue.")
        if body.get("fields"):  # no transition has a screen, so no field can be set on one
            raise JiraError(400, errors={k: NOT_SETTABLE.format(k) for k in body["fields"]})
        now = world.clock.now()
        for op in (body.get("update") or {}).get("comment") or []:  # comment while transitioning
            _add_comment(s, i, _me(request), (op.get("add") or {}).get("body"), now)
        _, name, _, to = found[0]
        log = JiraTransitionLog(id=_next_id(s, JiraTransitionLog), issue_id=i.id, at=now,
                                transition=name, from_status=i.status, to_status=to,
                                author=_me(request))  # fmt: skip
        s.add(log)
        i.status, i.updated = to, now
    return Response(status_code=204)


@router.api_route(V2 + "/search", methods=["GET", "POST"])
def search_issues(
    request: Request,
    jql: str = "",
    startAt: int = 0,
    maxResults: int = 50,
    fields: list[str] | None = Query(None),
    body: dict[str, Any] | None = Body(None),
) -> dict[str, Any]:
    if body is not None:  # POST /search: the same parameters as a JSON body
        jql, startAt = str(body.get("jql") or ""), int(body.get("startAt") or 0)
        maxResults, fields = int(body.get("maxResults") or 50), body.get("fields")
    maxResults = max(0, min(maxResults, 1000))  # Jira Server caps a page at 1000 issues
    with _world(request).db.session() as s:
        found = search(s, jql)
        page = found[startAt : startAt + maxResults]
        projects = {p.key: p for p in s.scalars(select(JiraProject))}
        comments, only = _comments(s, [i.id for i in page]), _only(fields)
        people = _people(s, [n for i in page for n in (i.reporter, i.assignee)])
        jsm = _request_types(s, page) if _jsm(s) else None
        issues = [
            _issue(_api(request), i, projects[i.project], comments[i.id], only, people, jsm)
            for i in page
        ]
        return {"startAt": startAt, "maxResults": maxResults, "total": len(found), "issues": issues}


@control_router.get("/issues/{key}", response_model=None)
def control_issue(request: Request, key: str) -> dict[str, Any] | JSONResponse:
    """An issue with its comments and transition history."""
    with _world(request).db.session() as s:
        out = get_issue(s, key)
    return out if out is not None else JiraError(404, NOT_FOUND).response()


@control_router.get("/issues")
def control_issues(request: Request, project: str | None = None) -> dict[str, Any]:
    """Every issue (of one project), oldest first."""
    with _world(request).db.session() as s:
        q = select(JiraIssue.key).order_by(JiraIssue.id)
        if project:
            q = q.where(JiraIssue.project == project.upper())
        return {"issues": [get_issue(s, k) for k in s.scalars(q)]}


class NewJiraUser(BaseModel):
    """A Jira account for the tests: e.g. one that hides its email, or has none."""

    name: str = Field(min_length=1, max_length=320)
    display_name: str = Field("", max_length=255)
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+$")
    email_visible: bool = True
    email_to_apps: bool = True
    account_only: bool = False


@control_router.post("/users")
def add_user(request: Request, body: NewJiraUser) -> dict[str, Any]:
    """Add a Jira account (idempotent on the name); its user object as ``GET /user`` shows it."""
    with _world(request).db.session() as s:
        aid = ensure_user(
            s,
            body.name,
            display_name=body.display_name,
            email=body.email,
            email_visible=body.email_visible,
            email_to_apps=body.email_to_apps,
            account_only=body.account_only,
        )
        account = s.get(JiraUser, aid)
        assert account is not None
        return {"ok": True, "user": _user(_api(request), account.name, account, full=True)}


class NewRequestType(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    issue_type: str = Field(min_length=1, max_length=64)


class NewJiraProject(BaseModel):
    """A project as an organisation configured it: its issue type scheme, and for a Jira
    Service Management project its request types."""

    key: str = Field(pattern=r"^[A-Z][A-Z0-9_]{1,9}$")
    name: str = Field(min_length=1, max_length=200)
    issue_types: list[str] = Field(default_factory=lambda: list(SOFTWARE_SCHEME), min_length=1)
    request_types: list[NewRequestType] = Field(default_factory=list)


@control_router.post("/projects", response_model=None)
def add_project(request: Request, body: NewJiraProject) -> dict[str, Any] | JSONResponse:
    """Add a project with its scheme (idempotent on the key: an existing one is kept); the
    project as ``GET /project/{key}`` shows it, with its request types' ids."""
    with _world(request).db.session() as s:
        try:
            ensure_project(
                s,
                body.key,
                body.name,
                issue_types=body.issue_types,
                request_types=[(r.name, r.issue_type) for r in body.request_types],
            )
        except KeyError as e:
            return JiraError(400, f"no issue type {e.args[0]!r} in the scheme").response()
        p = _project_row(s, body.key)
        assert p is not None
        q = select(JiraRequestType).where(JiraRequestType.project == p.key)
        kinds = {r.name: str(r.id) for r in s.scalars(q.order_by(JiraRequestType.id))}
        return {"ok": True, "project": _project(_api(request), p), "request_types": kinds}
