"""ASGI middleware: the request log, per-API rate limits (429 + Retry-After, or Okta's
X-Rate-Limit-Reset), injected 5xx
faults and latency (both only on the APIs named in ``apis``, when given). ``/_sandbox`` and
``/healthz`` are never limited nor faulted.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sandbox.world import World

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Path prefix → API name; each API has its own rate-limit bucket, as each vendor limits its own.
APIS: tuple[tuple[str, str], ...] = (
    ("/scim/1/", "org_scim"),
    ("/admin/v1/", "org_admin"),
    ("/ingest/", "org_ingest"),
    ("/idp/scim/v2", "idp"),
    ("/okta/api/v1/", "okta"),
    ("/okta/oauth2/", "okta"),
    ("/graph/v1.0/", "graph"),
    ("/hibob/", "hris"),
    ("/bamboohr/", "hris"),
    ("/personio/", "hris"),
    ("/merge/", "hris"),
    ("/slack/api/", "slack"),
    ("/jira/rest/", "jira"),
)


def api_of(path: str) -> str | None:
    """The API a path belongs to, or ``None`` for control and health paths."""
    for prefix, name in APIS:
        if path.startswith(prefix):
            return name
    return None


def _error_body(api: str, status: int, message: str) -> bytes:
    """An error in the shape the vendor uses, so clients parse it as they would the real one."""
    if api in ("org_scim", "idp"):
        body: dict[str, Any] = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": str(status),
            "detail": message,
        }
    elif api == "slack":
        body = {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"}
    elif api == "jira":
        body = {"errorMessages": [message], "errors": {}}
    elif api == "okta":
        code, summary = (
            ("E0000047", "API call exceeded rate limit due to too many requests.")
            if status == 429
            else ("E0000009", "Internal Server Error")
        )
        body = {
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": "oae" + secrets.token_urlsafe(16),
            "errorCauses": [],
        }
    elif api == "graph":
        # Microsoft Graph's error object; a throttled call says TooManyRequests (the middleware
        # adds Retry-After), a failing one serviceNotAvailable / generalException.
        rid = str(uuid.uuid4())
        code = {429: "TooManyRequests", 503: "serviceNotAvailable"}.get(status, "generalException")
        body = {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": rid,
                    "client-request-id": rid,
                },
            }
        }
    else:
        body = {"error": message, "status": status}
    return json.dumps(body).encode()


class FaultMiddleware:
    """Wraps the sandbox app; see the module docstring."""

    def __init__(self, app: ASGIApp, world: World) -> None:
        self.app = app
        self.world = world

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        api = api_of(path)
        if api is None:
            await self.app(scope, receive, send)
            return
        world = self.world
        f = world.faults
        rec: dict[str, Any] = {
            "api": api,
            "method": scope["method"],
            "path": path,
            "query": scope.get("query_string", b"").decode(errors="replace"),
        }
        faulted = f.apis is None or api in f.apis
        if f.latency_ms and faulted:  # a slow Slack next to a fast IdP, say
            await asyncio.sleep(f.latency_ms / 1000.0)
        bucket = world.bucket(api)
        if bucket is not None:
            wait = bucket.take()
            if wait > 0:
                retry_after = max(1, math.ceil(wait))
                world.record(status=429, injected="rate-limited", **rec)
                await _send(
                    send,
                    429,
                    _error_body(api, 429, "rate limit exceeded"),
                    _limit_headers(api, retry_after, f.rate_limit or 0),
                )
                return
        fault = faulted and f.fault_rate > 0 and world.rng.random() < f.fault_rate
        after = fault and world.rng.random() < f.fault_after
        if fault and not after:
            status = world.rng.choice((500, 502, 503))
            world.record(status=status, injected="fault-before", **rec)
            await _send(send, status, _error_body(api, status, "injected fault"))
            return

        recorded: list[bool] = []

        def log(status: int) -> None:
            # Logged as the answer starts, before the client can have it: whoever reads the
            # log after a call returned finds the call there.
            if not recorded:
                recorded.append(True)
                world.record(
                    status=503 if after else status,
                    injected="fault-after" if after else None,
                    **rec,
                )

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                log(message["status"])
                if after:
                    return  # swallowed: the client gets a 5xx instead of the real answer
            if after:
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    await _send(send, 503, _error_body(api, 503, "injected fault"))
                return
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            log(500)  # the app failed before answering


def _limit_headers(api: str, retry_after: int, limit: int) -> list[tuple[bytes, bytes]]:
    """How a 429 says when to come back: Okta by ``X-Rate-Limit-Reset`` (UTC epoch seconds,
    with ``-Limit`` and ``-Remaining: 0``, no ``Retry-After``); the others by ``Retry-After``."""
    if api == "okta":
        reset = math.ceil(time.time() + retry_after)
        return [
            (b"x-rate-limit-limit", str(limit).encode()),
            (b"x-rate-limit-remaining", b"0"),
            (b"x-rate-limit-reset", str(reset).encode()),
        ]
    return [(b"retry-after", str(retry_after).encode())]


async def _send(
    send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ] + (extra or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
