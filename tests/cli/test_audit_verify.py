"""``handover audit verify`` in a subprocess, as an auditor runs it (issue 15): the key and the
checkpoint file come from the settings; a truncated log, a re-chained edit and a missing
checkpoint file fail with exit 1 and say what they are; the sandbox's published audit key is
refused outside sandbox mode (exit 2, the key never printed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from approvals.services import open_settings_ledger
from connectors.settings import DEV_CREDENTIALS, Settings, SettingsError
from domain.records import AuditEvent
from ledger import LedgerDB
from ledger.audit import AuditRow, ChainHead, _fields, append, event_hash

HANDOVER = str(Path(sys.executable).with_name("handover"))
KEY = "an-audit-key-of-this-test-0123456789"


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "HANDOVER_HOME": str(home),
        "HANDOVER_LEDGER_URL": f"sqlite:///{home / 'ledger.db'}",
        "HANDOVER_AUDIT_KEY": KEY,
        **extra,
    }


def _verify(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HANDOVER, "audit", "verify"], env=env, capture_output=True, text=True, timeout=120
    )


def _ledger(home: Path, n: int) -> LedgerDB:
    settings = Settings(
        home=home, ledger_url=f"sqlite:///{home / 'ledger.db'}", audit_key=KEY, sandbox=True
    )  # type: ignore[arg-type]
    db = open_settings_ledger(settings)
    for i in range(n):
        append(db, AuditEvent(action="org.remove_member", subject=f"p{i}@acme.com"))
    return db


def test_verify_passes_then_catches_a_truncation(tmp_path: Path) -> None:
    db = _ledger(tmp_path, 5)
    ok = _verify(_env(tmp_path))
    assert ok.returncode == 0, ok.stderr
    assert "audit log OK: 5 events" in ok.stdout and "checkpoint (seq 5)" in ok.stdout
    # An insider deletes the last two events and moves the head back.
    with db.session() as s:
        s.execute(delete(AuditRow).where(AuditRow.seq > 3))
        head, last = s.get(ChainHead, 1), s.get(AuditRow, 3)
        assert head is not None and last is not None
        head.seq, head.hash = 3, last.hash
    out = _verify(_env(tmp_path))
    assert out.returncode == 1
    assert "the log ends at seq 3 but the checkpoint says 5" in out.stderr
    # Without the checkpoint file, nothing vouches for where the log ends: that fails too.
    (tmp_path / "audit-checkpoint.jsonl").unlink()
    out = _verify(_env(tmp_path))
    assert out.returncode == 1 and "no checkpoint of this log" in out.stderr


def test_verify_catches_an_edit_rechained_with_sha256(tmp_path: Path) -> None:
    db = _ledger(tmp_path, 4)
    with db.session() as s:
        rows = list(s.scalars(select(AuditRow).order_by(AuditRow.seq)))
        rows[1].subject = "someone.else@acme.com"
        prev = rows[0].hash
        for row in rows[1:]:
            row.prev_hash = prev
            row.hash = prev = event_hash(_fields(row))
        head = s.get(ChainHead, 1)
        assert head is not None
        head.hash = prev
    out = _verify(_env(tmp_path))
    assert out.returncode == 1
    assert "BROKEN at seq 2" in out.stderr and "MAC does not verify" in out.stderr
    # The key is another one than the log was written with: the same failure, at seq 1.
    out = _verify(_env(tmp_path, HANDOVER_AUDIT_KEY="another-key-0123456789abcdef"))
    assert out.returncode == 1 and "BROKEN at seq 1" in out.stderr


def test_the_published_audit_key_is_refused_outside_sandbox_mode(tmp_path: Path) -> None:
    own = {f"HANDOVER_{n.upper()}": f"not-the-{n}-of-this-test" for n in DEV_CREDENTIALS}
    env = {k: v for k, v in _env(tmp_path, **own).items() if k != "HANDOVER_SANDBOX"}
    env["HANDOVER_AUDIT_KEY"] = DEV_CREDENTIALS["audit_key"]
    out = _verify(env)
    assert out.returncode == 2 and "HANDOVER_AUDIT_KEY" in out.stderr, out.stderr
    assert DEV_CREDENTIALS["audit_key"] not in out.stderr + out.stdout
    env["HANDOVER_AUDIT_KEY"] = "short"
    out = _verify(env)
    assert out.returncode == 2 and "HANDOVER_AUDIT_KEY must be at least 16" in out.stderr
    assert "short" not in out.stderr.replace("HANDOVER", "")
    env["HANDOVER_AUDIT_KEY"] = KEY
    assert _verify(env).returncode == 0  # a key of its own: an empty log verifies


def test_the_audit_key_settings() -> None:
    own = {n: f"not-the-{n}-of-this-test" for n in DEV_CREDENTIALS}
    with pytest.raises(SettingsError, match=r"HANDOVER_AUDIT_KEY$"):
        Settings(sandbox=False, **own | {"audit_key": DEV_CREDENTIALS["audit_key"]}).check_safe()  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="HANDOVER_AUDIT_KEY must be at least 16"):
        Settings(sandbox=False, **own | {"audit_key": ""}).check_safe()  # type: ignore[arg-type]
    Settings(sandbox=True).check_safe()  # the published key, in sandbox mode
    assert Settings(home=Path("/x")).audit_checkpoint_path() == Path("/x/audit-checkpoint.jsonl")
    assert DEV_CREDENTIALS["audit_key"] in Settings().secret_values()  # redacted from logs
