"""What every answer of the sandbox's Okta imitation shares: Okta's error shape, the
``X-Rate-Limit-*`` headers, timestamps, and the filter/search expressions of its listings.

- Errors are ``{errorCode, errorSummary, errorLink, errorId, errorCauses[{errorSummary}]}``
  (Okta's error-codes reference), raised as :class:`OktaError` anywhere in a route.
- Every answer carries ``X-Rate-Limit-Limit``, ``-Remaining`` and ``-Reset`` (UTC epoch seconds
  of the end of the current minute), counted per endpoint group as Okta counts its org-wide
  limits. The counts are only reported here; the sandbox's ``--rate-limit`` is what refuses
  (sandbox/faults.py answers that 429 in Okta's shape).
- ``filter`` and ``search`` take Okta's expression syntax: ``attr op "value"`` with ``eq``,
  ``ne``, ``sw``, ``co``, ``pr``, joined by ``and``/``or`` with parentheses; string values
  compare ignoring case (Okta: "operators and string values are case insensitive").
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute


class OktaError(Exception):
    """An error answer in Okta's shape."""

    def __init__(
        self,
        status: int,
        code: str,
        summary: str,
        causes: tuple[str, ...] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(summary)
        self.status, self.code, self.summary = status, code, summary
        self.causes, self.headers = causes, headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            error_body(self.code, self.summary, self.causes), self.status, self.headers
        )


def error_body(code: str, summary: str, causes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Okta's error object (its ``errorId`` is a fresh opaque id per answer)."""
    return {
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": "oae" + secrets.token_urlsafe(16),
        "errorCauses": [{"errorSummary": c} for c in causes],
    }


def not_found(what: str, kind: str) -> OktaError:
    return OktaError(404, "E0000007", f"Not found: Resource not found: {what} ({kind})")


def invalid_search() -> OktaError:
    return OktaError(400, "E0000031", "Invalid search criteria.")


def iso(when: datetime | None) -> str | None:
    """Okta's timestamps: UTC, milliseconds, ``Z``."""
    if when is None:
        return None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------------------- rate-limit headers
# Endpoint group → requests per minute, in the manner of Okta's default org-wide limits (which
# differ by plan; each group counts apart, which is what a client must cope with).
_LIMITS: tuple[tuple[str, str, int], ...] = (
    ("/okta/oauth2/v1/token", "/oauth2/v1/token", 600),
    ("/okta/api/v1/users/", "/api/v1/users/{id}", 2000),
    ("/okta/api/v1/users", "/api/v1/users", 600),
    ("/okta/api/v1/groups", "/api/v1/groups", 500),
)


@dataclass
class RateCounts:
    """Requests per endpoint group in the current minute (per app: each world its own)."""

    counts: dict[tuple[str, int], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, path: str) -> tuple[int, int, int]:
        """Count one request; its group's limit, what remains, and when the window resets."""
        group, limit = next(((g, n) for p, g, n in _LIMITS if path.startswith(p)), ("other", 600))
        window = int(time.time() // 60)
        with self.lock:
            key = (group, window)
            self.counts = {k: v for k, v in self.counts.items() if k[1] == window}
            self.counts[key] = self.counts.get(key, 0) + 1
            used = self.counts[key]
        return limit, max(0, limit - used), (window + 1) * 60


def _counts(request: Request) -> RateCounts:
    state = request.app.state
    counts: RateCounts | None = getattr(state, "okta_rate_counts", None)
    if counts is None:
        counts = state.okta_rate_counts = RateCounts()
    return counts


class OktaRoute(APIRoute):
    """A route answering as Okta does: :class:`OktaError` (and FastAPI's own validation
    errors) in Okta's error shape, and the rate-limit headers on every answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def okta_handler(request: Request) -> Response:
            limit, remaining, reset = _counts(request).count(request.url.path)
            try:
                response = await handler(request)
            except OktaError as e:
                response = e.response()
            except RequestValidationError as e:
                causes = tuple(
                    f"{'.'.join(str(p) for p in err.get('loc', ())[1:])}: {err.get('msg')}"
                    for err in e.errors()
                )
                response = OktaError(400, "E0000001", "Api validation failed", causes).response()
            response.headers["X-Rate-Limit-Limit"] = str(limit)
            response.headers["X-Rate-Limit-Remaining"] = str(remaining)
            response.headers["X-Rate-Limit-Reset"] = str(reset)
            return response

        return okta_handler


# ---------------------------------------------------------------------------- expressions
_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|[^\s()"]+)')
_OPS = {"eq", "ne", "sw", "co", "pr"}
Predicate = Callable[[dict[str, Any]], bool]


def _value_at(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _compare(op: str, actual: Any, expected: str) -> bool:
    if op == "pr":
        return actual not in (None, "", [])
    if actual is None:
        return op == "ne"
    a, e = str(actual).lower(), expected.lower()
    if isinstance(actual, bool):
        a = "true" if actual else "false"
    return {"eq": a == e, "ne": a != e, "sw": a.startswith(e), "co": e in a}[op]


class _Parser:
    def __init__(self, text: str, allowed: set[tuple[str, str]] | None) -> None:
        self.tokens: list[str] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise invalid_search()
            self.tokens.append(m.group(1))
            pos = m.end()
        self.i, self.allowed = 0, allowed

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise invalid_search()
        self.i += 1
        return token

    def parse(self) -> Predicate:
        pred = self.disjunction()
        if self.peek() is not None:
            raise invalid_search()
        return pred

    def disjunction(self) -> Predicate:
        parts = [self.conjunction()]
        while (self.peek() or "").lower() == "or":
            self.take()
            parts.append(self.conjunction())
        return lambda o: any(p(o) for p in parts)

    def conjunction(self) -> Predicate:
        parts = [self.term()]
        while (self.peek() or "").lower() == "and":
            self.take()
            parts.append(self.term())
        return lambda o: all(p(o) for p in parts)

    def term(self) -> Predicate:
        token = self.take()
        if token == "(":
            inner = self.disjunction()
            if self.take() != ")":
                raise invalid_search()
            return inner
        attr, op = token, self.take().lower()
        if op not in _OPS or (self.allowed is not None and (attr, op) not in self.allowed):
            raise invalid_search()
        if op == "pr":
            return lambda o: _compare("pr", _value_at(o, attr), "")
        literal = self.take()
        if not (literal.startswith('"') and literal.endswith('"') and len(literal) >= 2):
            raise invalid_search()
        try:
            expected = str(json.loads(literal))
        except ValueError as exc:
            raise invalid_search() from exc
        return lambda o: _compare(op, _value_at(o, attr), expected)


def expression(text: str, allowed: set[tuple[str, str]] | None = None) -> Predicate:
    """A predicate over an Okta object (its JSON) for a ``filter`` or ``search`` expression;
    ``allowed``: the (attribute, operator) pairs a ``filter`` supports (None: any).

    Raises:
        OktaError: 400 ``E0000031`` for an expression Okta would not take.
    """
    return _Parser(text, allowed).parse()


def link_header(request: Request, after: str | None, limit: int) -> str:
    """``Link`` with ``rel="self"`` and, when there is more, ``rel="next"`` (an ``after`` cursor
    in a URL of the host the client called)."""
    links = [f'<{request.url}>; rel="self"']
    if after is not None:
        params = dict(request.query_params)
        params.update({"after": after, "limit": str(limit)})
        links.append(f'<{request.url.replace_query_params(**params)}>; rel="next"')
    return ", ".join(links)
