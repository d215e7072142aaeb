"""The org backend's rules, in one place, used by the SCIM routes, the admin routes, the IdP's
provisioning push and the seeds alike — so every way in enforces the same product rules:

- only Admins grant or revoke the org Admin role; Managers change project roles only where they
  are Manager; Members and Viewers add or remove nobody;
- the sole Admin of the org, or of a project, cannot be removed or demoted (409);
- a transfer receiver must be joined and have logged in within 30 days; transfers are final;
- removing a member turns their content into unassigned content (``former_owner`` kept);
- effective project role = the highest of the individual grant and every group grant;
- invitations expire 14 days after they were (re)sent.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from sandbox.org.models import (
    INVITE_TTL_DAYS,
    RECEIVER_LOGIN_DAYS,
    ApiKey,
    Asset,
    GroupMember,
    GroupProjectRole,
    Invitation,
    Member,
    Module,
    ModuleGrant,
    OrgEvent,
    PermissionGroup,
    Project,
    ProjectRole,
    Role,
    Transfer,
)


class OrgError(Exception):
    """A refused request; ``status`` is the HTTP status the APIs answer with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(OrgError):
    status = 400


class Forbidden(OrgError):
    status = 403


class NotFound(OrgError):
    status = 404


class Conflict(OrgError):
    status = 409


class Gone(OrgError):
    status = 410


SYSTEM_ACTOR = "api-token"  # the org's API token: acts with Admin rights, as a real org key does


def norm_email(email: str) -> str:
    """Emails are compared case-insensitively and stored lower-case."""
    return email.strip().lower()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_role(value: str) -> Role:
    try:
        return Role(value.lower())
    except ValueError:
        expected = [r.value for r in Role]
        raise Invalid(f"unknown role {value!r}: expected one of {expected}") from None


def parse_module(value: str) -> Module:
    try:
        return Module(value.lower().replace(" ", "_"))
    except ValueError:
        raise Invalid(
            f"unknown module {value!r}: expected one of {[m.value for m in Module]}"
        ) from None


@dataclass
class AdminSnapshot:
    """Who is an Admin of the org and of each project, to detect a change that leaves none."""

    org: set[str] = field(default_factory=set)
    projects: dict[int, set[str]] = field(default_factory=dict)


class OrgService:
    """Every operation of the org backend over one database session.

    Args:
        session: the open transaction (committed by the caller).
        now: the sandbox clock's time.
        actor: the console user acting (``X-Acting-User``), or ``None`` for the API token.
    """

    def __init__(self, session: Session, now: datetime, actor: str | None = None) -> None:
        self.s = session
        self.now = now
        self.actor = norm_email(actor) if actor else None

    # ------------------------------------------------------------------ lookups
    def member(self, email: str) -> Member:
        m = self.s.get(Member, norm_email(email))
        if m is None:
            raise NotFound(f"no member {email}")
        return m

    def find_member(self, email: str) -> Member | None:
        return self.s.get(Member, norm_email(email))

    def project(self, ref: str | int) -> Project:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            p = self.s.get(Project, int(ref))
        else:
            p = self.s.scalar(select(Project).where(func.lower(Project.name) == ref.lower()))
        if p is None:
            raise NotFound(f"no project {ref!r}")
        return p

    def group(self, group_id: int) -> PermissionGroup:
        g = self.s.get(PermissionGroup, group_id)
        if g is None:
            raise NotFound(f"no permission group {group_id}")
        return g

    def list_members(
        self,
        *,
        start: int = 1,
        count: int = 100,
        email: str | None = None,
        status: str | None = None,
    ) -> tuple[int, Sequence[Member]]:
        q = select(Member)
        if email is not None:
            q = q.where(Member.email == norm_email(email))
        if status is not None:
            q = q.where(Member.status == status)
        total = self.s.scalar(select(func.count()).select_from(q.subquery())) or 0
        rows = self.s.scalars(q.order_by(Member.email).offset(max(start, 1) - 1).limit(count))
        return total, rows.all()

    # ------------------------------------------------------------------ permissions of the actor
    def _actor_member(self) -> Member | None:
        if self.actor is None:
            return None
        m = self.find_member(self.actor)
        if m is None or m.status != "joined":
            raise Forbidden(f"{self.actor} is not a joined member of this organization")
        return m

    def _require_user_manager(self, what: str) -> None:
        """Only Admins and Managers add or remove users (seed 001/002)."""
        m = self._actor_member()
        if m is not None and Role(m.org_role).rank < Role.MANAGER.rank:
            raise Forbidden(f"{m.email} is {m.org_role}: only Admins and Managers can {what}")

    def _require_admin(self, what: str) -> None:
        m = self._actor_member()
        if m is not None and m.org_role != Role.ADMIN:
            raise Forbidden(f"{m.email} is {m.org_role}: only Admins can {what}")

    def _require_project_manager(self, project: Project, role: Role) -> None:
        """Managers change roles only in projects where they are Manager; Admin needs Admin."""
        m = self._actor_member()
        if m is None or m.org_role == Role.ADMIN:
            return
        mine = self.effective_role(m.email, project.id)
        needed = Role.ADMIN if role == Role.ADMIN else Role.MANAGER
        if mine is None or mine.rank < needed.rank:
            raise Forbidden(
                f"{m.email} is {mine.value if mine else 'not a member'} in {project.name}: "
                f"changing roles there to {role.value} needs {needed.value}"
            )

    # ------------------------------------------------------------------ effective permissions
    def group_roles(self, email: str) -> list[tuple[PermissionGroup, int, Role]]:
        rows = self.s.execute(
            select(PermissionGroup, GroupProjectRole.project_id, GroupProjectRole.role)
            .join(GroupMember, GroupMember.group_id == PermissionGroup.id)
            .join(GroupProjectRole, GroupProjectRole.group_id == PermissionGroup.id)
            .where(GroupMember.email == norm_email(email))
        ).all()
        return [(g, pid, Role(r)) for g, pid, r in rows]

    def effective_role(self, email: str, project_id: int) -> Role | None:
        """Highest of the individual grant and every group grant (the union rule)."""
        email = norm_email(email)
        roles: list[Role] = []
        ind = self.s.get(ProjectRole, (email, project_id))
        if ind is not None:
            roles.append(Role(ind.role))
        roles += [r for _g, pid, r in self.group_roles(email) if pid == project_id]
        return max(roles, key=lambda r: r.rank) if roles else None

    def effective_roles(self, email: str) -> list[dict[str, Any]]:
        email = norm_email(email)
        self.member(email)
        out = []
        for p in self.s.scalars(select(Project).order_by(Project.id)):
            ind = self.s.get(ProjectRole, (email, p.id))
            sources: list[dict[str, Any]] = []
            if ind is not None:
                sources.append({"source": "individual", "role": ind.role})
            for g, pid, r in self.group_roles(email):
                if pid == p.id:
                    sources.append(
                        {
                            "source": "group",
                            "group_id": g.id,
                            "group": g.display_name,
                            "role": r.value,
                        }
                    )
            eff = self.effective_role(email, p.id)
            if eff is not None:
                out.append(
                    {"project_id": p.id, "project": p.name, "role": eff.value, "sources": sources}
                )
        return out

    def project_admins(self, project_id: int) -> set[str]:
        """Joined members whose effective role in the project is Admin."""
        ind = self.s.scalars(
            select(ProjectRole.email)
            .join(Member, Member.email == ProjectRole.email)
            .where(
                ProjectRole.project_id == project_id,
                ProjectRole.role == Role.ADMIN.value,
                Member.status == "joined",
            )
        ).all()
        grp = self.s.scalars(
            select(GroupMember.email)
            .join(GroupProjectRole, GroupProjectRole.group_id == GroupMember.group_id)
            .join(Member, Member.email == GroupMember.email)
            .where(
                GroupProjectRole.project_id == project_id,
                GroupProjectRole.role == Role.ADMIN.value,
                Member.status == "joined",
            )
        ).all()
        return set(ind) | set(grp)

    def org_admins(self) -> set[str]:
        return set(
            self.s.scalars(
                select(Member.email).where(
                    Member.org_role == Role.ADMIN.value, Member.status == "joined"
                )
            )
        )

    def _admins(self) -> AdminSnapshot:
        snap = AdminSnapshot(org=self.org_admins())
        for pid in self.s.scalars(select(Project.id)):
            snap.projects[pid] = self.project_admins(pid)
        return snap

    def _guard_admins(self, before: AdminSnapshot, what: str) -> None:
        """Refuse a change that leaves the org or a project with no Admin (sole-admin rule)."""
        self.s.flush()
        after = self._admins()
        if before.org and not after.org:
            (who,) = before.org if len(before.org) == 1 else (sorted(before.org)[0],)
            raise Conflict(
                f"{what}: {who} is the sole Admin of the organization; promote another Admin first"
            )
        for pid, admins in before.projects.items():
            if admins and not after.projects.get(pid):
                name = self.project(pid).name
                raise Conflict(
                    f"{what}: {', '.join(sorted(admins))} is the sole Admin of "
                    f"project {name}; promote a replacement first"
                )

    # ------------------------------------------------------------------ audit
    def log(
        self, action: str, target: str = "", *, actor: str | None = None, **details: Any
    ) -> None:
        self.s.add(
            OrgEvent(
                at=self.now,
                actor=actor or self.actor or SYSTEM_ACTOR,
                action=action,
                target=target,
                details=details,
            )
        )

    # ------------------------------------------------------------------ members and invites
    def invite(
        self,
        email: str,
        *,
        given_name: str = "",
        family_name: str = "",
        org_role: str = Role.VIEWER.value,
        projects: dict[str, str] | None = None,
        modules: Iterable[str] = (),
        note: str = "",
        default_project: str | None = None,
        idp_managed: bool = False,
    ) -> tuple[Member, Invitation]:
        """Invite a person: a pending member with the given roles, and a 14-day invitation."""
        email = norm_email(email)
        if "@" not in email or email.startswith("@") or email.endswith("@"):
            raise Invalid(f"{email!r} is not an email address")
        self._require_user_manager("invite users")
        role = parse_role(org_role)
        if role == Role.ADMIN:
            self._require_admin("grant the Admin role")
        if self.find_member(email) is not None:
            raise Conflict(f"{email} is already a member or has a pending invitation")
        grants = {self.project(p): parse_role(r) for p, r in (projects or {}).items()}
        for p, r in grants.items():
            self._require_project_manager(p, r)
        mods = {parse_module(m) for m in modules}
        default = self.project(default_project).id if default_project else None
        m = Member(
            email=email,
            given_name=given_name,
            family_name=family_name,
            org_role=role.value,
            status="pending",
            invited_at=self.now,
            note=note,
            default_project_id=default,
            idp_managed=idp_managed,
        )
        self.s.add(m)
        self.s.flush()
        for p, r in grants.items():
            self.s.add(ProjectRole(email=email, project_id=p.id, role=r.value))
        for mod in mods:
            self.s.add(ModuleGrant(email=email, module=mod.value))
        inv = Invitation(
            email=email,
            invited_by=self.actor or SYSTEM_ACTOR,
            sent_at=self.now,
            last_sent_at=self.now,
            expires_at=self.now + timedelta(days=INVITE_TTL_DAYS),
        )
        self.s.add(inv)
        self.s.flush()
        self.log(
            "member.invited",
            email,
            org_role=role.value,
            projects={p.name: r.value for p, r in grants.items()},
            modules=sorted(m.value for m in mods),
            idp_managed=idp_managed,
        )
        return m, inv

    def pending_invitation(self, email: str) -> Invitation | None:
        return self.s.scalar(
            select(Invitation)
            .where(Invitation.email == norm_email(email), Invitation.status == "pending")
            .order_by(Invitation.id.desc())
        )

    def invitation_state(self, inv: Invitation) -> str:
        if inv.status == "pending" and self.now >= inv.expires_at:
            return "expired"
        return inv.status

    def accept_invite(self, email: str) -> Member:
        """The invitee clicks the link (a sandbox control: people act, not the API)."""
        m = self.member(email)
        if m.status == "joined":
            return m
        inv = self.pending_invitation(email)
        if inv is None:
            raise NotFound(f"no pending invitation for {email}")
        if self.invitation_state(inv) == "expired":
            raise Gone(
                f"the invitation for {email} expired on {inv.expires_at.isoformat()}; "
                "ask an admin to resend it"
            )
        inv.status, inv.decided_at = "accepted", self.now
        m.status, m.joined_at, m.last_login_at = "joined", self.now, self.now
        self.log("invite.accepted", email, actor=email)
        self.log("login", email, actor=email)
        return m

    def resend_invite(self, email: str) -> Invitation:
        self._require_user_manager("resend invitations")
        inv = self.pending_invitation(email)
        if inv is None:
            raise NotFound(f"no pending invitation for {email}")
        inv.last_sent_at = self.now
        inv.expires_at = self.now + timedelta(days=INVITE_TTL_DAYS)
        inv.resend_count += 1
        self.log("invite.resent", norm_email(email), resend_count=inv.resend_count)
        return inv

    def list_invitations(self, state: str | None = None) -> list[tuple[Invitation, str]]:
        rows = self.s.scalars(select(Invitation).order_by(Invitation.id)).all()
        out = [(i, self.invitation_state(i)) for i in rows]
        return [(i, st) for i, st in out if state is None or st == state]

    def remove_member(self, email: str, *, reason: str = "") -> bool:
        """Remove a member, or revoke a pending invite. Returns False when nobody was there.

        Their content becomes unassigned (``former_owner`` kept) so an Admin can still transfer
        it; the sole Admin of the org or of a project cannot be removed (409).
        """
        email = norm_email(email)
        m = self.find_member(email)
        if m is None:
            return False
        self._require_user_manager("remove users")
        if m.org_role == Role.ADMIN:
            self._require_admin("remove an Admin")
        before = self._admins()
        was_pending = m.status == "pending"
        self.s.execute(delete(ProjectRole).where(ProjectRole.email == email))
        self.s.execute(delete(ModuleGrant).where(ModuleGrant.email == email))
        self.s.execute(delete(GroupMember).where(GroupMember.email == email))
        self.s.delete(m)
        self._guard_admins(before, f"remove {email}")
        inv = self.pending_invitation(email)
        if inv is not None:
            inv.status, inv.decided_at = "revoked", self.now
        n = 0
        for a in self.s.scalars(select(Asset).where(Asset.owner_email == email)):
            a.owner_email, a.former_owner_email, a.updated_at = None, email, self.now
            n += 1
        self.log(
            "invite.revoked" if was_pending else "member.removed",
            email,
            reason=reason,
            unassigned_assets=n,
        )
        return True

    def set_org_role(self, email: str, role: str) -> tuple[str, str]:
        m = self.member(email)
        new = parse_role(role)
        old = m.org_role
        if old == new.value:
            return old, old
        self._require_user_manager("change roles")
        if Role.ADMIN in (Role(old), new):
            self._require_admin("grant or revoke the Admin role")
        before = self._admins()
        m.org_role = new.value
        self._guard_admins(before, f"change {m.email} to {new.value}")
        self.log("member.role_changed", m.email, old=old, new=new.value)
        return old, new.value

    def set_project_role(self, email: str, project: str | int, role: str | None) -> str | None:
        """Set (or with ``None`` remove) an individual project grant; returns the old role."""
        m = self.member(email)
        p = self.project(project)
        cur = self.s.get(ProjectRole, (m.email, p.id))
        old = cur.role if cur else None
        new = parse_role(role) if role else None
        if old == (new.value if new else None):
            return old
        self._require_project_manager(
            p, Role.ADMIN if Role.ADMIN in {new, Role(old) if old else None} else Role.MANAGER
        )
        before = self._admins()
        if new is None:
            self.s.delete(cur)
        elif cur is None:
            self.s.add(ProjectRole(email=m.email, project_id=p.id, role=new.value))
        else:
            cur.role = new.value
        self._guard_admins(before, f"change {m.email} in {p.name}")
        self.log(
            "member.project_role_changed",
            m.email,
            project=p.name,
            old=old,
            new=new.value if new else None,
        )
        return old

    def modules(self, email: str) -> list[str]:
        return sorted(
            self.s.scalars(select(ModuleGrant.module).where(ModuleGrant.email == norm_email(email)))
        )

    def set_modules(
        self, email: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> list[str]:
        m = self.member(email)
        adds, rems = {parse_module(x) for x in add}, {parse_module(x) for x in remove}
        if adds or rems:
            self._require_user_manager("change module access")
        for mod in adds:
            if self.s.get(ModuleGrant, (m.email, mod.value)) is None:
                self.s.add(ModuleGrant(email=m.email, module=mod.value))
                self.log("member.module_granted", m.email, module=mod.value)
        for mod in rems:
            g = self.s.get(ModuleGrant, (m.email, mod.value))
            if g is not None:
                self.s.delete(g)
                self.log("member.module_revoked", m.email, module=mod.value)
        self.s.flush()
        return self.modules(m.email)

    def update_note(self, email: str, note: str) -> None:
        self.member(email).note = note

    def record_login(self, email: str) -> Member:
        m = self.member(email)
        if m.status != "joined":
            raise Conflict(f"{email} has not accepted the invitation yet")
        m.last_login_at = self.now
        self.log("login", m.email, actor=m.email)
        return m

    # ------------------------------------------------------------------ permission groups
    def create_group(
        self,
        display_name: str,
        *,
        members: Iterable[str] = (),
        projects: dict[str, str] | None = None,
        idp_managed: bool = False,
    ) -> PermissionGroup:
        self._require_admin("edit permission groups")
        if (
            self.s.scalar(
                select(PermissionGroup).where(PermissionGroup.display_name == display_name)
            )
            is not None
        ):
            raise Conflict(f"a permission group named {display_name!r} exists")
        g = PermissionGroup(display_name=display_name, idp_managed=idp_managed)
        self.s.add(g)
        self.s.flush()
        for p, r in (projects or {}).items():
            self.s.add(
                GroupProjectRole(
                    group_id=g.id, project_id=self.project(p).id, role=parse_role(r).value
                )
            )
        self.add_group_members(g.id, members)
        self.log("group.created", display_name)
        return g

    def group_members(self, group_id: int) -> list[str]:
        return sorted(
            self.s.scalars(select(GroupMember.email).where(GroupMember.group_id == group_id))
        )

    def group_projects(self, group_id: int) -> dict[str, str]:
        rows = self.s.execute(
            select(Project.name, GroupProjectRole.role)
            .join(GroupProjectRole, GroupProjectRole.project_id == Project.id)
            .where(GroupProjectRole.group_id == group_id)
        )
        return dict(rows.tuples().all())

    def add_group_members(self, group_id: int, emails: Iterable[str]) -> list[str]:
        g = self.group(group_id)
        added = []
        for e in emails:
            m = self.member(e)
            if self.s.get(GroupMember, (g.id, m.email)) is None:
                self._require_admin("edit permission groups")
                self.s.add(GroupMember(group_id=g.id, email=m.email))
                added.append(m.email)
        if added:
            self.log("group.members_added", g.display_name, members=added)
        self.s.flush()
        return added

    def remove_group_members(self, group_id: int, emails: Iterable[str]) -> list[str]:
        """Remove people from a group; their individual grants stay (seed 001)."""
        g = self.group(group_id)
        before = self._admins()
        removed = []
        for e in emails:
            gm = self.s.get(GroupMember, (g.id, norm_email(e)))
            if gm is not None:
                self._require_admin("edit permission groups")
                self.s.delete(gm)
                removed.append(gm.email)
        self._guard_admins(before, f"remove {', '.join(removed)} from {g.display_name}")
        if removed:
            self.log("group.members_removed", g.display_name, members=removed)
        return removed

    def set_group_projects(self, group_id: int, projects: dict[str, str | None]) -> None:
        g = self.group(group_id)
        self._require_admin("edit permission groups")
        before = self._admins()
        for name, role in projects.items():
            p = self.project(name)
            cur = self.s.get(GroupProjectRole, (g.id, p.id))
            if role is None:
                if cur is not None:
                    self.s.delete(cur)
            elif cur is None:
                self.s.add(
                    GroupProjectRole(group_id=g.id, project_id=p.id, role=parse_role(role).value)
                )
            else:
                cur.role = parse_role(role).value
        self._guard_admins(before, f"change group {g.display_name}")
        self.log("group.projects_changed", g.display_name, projects=projects)

    def delete_group(self, group_id: int) -> None:
        g = self.group(group_id)
        self._require_admin("edit permission groups")
        before = self._admins()
        self.s.execute(delete(GroupMember).where(GroupMember.group_id == g.id))
        self.s.execute(delete(GroupProjectRole).where(GroupProjectRole.group_id == g.id))
        self.s.delete(g)
        self._guard_admins(before, f"delete group {g.display_name}")
        self.log("group.deleted", g.display_name)

    # ------------------------------------------------------------------ assets and transfers
    def list_assets(
        self,
        *,
        owner: str | None = None,
        former_owner: str | None = None,
        unassigned: bool | None = None,
        held_by: str | None = None,
        ids: Sequence[int] | None = None,
        kind: str | None = None,
        project: str | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> tuple[int, Sequence[Asset]]:
        q = select(Asset)
        if held_by is not None:
            who = norm_email(held_by)
            q = q.where(or_(Asset.owner_email == who, Asset.former_owner_email == who))
        if ids is not None:
            q = q.where(Asset.id.in_(ids))
        if owner is not None:
            q = q.where(Asset.owner_email == norm_email(owner))
        if former_owner is not None:
            q = q.where(Asset.former_owner_email == norm_email(former_owner))
        if unassigned is not None:
            q = q.where(
                Asset.owner_email.is_(None) if unassigned else Asset.owner_email.is_not(None)
            )
        if kind is not None:
            q = q.where(Asset.kind == kind)
        if project is not None:
            q = q.where(Asset.project_id == self.project(project).id)
        total = self.s.scalar(select(func.count()).select_from(q.subquery())) or 0
        return total, self.s.scalars(q.order_by(Asset.id).offset(offset).limit(limit)).all()

    def check_receiver(self, email: str) -> Member:
        """A receiver must be joined and have logged in within the last 30 days."""
        m = self.find_member(email)
        if m is None or m.status != "joined":
            raise Conflict(f"receiver {email} is not a joined member of the organization")
        if m.last_login_at is None or self.now - m.last_login_at > timedelta(
            days=RECEIVER_LOGIN_DAYS
        ):
            last = m.last_login_at.date().isoformat() if m.last_login_at else "never"
            raise Conflict(
                f"receiver {email} has not logged in within the last "
                f"{RECEIVER_LOGIN_DAYS} days (last login: {last})"
            )
        return m

    def transfer(self, asset_ids: Sequence[int], to: str) -> dict[str, Any]:
        """Transfer assets (owned or unassigned) to ``to``. Final: there is no undo."""
        self._require_admin("transfer content ownership")
        receiver = self.check_receiver(to)
        assets = self.s.scalars(select(Asset).where(Asset.id.in_(asset_ids))).all()
        missing = sorted(set(asset_ids) - {a.id for a in assets})
        if missing:
            raise NotFound(f"no assets with ids {missing}")
        moved, unchanged, no_access = [], [], set()
        for a in assets:
            if a.owner_email == receiver.email:
                unchanged.append(a.id)
                continue
            frm = a.owner_email or a.former_owner_email
            self.s.add(
                Transfer(
                    asset_id=a.id,
                    from_email=frm,
                    to_email=receiver.email,
                    actor=self.actor or SYSTEM_ACTOR,
                    at=self.now,
                )
            )
            a.owner_email, a.former_owner_email, a.updated_at = receiver.email, None, self.now
            moved.append(a.id)
            if (
                receiver.org_role != Role.ADMIN
                and self.effective_role(receiver.email, a.project_id) is None
            ):
                no_access.add(self.project(a.project_id).name)
        if moved:
            self.log("asset.transferred", receiver.email, asset_ids=moved)
        warnings = [
            f"{receiver.email} has no access to project {p}: grant it so they can "
            "open what they received"
            for p in sorted(no_access)
        ]
        return {
            "transferred": moved,
            "unchanged": unchanged,
            "to": receiver.email,
            "warnings": warnings,
        }

    def bulk_transfer(
        self, from_email: str, to: str, *, project: str | None = None
    ) -> dict[str, Any]:
        """Everything owned by ``from_email``, or left unassigned by them, goes to ``to``."""
        self._require_admin("transfer content ownership")  # even when there is nothing to move
        src = norm_email(from_email)
        q = select(Asset.id).where(or_(Asset.owner_email == src, Asset.former_owner_email == src))
        if project is not None:
            q = q.where(Asset.project_id == self.project(project).id)
        ids = list(self.s.scalars(q))
        if not ids:
            self.check_receiver(to)
            return {"transferred": [], "unchanged": [], "to": norm_email(to), "warnings": []}
        return self.transfer(ids, to)

    # ------------------------------------------------------------------ API keys
    def list_keys(self, *, manager: str | None = None, status: str | None = None) -> list[ApiKey]:
        rows = self.s.scalars(select(ApiKey).order_by(ApiKey.id)).all()
        if manager is not None:
            rows = [k for k in rows if norm_email(manager) in k.managers]
        if status is not None:
            rows = [k for k in rows if k.status == status]
        return list(rows)

    def key(self, key_id: int) -> ApiKey:
        k = self.s.get(ApiKey, key_id)
        if k is None:
            raise NotFound(f"no API key {key_id}")
        return k

    def create_key(
        self, name: str, project: str, managers: Iterable[str], *, kind: str = "ingestion"
    ) -> tuple[ApiKey, str]:
        self._require_admin("create API keys")
        secret = "amp_" + secrets.token_hex(16)
        k = ApiKey(
            name=name,
            kind=kind,
            project_id=self.project(project).id,
            managers=sorted({norm_email(m) for m in managers}),
            secret_hash=hash_secret(secret),
            secret_hint=secret[-4:],
            created_at=self.now,
        )
        self.s.add(k)
        self.s.flush()
        self.log("key.created", str(k.id), name=name)
        return k, secret

    def rotate_key(self, key_id: int) -> tuple[ApiKey, str]:
        """A new secret; the old one stops working at once."""
        self._require_admin("rotate API keys")
        k = self.key(key_id)
        if k.status != "active":
            raise Conflict(f"API key {key_id} is {k.status}; a revoked key cannot be rotated")
        secret = "amp_" + secrets.token_hex(16)
        k.secret_hash, k.secret_hint = hash_secret(secret), secret[-4:]
        k.rotated_at, k.rotation_count = self.now, k.rotation_count + 1
        self.log("key.rotated", str(k.id), name=k.name, rotation_count=k.rotation_count)
        return k, secret

    def revoke_key(self, key_id: int) -> bool:
        self._require_admin("revoke API keys")
        k = self.key(key_id)
        if k.status == "revoked":
            return False
        k.status = "revoked"
        self.log("key.revoked", str(k.id), name=k.name)
        return True

    def set_key_managers(self, key_id: int, managers: Iterable[str]) -> ApiKey:
        self._require_admin("change API key managers")
        k = self.key(key_id)
        k.managers = sorted({norm_email(m) for m in managers})
        self.log("key.managers_changed", str(k.id), managers=k.managers)
        return k

    def authenticate_key(self, secret: str) -> ApiKey | None:
        k = self.s.scalar(select(ApiKey).where(ApiKey.secret_hash == hash_secret(secret)))
        return k if k is not None and k.status == "active" else None

    # ------------------------------------------------------------------ audit log
    def events(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[OrgEvent]:
        q = select(OrgEvent)
        if actor is not None:
            q = q.where(OrgEvent.actor == norm_email(actor))
        if action is not None:
            # "*" is the only wildcard: "_" and "%" in an action name match themselves.
            pattern = action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            q = q.where(OrgEvent.action.like(pattern.replace("*", "%"), escape="\\"))
        if target is not None:
            q = q.where(OrgEvent.target == norm_email(target))
        # A time without a zone is taken as UTC (the log's own zone) rather than failing.
        if since is not None:
            q = q.where(OrgEvent.at >= (since if since.tzinfo else since.replace(tzinfo=UTC)))
        if until is not None:
            q = q.where(OrgEvent.at < (until if until.tzinfo else until.replace(tzinfo=UTC)))
        return list(self.s.scalars(q.order_by(OrgEvent.id).limit(limit)))
