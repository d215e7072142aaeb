"""Which tickets are access requests (``domain.request_kind``): a table of cases, and the
refusal a ticket that is none gets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from domain.models import Ticket
from domain.request_kind import RequestKinds, request_type_name

TASKS = RequestKinds(types=("Task", "Request access"), label="access-request")


@pytest.mark.parametrize(
    ("kinds", "issue_type", "labels", "request_type", "is_one"),
    [
        (RequestKinds(), "Access Request", (), "", True),  # the default
        (RequestKinds(), "access request", (), "", True),  # names compare case-insensitively
        (RequestKinds(), "Task", (), "", False),
        (TASKS, "Task", (), "", True),
        (TASKS, " task ", (), "", True),
        (TASKS, "Bug", (), "", False),
        (TASKS, "Bug", ("urgent", "Access-Request"), "", True),  # the label, any type
        (TASKS, "Bug", ("access-requests",), "", False),  # a label is matched whole
        (TASKS, "Service Request", (), "Request access", True),  # JSM's request type
        (TASKS, "Service Request", (), "Get IT help", False),
        (RequestKinds(types=(), label="access"), "Access Request", (), "", False),  # label only
        (RequestKinds(types=(), label="access"), "Story", ("access",), "", True),
    ],
)
def test_what_is_an_access_request(
    kinds: RequestKinds,
    issue_type: str,
    labels: tuple[str, ...],
    request_type: str,
    is_one: bool,
) -> None:
    assert kinds.admits(issue_type=issue_type, labels=labels, request_type=request_type) is is_one


@pytest.mark.parametrize(
    ("types", "label", "why"),
    [
        ((), "", "neither a request type nor a label"),
        (("", " "), "", "neither a request type nor a label"),
        (("Task",), "access request", "has spaces"),
    ],
)
def test_a_configuration_that_admits_nothing_is_refused(
    types: tuple[str, ...], label: str, why: str
) -> None:
    with pytest.raises(ValidationError, match=why):
        RequestKinds(types=types, label=label)


def test_the_refusal_names_the_ticket_what_counts_and_how_to_file_one() -> None:
    bug = Ticket(key="WEB-7", summary="", status="Open", issue_type="Bug", labels=("ui",))
    said = TASKS.refusal(bug)
    assert said.startswith('Handover: WEB-7 is not an access request (its type is "Bug", its ')
    assert 'labels: "ui")' in said
    assert 'of type (or JSM request type) "Task" or "Request access" or labelled ' in said
    assert 'file a ticket of type "Task" or "Request access" or any ticket with the label' in said
    jsm = bug.model_copy(update={"issue_type": "Incident", "request_type": "Broken laptop"})
    assert 'its type is "Incident", its request type "Broken laptop"' in TASKS.refusal(jsm)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (
            {"requestType": {"id": "11", "name": "Request access"}, "currentStatus": {}},
            "Request access",
        ),
        (None, ""),
        ("itsm/request-access", ""),
        ({"requestType": None}, ""),
        ({"value": "Request access"}, ""),  # a select list's option is not a request type
    ],
)
def test_a_request_type_is_read_from_jsm_s_field_value(value: object, name: str) -> None:
    assert request_type_name(value) == name
