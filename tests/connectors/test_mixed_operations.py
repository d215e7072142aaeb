"""Issue 3's resilience check: 500 mixed connector operations against a sandbox that fails
20 % of calls (5xx) and limits every API to 600 requests/min. Every operation must end with the
right result, and the number of 429s received is reported (and small: the client-side limiter,
sized to the same 600/min, keeps the run under the limit instead of bouncing off it).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from connectors.capabilities import InviteSpec
from connectors.idp import ScimIdp
from connectors.org import SandboxOrg
from connectors.rate import TokenBucket
from domain.models import Effect, Role
from sandbox.org.models import Asset
from sandbox.org.service import OrgService
from tests.connectors.org_fixtures import OrgWorld, open_world

LIMIT = 600  # requests/min per API, on the server and in our client-side buckets
pytestmark = pytest.mark.slow


@pytest.fixture
def world() -> Iterator[OrgWorld]:
    yield from open_world("loopback")


@dataclass
class Op:
    name: str
    call: Callable[[], Any]
    check: Callable[[Any], bool]


def _setup(w: OrgWorld, n_people: int) -> dict[str, Any]:
    """People, leavers with content, a receiver, pending invites and keys; no faults yet."""
    w.project("Production")
    w.project("Staging", "staging")
    world = w.app.state.world
    leavers = [f"leaver{i:03d}@acme.com" for i in range(40)]
    people = [f"person{i:03d}@acme.com" for i in range(n_people)]
    pending = [f"pending{i:03d}@partner.io" for i in range(20)]
    with world.db.session() as s:
        org = OrgService(s, world.clock.now())
        org.invite("boss@acme.com", org_role="admin")
        org.accept_invite("boss@acme.com")
        org.invite("receiver@acme.com", org_role="manager", projects={"Production": "manager"})
        org.accept_invite("receiver@acme.com")
        for e in leavers + people:
            org.invite(e, projects={"Production": "viewer"})
            org.accept_invite(e)
        for e in pending:
            org.invite(e)
        now = world.clock.now()
        for e in leavers:
            for k in range(3):
                s.add(
                    Asset(
                        kind="dashboard",
                        name=f"{e} {k}",
                        project_id=1,
                        owner_email=e,
                        created_at=now,
                        updated_at=now,
                    )
                )
    keys = [w.key(f"key {i}", "Production", [leavers[i]]) for i in range(20)]
    return {"leavers": leavers, "people": people, "pending": pending, "keys": keys}


def _ops(org: SandboxOrg, idp: ScimIdp, data: dict[str, Any], rng: random.Random) -> list[list[Op]]:
    """Chains of operations: a chain runs in order (transfer before removal), chains run
    concurrently. 500 operations in all."""
    eff = lambda e: lambda r: r.effect is e  # noqa: E731
    chains: list[list[Op]] = []
    # 40 leavers: read, transfer their content, remove them, remove again (4 ops each: 160)
    for e in data["leavers"]:
        chains.append(
            [
                Op("get_member", lambda e=e: org.get_member(e), lambda m, e=e: m.email == e),
                Op(
                    "transfer_all",
                    lambda e=e: org.transfer_all(e, "receiver@acme.com"),
                    eff(Effect.UPDATED),
                ),
                Op("remove_member", lambda e=e: org.remove_member(e), eff(Effect.DELETED)),
                Op("remove_member again", lambda e=e: org.remove_member(e), eff(Effect.NOOP)),
            ]
        )
    # 60 people: change a project role, again (noop), read effective access (3 ops: 180)
    for e in data["people"][:60]:
        chains.append(
            [
                Op(
                    "set_project_role",
                    lambda e=e: org.set_project_role(e, "Staging", Role.MEMBER),
                    eff(Effect.UPDATED),
                ),
                Op(
                    "set_project_role again",
                    lambda e=e: org.set_project_role(e, "Staging", Role.MEMBER),
                    eff(Effect.NOOP),
                ),
                Op(
                    "effective_access",
                    lambda e=e: org.effective_access(e),
                    lambda g: {(x.project, x.role) for x in g} >= {("Staging", Role.MEMBER)},
                ),
            ]
        )
    # 20 pending invites revoked, twice (40)
    for e in data["pending"]:
        chains.append(
            [
                Op("revoke_invitation", lambda e=e: org.revoke_invitation(e), eff(Effect.DELETED)),
                Op(
                    "revoke_invitation again",
                    lambda e=e: org.revoke_invitation(e),
                    eff(Effect.NOOP),
                ),
            ]
        )
    # 20 new people invited, twice (40)
    for i in range(20):
        spec = InviteSpec(email=f"new{i:03d}@vendor.com", projects={"Production": Role.VIEWER})
        chains.append(
            [
                Op("invite", lambda s=spec: org.invite(s), eff(Effect.CREATED)),
                Op("invite again", lambda s=spec: org.invite(s), eff(Effect.NOOP)),
            ]
        )
    # 20 keys rotated (20)
    for key_id, _secret in data["keys"]:
        chains.append(
            [Op("rotate_key", lambda k=key_id: org.rotate_key(k)[0], eff(Effect.UPDATED))]
        )
    # 30 IdP users created then found (60)
    for i in range(30):
        email = f"idp{i:03d}@acme.com"
        chains.append(
            [
                Op(
                    "idp create_user",
                    lambda e=email: idp.create_user(email=e)[0],
                    eff(Effect.CREATED),
                ),
                Op(
                    "idp find_user",
                    lambda e=email: idp.find_user(e),
                    lambda u, e=email: u is not None and u.user_name == e,
                ),
            ]
        )
    rng.shuffle(chains)
    return chains


def test_500_mixed_operations_under_faults_and_rate_limit(world: OrgWorld) -> None:
    data = _setup(world, 60)
    admin_bucket, scim_bucket, idp_bucket = (TokenBucket(LIMIT) for _ in range(3))
    # 10 tries per call for every backend: at 20 % faults, 6 tries all fail once in ~15 600
    # calls (a run makes ~700, so about one run in twenty would end an operation wrong, as the
    # IdP's 6 did); 10 tries fail together once in ~10 million calls.
    org = SandboxOrg.from_settings(
        world.settings(), scim_limiter=scim_bucket, admin_limiter=admin_bucket, attempts=10
    )
    idp = ScimIdp(
        base_url=f"{world.url}/idp/scim/v2",
        token="sandbox-idp-token",
        limiter=idp_bucket,
        attempts=10,
    )
    world.faults(fault_rate=0.2, rate_limit=LIMIT)
    chains = _ops(org, idp, data, random.Random(3))
    assert sum(len(c) for c in chains) == 500

    def run(chain: list[Op]) -> list[tuple[str, bool, str]]:
        out = []
        for op in chain:
            try:
                result = op.call()
                out.append((op.name, op.check(result), str(result)[:120]))
            except Exception as exc:  # reported below, with the operation's name
                out.append((op.name, False, f"{type(exc).__name__}: {exc}"))
        return out

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = [r for chain in pool.map(run, chains) for r in chain]
    world.faults(fault_rate=0.0)

    wrong = [r for r in results if not r[1]]
    assert not wrong, f"{len(wrong)} operations ended wrong, e.g. {wrong[:5]}"
    stats = [org.scim.api.stats, org.admin.stats, idp.http.stats]  # type: ignore[attr-defined]
    totals = Counter[str]()
    for st in stats:
        totals.update(st.as_dict())
    log = world.requests(limit=200_000)
    injected = Counter(r["injected"] for r in log if r["injected"])
    print(
        f"\n500 operations: {totals['requests']} requests, {totals['retries']} retries, "
        f"{totals['rate_limited']} 429s received, {injected['fault-before']} injected 5xx"
    )
    assert injected["fault-before"] > 50  # the faults really happened
    # Our buckets match the server's: 429s are rare (a few at bucket boundaries at most).
    assert totals["rate_limited"] <= 0.02 * totals["requests"], totals

    # The end state is exactly right.
    for e in data["leavers"]:
        assert world.member(e) is None
        assert org.list_assets(owner=e) == [] and org.list_assets(former_owner=e) == []
    assert len(org.list_assets(owner="receiver@acme.com")) == 3 * len(data["leavers"])
    for _key_id, old_secret in data["keys"]:
        assert world.ingest(old_secret) == 401
    pending = {i.email for i in org.list_invitations("pending")}
    assert not pending & set(data["pending"])
    assert {f"new{i:03d}@vendor.com" for i in range(20)} <= pending
    org.close()
    idp.close()
