"""Human tasks: what a person does in the org's console when no API can, as data.

A plan holds a :class:`domain.steps.HumanTask` step where the org's connector lacks what a step
needs (real Amplitude offers SCIM only: no content transfer, project roles, API keys or audit
log by API). When the run reaches that step it files one :class:`TaskRecord` (once per case and
step), posts it to the assignees, and waits until a person says **Done** (the step's effect is
then ``attested by <email> at <time>``: what no API can read back is never reported as a
``pass``) or **Can't do** with a reason (the run ends *blocked* with that reason).

The instructions follow the seeds' console paths (Settings → Organization settings → Members &
Groups …), name the person and, for a transfer, the receiver; where the org cannot list what
there is, the task asks for it ("or answer: nothing to transfer").
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.blocks import clip
from domain.steps import HumanTask, TaskKind

TITLE_MAX = 500  # the ledger's column (ledger/tasks.py)

ATTESTED = "attested by "
# A result no API can read back, as the system that did it answered when it was done (Okta ends
# a user's sessions but cannot list them): stands, and says so — never "pass".
REPORTED = "reported by "
CONSOLE = "Settings → Organization settings → Members & Groups"


class TaskState(StrEnum):
    OPEN = "open"
    DONE = "done"
    CANT = "cant"


class TaskRecord(BaseModel):
    """One human task as the ledger keeps it; ``id`` is what people and clicks name."""

    model_config = ConfigDict(extra="forbid")

    id: str
    case_id: int
    step_id: str
    kind: TaskKind
    runbook: str
    subject: str
    title: str
    instructions: str
    assignees: list[str] = Field(default_factory=list)
    state: TaskState = TaskState.OPEN
    decided_by: str = ""
    decided_at: datetime | None = None
    note: str = ""
    flow_run_id: str = ""
    ticket: str = ""
    created_at: datetime
    slack_refs: list[dict[str, str]] = Field(default_factory=list)

    @field_validator("title")
    @classmethod
    def _fits(cls, v: str) -> str:
        # A title names the access asked for, which may list many projects: the instructions
        # keep all of it, the title is cut to what the ledger holds.
        return clip(v, TITLE_MAX)

    def attestation(self) -> str:
        """How a done task is reported where a check would say ``pass``."""
        assert self.decided_at is not None
        return f"{ATTESTED}{self.decided_by} at {self.decided_at:%Y-%m-%d %H:%M} UTC"


class TaskOpen(Exception):
    """The step is a human task nobody has decided yet: the run waits for it."""

    def __init__(self, task: TaskRecord) -> None:
        super().__init__(f"task {task.id} ({task.title}) is open")
        self.task = task


class TaskRefused(Exception):
    """A person answered Can't do: the run is blocked with their reason."""

    def __init__(self, task: TaskRecord) -> None:
        super().__init__(f"task {task.id} can't be done ({task.decided_by}): {task.note}")
        self.task = task


def is_ok(check: str) -> bool:
    """A verification result that stands: ``pass``, attested by a person, or reported by the
    system that did it where no API can read it back."""
    return check == "pass" or check.startswith((ATTESTED, REPORTED))


def transfer_content_task(subject: str, receiver: str) -> HumanTask:
    """All of ``subject``'s content to ``receiver``, done in the console (seed 004: "Do not
    skip asset transfer")."""
    return HumanTask(
        task=TaskKind.TRANSFER_CONTENT,
        title=f"Transfer the content of {subject} to {receiver}",
        instructions=(
            f"In {CONSOLE}, find {subject}, then Bulk Transfer Edit Access: transfer every "
            f"chart, dashboard, notebook, cohort and metric they own to {receiver} (who must "
            "have logged in within the last 30 days: if not, answer Can't do). "
            "Handover cannot list their content on this org: if they own nothing, say Done "
            "with the note 'nothing to transfer'. Their removal waits for this task."
        ),
    )


def replace_sole_admin_task(subject: str, candidate: str | None) -> HumanTask:
    """Where ``subject`` is a project's (or the organization's) only Admin, promote a
    replacement first (the org refuses to remove a sole Admin; seed 002)."""
    who = f" (suggested: {candidate})" if candidate else ""
    return HumanTask(
        task=TaskKind.REPLACE_SOLE_ADMIN,
        title=f"Replace {subject} where they are a project's only Admin",
        instructions=(
            f"In Settings → Projects, check each project's Admins. Where {subject} is the only "
            f"Admin, make another member Admin of that project{who}. If they are the "
            f"organization's only Admin ({CONSOLE}), make another member org Admin too: that is "
            "a security decision, so ask security who. Handover cannot read roles on this org: "
            "if they are no project's and not the organization's only Admin, say Done with the "
            "note 'not a sole admin'. Their removal waits for this task."
        ),
    )


def rotate_keys_task(subject: str, *, revoke: bool) -> HumanTask:
    """The API keys ``subject`` manages: regenerated (the new secret to their other managers
    by direct message, never a channel), or revoked at once in an emergency."""
    what = (
        "revoke every API key they manage now (emergency)"
        if revoke
        else "regenerate every API key they manage and give the new secret to the key's other "
        "managers by direct message only (never in a channel or a ticket)"
    )
    return HumanTask(
        task=TaskKind.ROTATE_KEYS,
        title=f"{'Revoke' if revoke else 'Rotate'} the API keys managed by {subject}",
        instructions=(
            f"In Settings → Organization settings → API Keys, {what}. Handover cannot read API "
            "keys on this org: if they manage none, say Done with the note 'no keys'."
        ),
    )


def export_activity_task(subject: str, days: int) -> HumanTask:
    """Emergency: the leaver's recent activity, for security (seed 004: export the audit
    log), attached to the ticket."""
    return HumanTask(
        task=TaskKind.EXPORT_ACTIVITY,
        title=f"Export the last {days} days of activity of {subject}",
        instructions=(
            f"In Settings → Organization settings → Audit Log, filter by {subject} over the "
            f"last {days} days, export it and attach the file to the ticket for security. "
            "Look for data exports, permission changes and invitations."
        ),
    )


def set_access_task(
    subject: str,
    *,
    org_role: str,
    projects: dict[str, str],
    modules: list[str],
    invited: bool,
) -> HumanTask:
    """The access an invitation (or the IdP's provisioning) could not carry, set in the
    console: SCIM creates a Viewer with nothing else (seed 003: exactly the roles asked)."""
    wants = [f"org role {org_role.capitalize()}"]
    wants += [f"{role.capitalize()} in project {p}" for p, role in projects.items()]
    if modules:
        wants.append("modules " + ", ".join(modules))
    how = (
        "Handover invited them (pending until they accept); the invitation carried only the email"
        if invited
        else "the IdP provisions them; no IdP group maps what follows"
    )
    check = (
        " Handover cannot list this org's projects: if a project does not exist, answer "
        "Can't do naming it."
        if projects
        else ""
    )
    return HumanTask(
        task=TaskKind.SET_ACCESS,
        # The title names the access: approvers read it in the plan (domain.steps.in_words).
        title=f"Give {subject} {'; '.join(wants)}",
        instructions=(
            f"In {CONSOLE}, find {subject} ({how}) and give them exactly: "
            f"{'; '.join(wants)}. Nothing more (least privilege).{check}"
        ),
    )


def change_access_task(
    subject: str,
    *,
    projects: dict[str, str | None],
    org_role: str | None,
    modules_add: list[str],
    modules_remove: list[str],
) -> HumanTask:
    """A change of access done in the console, where the org can neither read nor set roles
    by API (seed 002: the effective role is the highest of the individual and group grants)."""
    wants = [f"org role {org_role.capitalize()}"] if org_role else []
    wants += [
        f"{role.capitalize()} in project {p}" if role else f"no access to project {p}"
        for p, role in projects.items()
    ]
    if modules_add:
        wants.append("add modules " + ", ".join(modules_add))
    if modules_remove:
        wants.append("remove modules " + ", ".join(modules_remove))
    union = (
        " A permission group can give more than the individual role (the effective role is the "
        "highest of the two): where one does in these projects, take them out of it, and keep "
        "by an individual role what else it gave them."
        if projects
        else ""
    )
    return HumanTask(
        task=TaskKind.CHANGE_ACCESS,
        title=f"Change the access of {subject} to: {'; '.join(wants)}",
        instructions=(
            f"In {CONSOLE}, find {subject} and change their access to: {'; '.join(wants)}."
            f"{union} Handover cannot read roles or list projects on this org: if a project "
            "does not exist, answer Can't do naming it."
        ),
    )


def copy_access_task(old: str, new: str) -> HumanTask:
    """An email change where roles cannot be read by API: the new address gets the old one's
    access in the console (seed 001: invite the new address with the same access)."""
    return HumanTask(
        task=TaskKind.SET_ACCESS,
        title=f"Give {new} the access of {old}",
        instructions=(
            f"In {CONSOLE}, give {new} (invited by Handover: pending until they accept) exactly "
            f"the access {old} has: the org role, each project's role, the permission groups "
            "and the modules. Handover cannot read roles on this org."
        ),
    )


def move_content_task(old: str, new: str) -> HumanTask:
    """An email change's transfer, done in the console once the new address has joined; the
    old address's removal waits for it."""
    return HumanTask(
        task=TaskKind.TRANSFER_CONTENT,
        title=f"Transfer the content of {old} to {new}",
        instructions=(
            f"Once {new} has accepted the invitation and signed in (the receiver must have "
            f"logged in within the last 30 days), in {CONSOLE} use Bulk Transfer Edit Access to "
            f"transfer every chart, dashboard, notebook, cohort and metric {old} owns to {new}. "
            "Leave this task open until then. If they own nothing, say Done with the note "
            f"'nothing to transfer'. The removal of {old} waits for this task."
        ),
    )


def revoke_access_task(subject: str, what: str, *, grants: str, ended: str) -> HumanTask:
    """Temporary access that ended, removed in the console where the org has no API for
    roles or modules (the expiry sweep files it and looks for the answer at its next run)."""
    return HumanTask(
        task=TaskKind.REVOKE_ACCESS,
        title=f"Remove the temporary access of {subject}: {what}",
        instructions=(
            f"The temporary access of {subject} ({what}; grant {grants}) ended {ended}. In "
            f"{CONSOLE}, find {subject} and remove exactly that: {what} (their individual role "
            "in that project, or that module). Leave the rest of their access as it is. If it "
            "is gone already, say Done with the note 'already gone'."
        ),
    )


def review_invitations_task(week: str) -> HumanTask:
    """The invitation hygiene where the org cannot list invitations (SCIM only): a person
    applies seed 003's rules in the console, once a week (``week``: ``2026-W49``)."""
    return HumanTask(
        task=TaskKind.REVIEW_INVITATIONS,
        title=f"Review the pending invitations ({week})",
        instructions=(
            f"In {CONSOLE} → Pending: resend, once, each invitation still pending 48 hours "
            "after it was sent, and tell whoever asked for it; revoke each one first sent 14 "
            "days ago or more (or expired) and say so on its ticket. Never resend an address "
            "that looks like a member's (a look-alike: check it first). Handover cannot list "
            "invitations on this org."
        ),
    )


def narrow_access_task(subject: str, keep: list[str]) -> HumanTask:
    """A role change (narrowing) where the org cannot read or set roles by API: a person
    removes everything but the projects kept."""
    kept = ", ".join(keep)
    return HumanTask(
        task=TaskKind.CHANGE_ACCESS,
        title=f"Narrow the access of {subject} to {kept}",
        instructions=(
            f"In {CONSOLE}, find {subject} and remove their access to every project but {kept}: "
            "their individual role in each other project, and every permission group that "
            f"gives them another project (keep by an individual role what such a group gave "
            f"them in {kept}). Turn their modules off. Leave {kept} as it is. Handover cannot "
            "read roles on this org."
        ),
    )
