"""One contract suite per org capability (STYLE.md point 15), run against every implementation
that offers it: ``SandboxOrg`` and (for MemberDirectory, PermissionGroups and Inviter)
``AmplitudeScim``, each in-process and over loopback. Each test builds its own small world.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from connectors.capabilities import InviteSpec
from connectors.errors import AuthError, ConflictError, InvalidRequestError, NotFoundError
from connectors.redact import redact
from domain.models import AssetKind, Effect, Module, Role
from tests.connectors import org_fixtures
from tests.connectors.org_fixtures import Impl

# Fixtures live in org_fixtures (shared with the other test_org*.py files only).
any_org = org_fixtures.any_org
full_org = org_fixtures.full_org

LOOK_ALIKE = "j\u043en.smith@acme.com"  # a Cyrillic o


# ---------------------------------------------------------------------------- MemberDirectory
def test_get_member_finds_exactly_that_email(any_org: Impl) -> None:
    w, org = any_org.world, any_org.org
    w.project("Prod")
    w.join("jon.smith@acme.com", org_role="member", given_name="Jon", family_name="Smith")
    w.invite(LOOK_ALIKE, given_name="Jon")
    m = org.get_member("Jon.Smith@ACME.com ")
    assert m is not None
    assert (m.email, m.name) == ("jon.smith@acme.com", "Jon Smith")
    look_alike = org.get_member(LOOK_ALIKE)
    assert look_alike is not None and look_alike.email == LOOK_ALIKE
    assert org.get_member("jon.smith@gmail.com") is None
    if any_org.is_scim_only:  # SCIM says neither org role nor pending/joined
        assert (m.org_role, m.status) == (None, "unknown")
    else:
        assert (m.org_role, m.status, look_alike.status) == (Role.MEMBER, "joined", "pending")
        assert m.last_login_at is not None


def test_list_members_pages_through_everyone(any_org: Impl) -> None:
    w = any_org.world
    emails = [f"p{i:03d}@x.com" for i in range(130)]  # more than one SCIM page of 100
    w.many_invitees(emails)
    w.join("boss@x.com", org_role="admin")
    listed = [m.email for m in any_org.org.list_members()]
    assert sorted(listed) == sorted([*emails, "boss@x.com"])
    if any_org.is_scim_only:
        pages = [r for r in w.requests(api="org_scim") if r["path"] == "/scim/1/Users"]
        assert len(pages) == 2
        assert all("itemsPerPage=100" in r["query"] for r in pages)


def test_a_rejected_scim_key_says_so_and_is_not_retried(any_org: Impl) -> None:
    w = any_org.world
    w.join("kim@acme.com")
    bad = w.scim(org_scim_token="regenerated-since") if any_org.is_scim_only else None
    bad = bad or w.sandbox_org(org_scim_token="regenerated-since")
    with pytest.raises(AuthError) as err:
        bad.remove_member("kim@acme.com")
    assert err.value.status_code == 401
    assert "the SCIM key was rejected (regenerated?" in str(err.value)
    assert "HANDOVER_ORG_SCIM_TOKEN" in str(err.value)
    assert "regenerated-since" not in str(err.value)  # never the key itself
    assert w.member("kim@acme.com") is not None


def test_remove_member_then_noop(any_org: Impl) -> None:
    w, org = any_org.world, any_org.org
    w.join("boss@x.com", org_role="admin")
    w.join("leaver@x.com")
    w.invite("invitee@x.com")
    assert org.remove_member("Leaver@x.com").effect is Effect.DELETED
    assert org.get_member("leaver@x.com") is None
    again = org.remove_member("leaver@x.com")
    assert (again.effect, again.reason) == (Effect.NOOP, "not a member")
    # A pending invite is revoked the same way.
    assert org.remove_member("invitee@x.com").effect is Effect.DELETED
    assert w.member("invitee@x.com") is None


def test_remove_sole_project_admin_is_a_conflict_with_the_backends_reason(any_org: Impl) -> None:
    w, org = any_org.world, any_org.org
    w.project("Development", "development")
    w.join("boss@x.com", org_role="admin")
    w.join("dana.sole@acme.com", org_role="manager", projects={"Development": "admin"})
    with pytest.raises(ConflictError) as err:
        org.remove_member("dana.sole@acme.com")
    e = err.value
    assert "sole Admin of project Development" in str(e)
    assert (e.status_code, e.system, e.operation, e.subject) == (
        409,
        "org",
        "remove_member",
        "dana.sole@acme.com",
    )
    assert str(e).startswith("org: remove_member failed for dana.sole@acme.com: 409 ")
    assert w.member("dana.sole@acme.com") is not None


# ---------------------------------------------------------------------------- Inviter
def test_invite_creates_then_noop(any_org: Impl) -> None:
    w, org = any_org.world, any_org.org
    spec = InviteSpec(email="New.Hire@x.com", given_name="New", family_name="Hire")
    assert org.invite(spec).effect is Effect.CREATED
    again = org.invite(spec)
    assert (again.effect, again.reason) == (Effect.NOOP, "already a member or invited")
    m = w.member("new.hire@x.com")
    assert m is not None and (m["status"], m["given_name"]) == ("pending", "New")


def test_scim_invite_reports_what_scim_cannot_grant(any_org: Impl) -> None:
    w, org = any_org.world, any_org.org
    w.project("Prod")
    spec = InviteSpec(
        email="n@x.com",
        org_role=Role.MEMBER,
        projects={"Prod": Role.VIEWER},
        modules=(Module.GOVERN,),
    )
    result = org.invite(spec)
    assert result.effect is Effect.CREATED
    m = w.member("n@x.com")
    assert m is not None
    if any_org.is_scim_only:
        assert result.detail["not_applied"] == {
            "org_role": "member",
            "projects": {"Prod": "viewer"},
            "modules": ["govern"],
        }
        assert (m["org_role"], m["modules"], m["projects"]) == ("viewer", [], [])
    else:
        assert (m["org_role"], m["modules"]) == ("member", ["govern"])
        assert [(p["project"], p["role"]) for p in m["projects"]] == [("Prod", "viewer")]


# ---------------------------------------------------------------------------- PermissionGroups
def test_group_members_add_then_noop_remove_then_noop(any_org: Impl) -> None:
    w, org = any_org.world, any_org.org
    w.project("Prod")
    w.join("a@x.com")
    w.join("b@x.com")
    gid = w.group("Analysts", projects={"Prod": "member"})
    (g,) = org.list_groups()
    assert (g.id, g.name, g.members) == (gid, "Analysts", ())
    if not any_org.is_scim_only:  # the admin API says what a group grants; SCIM does not
        assert g.projects == {"Prod": Role.MEMBER}

    added = org.add_group_members(gid, ["A@x.com", "b@x.com", "a@x.com"])
    assert (added.effect, added.detail["added"]) == (Effect.UPDATED, ["a@x.com", "b@x.com"])
    assert org.add_group_members(gid, ["b@x.com"]).effect is Effect.NOOP
    assert org.list_groups()[0].members == ("a@x.com", "b@x.com")

    removed = org.remove_group_members(gid, ["a@x.com", "zed@x.com"])
    assert (removed.effect, removed.detail["removed"]) == (Effect.UPDATED, ["a@x.com"])
    assert org.remove_group_members(gid, ["a@x.com"]).effect is Effect.NOOP
    assert org.list_groups()[0].members == ("b@x.com",)
    assert org.add_group_members(gid, []).effect is Effect.NOOP


def test_group_errors_name_the_group(any_org: Impl) -> None:
    w, org = any_org.world, any_org.org
    w.project("Prod")
    w.join("boss@x.com", org_role="admin")
    gid = w.group("Prod admins", projects={"Prod": "admin"}, members=["boss@x.com"])
    with pytest.raises(NotFoundError, match=r"no member ghost@x\.com"):
        org.add_group_members(gid, ["ghost@x.com"])
    with pytest.raises(NotFoundError, match=r"add_group_members failed for group 999"):
        org.add_group_members("999", ["boss@x.com"])
    # The group is the only source of Prod's Admin: the backend refuses, and says why.
    with pytest.raises(ConflictError, match="sole Admin of project Prod"):
        org.remove_group_members(gid, ["boss@x.com"])


def test_create_group_then_noop(any_org: Impl) -> None:
    w, org = any_org.world, any_org.org
    w.join("a@x.com")
    result, group = org.create_group("Readers", members=["a@x.com"])
    assert (result.effect, group.name, group.members) == (Effect.CREATED, "Readers", ("a@x.com",))
    again, same = org.create_group("Readers")
    assert (again.effect, same.id) == (Effect.NOOP, group.id)
    assert [g.name for g in org.list_groups()] == ["Readers"]


# ---------------------------------------------------------------------------- Invitations
def test_invitations_resend_revoke(full_org: Impl) -> None:
    w, org = full_org.world, full_org.org
    org.invite(InviteSpec(email="inv@x.com"))
    (pending,) = org.list_invitations("pending")
    assert (pending.email, pending.resend_count) == ("inv@x.com", 0)

    w.advance_days(15)  # past the 14 days
    assert [i.email for i in org.list_invitations("expired")] == ["inv@x.com"]
    assert org.resend_invitation("inv@x.com").effect is Effect.UPDATED
    (pending,) = org.list_invitations("pending")
    assert pending.resend_count == 1 and pending.expires_at - pending.last_sent_at == timedelta(
        days=14
    )

    assert org.revoke_invitation("INV@x.com").effect is Effect.DELETED
    again = org.revoke_invitation("inv@x.com")
    assert (again.effect, again.reason) == (Effect.NOOP, "no pending invitation")
    assert org.resend_invitation("inv@x.com").effect is Effect.NOOP
    assert [i.email for i in org.list_invitations("revoked")] == ["inv@x.com"]
    assert org.get_member("inv@x.com") is None


def test_invite_grants_what_the_spec_says(full_org: Impl) -> None:
    w, org = full_org.world, full_org.org
    w.project("Prod")
    w.project("Stage", "staging")
    spec = InviteSpec(
        email="c@x.com",
        org_role=Role.MEMBER,
        projects={"Prod": Role.VIEWER, "Stage": Role.MANAGER},
        modules=(Module.EXPERIMENT,),
        note="contractor, SOW-12",
    )
    assert org.invite(spec).effect is Effect.CREATED
    m = org.get_member("c@x.com")
    assert m is not None
    assert (m.status, m.org_role, m.modules, m.note) == (
        "pending",
        Role.MEMBER,
        (Module.EXPERIMENT,),
        "contractor, SOW-12",
    )
    assert {(p.project, p.role, p.sources) for p in m.projects} == {
        ("Prod", Role.VIEWER, ("individual",)),
        ("Stage", Role.MANAGER, ("individual",)),
    }
    with pytest.raises(NotFoundError, match=r"invite failed for d@x\.com"):
        org.invite(InviteSpec(email="d@x.com", projects={"Nowhere": Role.VIEWER}))


# ---------------------------------------------------------------------------- ProjectAccess
def test_org_role_and_project_role_updated_then_noop(full_org: Impl) -> None:
    w, org = full_org.world, full_org.org
    w.project("Prod")
    w.project("Stage", "staging")
    w.join("boss@x.com", org_role="admin", projects={"Prod": "admin"})
    w.join("a@x.com", projects={"Prod": "viewer"})
    assert org.set_org_role("a@x.com", Role.MEMBER).effect is Effect.UPDATED
    same = org.set_org_role("a@x.com", Role.MEMBER)
    assert (same.effect, same.reason) == (Effect.NOOP, "already member")

    up = org.set_project_role("a@x.com", "Prod", Role.MANAGER)
    assert (up.effect, up.detail["old"], up.detail["new"]) == (Effect.UPDATED, "viewer", "manager")
    assert org.set_project_role("a@x.com", "Prod", Role.MANAGER).effect is Effect.NOOP
    assert org.set_project_role("a@x.com", "Stage", None).effect is Effect.NOOP
    assert org.set_project_role("a@x.com", "Prod", None).effect is Effect.DELETED
    assert org.set_project_role("a@x.com", "Prod", None).effect is Effect.NOOP

    m = org.get_member("a@x.com")
    assert m is not None and (m.org_role, m.projects) == (Role.MEMBER, ())
    projects = {p.name: p for p in org.list_projects()}
    assert (projects["Prod"].admins, projects["Stage"].environment) == (("boss@x.com",), "staging")
    with pytest.raises(NotFoundError, match=r"set_org_role failed for ghost@x\.com: 404"):
        org.set_org_role("ghost@x.com", Role.VIEWER)


def test_demoting_a_sole_admin_is_a_conflict(full_org: Impl) -> None:
    w, org = full_org.world, full_org.org
    w.project("Development", "development")
    w.join("boss@x.com", org_role="admin")
    w.join("dana@x.com", projects={"Development": "admin"})
    with pytest.raises(ConflictError, match="sole Admin of project Development"):
        org.set_project_role("dana@x.com", "Development", Role.MEMBER)
    with pytest.raises(ConflictError, match="sole Admin of the organization"):
        org.set_org_role("boss@x.com", Role.MANAGER)
    # Promote a replacement first, then it goes through.
    assert org.set_project_role("boss@x.com", "Development", Role.ADMIN).effect is Effect.UPDATED
    assert org.set_project_role("dana@x.com", "Development", Role.MEMBER).effect is Effect.UPDATED


def test_effective_access_is_the_union_of_individual_and_group_grants(full_org: Impl) -> None:
    w, org = full_org.world, full_org.org
    w.project("Prod")
    w.join("gina@x.com", projects={"Prod": "viewer"})
    gid = w.group("Prod managers", projects={"Prod": "manager"}, members=["gina@x.com"])
    (grant,) = org.effective_access("gina@x.com")
    assert (grant.project, grant.role) == ("Prod", Role.MANAGER)
    assert set(grant.sources) == {"individual", "group:Prod managers"}
    m = org.get_member("gina@x.com")
    assert m is not None and m.groups == (gid,)
    # Leaving the group keeps the individual grant (the product's rule).
    assert org.remove_group_members(gid, ["gina@x.com"]).effect is Effect.UPDATED
    (grant,) = org.effective_access("gina@x.com")
    assert (grant.role, grant.sources) == (Role.VIEWER, ("individual",))


# ---------------------------------------------------------------------------- ModuleAccess
def test_modules_granted_then_noop_revoked(full_org: Impl) -> None:
    w, org = full_org.world, full_org.org
    w.join("a@x.com")
    assert org.get_modules("a@x.com") == []
    granted = org.set_modules("a@x.com", grant=[Module.GOVERN, Module.AUDIENCES])
    assert (granted.effect, granted.detail["modules"]) == (Effect.UPDATED, ["audiences", "govern"])
    assert org.set_modules("a@x.com", grant=[Module.GOVERN]).effect is Effect.NOOP
    assert org.set_modules("a@x.com").effect is Effect.NOOP
    assert org.set_modules("a@x.com", revoke=[Module.GOVERN]).effect is Effect.UPDATED
    assert org.get_modules("a@x.com") == [Module.AUDIENCES]
    with pytest.raises(NotFoundError):
        org.get_modules("ghost@x.com")


# ---------------------------------------------------------------------------- AssetOwnership
def test_assets_by_owner_former_owner_unassigned_and_transfer(full_org: Impl) -> None:
    w, org = full_org.world, full_org.org
    prod = w.project("Prod")
    w.join("boss@x.com", org_role="admin")
    w.join("stale@x.com", org_role="manager", projects={"Prod": "manager"})
    w.join("leaver@x.com", projects={"Prod": "member"})
    mine = [w.asset("leaver@x.com", prod), w.asset("leaver@x.com", prod, kind="cohort")]
    w.asset("boss@x.com", prod)
    w.advance_days(31)
    w.login("boss@x.com")

    assert sorted(a.id for a in org.list_assets(owner="leaver@x.com")) == sorted(mine)
    assert sorted(a.id for a in org.list_assets(held_by="leaver@x.com")) == sorted(mine)
    assert org.remove_member("leaver@x.com").effect is Effect.DELETED
    left = org.list_assets(former_owner="leaver@x.com")
    # held_by: owned, or left unassigned by them: one read where two filters took two.
    assert sorted(a.id for a in org.list_assets(held_by="leaver@x.com")) == sorted(mine)
    assert [a.id for a in org.list_assets(ids=[mine[1]])] == [mine[1]]
    assert org.list_assets(ids=[mine[0]], owner="boss@x.com") == []  # every filter given holds
    assert {(a.id, a.owner, a.kind) for a in left} == {
        (mine[0], None, AssetKind.DASHBOARD),
        (mine[1], None, AssetKind.COHORT),
    }
    assert sorted(a.id for a in org.list_assets(unassigned=True)) == sorted(mine)
    assert len(org.list_assets(unassigned=False)) == 1

    with pytest.raises(ConflictError, match="has not logged in within the last 30 days"):
        org.transfer_assets(mine, "stale@x.com")
    moved = org.transfer_assets(mine, "boss@x.com")
    assert (moved.effect, sorted(moved.detail["transferred"])) == (Effect.UPDATED, sorted(mine))
    again = org.transfer_assets(mine, "boss@x.com")
    assert (again.effect, again.reason) == (Effect.NOOP, "the receiver owns them already")
    assert len(org.list_assets(owner="boss@x.com")) == 3
    assert org.list_assets(unassigned=True) == []
    assert org.transfer_all("leaver@x.com", "boss@x.com").effect is Effect.NOOP
    assert org.transfer_assets([], "boss@x.com").effect is Effect.NOOP
    with pytest.raises(InvalidRequestError, match="transfer_assets"):
        org.transfer_assets(["dashboard-1"], "boss@x.com")


def test_transfer_all_moves_owned_and_unassigned(full_org: Impl) -> None:
    w, org = full_org.world, full_org.org
    prod = w.project("Prod")
    w.join("boss@x.com", org_role="admin")
    w.join("dana@x.com")
    w.join("rec@x.com")
    ids = [w.asset("dana@x.com", prod) for _ in range(3)]
    moved = org.transfer_all("dana@x.com", "rec@x.com")
    assert sorted(moved.detail["transferred"]) == sorted(ids)
    # The receiver has no access to Prod: the backend warns, the result carries it.
    assert moved.detail["warnings"] and "Prod" in moved.detail["warnings"][0]
    assert org.transfer_all("dana@x.com", "rec@x.com").effect is Effect.NOOP


# ---------------------------------------------------------------------------- KeyManagement
def test_rotate_key_old_secret_refused_new_accepted_never_shown(full_org: Impl) -> None:
    w, org = full_org.world, full_org.org
    w.project("Prod")
    w.join("k@x.com")
    key_id, old = w.key("Prod ingestion", "Prod", ["k@x.com"])
    (info,) = org.list_keys(manager="K@x.com")
    assert (info.id, info.status, info.secret_hint) == (key_id, "active", "…" + old[-4:])
    assert org.list_keys(manager="nobody@x.com") == []

    result, secret = org.rotate_key(key_id)
    new = secret.get_secret_value()
    assert result.effect is Effect.UPDATED and new != old
    assert new not in repr(secret) and new not in str(secret) and new not in repr(result)
    assert redact(f"key={new}") == "key=***"  # registered for log redaction
    assert (w.ingest(old), w.ingest(new)) == (401, 200)
    assert org.list_keys()[0].rotation_count == 1

    assert org.revoke_key(key_id).effect is Effect.DELETED
    again = org.revoke_key(key_id)
    assert (again.effect, again.reason) == (Effect.NOOP, "already revoked")
    assert w.ingest(new) == 401
    with pytest.raises(ConflictError, match="revoked key cannot be rotated"):
        org.rotate_key(key_id)
    with pytest.raises(NotFoundError, match="rotate_key failed for API key 999"):
        org.rotate_key("999")


# ---------------------------------------------------------------------------- OrgActivityLog
def test_activity_log_filters_by_since_actor_target_action(full_org: Impl) -> None:
    w, org = full_org.world, full_org.org
    w.join("a@x.com")
    w.advance_days(2)
    cut = w.now()
    w.advance_days(1)
    org.set_org_role("a@x.com", Role.MEMBER)
    w.login("a@x.com")

    recent = org.events(since=cut)
    assert [e.action for e in recent] == ["member.role_changed", "login"]
    assert all(e.at >= cut for e in recent)
    assert [e.action for e in org.events(since=cut.replace(tzinfo=None))] == [
        "member.role_changed",
        "login",
    ]
    assert [e.action for e in org.events(target="a@x.com", action="member.*")] == [
        "member.invited",
        "member.role_changed",
    ]
    logins = org.events(actor="a@x.com", action="login")
    assert len(logins) == 2 and logins[0].at < cut < logins[1].at
    (change,) = org.events(action="member.role_changed")
    assert (change.actor, change.target, change.details) == (
        "api-token",
        "a@x.com",
        {"old": "viewer", "new": "member"},
    )
