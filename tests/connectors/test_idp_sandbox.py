"""What the IdP connector's writes do to the org through the sandbox's provisioning (not part of
the contract: only the sandbox IdP pushes into an org): out of every mapped group means out of
the org, and a deactivated person can no longer sign in.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.idp import ScimIdp
from domain.models import Effect
from tests.conftest import ORG_SCIM
from tests.connectors.idp_fixtures import Backend, open_backend

MAPPED = ("amplitude-org-members", "amplitude-project-viewers-production")


@pytest.fixture(params=["sandbox", pytest.param("sandbox-loopback", marks=pytest.mark.slow)])
def sandbox(request: pytest.FixtureRequest) -> Iterator[Backend]:
    with open_backend(request.param) as backend:
        yield backend


def org_total(sandbox: Backend, email: str) -> int:
    """How many org members the org's own SCIM API finds by this email."""
    r = sandbox.raw.get(
        f"{sandbox.root}/scim/1/Users",
        params={"filter": f'userName eq "{email}"'},
        headers=ORG_SCIM,
    )
    assert r.status_code == 200, r.text
    return int(r.json()["totalResults"])


def provisioned(sandbox: Backend, idp: ScimIdp, email: str) -> str:
    """An IdP user in the mapped groups (and one unmapped), hence a member of the org."""
    _, user = idp.create_user(email=email, given_name="Lea", family_name="Ver")
    sandbox.group("everyone", (user.id,))
    for name in MAPPED:
        gid = sandbox.group(name)
        assert idp.add_to_group(gid, user.id).effect is Effect.UPDATED
    assert org_total(sandbox, email) == 1
    return user.id


def test_out_of_every_mapped_group_is_out_of_the_org(sandbox: Backend) -> None:
    idp, email = sandbox.idp(), "leaver@example.com"
    uid = provisioned(sandbox, idp, email)

    results = idp.remove_from_mapped_groups(email, lambda n: n.startswith("amplitude-"))
    assert sorted((name, str(r)) for name, r in results) == [(n, "updated") for n in MAPPED]
    assert org_total(sandbox, email) == 0  # the push after the last mapped group removed them
    assert [g.name for g in idp.groups_of(uid)] == ["everyone"]
    assert idp.get_user(uid).active is True  # still an IdP user, only out of the app

    gid = idp.find_group(MAPPED[0])
    assert gid is not None
    idp.add_to_group(gid.id, uid)  # back in a mapped group: provisioned again
    assert org_total(sandbox, email) == 1


def test_a_deactivated_person_cannot_sign_in(sandbox: Backend) -> None:
    idp, email = sandbox.idp(), "gone@example.com"
    provisioned(sandbox, idp, email)
    assert sandbox.raw.post(f"{sandbox.root}/_sandbox/members/{email}/accept").status_code == 200
    assert sandbox.raw.post(f"{sandbox.root}/_sandbox/members/{email}/login").status_code == 200

    assert idp.deactivate(email).effect is Effect.UPDATED
    assert sandbox.raw.post(f"{sandbox.root}/_sandbox/members/{email}/login").status_code == 403
    assert org_total(sandbox, email) == 0
    assert str(idp.deactivate(email)) == "noop(already inactive)"
