"""Rotated secrets sealed in the ledger (ledger/rotated_secrets.py), on SQLite and PostgreSQL:
encrypted with a key outside the database, claimed once (also by racing claimers), erased when
retrieved or expired, one row and link per case and step."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from ledger import LedgerDB
from ledger.rotated_secrets import (
    LINK_ID,
    Rotation,
    SealedSecretRow,
    SecretBox,
    SecretUnreadable,
    claim_secret,
    erase_expired,
    mark_told,
    seal_secret,
    sealed_secret,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(hours=24)
KEY = "a-test-secrets-key-of-at-least-32-characters"
SECRET = "amp_0123456789abcdef0123456789abcdef"
BOX = SecretBox(KEY)


def rotation(step: str = "rotate_key:1", case_id: int = 7) -> Rotation:
    return Rotation(
        case_id=case_id,
        step_id=step,
        subject="dana.sole@acme.com",
        key_id="1",
        key_name="Production ingest",
        recipients=("alice.admin@acme.com",),
        ticket="IT-1",
    )


def seal(ledger: LedgerDB, secret: str = SECRET, **kw: object) -> str:
    return seal_secret(ledger, BOX, rotation(**kw), SecretStr(secret), now=NOW, ttl=DAY).id  # type: ignore[arg-type]


def row(ledger: LedgerDB, link_id: str) -> SealedSecretRow:
    with ledger.sessions() as s:
        found = s.get(SealedSecretRow, link_id)
        assert found is not None
        return found


def test_the_secret_is_stored_encrypted_under_a_key_outside_the_ledger(ledger: LedgerDB) -> None:
    link_id = seal(ledger)
    assert LINK_ID.match(link_id)
    stored = row(ledger, link_id)
    assert stored.ciphertext is not None and SECRET.encode() not in stored.ciphertext
    assert SECRET not in stored.fingerprint
    # Another key opens nothing, and claims nothing: the link still works with the right one.
    other = SecretBox("another-secrets-key-of-at-least-32-characters")
    with pytest.raises(SecretUnreadable):
        claim_secret(ledger, other, link_id, by="alice.admin@acme.com", now=NOW)
    assert sealed_secret(ledger, link_id).state(NOW) == "waiting"  # type: ignore[union-attr]
    # A ciphertext copied onto another row does not open there (the link id is bound in).
    second = seal(ledger, step="rotate_key:2")
    with ledger.session() as s:
        s.get(SealedSecretRow, second).ciphertext = stored.ciphertext  # type: ignore[union-attr]
    with pytest.raises(SecretUnreadable):
        claim_secret(ledger, BOX, second, by="alice.admin@acme.com", now=NOW)


def test_claimed_once_then_erased_and_the_second_claim_says_who(ledger: LedgerDB) -> None:
    link_id = seal(ledger)
    first = claim_secret(ledger, BOX, link_id, by="alice.admin@acme.com", now=NOW)
    assert first is not None and first.secret is not None
    assert first.secret.get_secret_value() == SECRET
    assert row(ledger, link_id).ciphertext is None  # gone from the ledger with the claim
    again = claim_secret(ledger, BOX, link_id, by="alice.admin@acme.com", now=NOW + DAY / 2)
    assert again is not None and again.secret is None
    assert again.sealed.state(NOW) == "retrieved"
    assert (again.sealed.retrieved_by, again.sealed.retrieved_at) == ("alice.admin@acme.com", NOW)
    assert claim_secret(ledger, BOX, "x" * 43, by="a@acme.com", now=NOW) is None
    assert claim_secret(ledger, BOX, "../etc", by="a@acme.com", now=NOW) is None


def test_racing_claims_reveal_the_secret_once(ledger: LedgerDB) -> None:
    link_id = seal(ledger)
    got: list[object] = []
    start = threading.Barrier(6)

    def claim() -> None:
        start.wait()
        c = claim_secret(ledger, BOX, link_id, by="alice.admin@acme.com", now=NOW)
        got.append(c.secret if c is not None else None)

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 6
    assert sum(1 for g in got if g is not None) == 1


def test_an_expired_secret_is_erased_unread(ledger: LedgerDB) -> None:
    kept, lapsed = seal(ledger), seal(ledger, step="rotate_key:2")
    with ledger.session() as s:
        s.get(SealedSecretRow, lapsed).expires_at = NOW + timedelta(hours=1)  # type: ignore[union-attr]
    late = claim_secret(
        ledger, BOX, lapsed, by="alice.admin@acme.com", now=NOW + timedelta(hours=2)
    )
    assert late is not None and late.secret is None and late.sealed.state(NOW) == "expired"
    assert row(ledger, lapsed).ciphertext is None  # erased on sight
    assert erase_expired(ledger, now=NOW + DAY / 2) == []
    (gone,) = erase_expired(ledger, now=NOW + DAY)
    assert gone.id == kept and row(ledger, kept).ciphertext is None
    assert row(ledger, kept).erased_at == NOW + DAY


def test_one_row_per_case_and_step_whatever_the_re_runs(ledger: LedgerDB) -> None:
    link_id = seal(ledger)
    mark_told(ledger, link_id, "alice.admin@acme.com")
    # The step re-run (the org replays the same rotation): the same link, who was told kept.
    again = seal_secret(ledger, BOX, rotation(), SecretStr(SECRET), now=NOW + DAY / 2, ttl=DAY)
    assert again.id == link_id and again.told == ("alice.admin@acme.com",)
    assert again.expires_at == NOW + DAY
    # The org rotated anew (another secret): the same link holds it, and everyone is told again.
    claim_secret(ledger, BOX, link_id, by="alice.admin@acme.com", now=NOW)
    later = NOW + DAY / 4
    fresh = seal_secret(ledger, BOX, rotation(), SecretStr("amp_new"), now=later, ttl=DAY)
    assert fresh.id == link_id and fresh.told == () and fresh.state(later) == "waiting"
    claim = claim_secret(ledger, BOX, link_id, by="alice.admin@acme.com", now=later)
    assert claim is not None and claim.secret is not None
    assert claim.secret.get_secret_value() == "amp_new"
    with ledger.sessions() as s:
        assert len(s.scalars(select(SealedSecretRow)).all()) == 1
