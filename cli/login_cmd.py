"""``handover login`` and ``handover logout``: sign in through the organisation's identity
provider with the OAuth 2.0 device authorization grant (RFC 8628), as a terminal with no browser
of its own does; later commands act as that person (:mod:`cli.identity`).

Exit codes: 0 signed in; 1 the provider could not be reached or answered nonsense; 2 bad
settings; 3 the person declined, or the code expired before they answered.
"""

from __future__ import annotations

import typer

from cli.identity import current_session, forget_session, save_session, settings_here
from connectors.errors import AuthError, ConnectorError, TransientError
from connectors.oidc import OidcClient
from domain.identity import OIDC_DEVICE


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def login() -> None:
    """Sign in through the IdP (OIDC device flow): open the address shown, type the code,
    sign in there; this command waits, then keeps the session in .handover/session.json."""
    settings = settings_here()
    client = OidcClient(settings.oidc_issuer, settings.oidc_client_id)
    try:
        code = client.start_device()
        # stderr: the instructions are for the person; stdout keeps the outcome alone.
        typer.echo(
            f"To sign in, open {code.verification_uri} and enter the code {code.user_code}",
            err=True,
        )
        if code.verification_uri_complete:
            typer.echo(f"  (or open {code.verification_uri_complete})", err=True)
        typer.echo(
            f"waiting for you to sign in (the code expires in {code.expires_in // 60} min)…",
            err=True,
        )
        token = client.poll_device(code)
        claims = client.validate(token)
    except TransientError as e:
        raise _fail(str(e), 1) from None
    except AuthError as e:
        raise _fail(f"not signed in: {e.detail}", 3) from None
    except ConnectorError as e:
        raise _fail(str(e), 1) from None
    path = save_session(settings, token, claims, OIDC_DEVICE)
    typer.echo(f"signed in as {claims.email}")
    typer.echo(
        f"session kept in {path} until {claims.expires_at.isoformat(timespec='minutes')}",
        err=True,
    )


def logout() -> None:
    """Forget the session kept by `handover login` (the IdP's own session is not touched)."""
    settings = settings_here()
    typer.echo("signed out" if forget_session(settings) else "nobody was signed in here")


def whoami() -> None:
    """Say who the session belongs to, validated now (exit 2 when nobody is signed in)."""
    settings = settings_here()
    session = current_session(settings)
    if session is None:
        raise _fail("nobody is signed in here: handover login", 2)
    typer.echo(
        f"{session.email} ({session.verified.method}, subject {session.verified.subject}, "
        f"until {session.expires_at.isoformat(timespec='minutes')})"
    )
