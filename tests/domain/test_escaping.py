"""One escape per output format (domain/escaping.py): Slack mrkdwn, CSV cells, HTML."""

from __future__ import annotations

import pytest

from domain.escaping import csv_cell, csv_row, html_text, mrkdwn, quoted


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(1,2)", "'@SUM(1,2)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("dana.sole@acme.com", "dana.sole@acme.com"),
        ("a=b", "a=b"),
        (7, 7),
        (None, None),
    ],
)
def test_a_csv_cell_is_never_a_formula(cell: object, written: object) -> None:
    assert csv_cell(cell) == written
    assert csv_row([cell, "ok"]) == [written, "ok"]


def test_the_other_formats_have_one_escape_each() -> None:
    assert mrkdwn("a < b && c > d") == "a &lt; b &amp;&amp; c &gt; d"
    assert html_text("<a href='x'>\"") == "&lt;a href=&#x27;x&#x27;&gt;&quot;"


def test_a_value_named_in_an_error_is_quoted_and_cut() -> None:
    assert quoted("dana.sole@acme.com") == "'dana.sole@acme.com'"
    assert quoted("a\x00b\n") == "'a\\x00b\\n'"  # control characters escaped, not shown
    huge = "x" * 20_000 + "@acme.com"
    assert quoted(huge) == f"{'x' * 80!r}… (20009 characters)"


def test_an_email_refused_names_a_huge_value_briefly() -> None:
    from pydantic import TypeAdapter, ValidationError

    from domain.models import Email

    huge = "x" * 20_000 + "@acme.com"  # found by the hostile-input test: a 20 kB refusal
    try:
        TypeAdapter(Email).validate_python(huge)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"]
    else:
        raise AssertionError("a 20 kB email was taken")
    assert message == f"Value error, {'x' * 80!r}… (20009 characters) is not a valid email address"
