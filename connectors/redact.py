"""No secret in any log line: a LogRecord factory that masks every configured secret.

A factory (not a handler filter) catches every logger — ours, httpx's, Prefect's — whatever
handlers are attached later. Prefect does not redact our secrets itself (PREFECT_NOTES.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"
_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def redact(text: str) -> str:
    """``text`` with every known secret replaced by ``***``."""
    for s in sorted(_secrets, key=len, reverse=True):
        if s in text:
            text = text.replace(s, MASK)
    return text


def add_secrets(values: Iterable[str]) -> None:
    """Register more secrets (e.g. a freshly rotated API key) for masking."""
    with _lock:
        # Very short values would mask ordinary words; real secrets are longer.
        _secrets.update(v for v in values if v and len(v) >= 6)


def install_redaction(values: Iterable[str] = ()) -> None:
    """Mask ``values`` (and later additions) in every log record created from now on."""
    global _installed
    add_secrets(values)
    with _lock:
        if _installed:
            return
        base = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = base(*args, **kwargs)
            if _secrets:
                try:
                    message = record.getMessage()
                except Exception:  # a malformed log call must not break logging
                    return record
                masked = redact(message)
                if masked != message:
                    record.msg, record.args = masked, ()
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
