"""Which grant an extension approval is about (``domain.expiry.extends``): the days its plan
line names, over the grant and its current end, must give the approval's plan hash — the line's
words alone never tie an approval to a grant (the console's grants page shows it there)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.expiry import Extension, extends
from domain.records import Grant

NOW = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
STAGING = Grant(
    id=7,
    subject="carla.contract@agency.io",
    project="Staging",
    role="manager",
    start=NOW,
    end=NOW + timedelta(days=2),
    sponsor="sofia.lead@acme.com",
)
ASKED = Extension(grant=STAGING, days=14, requester="sofia.lead@acme.com")


@pytest.mark.parametrize(
    ("grant", "plan_hash", "lines", "tied"),
    [
        (STAGING, ASKED.hash, [ASKED.summary()], True),
        # The same person's other grant: another id, another hash.
        (
            STAGING.model_copy(update={"id": 8, "module": "experiment"}),
            ASKED.hash,
            [ASKED.summary()],
            False,
        ),
        # The grant's end moved since (extended already): that approval is no longer about it.
        (
            STAGING.model_copy(update={"end": NOW + timedelta(days=9)}),
            ASKED.hash,
            [ASKED.summary()],
            False,
        ),
        # Words that name the grant but another number of days than the hash: not tied.
        (STAGING, ASKED.hash, [ASKED.summary().replace("by 14 days", "by 30 days")], False),
        # Any other approval (no extension line).
        (STAGING, ASKED.hash, ["Remove carla.contract@agency.io from the org"], False),
    ],
)
def test_an_extension_is_tied_to_its_grant_by_its_plan_hash(
    grant: Grant, plan_hash: str, lines: list[str], tied: bool
) -> None:
    assert extends(grant, plan_hash=plan_hash, plan_lines=lines) is tied
