"""Slack Block Kit messages, as pure functions returning plain JSON-ready lists of dicts.

Kept out of the connector so that the approval gate, the human-task step and the run summary
build their messages without Slack at hand, and tests check them without a server. Interactive
elements follow one convention the intake relies on: an approval button's ``value`` is
``<approval id>:<plan hash>`` (``approve`` / ``deny``: the approver decides exactly the plan they
were shown, so a click on a message of an older plan is recognised and ignored); a task
button's value is the task id (``task_done``).

No builder takes credentials, and none should: whatever goes into a block is shown to people.
Text from outside (emails, warnings, ticket summaries) is escaped for ``mrkdwn``
(domain/escaping.py) and clipped to Slack's limits, so a stray ``<`` or a huge list cannot
break a message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from domain.escaping import mrkdwn

Block = dict[str, Any]

APPROVE_ACTION = "approve"
OPEN_CONSOLE_ACTION = "open_console"  # a link button: the intake ignores its click
DENY_ACTION = "deny"
TASK_DONE_ACTION = "task_done"
TASK_CANT_ACTION = "task_cant"  # opens the modal that asks why (CANT_VIEW)
CANT_VIEW = "task_cant"  # the modal's callback_id; its private_metadata is the task id
CANT_REASON = "reason"  # the modal's input: block_id and action_id
APPROVAL_BLOCK_ID = "approval"
TASK_BLOCK_ID = "human_task"

# Slack's documented limits (characters), https://api.slack.com/reference/block-kit/blocks
HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
MAX_LISTED = 15  # more lines than this in one list help nobody in a chat message
LINE_MAX = 300  # one list item

_DECISIONS = {
    "approved": (":white_check_mark:", "Approved"),
    "denied": (":no_entry:", "Denied"),
    "expired": (":hourglass:", "Timed out"),
    "timed_out": (":hourglass:", "Timed out"),
    "cancelled": (":heavy_multiplication_x:", "Cancelled"),
    "superseded": (":arrows_counterclockwise:", "Superseded by a new plan"),
}
_STATUS_ICONS = {
    "succeeded": ":white_check_mark:",
    "completed": ":white_check_mark:",
    "done": ":white_check_mark:",
    "planned": ":memo:",
    "dry_run": ":memo:",
    "failed": ":x:",
    "denied": ":no_entry:",
    "timed_out": ":hourglass:",
    "partial": ":warning:",
}


def escape(text: str) -> str:
    """Escape the three characters Slack's ``mrkdwn`` treats as control characters (the one
    place: ``domain.escaping.mrkdwn``)."""
    return mrkdwn(text)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_hash(plan_hash: str) -> str:
    """The first 12 characters: enough to tell plans apart at a glance."""
    return plan_hash[:12]


def _header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, HEADER_MAX)}}


def _section(mrkdwn: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(mrkdwn, SECTION_MAX)}}


def _fields(pairs: Sequence[tuple[str, str]]) -> Block:
    """A section of up to 10 ``*label*\\nvalue`` fields (values already mrkdwn)."""
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": clip(f"*{label}*\n{value}", FIELD_MAX)}
            for label, value in pairs[:10]
        ],
    }


def _context(mrkdwn: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(mrkdwn, SECTION_MAX)}]}


def _button(text: str, *, action_id: str, value: str, style: str | None = None) -> Block:
    button: Block = {
        "type": "button",
        "action_id": action_id,
        "value": value,
        "text": {"type": "plain_text", "text": text},
    }
    if style:
        button["style"] = style
    return button


def _bullets(lines: Sequence[str], mark: str = "•", budget: int = SECTION_MAX - 200) -> str:
    """A bulleted list that fits in one section: at most ``MAX_LISTED`` lines (each clipped)
    within ``budget`` characters, then how many were left out."""
    shown: list[str] = []
    used = 0
    for line in lines[:MAX_LISTED]:
        item = f"{mark} {clip(escape(line), LINE_MAX)}"
        if used + len(item) + 1 > budget:
            break
        shown.append(item)
        used += len(item) + 1
    if len(shown) < len(lines):
        shown.append(f"…and {len(lines) - len(shown)} more")
    return "\n".join(shown)


def _ticket_link(url: str) -> str:
    """``<url|KEY>``; the key is the last part of a Jira ``/browse/KEY`` address."""
    label = url.rstrip("/").rsplit("/", 1)[-1] or url
    # A link's URL must not contain the characters that end or split it.
    safe = url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return f"<{safe}|{escape(label)}>"


def _when(at: datetime) -> str:
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _plan_fields(
    runbook: str, subject: str, plan_hash: str, ticket_url: str | None
) -> list[tuple[str, str]]:
    pairs = [
        ("Runbook", escape(runbook)),
        ("Subject", escape(subject)),
        ("Plan", f"`{escape(short_hash(plan_hash))}`"),
    ]
    if ticket_url:
        pairs.append(("Ticket", _ticket_link(ticket_url)))
    return pairs


def plan_text(lines: Sequence[str], warnings: Sequence[str], *, org: str = "") -> str:
    """The plan as plain text (a ticket comment, the CLI): each step, then each warning."""
    out = [f"In org {org}:"] if org else []
    out += [f"- {line}" for line in lines] or ["- no changes"]
    out += [f"! {w}" for w in warnings]
    return "\n".join(out)


def decision_value(approval_id: str, plan_hash: str) -> str:
    """What an Approve/Deny button carries: the approval and the exact plan shown."""
    return f"{approval_id}:{plan_hash}"


def parse_decision_value(value: str) -> tuple[str, str]:
    """``(approval id, plan hash)`` from a button value; ValueError when malformed."""
    approval_id, sep, plan_hash = value.partition(":")
    if not sep or not approval_id or not plan_hash:
        raise ValueError("an approval button value is <approval id>:<plan hash>")
    return approval_id, plan_hash


def planned_steps(counts_by_kind: Mapping[str, int]) -> list[str]:
    """One ``kind: n`` line per kind of step the plan has, by kind; kinds with none left out."""
    return [f"{kind}: {n}" for kind, n in sorted(counts_by_kind.items()) if n]


def approval_actions(approval_id: str, plan_hash: str) -> Block:
    """The Approve and Deny buttons (block ``approval``), both carrying
    ``<approval id>:<plan hash>``: the approver decides exactly the plan shown."""
    value = decision_value(approval_id, plan_hash)
    return {
        "type": "actions",
        "block_id": APPROVAL_BLOCK_ID,
        "elements": [
            _button("Approve", action_id=APPROVE_ACTION, value=value, style="primary"),
            _button("Deny", action_id=DENY_ACTION, value=value, style="danger"),
        ],
    }


def approval_request_blocks(
    *,
    approval_id: str,
    runbook: str,
    subject: str,
    plan_hash: str,
    counts_by_kind: Mapping[str, int],
    warnings: Sequence[str],
    ticket_url: str | None,
    lines: Sequence[str] = (),
    org: str = "",
    console_url: str | None = None,
) -> list[Block]:
    """The message asking an approver to approve or deny one plan: the plan itself (each step
    in words: who gets or loses which role in which project, which modules, which content
    goes to whom, which keys are rotated), the org, the warnings, and the hash decided.

    Args:
        approval_id: carried, with the plan hash, as the ``value`` of both buttons
            (``<approval id>:<plan hash>``).
        runbook: e.g. ``offboard``.
        subject: the person the plan is about.
        plan_hash: the hash being approved (shown shortened).
        counts_by_kind: how many steps of each kind the plan has.
        warnings: the plan's warnings, shown in full (up to a limit).
        ticket_url: the ticket the run belongs to, if any.
        lines: each step in words (``domain.steps.in_words``); the counts stand in where a
            plan has none (a batch's summary).
        org: the org the plan runs in.
        console_url: the approval's page in the web console, if any: an "Open in the console"
            link button beside the approval's id (a URL button, outside the ``actions`` block).

    Returns:
        Block Kit blocks with an ``actions`` block (id ``approval``) holding Approve
        (``approve``) and Deny (``deny``).
    """
    steps = list(lines) or planned_steps(counts_by_kind)
    fields = _plan_fields(runbook, subject, plan_hash, ticket_url)
    if org:
        fields.insert(2, ("Org", escape(org)))
    blocks = [
        _header(f"Approval needed: {runbook} {subject}"),
        _fields(fields),
        _section("*The plan*\n" + (_bullets(steps) if steps else "_no changes_")),
    ]
    if warnings:
        blocks.append(_section(":warning: *Warnings*\n" + _bullets(list(warnings))))
    blocks.append(
        _context(
            f"Approval `{escape(approval_id)}`. You approve exactly this plan; if it changes "
            "before it is applied, you will be asked again."
        )
    )
    if console_url:
        blocks.append(console_link(console_url))
    blocks.append(approval_actions(approval_id, plan_hash))
    return blocks


def console_link(url: str) -> Block:
    """A section whose button opens ``url`` (the request's page in the web console) in the
    browser; Slack still sends its click to the intake, which ignores ``open_console``."""
    return {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "Read the whole request, its seats and its history, and decide it, in the "
            "web console.",
        },
        "accessory": {
            "type": "button",
            "action_id": OPEN_CONSOLE_ACTION,
            "text": {"type": "plain_text", "text": "Open in the console"},
            "url": url[:3000],  # Slack's limit for a button's url
        },
    }


def decision_blocks(
    *,
    approval_id: str,
    runbook: str,
    subject: str,
    plan_hash: str,
    decision: str,
    decided_by: str,
    decided_at: datetime,
    comment: str | None = None,
    ticket_url: str | None = None,
) -> list[Block]:
    """What an approval message becomes once decided: who decided what, and when; no buttons.

    Args:
        approval_id: the approval decided.
        runbook: as in the request.
        subject: as in the request.
        plan_hash: the plan the decision names.
        decision: ``approved``, ``denied``, ``expired``/``timed_out``, ``cancelled`` or
            ``superseded`` (anything else is shown as written).
        decided_by: the approver's email (or ``policy`` for a time-out).
        decided_at: when (shown in UTC).
        comment: the approver's comment, if any.
        ticket_url: the ticket the run belongs to, if any.

    Returns:
        Block Kit blocks without interactive elements.
    """
    icon, label = _DECISIONS.get(decision.lower(), (":information_source:", decision))
    blocks = [
        _section(f"{icon} *{escape(label)}* by {escape(decided_by)} on {_when(decided_at)}"),
        _fields(_plan_fields(runbook, subject, plan_hash, ticket_url)),
    ]
    if comment:
        blocks.append(_section(f"> {escape(comment)}"))
    blocks.append(_context(f"Approval `{escape(approval_id)}`"))
    return blocks


def human_task_blocks(*, task_id: str, title: str, instructions: str) -> list[Block]:
    """A step no API can do, for a person: what to do, and a Done button.

    Args:
        task_id: carried as the ``value`` of the Done button.
        title: one line (the header).
        instructions: what to do; ``mrkdwn`` formatting such as ``*bold*`` is kept.

    Returns:
        Block Kit blocks with an ``actions`` block (id ``human_task``) holding Done
        (``task_done``) and Can't do (``task_cant``: the intake opens :func:`cant_reason_view`).
    """
    return [
        _header(f"Task: {title}"),
        _section(escape(instructions)),
        _context(
            f"Task `{escape(task_id)}`. Press Done when it is finished; Handover then checks "
            "what it can. Can't do it? Press Can't do and say why (or `handover tasks cant "
            f"{escape(task_id)} --reason …`): the run stops there with your reason."
        ),
        {
            "type": "actions",
            "block_id": TASK_BLOCK_ID,
            "elements": [
                _button("Done", action_id=TASK_DONE_ACTION, value=task_id, style="primary"),
                _button("Can't do", action_id=TASK_CANT_ACTION, value=task_id, style="danger"),
            ],
        },
    ]


def cant_reason_view(*, task_id: str, title: str) -> Block:
    """The modal a Can't do click opens: why the task cannot be done (required), sent back as
    a ``view_submission`` with the task id in ``private_metadata``."""
    return {
        "type": "modal",
        "callback_id": CANT_VIEW,
        "private_metadata": task_id,
        "title": {"type": "plain_text", "text": "Can't do this task"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            _section(escape(title)[:SECTION_MAX]),
            {
                "type": "input",
                "block_id": CANT_REASON,
                "label": {"type": "plain_text", "text": "Why can't it be done?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": CANT_REASON,
                    "multiline": True,
                    "max_length": 2000,
                },
            },
        ],
    }


def task_done_blocks(
    *, task_id: str, title: str, done_by: str, done_at: datetime, label: str = "Done"
) -> list[Block]:
    """What a task message becomes once a person answered (Done, or Can't do); no buttons.

    Args:
        task_id: the task.
        title: as in the task message.
        done_by: who answered (email).
        done_at: when (shown in UTC).
        label: the answer.

    Returns:
        Block Kit blocks without interactive elements.
    """
    return [
        _section(
            f"{':white_check_mark:' if label == 'Done' else ':no_entry:'} *{escape(label)}*: "
            f"{escape(title)}\nby {escape(done_by)} on {_when(done_at)}"
        ),
        _context(f"Task `{escape(task_id)}`"),
    ]


def summary_blocks(
    *,
    runbook: str,
    subject: str,
    status: str,
    run_id: str | None = None,
    effects: Mapping[str, int] | None = None,
    verification: Mapping[str, bool] | None = None,
    warnings: Sequence[str] = (),
    ticket_url: str | None = None,
) -> list[Block]:
    """The outcome of a run, for a channel or the requester.

    Args:
        runbook: e.g. ``offboard``.
        subject: the person the run was about.
        status: e.g. ``succeeded``, ``failed``, ``denied``, ``dry_run``.
        run_id: the flow run, if any.
        effects: how many steps had each effect (``created``, ``updated``, ``deleted``,
            ``noop``).
        verification: check name → passed; failures are listed by name.
        warnings: the run's warnings.
        ticket_url: the ticket the run belongs to, if any.

    Returns:
        Block Kit blocks without interactive elements.
    """
    icon = _STATUS_ICONS.get(status.lower(), ":information_source:")
    pairs = [("Status", f"{icon} {escape(status)}")]
    if run_id:
        pairs.append(("Run", f"`{escape(run_id)}`"))
    if ticket_url:
        pairs.append(("Ticket", _ticket_link(ticket_url)))
    blocks = [_header(f"{runbook} {subject}"), _fields(pairs)]
    if effects:
        order = ["created", "updated", "deleted", "noop"]
        kinds = sorted(effects, key=lambda k: (order.index(k) if k in order else len(order), k))
        text = " · ".join(f"{effects[k]} {escape(k)}" for k in kinds)
        blocks.append(_section(f"*Effects*: {text}"))
    if verification:
        failed = [name for name, ok in verification.items() if not ok]
        passed = len(verification) - len(failed)
        line = f"*Verification*: {passed}/{len(verification)} checks passed"
        if failed:
            line += "\n" + _bullets(failed, mark=":x:")
        blocks.append(_section(line))
    if warnings:
        blocks.append(_section(":warning: *Warnings*\n" + _bullets(list(warnings))))
    return blocks


def reminder_blocks(*, grant_id: int, subject: str, what: str, ends_at: datetime) -> list[Block]:
    """A temporary-access reminder (to the person and the sponsor), with an Extend button.

    Args:
        grant_id: carried as the ``value`` of the Extend button (``grant:<id>``).
        subject: whose access ends.
        what: what ends (e.g. ``Staging manager``, ``module experiment``).
        ends_at: when (shown in UTC).

    Returns:
        Block Kit blocks with an ``actions`` block (id ``expiry``) holding Extend
        (``extend``): a click asks for an extension approval.
    """
    return [
        _header(f"Temporary access ends: {subject}"),
        _section(
            f":hourglass_flowing_sand: *{escape(what)}* for {escape(subject)} ends on "
            f"{_when(ends_at)}. It is then revoked automatically."
        ),
        _context(
            f"Grant `{grant_id}`. Still needed? Press Extend to ask for 30 more days "
            "(an approval is requested)."
        ),
        {
            "type": "actions",
            "block_id": "expiry",
            "elements": [
                _button("Extend", action_id="extend", value=f"grant:{grant_id}", style="primary")
            ],
        },
    ]
