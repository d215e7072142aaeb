"""The audit anchor of a test ledger: the sandbox's published audit key and a checkpoint file
in the test's own folder (ledger/anchor.py), so no two tests share one."""

from __future__ import annotations

from pathlib import Path

from connectors.settings import DEV_CREDENTIALS
from ledger import Anchor, FileCheckpoints

KEY = DEV_CREDENTIALS["audit_key"].encode()


def anchor_in(folder: Path, key: bytes = KEY) -> Anchor:
    """An anchor whose checkpoints are ``folder/audit-checkpoint.jsonl``."""
    return Anchor(key, FileCheckpoints(folder / "audit-checkpoint.jsonl"))
