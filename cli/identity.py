"""Who is running this command: the signed-in person (`handover login`), or — in sandbox mode
only — whoever ``--as`` declares.

The session is ``<home>/session.json`` (``HANDOVER_HOME``, ``.handover/`` by default), written by
`handover login` with mode 0600: the ID token the identity provider issued. It is a bearer
credential for its lifetime, so every use validates it again (signature against the provider's
current keys, issuer, audience, expiry) and takes the person from the token, never from the rest
of the file.

Every command that acts as a person calls :func:`acting` (decisions, task answers, lifting a
hold) or :func:`requester_of` (the runbooks' ``--requester``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from connectors.errors import ConnectorError, TransientError
from connectors.oidc import ExpiredToken, IdClaims, OidcClient
from connectors.settings import Settings
from domain.identity import OIDC_DEVICE, SELF_DECLARED, Verified

SESSION_FILE = "session.json"
AS_REFUSED = "--as works only in sandbox mode (HANDOVER_SANDBOX=1); sign in with `handover login`"
SIGN_IN = "sign in first: handover login"


def _refuse(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def settings_here() -> Settings:
    """The settings, without the credential checks of ``load_settings`` (who acts is decided
    before any system is reached: a refused ``--as`` says so, not something about tokens)."""
    try:
        return Settings()
    except ValidationError as e:
        raise _refuse(f"the settings cannot be read: {e.errors()[0]['msg']}") from None


def session_path(settings: Settings) -> Path:
    return settings.home / SESSION_FILE


@dataclass(frozen=True)
class Session:
    """A validated session: who, and how it was proven."""

    email: str
    verified: Verified
    expires_at: datetime


def save_session(settings: Settings, id_token: str, claims: IdClaims, method: str) -> Path:
    """Write the session (mode 0600, replaced atomically: a reader never sees half a file)."""
    path = session_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "issuer": claims.issuer,
        "client_id": settings.oidc_client_id,
        "method": method,
        "email": claims.email,  # for a reader; the token is what counts
        "expires_at": claims.expires_at.isoformat(),
        "id_token": id_token,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file left by a crash
        os.write(fd, json.dumps(body, indent=2).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def forget_session(settings: Settings) -> bool:
    """Remove the session file; whether there was one."""
    try:
        session_path(settings).unlink()
    except FileNotFoundError:
        return False
    return True


def _read(path: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise _refuse(f"{path} cannot be read: {SIGN_IN}") from None
    return body if isinstance(body, dict) else None


def current_session(settings: Settings, *, client: OidcClient | None = None) -> Session | None:
    """The signed-in person, validated now; None when nobody signed in here.

    Raises:
        typer.Exit(2): the session is for another provider or client, expired, or does not
            hold (tampered, signed by a key the provider no longer publishes); exit 1 when the
            provider cannot be reached to check it.
    """
    body = _read(session_path(settings))
    if body is None:
        return None
    issuer = settings.oidc_issuer.rstrip("/")
    if body.get("issuer") != issuer or body.get("client_id") != settings.oidc_client_id:
        raise _refuse(f"the session is for another identity provider or client: {SIGN_IN}")
    token = body.get("id_token")
    if not isinstance(token, str):
        raise _refuse(f"the session holds no ID token: {SIGN_IN}")
    client = client or OidcClient(issuer, settings.oidc_client_id)
    try:
        claims = client.validate(token)
    except ExpiredToken:
        raise _refuse(f"your session has expired: {SIGN_IN}") from None
    except TransientError as e:
        raise _refuse(f"cannot check your session: {e}", code=1) from None
    except ConnectorError as e:
        raise _refuse(f"your session is not valid ({e.detail}): {SIGN_IN}") from None
    # `handover login` is the only writer, and it signs in with the device flow.
    return Session(
        email=claims.email,
        verified=Verified(OIDC_DEVICE, subject=claims.subject, issuer=claims.issuer),
        expires_at=claims.expires_at,
    )


def acting(as_: str | None, *, settings: Settings | None = None) -> tuple[str, Verified]:
    """Who acts, and how that was established.

    Outside sandbox mode: the signed-in person (``--as`` is refused). In sandbox mode:
    ``--as EMAIL`` (self-declared), else the signed-in person.

    Raises:
        typer.Exit(2): ``--as`` outside sandbox mode, an invalid ``--as`` email, nobody signed
            in, or a session that does not hold (an expired one says so).
    """
    settings = settings or settings_here()
    if as_ is not None:
        if not settings.sandbox:
            raise _refuse(AS_REFUSED)
        from domain.models import _email

        try:
            return _email(as_), SELF_DECLARED
        except ValueError as e:
            raise _refuse(str(e)) from None
    session = current_session(settings)
    if session is None:
        hint = " (or, in sandbox mode, --as EMAIL)" if settings.sandbox else ""
        raise _refuse(SIGN_IN + hint)
    return session.email, session.verified


def requester_of(requester: str | None, *, settings: Settings | None = None) -> str:
    """Who asks for a runbook: outside sandbox mode the signed-in person (``--requester`` is
    refused: nobody asks in another's name); in sandbox mode ``--requester``, else the
    signed-in person, else ``operator``.

    Raises:
        typer.Exit(2): ``--requester`` outside sandbox mode, or nobody signed in there.
    """
    settings = settings or settings_here()
    if requester is not None:
        if not settings.sandbox:
            raise _refuse(
                "--requester works only in sandbox mode (HANDOVER_SANDBOX=1): the requester is "
                "the signed-in person (handover login)"
            )
        return requester
    if settings.sandbox and not session_path(settings).exists():
        return "operator"
    return acting(None, settings=settings)[0]


def require_sandbox(what: str, *, settings: Settings | None = None) -> None:
    """Refuse (exit 2) a sandbox-only command outside sandbox mode."""
    settings = settings or settings_here()
    if not settings.sandbox:
        raise _refuse(f"{what} works only in sandbox mode (HANDOVER_SANDBOX=1)")


def decide_hint(approval_id: str, *, settings: Settings | None = None) -> str:
    """How to decide an approval from a terminal, as this mode allows."""
    settings = settings or settings_here()
    if settings.sandbox:
        return f"handover approve {approval_id} [--as EMAIL] [--deny]"
    return f"handover login, then: handover approve {approval_id} [--deny]"


def resume_hint(*, settings: Settings | None = None) -> str:
    """How to lift a hold on new runs from a terminal, as this mode allows."""
    settings = settings or settings_here()
    if settings.sandbox:
        return "handover org resume [--as EMAIL]"
    return "handover login, then: handover org resume"
