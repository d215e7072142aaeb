"""What a verification result that no API read back may say (domain.tasks.is_ok)."""

from __future__ import annotations

import pytest

from domain.tasks import ATTESTED, REPORTED, is_ok


@pytest.mark.parametrize(
    ("check", "stands"),
    [
        ("pass", True),
        (f"{ATTESTED}alice.admin@acme.com at 2026-12-03 10:00 UTC", True),
        (f"{REPORTED}the IdP when ended at 2026-12-03 10:00 UTC", True),
        ("fail: still in the org", False),
        ("passed", False),  # only the exact word
        ("reported", False),
    ],
)
def test_what_stands(check: str, stands: bool) -> None:
    assert is_ok(check) is stands
