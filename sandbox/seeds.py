"""Seeds of the sandbox world: ``empty``, ``demo`` (a believable small org with the hard cases of
the seeds planted), ``qa`` (the demo's second org, :func:`_qa`) and ``scale:N`` (N members with
proportional assets, for benchmarks).

The demo's planted cases (each one a runbook must get right):

- ``dana.sole@acme.com``: sole Admin of project Development, terminated by HR today; owns assets
  of every kind, manages two API keys, exported data last week;
- ``mike.stale@acme.com``: a Manager who has not logged in for 45 days (cannot receive content);
- ``gina.groups@acme.com``: in two permission groups with different roles in Production
  (the group-union trap: effective role is the highest);
- ``jon.smith@acme.com`` and look-alikes ``jon.smith@gmail.com`` (same name, other domain) and
  ``j\\u043en.smith@acme.com`` (a Cyrillic o, a pending invite);
- ``analytics-vendor-lee.park@vendorco.com``: a service account (naming convention), IdP-managed;
- ``carla.contract@agency.io``: a contractor whose contract ends in 10 days (HR roster end date);
- ``frank.former@acme.com``: terminated a month ago, deactivated in the IdP, still in the org
  (invited by hand, so no IdP sync removed him): what an access review must catch;
- unassigned content left by ``old.employee@acme.com``, removed last year.
"""

from __future__ import annotations

import random
import secrets as _secrets
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from sandbox import jira, slack
from sandbox.db import Setting
from sandbox.idp import ensure_idp_group, ensure_idp_user
from sandbox.org.models import (
    INVITE_TTL_DAYS,
    ApiKey,
    Asset,
    AssetKind,
    GroupMember,
    Invitation,
    Member,
    OrgEvent,
    PermissionGroup,
    Project,
    ProjectRole,
    Role,
)
from sandbox.org.service import OrgService, hash_secret

# The demo's planted members (above, and the leaver and team lead the demo stories use): not
# ordinary leavers, for a test or bench that needs someone with nothing special about them.
DEMO_PLANTED = frozenset(
    {
        "dana.sole@acme.com",
        "mike.stale@acme.com",
        "gina.groups@acme.com",
        "sofia.lead@acme.com",
        "frank.former@acme.com",
        "leo.leave@acme.com",
        "jon.smith@acme.com",
    }
)

DOMAIN = "acme.com"
PROJECTS = (("Production", "production"), ("Staging", "staging"), ("Development", "development"))
FIRST = [
    "Ava",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hugo",
    "Iris",
    "Jamal",
    "Kira",
    "Liam",
    "Maya",
    "Noah",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
    "Umar",
    "Vera",
    "Wes",
    "Xena",
    "Yusuf",
    "Zoe",
    "Aria",
    "Bruno",
    "Cleo",
    "Dario",
    "Esme",
    "Felix",
]
LAST = [
    "Adams",
    "Baker",
    "Chen",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Kumar",
    "Lopez",
    "Moreau",
    "Novak",
    "Okafor",
    "Patel",
    "Rossi",
    "Silva",
    "Tanaka",
    "Umarov",
    "Varga",
    "Weber",
    "Xu",
    "Young",
    "Zimmer",
]
ASSET_WORDS = [
    "Activation",
    "Retention",
    "Funnel",
    "Revenue",
    "Onboarding",
    "Checkout",
    "Churn",
    "Engagement",
    "Growth",
    "Signup",
    "Pricing",
    "Search",
    "Mobile",
    "Web",
    "Campaign",
    "Cohort",
    "Weekly",
    "Daily",
    "Power",
    "Users",
]


def apply(world: Any, spec: str) -> dict[str, Any]:
    """Seed a world (idempotent for ``empty``; ``demo`` and ``scale`` expect a new world)."""
    now = world.clock.now()
    with world.db.session() as s:
        if spec == "empty":
            out: dict[str, Any] = {"seed": "empty"}
        elif spec == "demo":
            out = _demo(s, now)
        elif spec == "qa":
            out = _qa(s, now, world.rng)
        else:
            out = _scale(s, now, int(spec.split(":", 1)[1]))
    with world.db.session() as s:
        out.update(describe(s, world.clock.now()))
    return out


def _qa(s: Session, now: datetime, rng: random.Random) -> dict[str, Any]:
    """The QA org shared with the demo's people (seed 003: "any sandbox environments you share
    for QA"): a few of them, one project; gina.groups and dana.sole own content here too, so
    leaving the production org is not leaving Amplitude (seed 004: "check if they have access
    to multiple Amplitude organizations")."""
    qa = Project(name="QA", environment="staging")
    s.add(qa)
    s.flush()
    for email, first, last, role in (
        ("alice.admin@acme.com", "Alice", "Martin", "admin"),
        ("raj.admin@acme.com", "Raj", "Patel", "admin"),
        ("sofia.lead@acme.com", "Sofia", "Lead", "manager"),
        ("gina.groups@acme.com", "Gina", "Groups", "member"),
        ("dana.sole@acme.com", "Dana", "Sole", "member"),
    ):
        _member(s, now, email, first, last, role)
    s.flush()
    for email, role in (
        ("sofia.lead@acme.com", "admin"),
        ("gina.groups@acme.com", "member"),
        ("dana.sole@acme.com", "member"),
    ):
        s.add(ProjectRole(email=email, project_id=qa.id, role=role))
    s.flush()
    _assets(s, now, rng, ["gina.groups@acme.com"], {"QA": qa.id}, 3)
    _assets(s, now, rng, ["dana.sole@acme.com"], {"QA": qa.id}, 2)
    return {"seed": "qa"}


# ---------------------------------------------------------------------------- building blocks
def _projects(s: Session) -> dict[str, int]:
    ids = {}
    for name, env in PROJECTS:
        p = s.scalar(select(Project).where(Project.name == name))
        if p is None:
            p = Project(name=name, environment=env)
            s.add(p)
            s.flush()
        ids[name] = p.id
    return ids


def _member(
    s: Session,
    now: datetime,
    email: str,
    first: str,
    last: str,
    role: str,
    *,
    joined_days_ago: int = 300,
    last_login_days_ago: float | None = 1,
    pending_days: float | None = None,
    note: str = "",
) -> Member:
    """A member row (joined, or pending with an invitation sent ``pending_days`` ago)."""
    if pending_days is not None:
        sent = now - timedelta(days=pending_days)
        m = Member(
            email=email,
            given_name=first,
            family_name=last,
            org_role=role,
            status="pending",
            invited_at=sent,
            note=note,
        )
        s.add(m)
        s.add(
            Invitation(
                email=email,
                invited_by="it-admin@acme.com",
                sent_at=sent,
                last_sent_at=sent,
                expires_at=sent + timedelta(days=INVITE_TTL_DAYS),
            )
        )
        return m
    joined = now - timedelta(days=joined_days_ago)
    m = Member(
        email=email,
        given_name=first,
        family_name=last,
        org_role=role,
        status="joined",
        invited_at=joined - timedelta(days=1),
        joined_at=joined,
        note=note,
        last_login_at=None
        if last_login_days_ago is None
        else now - timedelta(days=last_login_days_ago),
    )
    s.add(m)
    s.add(
        Invitation(
            email=email,
            invited_by="it-admin@acme.com",
            sent_at=m.invited_at,
            last_sent_at=m.invited_at,
            expires_at=m.invited_at + timedelta(days=INVITE_TTL_DAYS),
            status="accepted",
            decided_at=joined,
        )
    )
    return m


def _is_joined(s: Session, email: str) -> bool:
    """Whether this member has accepted their invitation (False for no such member)."""
    m = s.get(Member, email)
    return m is not None and m.status == "joined"


def _assets(
    s: Session,
    now: datetime,
    rng: random.Random,
    owners: list[str],
    projects: dict[str, int],
    n: int,
    *,
    former: str | None = None,
) -> None:
    kinds = list(AssetKind)
    pids = list(projects.values())
    rows = []
    for i in range(n):
        kind = kinds[i % len(kinds)] if i < len(kinds) else rng.choice(kinds)
        created = now - timedelta(days=rng.randint(1, 700))
        rows.append(
            {
                "kind": kind.value,
                "name": f"{rng.choice(ASSET_WORDS)} {rng.choice(ASSET_WORDS)} "
                f"{kind.value.replace('_', ' ')}",
                "project_id": rng.choice(pids),
                "owner_email": None if former else rng.choice(owners),
                "former_owner_email": former,
                "created_at": created,
                "updated_at": created,
            }
        )
    if rows:
        s.execute(insert(Asset), rows)


def _key(
    s: Session,
    now: datetime,
    name: str,
    project_id: int,
    managers: list[str],
    kind: str = "ingestion",
) -> tuple[int, str]:
    secret = "amp_" + _secrets.token_hex(16)
    k = ApiKey(
        name=name,
        kind=kind,
        project_id=project_id,
        managers=managers,
        secret_hash=hash_secret(secret),
        secret_hint=secret[-4:],
        created_at=now - timedelta(days=200),
    )
    s.add(k)
    s.flush()
    return k.id, secret


def _event(
    s: Session, at: datetime, actor: str, action: str, target: str = "", **details: Any
) -> None:
    s.add(OrgEvent(at=at, actor=actor, action=action, target=target, details=details))


def _group(s: Session, name: str, projects: dict[int, str], members: list[str]) -> int:
    from sandbox.org.models import GroupProjectRole

    g = PermissionGroup(display_name=name)
    s.add(g)
    s.flush()
    for pid, role in projects.items():
        s.add(GroupProjectRole(group_id=g.id, project_id=pid, role=role))
    for e in members:
        s.add(GroupMember(group_id=g.id, email=e))
    return g.id


# ---------------------------------------------------------------------------- demo
def _demo(s: Session, now: datetime) -> dict[str, Any]:
    rng = random.Random(42)
    P = _projects(s)
    roster: list[dict[str, Any]] = []
    people: list[tuple[str, str, str, str]] = []  # email, first, last, org role

    def person(
        email: str,
        first: str,
        last: str,
        role: str,
        *,
        manager: str | None,
        dept: str = "Analytics",
        status: str = "active",
        end: date | None = None,
        on_roster: bool = True,
        **kw: Any,
    ) -> Member:
        m = _member(s, now, email, first, last, role, **kw)
        people.append((email, first, last, role))
        if on_roster:
            roster.append(
                {
                    "email": email,
                    "name": f"{first} {last}",
                    "status": status,
                    "manager": manager or "",
                    "department": dept,
                    "end_date": end.isoformat() if end else "",
                }
            )
        return m

    # Leadership and admins
    person("alice.admin@acme.com", "Alice", "Martin", "admin", manager=None, dept="IT")
    person("raj.admin@acme.com", "Raj", "Iyer", "admin", manager="alice.admin@acme.com", dept="IT")
    person("sofia.lead@acme.com", "Sofia", "Lindqvist", "manager", manager=None)
    # Planted cases
    person(
        "dana.sole@acme.com",
        "Dana",
        "Sole",
        "manager",
        manager="sofia.lead@acme.com",
        status="terminated",
        end=now.date(),
    )
    person(
        "mike.stale@acme.com",
        "Mike",
        "Stale",
        "manager",
        manager="sofia.lead@acme.com",
        last_login_days_ago=45,
    )
    person("gina.groups@acme.com", "Gina", "Groups", "member", manager="sofia.lead@acme.com")
    person("jon.smith@acme.com", "Jon", "Smith", "member", manager="sofia.lead@acme.com")
    person(
        "jon.smith@gmail.com",
        "Jon",
        "Smith",
        "viewer",
        manager=None,
        on_roster=False,
        last_login_days_ago=20,
    )
    person(
        "j\u043en.smith@acme.com",
        "Jon",
        "Smith",
        "viewer",
        manager=None,
        on_roster=False,
        pending_days=2,
    )
    person(
        "analytics-vendor-lee.park@vendorco.com",
        "Lee",
        "Park",
        "member",
        manager="sofia.lead@acme.com",
        dept="Vendor",
        end=(now + timedelta(days=60)).date(),
        note="SOW-2211 instrumentation support; access through "
        f"{(now + timedelta(days=60)).date().isoformat()}",
    )
    person(
        "carla.contract@agency.io",
        "Carla",
        "Contract",
        "member",
        manager="sofia.lead@acme.com",
        dept="Agency",
        end=(now + timedelta(days=10)).date(),
        note="SOW-1234 dashboards; contractor",
    )
    person(
        "frank.former@acme.com",
        "Frank",
        "Former",
        "member",
        manager="sofia.lead@acme.com",
        status="terminated",
        end=(now - timedelta(days=30)).date(),
        last_login_days_ago=31,
    )
    person(
        "leo.leave@acme.com",
        "Leo",
        "Leave",
        "viewer",
        manager="sofia.lead@acme.com",
        status="leave",
        last_login_days_ago=100,
    )
    # Everyone else: a believable spread of roles
    used = {p[0] for p in people}
    roles = ["manager"] * 3 + ["member"] * 14 + ["viewer"] * 9
    for i, role in enumerate(roles):
        first, last = FIRST[i % len(FIRST)], LAST[(i * 7) % len(LAST)]
        email = f"{first.lower()}.{last.lower()}@{DOMAIN}"
        if email in used:
            continue
        used.add(email)
        person(
            email,
            first,
            last,
            role,
            manager="sofia.lead@acme.com",
            last_login_days_ago=rng.choice([0.5, 1, 2, 3, 5, 8, 13, 21]),
            joined_days_ago=rng.randint(40, 900),
        )
    # Pending invitations: fresh, unaccepted for 3 days (resend due), and expired.
    person(
        "new.hire@acme.com",
        "Nora",
        "Hire",
        "viewer",
        manager="sofia.lead@acme.com",
        pending_days=0.2,
    )
    person(
        "slow.accept@partner.io",
        "Sid",
        "Slow",
        "viewer",
        manager=None,
        on_roster=False,
        pending_days=3,
    )
    person(
        "expired.invite@partner.io",
        "Eve",
        "Expired",
        "viewer",
        manager=None,
        on_roster=False,
        pending_days=20,
    )
    s.flush()

    # Project roles (individual grants)
    joined = [p[0] for p in people if _is_joined(s, p[0])]
    for e in joined:
        s.add(ProjectRole(email=e, project_id=P["Production"], role="viewer"))
    for e, project, role in [
        ("alice.admin@acme.com", "Production", "admin"),
        ("raj.admin@acme.com", "Staging", "admin"),
        ("alice.admin@acme.com", "Staging", "admin"),
        ("sofia.lead@acme.com", "Production", "admin"),
        ("dana.sole@acme.com", "Development", "admin"),
        ("dana.sole@acme.com", "Staging", "manager"),
        ("mike.stale@acme.com", "Staging", "manager"),
        ("analytics-vendor-lee.park@vendorco.com", "Staging", "admin"),
        ("carla.contract@agency.io", "Staging", "member"),
    ]:
        cur = s.get(ProjectRole, (e, P[project]))
        if cur is None:
            s.add(ProjectRole(email=e, project_id=P[project], role=role))
        else:
            cur.role = role
    for e in joined[12:20]:
        if s.get(ProjectRole, (e, P["Development"])) is None:
            s.add(ProjectRole(email=e, project_id=P["Development"], role="member"))
    for e in (
        "j\u043en.smith@acme.com",
        "new.hire@acme.com",
        "slow.accept@partner.io",
        "expired.invite@partner.io",
    ):
        s.add(ProjectRole(email=e, project_id=P["Production"], role="viewer"))
    # Modules
    from sandbox.org.models import ModuleGrant

    for e, mod in [
        ("dana.sole@acme.com", "govern"),
        ("dana.sole@acme.com", "data_tables"),
        ("alice.admin@acme.com", "govern"),
        ("gina.groups@acme.com", "experiment"),
        ("analytics-vendor-lee.park@vendorco.com", "govern"),
        ("sofia.lead@acme.com", "audiences"),
    ]:
        s.add(ModuleGrant(email=e, module=mod))
    # Permission groups (manual ones; the IdP pushes its own below)
    others = [e for e in joined if e.endswith("@" + DOMAIN)][12:20]
    _group(
        s, "Analysts Production", {P["Production"]: "member"}, ["gina.groups@acme.com", *others[:4]]
    )
    _group(
        s,
        "Prod Managers",
        {P["Production"]: "manager"},
        ["gina.groups@acme.com", "sofia.lead@acme.com"],
    )
    _group(s, "Growth Team", {P["Production"]: "viewer", P["Staging"]: "member"}, others[4:])
    s.flush()

    # Assets: a few hundred, every kind; dana owns a bit of everything; old.employee left some.
    owners = [e for e in joined if e not in ("frank.former@acme.com",)]
    _assets(s, now, rng, owners, P, 320)
    _assets(
        s,
        now,
        rng,
        ["dana.sole@acme.com"],
        {"Development": P["Development"], "Staging": P["Staging"]},
        14,
    )
    _assets(s, now, rng, ["mike.stale@acme.com"], P, 6)
    _assets(s, now, rng, [], P, 5, former="old.employee@acme.com")

    # API keys and who manages them
    key_secrets = {}
    for name, project, managers, kind in [
        (
            "Production ingestion",
            "Production",
            ["dana.sole@acme.com", "alice.admin@acme.com"],
            "ingestion",
        ),
        ("Warehouse export", "Development", ["dana.sole@acme.com"], "export"),
        ("Staging ingestion", "Staging", ["analytics-vendor-lee.park@vendorco.com"], "ingestion"),
        (
            "Marketing export",
            "Production",
            ["mike.stale@acme.com", "sofia.lead@acme.com"],
            "export",
        ),
    ]:
        kid, secret = _key(s, now, name, P[project], managers, kind)
        key_secrets[str(kid)] = secret

    # Org activity: logins, and dana's exports and changes last week (for the emergency story)
    for e in joined:
        m = s.get(Member, e)
        if m is not None and m.last_login_at is not None:
            _event(s, m.last_login_at, e, "login", e)
    for d in (2, 4, 6):
        _event(
            s,
            now - timedelta(days=d),
            "dana.sole@acme.com",
            "export",
            "Production ingestion",
            rows=rng.randint(10_000, 90_000),
            format="csv",
        )
    _event(
        s,
        now - timedelta(days=3),
        "dana.sole@acme.com",
        "change",
        "tracking plan",
        summary="edited event schema",
    )
    _event(
        s,
        now - timedelta(days=200),
        "it-admin@acme.com",
        "member.removed",
        "old.employee@acme.com",
        unassigned_assets=5,
    )

    # IdP: every acme.com employee and the vendor service account; mapped groups push roles.
    idp_people = [
        p
        for p in people
        if (p[0].endswith("@" + DOMAIN) and p[0].isascii() and _is_joined(s, p[0]))
        or p[0].startswith("analytics-vendor-")
    ]
    for email, first, last, _role in idp_people:
        ensure_idp_user(
            s,
            now,
            email=email,
            given_name=first,
            family_name=last,
            active=email != "frank.former@acme.com",
            aliases=ALIASES.get(email, ()),
        )
    by_role: dict[str, list[str]] = {}
    for email, _f, _l, role in idp_people:
        if email != "frank.former@acme.com":
            by_role.setdefault(role, []).append(email)
    # frank was invited by hand before SSO; the IdP deactivated him but never provisioned him.
    for role in ("admin", "manager", "member", "viewer"):
        ensure_idp_group(s, now, f"amplitude-org-{role}s", by_role.get(role, []))
    ensure_idp_group(
        s,
        now,
        "amplitude-project-viewers-production",
        [e for e, *_ in idp_people if e != "frank.former@acme.com"],
    )
    ensure_idp_group(
        s,
        now,
        "amplitude-project-members-staging",
        ["analytics-vendor-lee.park@vendorco.com", *others[4:8]],
    )
    ensure_idp_group(s, now, "amplitude-project-admins-staging", ["raj.admin@acme.com"])
    ensure_idp_group(s, now, "okta-everyone", [e for e, *_ in idp_people])  # unmapped

    # Slack: every person, plus the approvers and channels the runbooks use.
    for email, first, last, _role in people:
        slack.ensure_user(s, email, f"{first} {last}")
    _approvers(s, now, roster, APPROVERS)
    _console_groups(s, now)
    _bot_channels_projects(s)

    # Jira: a few tickets to drive the runbooks.
    until = (now + timedelta(days=30)).date().isoformat()
    jira.create_issue(
        s,
        now,
        project="ACC",
        issuetype="Access Request",
        summary="Amplitude access for analytics-vendor-max.roe@vendorco.com",
        description="email: analytics-vendor-max.roe@vendorco.com\n"
        "projects: Staging=manager, Production=viewer\norg_role: member\n"
        f"modules: govern\nuntil: {until}\n"
        "justification: Tracking plan clean-up for the mobile app\nsow: SOW-2230",
        labels=["temporary"],
        reporter="sofia.lead@acme.com",
    )
    jira.create_issue(
        s,
        now,
        project="ACC",
        issuetype="Access Request",
        summary="Access for a new analyst (incomplete)",
        description="email: not-an-email\nprojects: Prodution=owner\nuntil: 2020-01-01",
        reporter="sofia.lead@acme.com",
    )
    jira.create_issue(
        s,
        now,
        project="IT",
        issuetype="Offboarding",
        summary="Offboard Dana Sole (last day today)",
        description="email: dana.sole@acme.com\nreason: termination",
        reporter="hr.partner@acme.com",
    )

    s.merge(Setting(key="seed_secrets", value=key_secrets))
    s.merge(Setting(key="roster", value={"rows": roster}))
    return {"seed": "demo"}


# ---------------------------------------------------------------------------- scale
def _scale(s: Session, now: datetime, n: int) -> dict[str, Any]:
    """N members with proportional assets, in bulk inserts (10 000 members in a few seconds)."""
    rng = random.Random(n)
    P = _projects(s)
    roles = (
        [Role.ADMIN.value] * 3
        + [Role.MANAGER.value] * 10
        + [Role.MEMBER.value] * 40
        + [Role.VIEWER.value] * 47
    )
    members, invites, project_roles, roster = [], [], [], []
    emails = []
    for i in range(n):
        email = f"user{i:06d}@scale.example"
        role = Role.ADMIN.value if i < 3 else rng.choice(roles)
        pending = i >= 3 and rng.random() < 0.03
        joined = now - timedelta(days=rng.randint(31, 900))
        last = now - timedelta(days=rng.choice([0.5, 1, 3, 7, 14, 29, 45, 120]))
        members.append(
            {
                "email": email,
                "given_name": "User",
                "family_name": f"{i:06d}",
                "org_role": role,
                "status": "pending" if pending else "joined",
                "invited_at": joined - timedelta(days=1),
                "joined_at": None if pending else joined,
                "last_login_at": None if pending else last,
                "note": "",
                "idp_managed": False,
                "default_project_id": None,
            }
        )
        sent = joined - timedelta(days=1)
        invites.append(
            {
                "email": email,
                "invited_by": "it-admin@scale.example",
                "sent_at": sent,
                "last_sent_at": sent,
                "expires_at": sent + timedelta(days=14),
                "resend_count": 0,
                "status": "pending" if pending else "accepted",
                "decided_at": None if pending else joined,
            }
        )
        project_roles.append(
            {"email": email, "project_id": P["Production"], "role": "admin" if i < 3 else "viewer"}
        )
        if rng.random() < 0.4:
            project_roles.append(
                {
                    "email": email,
                    "project_id": P["Staging"],
                    "role": rng.choice(["member", "manager"]),
                }
            )
        if i < 3:
            project_roles += [
                {"email": email, "project_id": P[p], "role": "admin"}
                for p in ("Staging", "Development")
            ]
        roster.append(
            {
                "email": email,
                "name": f"User {i:06d}",
                "status": "active",
                "manager": "user000000@scale.example",
                "department": "Scale",
                "end_date": "",
            }
        )
        if not pending:
            emails.append(email)
    s.execute(insert(Member), members)
    s.execute(insert(Invitation), invites)
    s.execute(
        insert(ProjectRole),
        [
            r
            for r in project_roles
            if not (
                r["project_id"] == P["Staging"]
                and r["email"]
                in {
                    "user000000@scale.example",
                    "user000001@scale.example",
                    "user000002@scale.example",
                }
                and r["role"] != "admin"
            )
        ],
    )
    _assets(s, now, rng, emails, P, n * 6)
    for i in range(max(1, n // 50)):
        _key(s, now, f"Key {i}", P["Production"], [rng.choice(emails)])
    s.execute(
        insert(OrgEvent),
        [
            {
                "at": now - timedelta(days=1),
                "actor": e,
                "action": "login",
                "target": e,
                "details": {},
            }
            for e in emails[: n // 2]
        ],
    )
    _furniture(s, now, emails, roster)
    s.merge(Setting(key="roster", value={"rows": roster}))
    return {"seed": f"scale:{n}"}


# The approvers the policy names (approvals/policy.yaml) who are not org members in the demo;
# a scale world also needs the IT admins (members of the demo org).
APPROVERS = (
    ("hr.partner@acme.com", "Hana HR", "People"),
    ("sec.lead@acme.com", "Sean Security", "Security"),
    ("sec.oncall@acme.com", "Sam Oncall", "Security"),
    ("gov.lead@acme.com", "Gwen Governance", "Security"),
)
IT_ADMINS = (
    ("alice.admin@acme.com", "Alice Admin", "IT"),
    ("raj.admin@acme.com", "Raj Admin", "IT"),
)


# More addresses of a seeded person in the IdP (emails of type "other"): alice's short address
# is hers too, so a request she files as alice@acme.com is still hers to never approve.
ALIASES = {"alice.admin@acme.com": ("alice@acme.com",)}


def _approvers(
    s: Session,
    now: datetime,
    roster: list[dict[str, Any]],
    people: tuple[tuple[str, str, str], ...],
) -> None:
    """Slack users, IdP users (a Slack click counts only from a person the IdP knows; no mapped
    group, so nothing is provisioned into the org) and HR roster rows for approvers."""
    for email, name, dept in people:
        slack.ensure_user(s, email, name)
        first, _, last = name.partition(" ")
        ensure_idp_user(
            s,
            now,
            email=email,
            given_name=first,
            family_name=last,
            aliases=ALIASES.get(email, ()),
        )
        roster.append(
            {
                "email": email,
                "name": name,
                "status": "active",
                "manager": "",
                "department": dept,
                "end_date": "",
            }
        )


# The web console's roles come from these IdP groups (HANDOVER_CONSOLE_GROUPS' defaults); the
# auditor is an IdP user only (no org seat, no Slack, no roster row): read-only everywhere.
AUDITOR = ("audra.audit@acme.com", "Audra", "Audit")
CONSOLE_GROUPS = {
    "handover-it-admins": [e for e, *_ in IT_ADMINS],
    "handover-security": ["sec.lead@acme.com", "sec.oncall@acme.com"],
    "handover-auditors": [AUDITOR[0]],
}


def _console_groups(s: Session, now: datetime) -> None:
    """The IdP groups the console reads roles from, and the auditor who is only in the IdP."""
    email, first, last = AUDITOR
    ensure_idp_user(s, now, email=email, given_name=first, family_name=last)
    for name, members in CONSOLE_GROUPS.items():
        ensure_idp_group(s, now, name, members)


def _furniture(s: Session, now: datetime, emails: list[str], roster: list[dict[str, Any]]) -> None:
    """What the runbooks need around the org on a scale world: a Slack user per member (bulk
    insert, ids ``UX…`` never minted by ``slack.ensure_user``), the approvers, the bot and the
    channels, and the Jira projects tickets go to."""
    s.execute(
        insert(slack.SlackUser),
        [
            {"id": f"UX{i:07d}", "email": e, "name": e.split("@")[0], "real_name": e}
            for i, e in enumerate(emails)
        ],
    )
    _approvers(s, now, roster, APPROVERS + IT_ADMINS)
    _console_groups(s, now)
    _bot_channels_projects(s)


def _bot_channels_projects(s: Session) -> None:
    """Handover's Slack bot, the channels the runbooks post to, the Jira projects they file to."""
    slack.ensure_user(s, "handover-bot@acme.com", "Handover", is_bot=True)
    for ch in ("it-access", "security-alerts", "access-reviews"):
        slack.ensure_channel(s, ch)
    for key, name in (("ACC", "Access Requests"), ("IT", "IT Operations"), ("SEC", "Security")):
        jira.ensure_project(s, key, name)


# ---------------------------------------------------------------------------- describe
def describe(s: Session, now: datetime) -> dict[str, Any]:
    """What is in the world, counted (``make demo`` and ``/_sandbox/summary`` print it)."""
    org = OrgService(s, now)
    status = Counter(
        dict(s.execute(select(Member.status, func.count()).group_by(Member.status)).tuples().all())
    )
    roles = Counter(
        dict(
            s.execute(select(Member.org_role, func.count()).group_by(Member.org_role))
            .tuples()
            .all()
        )
    )
    kinds = Counter(
        dict(s.execute(select(Asset.kind, func.count()).group_by(Asset.kind)).tuples().all())
    )
    unassigned = s.scalar(select(func.count()).where(Asset.owner_email.is_(None))) or 0
    invites = Counter(st for _i, st in org.list_invitations())
    projects = [
        {"name": p.name, "admins": sorted(org.project_admins(p.id))}
        for p in s.scalars(select(Project).order_by(Project.id))
    ]
    return {
        "members": sum(status.values()),
        "members_by_status": dict(status),
        "members_by_role": dict(roles),
        "projects": projects,
        "permission_groups": s.scalar(select(func.count(PermissionGroup.id))) or 0,
        "invitations": dict(invites),
        "assets": sum(kinds.values()),
        "assets_by_kind": dict(kinds),
        "unassigned_assets": unassigned,
        "api_keys": s.scalar(select(func.count(ApiKey.id))) or 0,
    }


def roster_rows(s: Session) -> list[dict[str, Any]]:
    """The HR roster that the seed stands up beside the org (for reviews and offboarding)."""
    row = s.get(Setting, "roster")
    return list(row.value["rows"]) if row else []
