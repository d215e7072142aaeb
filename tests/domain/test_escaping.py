"""One escape per output format (domain/escaping.py): Slack mrkdwn, CSV cells, HTML."""

from __future__ import annotations

import pytest

from domain.escaping import csv_cell, csv_row, html_text, mrkdwn


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
