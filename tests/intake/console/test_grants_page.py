"""The grants page over HTTP (``Person``: signed in at the sandbox IdP): IT sees every temporary
grant, a requester only those they hold or sponsor; the filters by state and person; the time
left; an extension waiting for approval (a real ``extend_grant`` run paused at its gate) shown
on its grant only, linking to its approval page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from domain.records import Grant, GrantStatus
from flows.expire import extend_grant
from ledger.grants import record_grant
from tests.intake.console.world import ConsoleWorld, Person, console_world

pytestmark = pytest.mark.slow
console = pytest.fixture(scope="module")(console_world)

ALICE = "alice.admin@acme.com"  # IT admin: sees every grant
AUDITOR = "audra.audit@acme.com"
SOFIA = "sofia.lead@acme.com"  # a requester: a grant of her own, one she sponsors
CARLA = "carla.contract@agency.io"
BEN = "ben.haddad@acme.com"


def grant_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="grant-(\d+)">', page)]


def row(page: str, grant_id: int | None) -> str:
    found = re.search(rf'<tr id="grant-{grant_id}">(.*?)</tr>', page, re.S)
    assert found, page
    return found.group(1)


def test_it_sees_every_grant_a_requester_their_own_with_extensions_waiting(
    console: ConsoleWorld,
) -> None:
    db, now = console.stack.rt.ledger, console.stack.svc.clock()
    sponsored = record_grant(
        db,
        Grant(
            subject=CARLA,
            project="Staging",
            role="manager",
            start=now,
            end=now + timedelta(days=2, minutes=30),
            ticket="ACC-1",
            sponsor=SOFIA,
        ),
    )
    module = record_grant(
        db, Grant(subject=CARLA, module="experiment", start=now, end=now + timedelta(days=9))
    )
    own = record_grant(
        db,
        Grant(
            subject=SOFIA,
            module="experiment",
            start=now - timedelta(days=9),
            end=now - timedelta(days=1),
            status=GrantStatus.EXPIRED,
        ),
    )
    other = record_grant(
        db,
        Grant(
            subject=BEN,
            project="Development",
            role="viewer",
            start=now,
            end=now + timedelta(hours=5, minutes=30),
            sponsor=ALICE,
            last_reminder="1d",
            extended_from=now - timedelta(days=3),
        ),
    )
    run = console.stack.start(extend_grant, grant_id=sponsored.id, days=7, requester=SOFIA)
    appr = console.stack.paused(CARLA)
    try:
        for who in (ALICE, AUDITOR):
            seen = Person(console, who).get("/console/grants")
            assert seen.status_code == 200, seen.text
            assert grant_ids(seen.text) == [own.id, other.id, sponsored.id, module.id]  # by end
        page = Person(console, ALICE).get("/console/grants").text
        # The time left (the two largest units), minutes passing meanwhile.
        assert re.search(r"<td>5 hours 2\d minutes</td>", row(page, other.id)), row(page, other.id)
        assert re.search(r"<td>2 days 2\d minutes</td>", row(page, sponsored.id))
        assert "1d before the end" in row(page, other.id)  # the last reminder sent
        assert (now - timedelta(days=3)).strftime("%Y-%m-%d %H:%M UTC") in row(page, other.id)
        # The extension waiting for approval: on its grant (tied by its plan hash), not on
        # Carla's other grant.
        assert f'href="/console/approvals/{appr.id}"' in row(page, sponsored.id)
        assert appr.id not in row(page, module.id)

        sofia = Person(console, SOFIA)
        mine = sofia.get("/console/grants")
        assert mine.status_code == 200
        assert grant_ids(mine.text) == [own.id, sponsored.id]  # held, sponsored; not others
        assert f"/console/approvals/{appr.id}" in mine.text
        assert BEN not in mine.text

        it = Person(console, ALICE)
        expired = it.get("/console/grants", params={"state": "expired"})
        assert grant_ids(expired.text) == [own.id]
        by_person = it.get("/console/grants", params={"person": "ben."})
        assert grant_ids(by_person.text) == [other.id]
        assert grant_ids(sofia.get("/console/grants", params={"person": "ben"}).text) == []
        assert it.get("/console/grants", params={"state": "bogus"}).status_code == 400
    finally:
        # Denied by a seat holder (never the requester): the run ends.
        approver = next(p for seat in appr.required for p in seat if p not in (SOFIA, CARLA))
        assert console.stack.click(appr, approver, deny=True).json()["recorded"] is True
        assert run.wait(timeout=60)["status"] == "denied"
