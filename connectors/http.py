"""One HTTP client for every HTTP connector: rate limit, retries, error mapping, no secrets.

Each call waits for a token of the backend's bucket, maps the answer to our error tree (the
only place httpx errors are translated), retries transient errors with :mod:`connectors.retry`,
and counts what happened so runs and benchmarks can report requests, retries and 429s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from connectors.errors import (
    ConnectorError,
    TransientError,
    Where,
    error_for_status,
    parse_retry_after,
)
from connectors.rate import TokenBucket, limiter_for
from connectors.retry import call_with_retry


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
    """The vendor's own words from an error body (SCIM detail, Jira errorMessages, …)."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason_phrase)[:300]
    if isinstance(body, dict):
        for key in ("detail", "error", "message", "errorMessages"):
            value = body.get(key)
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
        auth: an ``httpx.Auth`` that authenticates each request (e.g. an OAuth access token it
            fetches and renews), instead of credentials in ``headers``.
        errors: the vendor's mapping of an error answer to our tree, instead of the generic
            one by status (:func:`connectors.errors.error_for_status`).
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
        limiter: TokenBucket | None = None,
        rejected: str = "",
        auth: httpx.Auth | None = None,
        errors: ErrorMapper | None = None,
    ) -> None:
        self.system = system
        self.auth = auth
        self.errors = errors
        self.rejected = rejected
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter or limiter_for(backend, self.base_url, per_minute)
        self.client = client or httpx.Client(timeout=timeout)
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
    ) -> httpx.Response:
        """One call, retried while transient; returns the response when its status is ``ok``.

        ``idempotency_key`` is sent as ``Idempotency-Key`` on every attempt, so a backend that
        honours it answers a retry of a write it already applied instead of applying it again.

        Raises:
            ConnectorError: the mapped error of a non-``ok`` answer or a transport failure.
        """
        accepted = set(ok)
        first = True

        def attempt() -> httpx.Response:
            nonlocal first
            if not first:
                self.stats.add(retries=1)
            first = False
            self.stats.add(waited_s=self.limiter.acquire(), requests=1)
            try:
                resp = self.client.request(
                    method,
                    f"{self.base_url}{path}",
                    params=params,
                    json=json,
                    headers=(
                        {**self._headers, "Idempotency-Key": idempotency_key}
                        if idempotency_key
                        else self._headers
                    ),
                    auth=self.auth if self.auth is not None else httpx.USE_CLIENT_DEFAULT,
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
            raise error_for_status(
                resp.status_code,
                message,
                system=self.system,
                operation=operation,
                subject=subject,
                retry_after=retry_after,
            )

        return call_with_retry(attempt, attempts=self.attempts, max_seconds=self.max_seconds)

    def json(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.request(method, path, **kw)
        return resp.json() if resp.content else None

    def close(self) -> None:
        self.client.close()
