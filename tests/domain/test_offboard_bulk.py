"""Bulk offboarding's pure part (:mod:`domain.offboard_bulk`): the leavers file of ``handover
offboard --csv`` (a table of files and what each entry becomes; whole-file errors) and the batch
one approval covers."""

from __future__ import annotations

from typing import Any

import pytest

from domain.offboard_bulk import (
    MAX_LEAVERS,
    BatchMember,
    Leaver,
    LeaverFileError,
    OffboardBatch,
    parse_leavers,
)
from domain.plan import Plan, Reason, Step, StepKind


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a@x.com\nb@x.com\n", [Leaver(1, "a@x.com"), Leaver(2, "b@x.com")]),
        # an HR export: the email column wherever it is, other columns ignored, CRLF, BOM
        (
            "\ufeffname,Email,department\r\nAnn,ann@x.com,Sales\r\nBo,bo@x.com,\r\n",
            [Leaver(2, "ann@x.com"), Leaver(3, "bo@x.com")],
        ),
        # blank and comment lines are skipped, lines keep their number
        ("# leavers\n\nA@X.com\n", [Leaver(3, "a@x.com")]),
        # a repeat (case does not matter) and a bad address are entries with an error
        (
            "a@x.com\nA@x.com\nnot-an-email\n",
            [
                Leaver(1, "a@x.com"),
                Leaver(2, "a@x.com", "already on line 1"),
                Leaver(3, "not-an-email", "'not-an-email' is not a valid email address"),
            ],
        ),
        # a row without the email column's cell
        ("email,name\n,Ann\n", [Leaver(2, "", "email is empty")]),
    ],
)
def test_entries(text: str, expected: list[Leaver]) -> None:
    assert parse_leavers(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("\n  \n# only a comment\n", "empty"),
        ("name,department\nAnn,Sales\n", "no 'email' column"),
        ("\n".join(f"u{i}@x.com" for i in range(MAX_LEAVERS + 1)), f"at most {MAX_LEAVERS}"),
    ],
)
def test_file_errors(text: str, words: str) -> None:
    with pytest.raises(LeaverFileError, match=words):
        parse_leavers(text)


def _params(kind: StepKind, email: str) -> dict[str, Any]:
    """What a step of ``kind`` needs (a transfer names its assets; the others here, nothing)."""
    return {"asset_ids": ["1"], "from_email": email} if kind is StepKind.TRANSFER_ASSETS else {}


def _plan(email: str, *kinds: StepKind, blockers: tuple[str, ...] = ()) -> Plan:
    steps = [
        Step(id=f"{k.value}:{email}", kind=k, target=email, reason="test", params=_params(k, email))
        for k in kinds
    ]
    return Plan(subject=email, reason=Reason.TERMINATION, steps=steps, blockers=list(blockers))


def test_the_batch_covers_each_plan_and_lists_what_is_left_out() -> None:
    ready = BatchMember(1, "a@x.com", _plan("a@x.com", StepKind.REMOVE_MEMBER), manager="m@x.com")
    members = [
        ready,
        BatchMember(2, "b@x.com", _plan("b@x.com")),
        BatchMember(3, "c@x.com", _plan("c@x.com", blockers=("sole admin of P",))),
        BatchMember(4, "nope", error="'nope' is not a valid email address", invalid=True),
        BatchMember(5, "d@x.com", error="inventory failed: 503"),
    ]
    batch = OffboardBatch("termination", members)
    assert [m.status for m in members] == ["ready", "nothing_to_do", "blocked", "invalid", "failed"]
    assert batch.ready == [ready] and batch.common_manager() == "m@x.com"
    assert batch.counts_by_kind() == {"remove_member": 1}
    assert batch.summary_lines() == [
        "1 leaving: a@x.com",
        "#3 c@x.com: blocked: sole admin of P",
        "#4 nope: invalid: 'nope' is not a valid email address",
        "#5 d@x.com: failed: inventory failed: 503",
    ]
    # Approvers approve these plans: another step for anyone is another batch.
    other = OffboardBatch(
        "termination",
        [
            BatchMember(
                1, "a@x.com", _plan("a@x.com", StepKind.TRANSFER_ASSETS, StepKind.REMOVE_MEMBER)
            ),
            *members[1:],
        ],
    )
    assert other.hash != batch.hash
    assert OffboardBatch("termination", list(members)).hash == batch.hash


def test_content_never_goes_to_someone_leaving_in_the_same_batch() -> None:
    def with_receiver(email: str, receiver: str) -> Plan:
        plan = _plan(email, StepKind.TRANSFER_ASSETS, StepKind.REMOVE_MEMBER)
        return plan.model_copy(update={"receivers": {receiver: ["1"]}})

    members = [
        BatchMember(1, "report@x.com", with_receiver("report@x.com", "boss@x.com")),
        BatchMember(2, "boss@x.com", with_receiver("boss@x.com", "ceo@x.com")),
    ]
    batch = OffboardBatch("termination", members)
    batch.hold_back_leaving_receivers()
    assert [m.status for m in members] == ["blocked", "ready"]
    assert "boss@x.com, who leave(s) in this batch" in members[0].message
