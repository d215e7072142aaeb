"""The connectors' error tree — the only exceptions that leave ``connectors/``::

    ConnectorError
    ├── TransientError          timeout, connection reset, 429, 5xx — retried; carries retry_after
    └── PermanentError          never retried
        ├── AuthError           401, 403
        ├── NotFoundError       404, 410
        ├── ConflictError       409 (sole admin, already exists, …)
        ├── InvalidRequestError 400, 413, 422 and other 4xx
        └── CapabilityMissing   the backend has no API for this

Every error carries keyword-only ``system`` and ``operation`` (and ``status_code`` when there was
an HTTP answer) and reads like "org: remove_member failed for a@b.com: 409 sole admin of project
Production". Status codes map to classes in :func:`error_for_status` only; vendor exceptions
(httpx, SlackApiError, JIRAError) are translated once in each connector with ``raise … from``.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict, Unpack


class Where(TypedDict):
    """Where an error happened: the keyword-only ``system``, ``operation`` and ``subject`` that
    every error of the tree takes (with ``status_code``, when there was an HTTP answer)."""

    system: str
    operation: str
    subject: NotRequired[str | None]


class ConnectorError(Exception):
    """Base of every connector error."""

    def __init__(
        self,
        message: str,
        *,
        system: str,
        operation: str,
        status_code: int | None = None,
        subject: str | None = None,
    ) -> None:
        self.system = system
        self.operation = operation
        self.status_code = status_code
        self.subject = subject
        self.detail = message
        where = f" for {subject}" if subject else ""
        code = f"{status_code} " if status_code is not None else ""
        super().__init__(f"{system}: {operation} failed{where}: {code}{message}")


class TransientError(ConnectorError):
    """Worth retrying: the same call may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        **where: Unpack[Where],
    ) -> None:
        super().__init__(message, status_code=status_code, **where)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """Retrying the same call cannot help."""


class AuthError(PermanentError):
    pass


class NotFoundError(PermanentError):
    pass


class ConflictError(PermanentError):
    pass


class InvalidRequestError(PermanentError):
    pass


class CapabilityMissing(PermanentError):
    """The backend offers no API for this step (e.g. a transfer on a SCIM-only org)."""


def error_for_status(
    status: int, message: str, *, retry_after: float | None = None, **where: Unpack[Where]
) -> ConnectorError:
    """The one mapping from an HTTP status to our error tree."""
    if status == 429 or status >= 500 or status == 408:
        return TransientError(message, status_code=status, retry_after=retry_after, **where)
    cls: type[PermanentError]
    if status in (401, 403):
        cls = AuthError
    elif status in (404, 410):
        cls = NotFoundError
    elif status == 409:
        cls = ConflictError
    else:
        cls = InvalidRequestError
    return cls(message, status_code=status, **where)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; HTTP dates are rare in APIs)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
