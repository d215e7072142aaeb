"""The Can't do modal's submission (``intake.app.SubmittedView``): its reason is read from any
shape Slack (or a forger) sends without raising."""

from __future__ import annotations

from intake.app import SubmittedView


def test_a_submitted_view_of_any_shape_gives_a_text_or_nothing() -> None:
    """A forged or broken view_submission never raises while its reason is read."""
    good = {"values": {"reason": {"reason": {"type": "plain_text_input", "value": "gone"}}}}
    assert SubmittedView(state=good).text("reason", "reason") == "gone"
    for state in (
        {},
        {"values": []},
        {"values": {"reason": ["x"]}},
        {"values": {"reason": {"reason": 3}}},
    ):
        assert SubmittedView(state=state).text("reason", "reason") == ""
