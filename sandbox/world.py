"""One sandbox world: its database, clock, credentials, fault settings and request log.

Every fake system (org backend, IdP, Slack, Jira) reads the world from ``request.app.state.world``
so that several independent worlds can live in one process (the tests start one per test).
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from sandbox.clock import Clock
from sandbox.db import Database


@dataclass(frozen=True)
class Credentials:
    """The development credentials of the sandbox (published in the README)."""

    org_scim_key: str = "sandbox-scim-key"
    org_admin_token: str = "sandbox-admin-token"
    idp_token: str = "sandbox-idp-token"
    slack_bot_token: str = "xoxb-sandbox"
    slack_signing_secret: str = "sandbox-signing-secret"
    jira_user: str = "handover"
    jira_token: str = "sandbox-jira-token"
    # Every IdP user signs in with it (sandbox.idp.oidc): a sandbox has no real passwords.
    idp_user_password: str = "sandbox-password"
    # Microsoft Entra ID (sandbox.idp.graph): the tenant, Handover's app registration (the
    # copies of connectors.settings' SANDBOX_TENANT_ID, SANDBOX_ENTRA_CLIENT_ID and
    # SANDBOX_ONLY_CREDENTIALS["idp_client_secret"]: the sandbox imports no production code),
    # and an administrator's app that may also create groups, as an IdP admin does.
    entra_tenant_id: str = "5a7d0c2e-0000-4000-8000-5a4db0c5e5e5"
    entra_client_id: str = "4a1d0c2e-0000-4000-8000-4a4d0c5e5e5e"
    entra_client_secret: str = "sandbox-entra-secret"
    entra_admin_client_id: str = "ad3d0c2e-0000-4000-8000-ad4d0c5e5e5e"
    entra_admin_client_secret: str = "sandbox-entra-admin-secret"


class FaultSettings(BaseModel):
    """What can go wrong, changeable at run time through ``/_sandbox/faults``."""

    fault_rate: float = Field(0.0, ge=0.0, le=1.0, description="probability of a 5xx answer")
    fault_after: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="share of faults injected after the request was applied (the client "
        "sees a 5xx although the change happened: what idempotent retries must survive)",
    )
    rate_limit: int | None = Field(
        None, ge=1, description="requests per minute per API; 429 + Retry-After beyond it"
    )
    burst: int | None = Field(
        None, ge=1, description="bucket size; default: a tenth of a minute's allowance"
    )
    latency_ms: float = Field(
        0.0, ge=0.0, le=60_000, description="added to every (faulted) API call"
    )
    apis: (
        list[
            Literal[
                "org_scim",
                "org_admin",
                "org_ingest",
                "idp",
                "okta",
                "graph",
                "hris",
                "slack",
                "jira",
            ]
        ]
        | None
    ) = Field(None, description="only these APIs get faults and latency (default: every API)")


class TokenBucket:
    """A thread-safe token bucket: ``rate`` tokens per minute, holding at most ``capacity``."""

    def __init__(self, per_minute: int, capacity: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take a token; return 0 when granted, else the seconds until one is available."""
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate


@dataclass
class RequestRecord:
    """One API call seen by the sandbox (the ``/_sandbox/requests`` log)."""

    seq: int
    at: str
    api: str
    method: str
    path: str
    query: str
    status: int
    injected: str | None = None  # "fault-before", "fault-after", "rate-limited"

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class World:
    """Everything one running sandbox needs; built by :func:`sandbox.app.create_app`."""

    db: Database
    clock: Clock
    credentials: Credentials = field(default_factory=Credentials)
    faults: FaultSettings = field(default_factory=FaultSettings)
    rng: random.Random = field(default_factory=random.Random)
    requests: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=200_000))
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    # Answers to requests sent with an ``Idempotency-Key`` (path|key → JSON body), replayed to
    # a retry; in memory, as a vendor keeps them for a day rather than forever.
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    _seq: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, db_path: str | Path | None, **kw: Any) -> World:
        db = Database(db_path)
        return cls(db=db, clock=Clock(db), **kw)

    def set_faults(self, settings: FaultSettings) -> None:
        """Replace the fault settings; the rate-limit buckets start full again."""
        self.faults = settings
        with self._lock:
            self._buckets.clear()

    def replay(self, key: str) -> dict[str, Any] | None:
        """The answer already given to the request ``key`` (path|Idempotency-Key), if any."""
        with self._lock:
            return self.replies.get(key)

    def remember(self, key: str, answer: dict[str, Any]) -> None:
        with self._lock:
            self.replies[key] = answer

    def bucket(self, api: str) -> TokenBucket | None:
        """The rate-limit bucket of one API, or ``None`` when unlimited."""
        limit = self.faults.rate_limit
        if not limit:
            return None
        with self._lock:
            b = self._buckets.get(api)
            if b is None:
                b = TokenBucket(limit, self.faults.burst or max(1, limit // 10))
                self._buckets[api] = b
            return b

    def record(self, **kw: Any) -> RequestRecord:
        with self._lock:
            self._seq += 1
            rec = RequestRecord(seq=self._seq, at=self.clock.now().isoformat(), **kw)
            self.requests.append(rec)
            return rec
