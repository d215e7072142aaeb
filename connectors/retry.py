"""Retries of transient errors only (STYLE.md point 5): tenacity with jittered exponential
backoff that honours the server's Retry-After, bounded in attempts and in total time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from connectors.errors import PermanentError, TransientError

T = TypeVar("T")
log = logging.getLogger("handover.connectors")

_backoff = wait_random_exponential(multiplier=0.2, max=8.0)


def _wait(state: RetryCallState) -> float:
    """Jittered exponential backoff, but never sooner than the server asked."""
    exc = state.outcome.exception() if state.outcome else None
    backoff = _backoff(state)
    after = getattr(exc, "retry_after", None)
    return max(backoff, after) if after else backoff


def _log(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("%s (attempt %d, retrying)", exc, state.attempt_number)


def call_with_retry(fn: Callable[[], T], *, attempts: int = 6, max_seconds: float = 60.0) -> T:
    """Run ``fn``, retrying :class:`TransientError` only; the last error is raised as is."""
    retrying = Retrying(
        retry=retry_if_exception_type(TransientError),
        wait=_wait,
        stop=stop_after_attempt(attempts) | stop_after_delay(max_seconds),
        before_sleep=_log,
        reraise=True,
    )
    return retrying(fn)


def is_retryable(exc: BaseException) -> bool:
    """For Prefect's ``retry_condition_fn``: never retry a permanent error."""
    return not isinstance(exc, PermanentError)
