"""Which tickets are access requests: the one rule, as the organisation configured it.

Jira organisations file access requests in the ticket types they have: a Jira Software
project's standard types (Bug, Epic, Story, Task, Sub-task, Improvement, New Feature) have no
"Access Request", a Jira Service Management project has *request types* ("Request access")
on top of its issue types, and some teams only mark a ticket with a label. So a ticket is an
access request when

- its issue type is one of the configured names (``HANDOVER_JIRA_REQUEST_TYPES``), or
- its JSM request type (the "Customer Request Type" field's ``requestType.name``) is one of
  them, or
- it carries the configured label (``HANDOVER_JIRA_REQUEST_LABEL``), whatever its type.

Names are compared case-insensitively, as Jira's JQL compares them. Pure: the CLI's runbook,
the Jira webhook and any sweep ask :meth:`RequestKinds.admits`, and a ticket that is not one
gets :meth:`RequestKinds.refusal` — the text the CLI prints and the ticket's comment says.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import Field, field_validator, model_validator

from domain.models import Frozen, Ticket

DEFAULT_TYPES = ("Access Request",)


def _quoted(names: Iterable[str]) -> str:
    """``"A"``, ``"A" or "B"``, ``"A", "B" or "C"``."""
    q = [f'"{n}"' for n in names]
    return q[0] if len(q) == 1 else f"{', '.join(q[:-1])} or {q[-1]}"


def request_type_name(value: Any) -> str:
    """The request type's name in a JSM "Customer Request Type" field value
    (``{"requestType": {"name": …}, "currentStatus": …}``); "" for any other value."""
    kind = value.get("requestType") if isinstance(value, dict) else None
    name = kind.get("name") if isinstance(kind, dict) else None
    return name.strip() if isinstance(name, str) else ""


class RequestKinds(Frozen):
    """The configured marks of an access request: issue/request type names and a label.

    Raises (on construction):
        pydantic.ValidationError: no type and no label (no ticket could be one), or a label
            with spaces (Jira refuses such labels).
    """

    types: tuple[str, ...] = DEFAULT_TYPES
    label: str = Field("", max_length=255)

    @field_validator("types")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.strip() for t in v if t.strip()))

    @field_validator("label")
    @classmethod
    def _label(cls, v: str) -> str:
        if any(c.isspace() for c in v.strip()):
            raise ValueError(f"the label {v.strip()!r} has spaces; Jira labels have none")
        return v.strip()

    @model_validator(mode="after")
    def _something(self) -> RequestKinds:
        if not self.types and not self.label:
            raise ValueError("neither a request type nor a label: no ticket could be a request")
        return self

    def admits(self, *, issue_type: str, labels: Iterable[str], request_type: str = "") -> bool:
        """Whether a ticket of this issue type, labels and JSM request type is a request."""
        names = {t.casefold() for t in self.types}
        if issue_type.strip().casefold() in names or request_type.strip().casefold() in names:
            return True
        mark = self.label.casefold()
        return bool(mark) and any(str(x).casefold() == mark for x in labels)

    def admits_ticket(self, ticket: Ticket) -> bool:
        """:meth:`admits` for a ticket as the Tickets capability reads it."""
        return self.admits(
            issue_type=ticket.issue_type, labels=ticket.labels, request_type=ticket.request_type
        )

    def wanted(self) -> str:
        """What makes a ticket an access request, in words (messages, docs)."""
        parts = []
        if self.types:
            parts.append(f"of type (or JSM request type) {_quoted(self.types)}")
        if self.label:
            parts.append(f"labelled {_quoted([self.label])}")
        return " or ".join(parts)

    def how_to_file(self) -> str:
        """How a person files one, in words."""
        ways = []
        if self.types:
            ways.append(f"a ticket of type {_quoted(self.types)}")
        if self.label:
            ways.append(f"any ticket with the label {_quoted([self.label])}")
        return " or ".join(ways)

    def refusal(self, ticket: Ticket) -> str:
        """Why ``ticket`` is not handled as an access request, and how to file one: what the
        CLI prints and what the ticket's comment says."""
        seen = f'its type is "{ticket.issue_type}"' if ticket.issue_type else "it has no type"
        if ticket.request_type:
            seen += f', its request type "{ticket.request_type}"'
        labels = ", ".join(f'"{x}"' for x in ticket.labels) or "none"
        return (
            f"Handover: {ticket.key} is not an access request ({seen}, its labels: {labels}); "
            f"access requests here are tickets {self.wanted()}. Nothing was done. To ask for "
            f"access, file {self.how_to_file()}, with the request in its description, one "
            "'key: value' line each (email: name@example.com, projects: Production=viewer)."
        )


class NotAnAccessRequest(ValueError):
    """A ticket that is not an access request by the configured :class:`RequestKinds`;
    ``str()`` is :meth:`RequestKinds.refusal` (printed, and posted on the ticket)."""

    def __init__(self, ticket: Ticket, kinds: RequestKinds) -> None:
        super().__init__(kinds.refusal(ticket))
        self.ticket = ticket
