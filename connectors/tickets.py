"""Jira, through the ``jira`` package: the :class:`~connectors.capabilities.Tickets` capability,
and reading an access request off a ticket.

The client's own retries are switched off (``max_retries=0``), so :func:`call_with_retry` is the
only retry layer and honours ``Retry-After`` once, not twice. The client is built on first use,
inside that layer: building it asks the server for its version, which can fail like any call.

Every ``JIRAError`` and ``requests`` error is translated in :func:`_translate`, and nowhere
else; a ``JIRAError``'s own text is never reused whole (its ``str`` dumps headers), only the
server's error messages.

A ticket's reporter is an email only where Jira gives one: the reporter's ``emailAddress``, or,
when the issue hides it (Jira Cloud's profile visibility), the one ``GET /user`` gives for the
reporter's account (:meth:`JiraTickets.get`). Jira Cloud names people by ``accountId`` only (no
``name``/``key``), so the account is asked for by ``accountId`` whenever the reporter carries one
(``GET /rest/api/2/user?accountId=…``), and by ``username`` only for a Server account without
one. A display name is never taken for a person: a reporter without an email is ``None``, and
an access request from nobody is refused upstream.

Which tickets are access requests is configuration (``domain.request_kind``): issue types,
Jira Service Management request types, a label. The JSM request type lives in the "Customer
Request Type" custom field (``customfield_10010`` on Cloud, another id on each Server/DC
site), found once by its schema type ``com.atlassian.servicedesk:vp-origin`` in
``GET /rest/api/2/field``; its value's ``requestType.name`` is the type. A Jira without JSM has
no such field and no ticket has a request type.

Workflows name their transitions freely ("Resolve", "To Done"), so :meth:`transition_to` picks
the transition by the status it leads to, as a person reading the workflow would. Creating an
issue or a comment has no idempotency key in Jira: a 5xx answered after Jira applied the write
can leave a duplicate, which is the lesser harm than a lost ticket or comment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from jira import JIRA, JIRAError
from jira.resources import User
from requests.exceptions import ChunkedEncodingError, RequestException, Timeout
from requests.exceptions import ConnectionError as RequestsConnectionError

from connectors.errors import (
    ConflictError,
    ConnectorError,
    InvalidRequestError,
    NotFoundError,
    TransientError,
    error_for_status,
    parse_retry_after,
)
from connectors.rate import Limiter, limiter_for
from connectors.retry import call_with_retry
from connectors.settings import Settings, load_settings
from domain.access_request import parse_access_request
from domain.models import AccessRequest, Effect, Ticket, WriteResult
from domain.request_kind import NotAnAccessRequest, RequestKinds, request_type_name

SYSTEM = "jira"
# The fields a Ticket is made of; asking only for these keeps answers small.
FIELDS = "summary,status,issuetype,description,labels,reporter"
# The schema type of JSM's "Customer Request Type" field, whatever its id on a site.
REQUEST_TYPE_SCHEMA = "com.atlassian.servicedesk:vp-origin"
T = TypeVar("T")


def _translate(exc: Exception, *, operation: str, subject: str | None) -> ConnectorError:
    """The one mapping from the ``jira`` client's and ``requests``' exceptions to our tree."""
    kw: dict[str, Any] = {"system": SYSTEM, "operation": operation, "subject": subject}
    if isinstance(exc, JIRAError):
        message = (exc.text or "").strip() or "no details"
        if exc.status_code is None:  # the client's own complaint, not the server's answer
            return InvalidRequestError(message, **kw)
        headers = exc.response.headers if exc.response is not None else {}
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return error_for_status(exc.status_code, message, retry_after=retry_after, **kw)
    if isinstance(exc, Timeout):
        return TransientError("timed out", **kw)
    if isinstance(exc, RequestsConnectionError | ChunkedEncodingError):
        return TransientError(f"connection failed ({type(exc).__name__})", **kw)
    if isinstance(exc, RequestException):  # an invalid URL or the like: a retry cannot help
        return InvalidRequestError(type(exc).__name__, **kw)
    return TransientError(f"connection failed ({type(exc).__name__})", **kw)  # other OSError


def _email(user: Any) -> str | None:
    """A Jira user's email where Jira shows one (lower-case); never a name in its place."""
    email = str(getattr(user, "emailAddress", None) or "").strip().lower()
    return email if "@" in email else None


def _account(user: Any) -> str:
    """How Jira identifies the account: Cloud's ``accountId``, else Server's ``name``."""
    return str(getattr(user, "accountId", None) or getattr(user, "name", None) or "")


def _meter(client: JIRA, limiter: Limiter) -> None:
    """Every HTTP request ``client`` makes takes a token of ``limiter``: one call of ours may
    make two (a search before a create, the issue before a transition), and a token per call
    would let those through unmetered (the bulk bench then got 429s at Jira's limit)."""
    session = client._session
    send = session.request

    def request(*args: Any, **kwargs: Any) -> Any:
        limiter.acquire()
        return send(*args, **kwargs)

    session.request = request  # type: ignore[method-assign]


class JiraTickets:
    """The Tickets capability over Jira REST v2.

    Args:
        settings: where Jira is and the credentials, and which tickets are access requests;
            ``load_settings()`` when omitted.
        client: a ready ``JIRA`` client to use instead (built with ``max_retries=0``).
        kinds: which tickets are access requests, instead of the settings' request types and
            label.
        attempts: how many times a transient failure is tried in all.
        max_seconds: the bound on the time spent retrying one call.
        limiter: the rate limiter; the one in use of this Jira by default (connectors/rate.py).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        client: JIRA | None = None,
        attempts: int = 6,
        max_seconds: float = 60.0,
        limiter: Limiter | None = None,
        kinds: RequestKinds | None = None,
    ) -> None:
        settings = settings or load_settings()
        self.kinds = kinds or settings.request_kinds()
        self._request_field: str | None = None  # JSM's request type field id; "" when none
        if client is None:
            self.server = settings.jira_url.rstrip("/")
            user, token = settings.jira_user, settings.jira_token
            self._make: Callable[[], JIRA] = lambda: JIRA(
                server=self.server,
                basic_auth=(user, token.get_secret_value()),
                get_server_info=True,
                max_retries=0,
                timeout=15,
            )
        else:
            self.server = client.server_url.rstrip("/")
            self._make = lambda: client
        self._client = client
        self._client_lock = threading.Lock()
        self._metered = False
        self.limiter = limiter or limiter_for("jira", self.server, settings.jira_rate_per_minute)
        self.attempts, self.max_seconds = attempts, max_seconds

    def __repr__(self) -> str:  # never the client: it holds the credentials
        return f"JiraTickets(server={self.server!r})"

    # ---------------------------------------------------------------- the one way to call
    def _jira(self) -> JIRA:
        with self._client_lock:
            if self._client is None:
                self.limiter.acquire()  # building it asks for the server's version
                self._client = self._make()
            if not self._metered:
                _meter(self._client, self.limiter)
                self._metered = True
            return self._client

    def _call(self, fn: Callable[[JIRA], T], *, operation: str, subject: str | None = None) -> T:
        """Run ``fn(client)``: rate-limited, errors translated, transient ones retried."""

        def attempt() -> T:
            # Building the client asks for the server's version: a failure there says so.
            op, subj = "connect", None
            try:
                client = self._jira()
                op, subj = operation, subject
                return fn(client)
            except (JIRAError, RequestException, OSError) as exc:
                err = _translate(exc, operation=op, subject=subj)
                if isinstance(err, TransientError) and err.status_code == 429:
                    self.limiter.penalize(err.retry_after or 1.0)
                raise err from exc

        return call_with_retry(attempt, attempts=self.attempts, max_seconds=self.max_seconds)

    def _fields(self, operation: str, subject: str) -> str:
        """The fields to ask for: a Ticket's, and JSM's request type where the site has it
        (looked up once; a failure is said as one of ``operation``, which needed it)."""
        if self._request_field is None:
            listed = self._call(lambda j: j.fields(), operation=operation, subject=subject)
            found = [
                str(f.get("id"))
                for f in listed
                if (f.get("schema") or {}).get("custom") == REQUEST_TYPE_SCHEMA
            ]
            self._request_field = found[0] if found else ""
        return f"{FIELDS},{self._request_field}" if self._request_field else FIELDS

    def _ticket(self, issue: Any) -> Ticket:
        f = issue.fields
        reporter = getattr(f, "reporter", None)
        raw = (getattr(issue, "raw", None) or {}).get("fields") or {}
        return Ticket(
            key=issue.key,
            summary=f.summary or "",
            status=f.status.name,
            issue_type=f.issuetype.name,
            description=getattr(f, "description", None) or "",
            labels=tuple(getattr(f, "labels", None) or ()),
            reporter=_email(reporter) if reporter is not None else None,
            url=f"{self.server}/browse/{issue.key}",
            reporter_account=_account(reporter) if reporter is not None else "",
            reporter_name=str(getattr(reporter, "displayName", None) or ""),
            request_type=request_type_name(raw.get(self._request_field or "")),
        )

    def _reporter_email(self, ticket: Ticket, issue: Any) -> str | None:
        """The reporter's email from their account (``GET /user``), for an issue that hides
        it; None when the account has none Jira will show."""
        user = getattr(issue.fields, "reporter", None)
        account = str(getattr(user, "accountId", None) or "")
        name = str(getattr(user, "name", None) or getattr(user, "key", None) or "")

        def read(j: JIRA) -> Any:
            if not account:  # a Server account: by username, as Server wants
                return j.user(name)
            # By accountId, whatever the deployment says: the client's ``user()`` asks by
            # username unless the server calls itself Cloud, and an accountId-only account
            # (Cloud's only kind) has no username to be found by.
            found = User(j._options, j._session, _query_param="accountId")
            found.find(account)
            return found

        if not (account or name):
            return None
        try:
            found = self._call(read, operation="get_user", subject=ticket.reporter_account)
        except NotFoundError:
            return None
        return _email(found)

    # ---------------------------------------------------------------- Tickets
    def create(
        self,
        *,
        project: str,
        issue_type: str,
        summary: str,
        description: str = "",
        labels: Sequence[str] = (),
        once: str | None = None,
    ) -> Ticket:
        """Create an issue.

        Args:
            project: the project key, e.g. ``ACC``.
            issue_type: the issue type's name, e.g. ``Task``.
            summary: one line.
            description: the body.
            labels: labels without spaces.
            once: a label naming this very request (e.g. ``handover-case-12``): the issue that
                already carries it is returned instead of a second one being created — Jira has
                no idempotency key, and a retry after a lost answer, or a re-run after a killed
                worker, would otherwise file the ticket twice.

        Returns:
            The issue as created (status as the workflow starts it).

        Raises:
            InvalidRequestError: Jira refused a field (its message names it).
            ConnectorError: any other failure, after retries.
        """
        # Given as key and name, so the client need not look them up in extra calls.
        fields: dict[str, Any] = {
            "project": {"key": project},
            "issuetype": {"name": issue_type},
            "summary": summary,
            "description": description,
        }
        if labels or once:
            fields["labels"] = [*labels, *([once] if once else [])]

        def create(j: JIRA) -> Any:
            if once:  # looked up on every attempt: the previous one may have been applied
                found = j.search_issues(f'labels = "{once}"', maxResults=1, fields="summary")
                if found:
                    return found[0]
            return j.create_issue(fields=fields, prefetch=False)

        created = self._call(create, operation="create_issue", subject=project)
        return self.get(created.key)

    def get(self, key: str) -> Ticket:
        """One issue.

        Args:
            key: e.g. ``ACC-12``.

        Returns:
            The issue; its ``reporter`` is the reporter's email — read from their account
            (``GET /user``) when the issue hides it — or None when Jira shows none.

        Raises:
            NotFoundError: no such issue (or no permission to see it).
            ConnectorError: any other failure, after retries.
        """
        fields = self._fields("get_issue", key)
        issue = self._call(
            lambda j: j.issue(key, fields=fields), operation="get_issue", subject=key
        )
        ticket = self._ticket(issue)
        if ticket.reporter is None and ticket.reporter_account:
            found = self._reporter_email(ticket, issue)
            ticket = ticket.model_copy(update={"reporter": found})
        return ticket

    def comment(self, key: str, body: str) -> WriteResult:
        """Add a comment.

        Args:
            key: the issue.
            body: the text (Jira wiki markup is rendered by Jira).

        Returns:
            ``created``, with the comment's id in ``detail``.

        Raises:
            NotFoundError: no such issue.
            ConnectorError: any other failure, after retries.
        """
        c = self._call(lambda j: j.add_comment(key, body), operation="comment", subject=key)
        return WriteResult(effect=Effect.CREATED, detail={"id": str(c.id), "issue": key})

    def search(self, jql: str, *, limit: int = 50) -> list[Ticket]:
        """Issues matching a JQL query, in its order.

        Args:
            jql: e.g. ``project = ACC AND status = Open ORDER BY created ASC``.
            limit: at most this many issues.

        Returns:
            The issues.

        Raises:
            InvalidRequestError: the query is invalid (Jira's message says where).
            ConnectorError: any other failure, after retries.
        """
        fields = self._fields("search", jql)
        found = self._call(
            lambda j: j.search_issues(jql, maxResults=limit, fields=fields),
            operation="search",
            subject=jql,
        )
        return [self._ticket(i) for i in found]

    def transition_to(self, key: str, status: str) -> WriteResult:
        """Move an issue to ``status`` by the transition that leads there.

        The status is read again on every attempt, so a retry after a write that went through
        (but whose answer was lost) finds the issue there and does nothing twice.

        Args:
            key: the issue.
            status: the target status's name (case-insensitive), e.g. ``Done``.

        Returns:
            ``updated`` (``detail`` names the transition, from and to), or
            ``noop("already <status>")``.

        Raises:
            ConflictError: no transition from the current status leads to ``status``; the
                message lists those that exist.
            NotFoundError: no such issue.
            ConnectorError: any other failure, after retries.
        """
        target = status.strip().casefold()

        def move(j: JIRA) -> WriteResult:
            # The status and the transitions from it in one read (Jira's expand=transitions).
            issue = j.issue(key, fields="status", expand="transitions")
            current = issue.fields.status.name
            if current.casefold() == target:
                return WriteResult.noop(f"already {current}", status=current)
            raw = getattr(issue, "raw", None) or {}
            options = raw["transitions"] if "transitions" in raw else j.transitions(key)
            chosen = next((t for t in options if t["to"]["name"].casefold() == target), None)
            if chosen is None:
                available = ", ".join(f"{t['name']} → {t['to']['name']}" for t in options)
                raise ConflictError(
                    f"no transition from {current} leads to {status}"
                    f" (available: {available or 'none'})",
                    system=SYSTEM,
                    operation="transition",
                    subject=key,
                )
            j.transition_issue(key, str(chosen["id"]))
            return WriteResult(
                effect=Effect.UPDATED,
                detail={"from": current, "to": chosen["to"]["name"], "transition": chosen["name"]},
            )

        return self._call(move, operation="transition", subject=key)

    # ---------------------------------------------------------------- access requests
    def read_access_request(self, key: str, *, today: date | None = None) -> AccessRequest:
        """The access request a ticket carries (INTERFACES.md "Access-request tickets").

        Args:
            key: the ticket.
            today: the date an ``until`` must be after; today in UTC when omitted.

        Returns:
            The request: ticket key kept, ``temporary`` from the labels (or an ``until``),
            requester = the reporter (their email; None when Jira tells none).

        Raises:
            NotAnAccessRequest: the ticket is not one by the configured request types and
                label (``str()`` says what it is and how to file one).
            AccessRequestError: the description is not a valid request (``str()`` of it is
                meant to be posted on the ticket as a comment).
            NotFoundError: no such ticket.
            ConnectorError: any other failure, after retries.
        """
        ticket = self.get(key)
        if not self.kinds.admits_ticket(ticket):
            raise NotAnAccessRequest(ticket, self.kinds)
        return parse_access_request(
            ticket.description,
            ticket=ticket.key,
            labels=ticket.labels,
            requester=ticket.reporter,
            today=today or datetime.now(UTC).date(),
        )
