"""One HTTP client for every HTTP connector: rate limit, retries, error mapping, no secrets.

Each call waits for a token of the backend's bucket, maps the answer to our error tree (the
only place httpx errors are translated), retries transient errors with :mod:`connectors.retry`,
and counts what happened so runs and benchmarks can report requests, retries and 429s.
"""

from __future__ import annotations

import functools
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from connectors.errors import (
    ConnectorError,
    PermanentError,
    TransientError,
    Where,
    error_for_status,
    parse_retry_after,
)
from connectors.rate import Limiter, limiter_for
from connectors.retry import call_with_retry

# The call under way in this thread, (operation, subject): what an ``httpx.Auth`` that fails
# (a token endpoint refusing the client) names in its error, as the call's own errors do.
_CALL: ContextVar[tuple[str, str | None]] = ContextVar("handover_http_call", default=("", None))


def current_call() -> tuple[str, str | None]:
    """The ``operation`` and ``subject`` of the :meth:`HttpApi.request` under way, if any."""
    return _CALL.get()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every HTTP client of this process, the one httpx would build
    (certifi's CA bundle, or ``SSL_CERT_FILE``'s): httpx builds one per client otherwise,
    reading the whole bundle each time (about 50 ms of CPU per client on 2 cores)."""
    return httpx.create_ssl_context()


def new_client(timeout: float) -> httpx.Client:
    """An HTTP client of ``timeout`` seconds on this process's TLS context."""
    return httpx.Client(timeout=timeout, verify=tls_context())


@dataclass
class CallStats:
    """Counters of one client (thread-safe)."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    waited_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **kw: float) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "server_errors": self.server_errors,
            "waited_s": round(self.waited_s, 3),
        }


def error_message(response: httpx.Response) -> str:
    """The vendor's own words from an error body (SCIM detail, Jira errorMessages, Graph's
    nested ``{"error": {"code", "message"}}``, …)."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason_phrase)[:300]
    if isinstance(body, dict):
        for key in ("detail", "error", "message", "errorMessages"):
            value = body.get(key)
            if isinstance(value, dict):  # an error object: its message, else its code
                value = value.get("message") or value.get("code")
            if value:
                return "; ".join(map(str, value)) if isinstance(value, list) else str(value)
    return str(body)[:300]


def retry_after_of(response: httpx.Response) -> float | None:
    """How long the server asks us to wait: ``Retry-After``, or else (Okta's way) the
    ``X-Rate-Limit-Reset`` epoch second, counted from the answer's ``Date`` so the two clocks'
    skew does not matter (Okta's rate-limit guide computes it so); ``None`` when it says neither.
    """
    after = parse_retry_after(response.headers.get("retry-after"))
    if after is not None:
        return after
    reset = response.headers.get("x-rate-limit-reset")
    if not reset:
        return None
    try:
        at = float(reset)
    except ValueError:
        return None
    try:
        now = parsedate_to_datetime(response.headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        now = time.time()
    return max(0.0, at - now)


def json_body(resp: httpx.Response, *, system: str, operation: str, subject: str | None) -> Any:
    """An accepted answer's JSON (``None`` when it has no body).

    Raises:
        PermanentError: the body is not JSON (not an answer of the API we think we talk to).
    """
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError as exc:
        msg = f"{resp.status_code} answer is not JSON"
        raise PermanentError(msg, system=system, operation=operation, subject=subject) from exc


# A vendor's own reading of an error answer (its error codes, its rate-limit headers): given the
# response and where it happened, the error of our tree to raise.
ErrorMapper = Callable[[httpx.Response, Where], ConnectorError]


class HttpApi:
    """A rate-limited, retrying JSON client for one backend.

    Args:
        system: the name in error messages (``org``, ``idp``).
        backend: the rate-limit bucket's name (``org_scim``, ``org_admin``, ``idp``).
        base_url: where the API lives.
        headers: sent with every request (credentials included; never logged).
        per_minute: the backend's limit; None uses its published limit.
        client: an ``httpx.Client`` to use instead of a new one (e.g. in-process tests).
        rejected: what a 401 means for this backend's credentials, said before the backend's
            own message (e.g. a regenerated SCIM key).
        auth: an ``httpx.Auth`` run on every request (e.g. OAuth tokens fetched and renewed),
            instead of credentials fixed in ``headers``.
        errors: the vendor's mapping of an error answer to our tree, instead of the generic
            one by status (:func:`connectors.errors.error_for_status`); Okta's error codes.
        classify: the error class a refused answer deserves where its status alone does not
            say (a vendor's error code: Graph answers a conflict with 400); ``None`` keeps the
            status's class. Never consulted for transient answers.
    """

    def __init__(
        self,
        *,
        system: str,
        backend: str,
        base_url: str,
        headers: dict[str, str] | None = None,
        per_minute: float | None = None,
        client: httpx.Client | None = None,
        timeout: float = 15.0,
        attempts: int = 6,
        max_seconds: float = 60.0,
        limiter: Limiter | None = None,
        rejected: str = "",
        auth: httpx.Auth | None = None,
        classify: Callable[[httpx.Response], type[PermanentError] | None] | None = None,
        errors: ErrorMapper | None = None,
    ) -> None:
        self.system = system
        self.rejected = rejected
        self.auth = auth
        self.classify = classify
        self.errors = errors
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter or limiter_for(backend, self.base_url, per_minute)
        self.client = client or new_client(timeout)
        self._headers = dict(headers or {})
        self.attempts, self.max_seconds = attempts, max_seconds
        self.stats = CallStats()

    def __repr__(self) -> str:  # never the headers: they hold credentials
        return f"HttpApi(system={self.system!r}, base_url={self.base_url!r})"

    def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        subject: str | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
        ok: Iterable[int] = (200, 201, 202, 204),
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One call, retried while transient; returns the response when its status is ``ok``.

        ``path`` is under ``base_url``, or an absolute URL the backend gave (a next page's link).
        ``idempotency_key`` is sent as ``Idempotency-Key`` on every attempt, so a backend that
        honours it answers a retry of a write it already applied instead of applying it again.
        ``headers`` are added to this call's.

        Raises:
            ConnectorError: the mapped error of a non-``ok`` answer or a transport failure.
        """
        accepted = set(ok)
        first = True
        url = path if path.startswith(("https://", "http://")) else f"{self.base_url}{path}"
        sent = {**self._headers, **(headers or {})}
        if idempotency_key:
            sent["Idempotency-Key"] = idempotency_key
        auth: Any = self.auth if self.auth is not None else httpx.USE_CLIENT_DEFAULT

        def attempt() -> httpx.Response:
            nonlocal first
            if not first:
                self.stats.add(retries=1)
            first = False
            self.stats.add(waited_s=self.limiter.acquire(), requests=1)
            mark = _CALL.set((operation, subject))
            try:
                resp = self.client.request(
                    method, url, params=params, json=json, headers=sent, auth=auth
                )
            except httpx.TimeoutException as exc:
                raise TransientError(
                    "timed out", system=self.system, operation=operation, subject=subject
                ) from exc
            except httpx.TransportError as exc:
                raise TransientError(
                    f"connection failed ({type(exc).__name__})",
                    system=self.system,
                    operation=operation,
                    subject=subject,
                ) from exc
            finally:
                _CALL.reset(mark)
            if resp.status_code in accepted:
                return resp
            retry_after = retry_after_of(resp) if resp.status_code == 429 else None
            if retry_after is None:
                retry_after = parse_retry_after(resp.headers.get("retry-after"))
            if resp.status_code == 429:
                self.stats.add(rate_limited=1)
                self.limiter.penalize(retry_after or 1.0)
            elif resp.status_code >= 500:
                self.stats.add(server_errors=1)
            if self.errors is not None:
                raise self.errors(
                    resp, {"system": self.system, "operation": operation, "subject": subject}
                )
            message = error_message(resp)
            if resp.status_code == 401 and self.rejected:
                message = f"{self.rejected}: {message}"
            error = error_for_status(
                resp.status_code,
                message,
                system=self.system,
                operation=operation,
                subject=subject,
                retry_after=retry_after,
            )
            if isinstance(error, PermanentError) and self.classify is not None:
                cls = self.classify(resp)
                if cls is not None and type(error) is not cls:
                    error = cls(
                        message,
                        status_code=resp.status_code,
                        system=self.system,
                        operation=operation,
                        subject=subject,
                    )
            raise error

        return call_with_retry(attempt, attempts=self.attempts, max_seconds=self.max_seconds)

    def json(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.request(method, path, **kw)
        return resp.json() if resp.content else None

    def close(self) -> None:
        self.client.close()
