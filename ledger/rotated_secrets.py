"""Rotated API-key secrets, sealed in the ledger until one of their recipients retrieves them.

A rotated key's new secret never goes to chat (issue 15): the offboarding seals it here and
DMs its recipients a link to the intake, where a signed-in recipient retrieves it once
(``approvals.secret_links``, ``intake/secrets_page.py``).

- **Sealed with a key outside the ledger.** AES-256-GCM under a key derived (HKDF-SHA256) from
  ``HANDOVER_SECRETS_KEY``; the link's id is the associated data, so a ciphertext copied onto
  another row does not open there. Whoever holds only the database reads nothing.
- **Unguessable links.** The id is 32 random bytes (``secrets.token_urlsafe``): the link names
  the secret, but only a signed-in recipient opens it.
- **Once.** :func:`claim_secret` is one conditional ``UPDATE`` (still unretrieved, not expired):
  of two retrievals at once, one wins; the ciphertext goes in the same statement.
- **Not kept.** Retrieved or expired, the ciphertext is erased (``NULL``); the row stays, as a
  record of who retrieved it and when. :func:`erase_expired` erases what expired unread.
- **Idempotent.** One row per case and step: a re-run of the rotation step (the org replays the
  same rotation) finds its row and link again; a rotation the org did anew (another secret,
  told by its keyed fingerprint) is sealed into the same row and link, which works again.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr
from sqlalchemy import JSON, Integer, LargeBinary, String, UniqueConstraint, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ledger.db import LedgerBase, LedgerDB

LINK_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")  # token_urlsafe(32): 43 characters
_NONCE_BYTES = 12  # AES-GCM's standard nonce, random per sealing
_SEAL_INFO = b"handover rotated secrets: AES-256-GCM v1"
_PRINT_INFO = b"handover rotated secrets: fingerprint v1"


def derive_key(master: str, purpose: bytes) -> bytes:
    """A 32-byte key for ``purpose``, derived from ``master`` (HKDF-SHA256): one setting, a
    separate key per use, none of which tells anything about another."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        master.encode()
    )


class SecretUnreadable(Exception):
    """A sealed secret does not open: ``HANDOVER_SECRETS_KEY`` changed since it was sealed, or
    the ciphertext was altered."""


class SecretBox:
    """Seals and opens secrets with keys derived from ``master`` (``HANDOVER_SECRETS_KEY``)."""

    def __init__(self, master: str) -> None:
        self._aead = AESGCM(derive_key(master, _SEAL_INFO))
        self._print = derive_key(master, _PRINT_INFO)

    def seal(self, link_id: str, secret: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.encode(), link_id.encode())

    def open(self, link_id: str, blob: bytes) -> str:
        """The secret sealed for ``link_id``.

        Raises:
            SecretUnreadable: another key sealed it, or it was altered or moved.
        """
        try:
            plain = self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], link_id.encode())
        except (InvalidTag, ValueError):
            raise SecretUnreadable(
                "the sealed secret cannot be opened: HANDOVER_SECRETS_KEY changed since it was "
                "sealed, or the ledger row was altered"
            ) from None
        return plain.decode()

    def fingerprint(self, secret: str) -> str:
        """A keyed digest of ``secret``: whether a re-run's secret is the one sealed, without
        keeping anything a database reader could test guesses against."""
        return hmac.new(self._print, secret.encode(), hashlib.sha256).hexdigest()


class SealedSecretRow(LedgerBase):
    __tablename__ = "sealed_secrets"
    __table_args__ = (UniqueConstraint("case_id", "step_id"),)

    id: Mapped[str] = mapped_column(String(43), primary_key=True)
    case_id: Mapped[int] = mapped_column(Integer, index=True)
    step_id: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(320), index=True)  # the leaver
    key_id: Mapped[str] = mapped_column(String(100))
    key_name: Mapped[str] = mapped_column(String(500))
    ticket: Mapped[str] = mapped_column(String(64), default="")
    recipients: Mapped[list[Any]] = mapped_column(JSON, default=list)
    told: Mapped[list[Any]] = mapped_column(JSON, default=list)  # who got the link by DM
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    retrieved_by: Mapped[str] = mapped_column(String(320), default="")
    retrieved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    erased_at: Mapped[datetime | None] = mapped_column(nullable=True)


@dataclass(frozen=True)
class SealedSecret:
    """A sealed secret's record, without the secret."""

    id: str
    case_id: int
    subject: str
    key_id: str
    key_name: str
    ticket: str
    recipients: tuple[str, ...]
    told: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    retrieved_by: str
    retrieved_at: datetime | None
    erased_at: datetime | None
    readable: bool  # a ciphertext is kept

    def state(self, now: datetime) -> str:
        """``retrieved``, ``expired`` (or erased unread) or ``waiting``."""
        if self.retrieved_at is not None:
            return "retrieved"
        if now >= self.expires_at or not self.readable:
            return "expired"
        return "waiting"


def _model(row: SealedSecretRow) -> SealedSecret:
    return SealedSecret(
        id=row.id,
        case_id=row.case_id,
        subject=row.subject,
        key_id=row.key_id,
        key_name=row.key_name,
        ticket=row.ticket,
        recipients=tuple(row.recipients),
        told=tuple(row.told),
        created_at=row.created_at,
        expires_at=row.expires_at,
        retrieved_by=row.retrieved_by,
        retrieved_at=row.retrieved_at,
        erased_at=row.erased_at,
        readable=row.ciphertext is not None,
    )


@dataclass(frozen=True)
class Rotation:
    """What is sealed: the rotated key, whose leaving rotated it, for whom."""

    case_id: int
    step_id: str
    subject: str
    key_id: str
    key_name: str
    recipients: tuple[str, ...]
    ticket: str = ""


def seal_secret(
    db: LedgerDB,
    box: SecretBox,
    rotation: Rotation,
    secret: SecretStr,
    *,
    now: datetime,
    ttl: timedelta,
) -> SealedSecret:
    """Seal ``secret`` for ``rotation``'s recipients, once per case and step.

    The case's step sealed already: the same secret keeps its row as it is (its link, its
    expiry, who was told, whether it was retrieved); another secret (the org rotated anew) is
    sealed into the same row, which starts over (nobody told, not retrieved, ``ttl`` from now).
    """
    value = secret.get_secret_value()
    fp = box.fingerprint(value)
    where = (
        SealedSecretRow.case_id == rotation.case_id,
        SealedSecretRow.step_id == rotation.step_id,
    )
    with db.session() as s:
        row = s.scalars(select(SealedSecretRow).where(*where)).first()
        if row is not None and row.fingerprint != fp:
            row.ciphertext = box.seal(row.id, value)
            row.fingerprint, row.told, row.created_at = fp, [], now
            row.expires_at, row.retrieved_by, row.retrieved_at = now + ttl, "", None
            row.erased_at = None
        if row is not None:
            return _model(row)
    link_id = secrets.token_urlsafe(32)
    row = SealedSecretRow(
        id=link_id,
        case_id=rotation.case_id,
        step_id=rotation.step_id,
        subject=rotation.subject,
        key_id=rotation.key_id,
        key_name=rotation.key_name,
        ticket=rotation.ticket,
        recipients=list(rotation.recipients),
        told=[],
        ciphertext=box.seal(link_id, value),
        fingerprint=fp,
        created_at=now,
        expires_at=now + ttl,
    )
    try:
        with db.session() as s:
            s.add(row)
            return _model(row)
    except IntegrityError:  # another process sealed this step just now: theirs stands
        with db.sessions() as s:
            return _model(s.scalars(select(SealedSecretRow).where(*where)).one())


def mark_told(db: LedgerDB, link_id: str, person: str) -> None:
    """Record that ``person`` got ``link_id``'s link (a re-run tells only the others)."""
    with db.session() as s:
        row = s.get(SealedSecretRow, link_id)
        if row is not None and person not in row.told:
            row.told = [*row.told, person]


def sealed_secret(db: LedgerDB, link_id: str) -> SealedSecret | None:
    """The record of ``link_id`` (no secret), or None."""
    if not LINK_ID.match(link_id):
        return None
    with db.sessions() as s:
        row = s.get(SealedSecretRow, link_id)
        return _model(row) if row is not None else None


@dataclass(frozen=True)
class Claim:
    """A retrieval: the secret when this one won it, else None (see ``sealed.state``)."""

    sealed: SealedSecret
    secret: SecretStr | None


def claim_secret(
    db: LedgerDB, box: SecretBox, link_id: str, *, by: str, now: datetime
) -> Claim | None:
    """Retrieve ``link_id``'s secret for ``by``: once, before it expires (who may is the
    caller's question). The ciphertext is erased by the same statement that claims it.

    Returns:
        None for no such link; a claim without a secret when it was retrieved already or has
        expired.

    Raises:
        SecretUnreadable: it does not open (nothing is claimed: the link still works once the
            right key is back).
    """
    if not LINK_ID.match(link_id):
        return None
    with db.session() as s:
        row = s.get(SealedSecretRow, link_id)
        if row is None:
            return None
        if row.ciphertext is not None and row.retrieved_at is None and now >= row.expires_at:
            row.ciphertext, row.erased_at = None, now  # expired unread: erased on sight
        if row.ciphertext is None or row.retrieved_at is not None:
            return Claim(_model(row), None)
        plain = box.open(link_id, row.ciphertext)
        # Conditional: of two retrievals racing here, only one finds it still unretrieved.
        won = s.execute(
            update(SealedSecretRow)
            .where(
                SealedSecretRow.id == link_id,
                SealedSecretRow.retrieved_at.is_(None),
                SealedSecretRow.ciphertext.is_not(None),
            )
            .values(retrieved_by=by, retrieved_at=now, ciphertext=None)
            .execution_options(synchronize_session=False)
        )
        s.flush()
        s.expire(row)
        if won.rowcount != 1:  # type: ignore[attr-defined]
            return Claim(_model(row), None)
        return Claim(_model(row), SecretStr(plain))


def erase_expired(db: LedgerDB, *, now: datetime) -> list[SealedSecret]:
    """Erase the ciphertexts that expired unread; the records of those erased now."""
    with db.session() as s:
        rows = s.scalars(
            select(SealedSecretRow).where(
                SealedSecretRow.ciphertext.is_not(None), SealedSecretRow.expires_at <= now
            )
        ).all()
        for row in rows:
            row.ciphertext, row.erased_at = None, now
        return [_model(r) for r in rows]


def waiting_secrets(db: LedgerDB, people: Sequence[str], *, now: datetime) -> list[SealedSecret]:
    """The sealed secrets one of ``people`` (a person's addresses) may still retrieve: sealed,
    not retrieved, not expired, and they among the recipients; oldest first. Whether they may
    is still decided when they ask (``approvals.secret_links``): this only lists."""
    mine = {p.strip().lower() for p in people if p}
    with db.sessions() as s:
        rows = s.scalars(
            select(SealedSecretRow)
            .where(
                SealedSecretRow.ciphertext.is_not(None),
                SealedSecretRow.retrieved_at.is_(None),
                SealedSecretRow.expires_at > now,
            )
            .order_by(SealedSecretRow.created_at)
        ).all()
        # The recipients are a JSON list: matched here, the rows being few (unread and alive).
        return [_model(r) for r in rows if mine & {str(p).strip().lower() for p in r.recipients}]
