"""The watchdog's loop erases the rotated secrets that expired unread, and audits each
(approvals/secret_links.py: ``erase_expired_secrets``), on a real ledger."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from approvals.policy import load_policy
from approvals.secret_links import link_ttl, secret_box
from approvals.services import Services, open_settings_ledger
from approvals.watchdog import run_forever
from connectors.settings import Settings
from ledger.audit import export, records
from ledger.rotated_secrets import Rotation, seal_secret, sealed_secret


def test_the_watchdog_erases_what_expired_unread(tmp_path: Path) -> None:
    settings = Settings(ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    svc = Services(settings=settings, ledger=open_settings_ledger(settings), policy=load_policy())
    box, now = secret_box(settings), svc.clock()

    def seal(case_id: int, hours_ago: float) -> str:
        rotation = Rotation(
            case_id=case_id,
            step_id="rotate_key:1",
            subject="dana.sole@acme.com",
            key_id="1",
            key_name="Production ingestion",
            recipients=("alice.admin@acme.com",),
        )
        secret = SecretStr(f"amp_swept{case_id}")
        ago = now - timedelta(hours=hours_ago)
        return seal_secret(svc.ledger, box, rotation, secret, now=ago, ttl=link_ttl(settings)).id

    lapsed, fresh = seal(1, hours_ago=25), seal(2, hours_ago=1)
    stop = threading.Event()
    run_forever(svc, every=0.01, stop=stop, also=[stop.set])  # one round
    gone, kept = sealed_secret(svc.ledger, lapsed), sealed_secret(svc.ledger, fresh)
    assert gone is not None and not gone.readable and gone.erased_at is not None
    assert kept is not None and kept.readable
    (event,) = [e for e in records(svc.ledger) if e.action == "secret.expired"]
    assert (event.subject, event.target, event.effect) == (
        "dana.sole@acme.com",
        "api key 1",
        "deleted(expired unread)",
    )
    assert "amp_swept" not in "".join(export(svc.ledger))
