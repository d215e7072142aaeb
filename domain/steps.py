"""The step kinds of every runbook and their typed parameters: one pydantic model per kind.

A step (:class:`domain.runbook.PlanStep`) carries its parameters as one of these models, chosen
by ``kind`` (the discriminator, the step kind's value) from its runbook's union:
:data:`OffboardParams`, :data:`OnboardParams`, :data:`ChangeParams`. Executors and checks read
typed attributes (``match step.params: case TransferAssets(asset_ids=ids): …``); a parameter a
kind does not take, or one it lacks, is a validation error when the plan is made, not a
``KeyError`` half-way through applying it.

What approvers approve does not change with the typing: the plan hash covers each step's
:meth:`StepParams.as_dict` (the JSON form without ``kind``), which is what the untyped plans
held, so a plan hashes as it did before. The same dict form is what the audit log keeps
(``.items()``) and what a step's parameters compare equal to.

Adding a step kind touches, besides the planner rule that plans it:

1. here: a member of the runbook's kind enum, a model with ``kind: Literal["<value>"]``, and
   that model in the runbook's union (``tests/domain/test_steps.py`` fails until all three
   agree);
2. ``tasks/<runbook>.py``: one ``case <Model>(…):`` branch in the runbook's executor
   (``execute_offboard_step``, ``execute_onboard_step`` or ``tasks.change._change``); the step
   runner (``tasks/steps.py``) needs nothing;
3. ``tasks/<runbook>.py``: where the result can be re-read, one check in the runbook's
   verification (``verify_offboarding``, ``verify_onboarding``, ``verify_change``).
"""

from __future__ import annotations

from collections.abc import ItemsView
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.models import Module, Role


class StepKind(StrEnum):
    """The steps of an offboarding (``domain.plan``)."""

    GRANT_PROJECT_ACCESS = "grant_project_access"
    PROMOTE_ADMIN = "promote_admin"
    TRANSFER_ASSETS = "transfer_assets"
    REMOVE_IDP_GROUP = "remove_idp_group"
    DEACTIVATE_IDP_USER = "deactivate_idp_user"
    END_IDP_SESSIONS = "end_idp_sessions"
    REVOKE_KEY = "revoke_key"
    ROTATE_KEY = "rotate_key"
    REMOVE_PROJECT_ROLE = "remove_project_role"
    REMOVE_GROUP_MEMBERSHIP = "remove_group_membership"
    REVOKE_MODULES = "revoke_modules"
    REVOKE_INVITATION = "revoke_invitation"
    REMOVE_MEMBER = "remove_member"
    COLLECT_ACTIVITY = "collect_activity"
    HUMAN_TASK = "human_task"


class TaskKind(StrEnum):
    """What a human task asks a person to do in the org's console (``domain.tasks``)."""

    TRANSFER_CONTENT = "transfer_content"
    REPLACE_SOLE_ADMIN = "replace_sole_admin"
    ROTATE_KEYS = "rotate_keys"
    EXPORT_ACTIVITY = "export_activity"
    SET_ACCESS = "set_access"
    CHANGE_ACCESS = "change_access"
    REVOKE_ACCESS = "revoke_access"
    REVIEW_INVITATIONS = "review_invitations"


class OnboardStepKind(StrEnum):
    """The steps of an onboarding (``domain.onboard``)."""

    IDP_CREATE_USER = "idp_create_user"
    IDP_ADD_GROUP = "idp_add_group"
    GRANT_MODULES = "grant_modules"
    INVITE = "invite"
    RESEND_INVITATION = "resend_invitation"
    RECORD_GRANT = "record_grant"
    HUMAN_TASK = "human_task"


class ChangeKind(StrEnum):
    """The steps of a change of access or of email (``domain.change``)."""

    SET_PROJECT_ROLE = "set_project_role"
    REMOVE_PROJECT_ROLE = "remove_project_role"
    REMOVE_GROUP_MEMBERSHIP = "remove_group_membership"
    ADD_GROUP_MEMBERSHIP = "add_group_membership"
    SET_ORG_ROLE = "set_org_role"
    GRANT_MODULES = "grant_modules"
    REVOKE_MODULES = "revoke_modules"
    INVITE_MEMBER = "invite_member"
    TRANSFER_CONTENT = "transfer_content"
    REMOVE_IDP_GROUP = "remove_idp_group"
    IDP_ADD_GROUP = "idp_add_group"
    REMOVE_MEMBER = "remove_member"
    HUMAN_TASK = "human_task"


def _absent(value: object) -> bool:
    return value is None


def omitted_if_none() -> Any:
    """An optional parameter, left out of the dict form when not given (as the untyped plans
    did: a step that names nobody else acts on the subject)."""
    return Field(default=None, exclude_if=_absent)


class StepParams(BaseModel):
    """What a step needs besides its target; ``kind`` says which model (the step's kind)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str

    def as_dict(self) -> dict[str, Any]:
        """The parameters as JSON values, without ``kind``: what the plan hash covers."""
        return self.model_dump(mode="json", exclude={"kind"})

    def items(self) -> ItemsView[str, Any]:
        """``as_dict().items()``: how the audit log lists a step's parameters."""
        return self.as_dict().items()

    def __getitem__(self, name: str) -> Any:
        """A parameter in its JSON form (``params["role"] == "viewer"``)."""
        return self.as_dict()[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.as_dict().get(name, default)

    def __eq__(self, other: object) -> bool:
        # Equal to its dict form too: what a plan held before its parameters were typed.
        if isinstance(other, dict):
            return self.as_dict() == other
        return super().__eq__(other)


# --- offboarding -------------------------------------------------------------------------------
class GrantProjectAccess(StepParams):
    """Give ``email`` ``role`` in ``project`` (a receiver, or what a role change keeps)."""

    kind: Literal["grant_project_access"] = "grant_project_access"
    email: str
    project: str
    role: Role


class PromoteAdmin(StepParams):
    """Make ``email`` Admin of the target project (a sole admin's replacement)."""

    kind: Literal["promote_admin"] = "promote_admin"
    email: str


class TransferAssets(StepParams):
    """Give the target (the receiver) these assets of ``from_email``."""

    kind: Literal["transfer_assets"] = "transfer_assets"
    asset_ids: list[str]
    from_email: str


class RemoveIdpGroup(StepParams):
    """Take IdP user ``user_id`` out of the target IdP group (named ``group``)."""

    kind: Literal["remove_idp_group"] = "remove_idp_group"
    group: str
    user_id: str


class DeactivateIdpUser(StepParams):
    """Deactivate the target IdP user (``email``'s)."""

    kind: Literal["deactivate_idp_user"] = "deactivate_idp_user"
    email: str


class EndIdpSessions(StepParams):
    """End every sign-in session of the target IdP user (``email``'s), and the OAuth tokens the
    IdP issued them where its API allows: deactivation stops new sign-ins, not live ones."""

    kind: Literal["end_idp_sessions"] = "end_idp_sessions"
    email: str


class RevokeKey(StepParams):
    """Revoke the target API key at once (emergency); ``notify``: its other managers."""

    kind: Literal["revoke_key"] = "revoke_key"
    name: str
    notify: list[str]


class RotateKey(StepParams):
    """Rotate the target API key; the new secret goes to ``notify`` by direct message only."""

    kind: Literal["rotate_key"] = "rotate_key"
    name: str
    notify: list[str]


class RemoveOwnProjectRole(StepParams):
    """Role change: remove ``email``'s (the subject's) individual grant in the target project."""

    kind: Literal["remove_project_role"] = "remove_project_role"
    email: str


class RemoveGroupMembership(StepParams):
    """Take ``email`` (default: the subject) out of the target org permission group."""

    kind: Literal["remove_group_membership"] = "remove_group_membership"
    group: str
    email: str | None = omitted_if_none()


class RevokeModules(StepParams):
    """Take these add-on modules from the target member."""

    kind: Literal["revoke_modules"] = "revoke_modules"
    modules: list[Module]


class RevokeInvitation(StepParams):
    """Revoke the subject's pending invitation."""

    kind: Literal["revoke_invitation"] = "revoke_invitation"


class RemoveMember(StepParams):
    """Remove the target from the org."""

    kind: Literal["remove_member"] = "remove_member"


class CollectActivity(StepParams):
    """Read the subject's last ``days`` days of activity for security (an emergency)."""

    kind: Literal["collect_activity"] = "collect_activity"
    days: int


class HumanTask(StepParams):
    """A step no API of the org can do: a person does it in the console, following
    ``instructions``, and says Done (or Can't do, with a reason)."""

    kind: Literal["human_task"] = "human_task"
    task: TaskKind
    title: str
    instructions: str


OffboardParams = Annotated[
    GrantProjectAccess
    | PromoteAdmin
    | TransferAssets
    | RemoveIdpGroup
    | DeactivateIdpUser
    | EndIdpSessions
    | RevokeKey
    | RotateKey
    | RemoveOwnProjectRole
    | RemoveGroupMembership
    | RevokeModules
    | RevokeInvitation
    | RemoveMember
    | CollectActivity
    | HumanTask,
    Field(discriminator="kind"),
]


# --- onboarding --------------------------------------------------------------------------------
class IdpCreateUser(StepParams):
    """Create the target (an email) as an IdP user."""

    kind: Literal["idp_create_user"] = "idp_create_user"


class IdpAddGroup(StepParams):
    """Add ``email``'s IdP user to the IdP group ``group_id`` (named by the target)."""

    kind: Literal["idp_add_group"] = "idp_add_group"
    group_id: str
    email: str


class GrantModules(StepParams):
    """Give the target member these add-on modules."""

    kind: Literal["grant_modules"] = "grant_modules"
    modules: list[Module]


class Invite(StepParams):
    """Invite the target with exactly these roles and modules."""

    kind: Literal["invite"] = "invite"
    org_role: Role
    projects: dict[str, Role]
    modules: list[Module]
    default_project: str | None
    note: str


class ResendInvitation(StepParams):
    """Resend the target's pending invitation."""

    kind: Literal["resend_invitation"] = "resend_invitation"


class TemporaryProjectRole(BaseModel):
    """A role in a project that a temporary grant gives (and the expiry sweep takes back)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    project: str
    role: Role


class TemporaryModule(BaseModel):
    """A module that a temporary grant gives."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    module: Module


class RecordGrant(StepParams):
    """Record the target's temporary access (``grants``) in the ledger, ending ``until``."""

    kind: Literal["record_grant"] = "record_grant"
    until: date
    grants: list[TemporaryProjectRole | TemporaryModule]
    sponsor: str


OnboardParams = Annotated[
    IdpCreateUser
    | IdpAddGroup
    | GrantModules
    | Invite
    | ResendInvitation
    | RecordGrant
    | HumanTask,
    Field(discriminator="kind"),
]


# --- change of access or email -----------------------------------------------------------------
class SetProjectRole(StepParams):
    """Set the individual grant of ``email`` (default: the subject) in ``project`` to ``role``."""

    kind: Literal["set_project_role"] = "set_project_role"
    project: str
    role: Role
    email: str | None = omitted_if_none()


class RemoveProjectRole(StepParams):
    """Remove the subject's individual grant in ``project``."""

    kind: Literal["remove_project_role"] = "remove_project_role"
    project: str


class AddGroupMembership(StepParams):
    """Add ``email`` to the target org permission group (named ``group``)."""

    kind: Literal["add_group_membership"] = "add_group_membership"
    group: str
    email: str


class SetOrgRole(StepParams):
    """Set the target member's org role."""

    kind: Literal["set_org_role"] = "set_org_role"
    role: Role


class InviteMember(StepParams):
    """Invite the target (a new address) with this org role, project roles and modules."""

    kind: Literal["invite_member"] = "invite_member"
    role: Role
    projects: dict[str, Role]
    modules: list[Module]


class TransferContent(StepParams):
    """Transfer all of the target's content to ``to``."""

    kind: Literal["transfer_content"] = "transfer_content"
    to: str


ChangeParams = Annotated[
    SetProjectRole
    | RemoveProjectRole
    | RemoveGroupMembership
    | AddGroupMembership
    | SetOrgRole
    | GrantModules
    | RevokeModules
    | InviteMember
    | TransferContent
    | RemoveIdpGroup
    | IdpAddGroup
    | RemoveMember
    | HumanTask,
    Field(discriminator="kind"),
]


# --- what approvers read -----------------------------------------------------------------------
def _roles(projects: dict[str, Role]) -> str:
    return ", ".join(f"{p}={r.value}" for p, r in sorted(projects.items())) or "no project"


def _modules(modules: list[Module]) -> str:
    return ", ".join(m.value for m in modules)


def in_words(params: StepParams, target: str, subject: str) -> str:
    """One step as an approver reads it: who gets or loses which role in which project, which
    modules, which content goes to whom, which keys are rotated (``subject``: the plan's
    person). Two plans that differ in a role, a project or a person read differently."""
    words = _taking_words(params, target, subject) or _giving_words(params, target, subject)
    return words or f"{params.kind} {target}"


def _taking_words(params: StepParams, target: str, subject: str) -> str | None:
    """:func:`in_words` of the steps that take access away or move what a person had."""
    match params:
        case PromoteAdmin(email=e):
            return f"{e} becomes Admin of project {target}"
        case TransferAssets(asset_ids=ids, from_email=f):
            more = " …" if len(ids) > 10 else ""
            return f"{len(ids)} asset(s) of {f} go to {target}: {', '.join(ids[:10])}{more}"
        case TransferContent(to=to):
            return f"all content of {target} goes to {to}"
        case RemoveIdpGroup(group=g):
            return f"{subject} leaves IdP group {g}"
        case DeactivateIdpUser(email=e):
            return f"{e} is deactivated in the IdP (signs in nowhere)"
        case EndIdpSessions(email=e):
            return f"{e}'s live IdP sessions (and their tokens) are ended"
        case RevokeKey(name=n):
            return f"API key {n} is revoked"
        case RotateKey(name=n, notify=to):
            return f"API key {n} is rotated; its new secret goes to {', '.join(to)}"
        case RemoveOwnProjectRole(email=e):
            return f"{e} loses their own role in project {target}"
        case RemoveGroupMembership(group=g, email=e):
            return f"{e or subject} leaves group {g}"
        case RemoveProjectRole(project=p):
            return f"{subject} loses project {p}"
        case RevokeModules(modules=m):
            return f"{subject} loses modules {_modules(m)}"
        case RevokeInvitation():
            return f"the invitation of {target} is revoked"
        case RemoveMember():
            return f"{target} is removed from the org"
        case CollectActivity(days=d):
            return f"{target}'s last {d} days of activity are collected for security"
        case HumanTask(title=t):
            return f"a person does, in the console: {t}"
    return None


def _giving_words(params: StepParams, target: str, subject: str) -> str | None:
    """:func:`in_words` of the steps that give access."""
    match params:
        case (
            GrantProjectAccess(email=e, project=p, role=r)
            | SetProjectRole(email=e, project=p, role=r)
        ):
            return f"{e or subject} gets {r.value} in project {p}"
        case GrantModules(modules=m):
            return f"{subject} gets modules {_modules(m)}"
        case IdpCreateUser():
            return f"{target} is created in the IdP"
        case IdpAddGroup(email=e):
            return f"{e} joins IdP group {target}"
        case (
            Invite(org_role=r, projects=p, modules=m) | InviteMember(role=r, projects=p, modules=m)
        ):
            mods = f"; modules {_modules(m)}" if m else ""
            return f"{target} is invited as org {r.value}: {_roles(p)}{mods}"
        case ResendInvitation():
            return f"the invitation of {target} is sent again"
        case RecordGrant(until=u, grants=g, sponsor=s):
            what = ", ".join(
                f"{x.project}={x.role.value}" if isinstance(x, TemporaryProjectRole) else x.module
                for x in g
            )
            return f"temporary until {u.isoformat()} ({what}), sponsored by {s}"
        case AddGroupMembership(group=g, email=e):
            return f"{e} joins group {g}"
        case SetOrgRole(role=r):
            return f"{subject} gets org role {r.value}"
    return None
