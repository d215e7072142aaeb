"""Who may retrieve a rotated key's sealed secret, and the record of every try.

The offboarding seals a rotated key's new secret in the ledger (``ledger.rotated_secrets``) and
DMs each recipient (the key's remaining managers) a link, ``<HANDOVER_INTAKE_URL>/secrets/<id>``.
The intake (``intake/secrets_page.py``) signs the person in through the IdP and asks here:

- a link shows its state only to a **recipient**: the signed-in person's address is, for the
  IdP, an active user who is one of the recipients (any of their addresses); anyone else is
  refused (403) and the refusal is audited (``secret.refused``);
- the secret is revealed **once**, to the first recipient who asks before it expires; the
  retrieval is audited (``secret.retrieved``, with who and how they signed in, never the
  secret); a later try is told who retrieved it and when (410), an expired link that it
  expired (410);
- what expired unread is erased (``secret.expired``), by the watchdog's sweep and whenever a
  secret is sealed or a link is opened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr

from approvals.people import aliases, idp_address
from approvals.services import Services
from connectors.errors import ConnectorError
from connectors.settings import Settings
from domain.identity import Verified
from domain.records import AuditEvent
from ledger.audit import append
from ledger.rotated_secrets import (
    SealedSecret,
    SecretBox,
    SecretUnreadable,
    claim_secret,
    erase_expired,
    sealed_secret,
)

log = logging.getLogger("handover.approvals.secret_links")

CALLBACK_PATH = "/secrets/callback"


def secret_box(settings: Settings) -> SecretBox:
    """The box of the settings' ``HANDOVER_SECRETS_KEY``."""
    return SecretBox(settings.secrets_key.get_secret_value())


def link_of(settings: Settings, link_id: str) -> str:
    """The address a recipient opens: ``<HANDOVER_INTAKE_URL>/secrets/<id>``."""
    return f"{settings.intake_url.rstrip('/')}/secrets/{link_id}"


def callback_of(settings: Settings) -> str:
    """Where the IdP sends the browser back (the web client's registered redirect URI)."""
    return settings.intake_url.rstrip("/") + CALLBACK_PATH


def link_ttl(settings: Settings) -> timedelta:
    return timedelta(hours=settings.secret_link_hours)


@dataclass(frozen=True)
class Outcome:
    """What the signed-in person is shown: an HTTP status, a sentence, the record (for a
    recipient only) and, once, the secret."""

    status: int
    message: str
    sealed: SealedSecret | None = None
    secret: SecretStr | None = None


def _audit(
    svc: Services,
    action: str,
    sealed: SealedSecret,
    *,
    by: str = "handover",
    verified: Verified | None = None,
    effect: str,
) -> None:
    after: dict[str, Any] = {"key_name": sealed.key_name}
    if verified is not None:
        after |= verified.audit()
    append(
        svc.ledger,
        AuditEvent(
            action=action,
            subject=sealed.subject,
            target=f"api key {sealed.key_id}",
            actor=by,
            after=after,
            effect=effect[:300],
            ticket=sealed.ticket,
        ),
        now=svc.clock(),
    )


def erase_expired_secrets(svc: Services) -> int:
    """Erase the sealed secrets that expired unread (each audited); how many."""
    gone = erase_expired(svc.ledger, now=svc.clock())
    for sealed in gone:
        _audit(svc, "secret.expired", sealed, effect="deleted(expired unread)")
    return len(gone)


def _recipient(svc: Services, sealed: SealedSecret, email: str) -> str | None:
    """The canonical address of the signed-in person when they are an active IdP user and one
    of ``sealed``'s recipients (under any address the IdP knows them by); else None.

    Raises:
        ConnectorError: the IdP cannot be asked.
    """
    me = idp_address(svc, email)
    return me if me is not None and me in aliases(svc, *sealed.recipients) else None


def _look(
    svc: Services, link_id: str, email: str, verified: Verified
) -> tuple[Outcome | None, str]:
    """The refusal for this person and link (audited when it is about the person), or None and
    the person's canonical address."""
    erase_expired_secrets(svc)
    sealed = sealed_secret(svc.ledger, link_id)
    if sealed is None:
        return Outcome(404, "There is no such link."), ""
    if svc.idp is None:
        return Outcome(503, "No identity provider is configured to check who you are."), ""
    try:
        me = _recipient(svc, sealed, email)
    except ConnectorError as exc:
        log.warning("secret link: cannot check %s with the IdP: %s", email, exc)
        return Outcome(503, "The identity provider cannot be asked now: try again."), ""
    if me is None:
        why = "refused(not a recipient)"
        _audit(svc, "secret.refused", sealed, by=email, verified=verified, effect=why)
        return Outcome(403, f"{email} is not a recipient of this secret: nothing is shown."), ""
    return None, me


def _gone(sealed: SealedSecret, now: datetime) -> Outcome | None:
    state = sealed.state(now)
    if state == "retrieved":
        at = sealed.retrieved_at.isoformat(timespec="seconds") if sealed.retrieved_at else "?"
        return Outcome(410, f"Already retrieved by {sealed.retrieved_by} at {at}.", sealed)
    if state == "expired":
        at = sealed.expires_at.isoformat(timespec="seconds")
        return Outcome(410, f"This link expired at {at}; the secret was erased unread.", sealed)
    return None


def view(svc: Services, link_id: str, *, email: str, verified: Verified) -> Outcome:
    """What ``email`` (signed in) sees at ``link_id``, without the secret: 200 when they may
    retrieve it now."""
    refused, _ = _look(svc, link_id, email, verified)
    if refused is not None:
        return refused
    sealed = sealed_secret(svc.ledger, link_id)
    assert sealed is not None  # _look found it; rows are never deleted
    return _gone(sealed, svc.clock()) or Outcome(200, "Ready to be shown, once.", sealed)


def reveal(svc: Services, link_id: str, *, email: str, verified: Verified) -> Outcome:
    """Retrieve ``link_id``'s secret for ``email`` (signed in): the secret, once, to a
    recipient, before it expires; every try by a recipient and every refusal of anyone else
    is audited."""
    refused, me = _look(svc, link_id, email, verified)
    if refused is not None:
        return refused
    try:
        claim = claim_secret(svc.ledger, secret_box(svc.settings), link_id, by=me, now=svc.clock())
    except SecretUnreadable as exc:
        log.error("secret link %s…: %s", link_id[:6], exc)
        return Outcome(500, "The secret cannot be opened here: tell the IT admins.")
    assert claim is not None  # _look found it; rows are never deleted
    if claim.secret is None:
        gone = _gone(claim.sealed, svc.clock())
        assert gone is not None
        why = f"refused({gone.message})"
        _audit(svc, "secret.refused", claim.sealed, by=me, verified=verified, effect=why)
        return gone
    why = "deleted(retrieved: the ciphertext is erased)"
    _audit(svc, "secret.retrieved", claim.sealed, by=me, verified=verified, effect=why)
    shown = "Here is the key's new secret. It will not be shown again."
    return Outcome(200, shown, claim.sealed, claim.secret)
