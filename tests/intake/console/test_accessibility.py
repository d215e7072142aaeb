"""What the console's pages promise for accessibility, checked on their templates and style
sheet: a language, a skip link and a focus outline on every page; every field a person fills in
has a label; every table cell heading says its scope; no page carries an inline script or
style (the Content Security Policy would block it); the colours meet WCAG AA contrast (4.5:1)
on white. The pages themselves are driven by keyboard-reachable links, buttons and forms only
(the browser tests click them)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from intake.console.base import STATIC, TEMPLATES

PAGES = sorted(TEMPLATES.glob("*.html"))


class _Fields(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, str | None]] = []
        self.labelled: set[str] = set()
        self.th: list[dict[str, str | None]] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("input", "textarea", "select") and a.get("type") != "hidden":
            self.fields.append(a)
        if tag == "label" and a.get("for"):
            self.labelled.add(str(a["for"]))
        if tag == "th":
            self.th.append(a)
        if tag == "script" and not a.get("src"):
            self.inline.append("script")
        if "style" in a:
            self.inline.append(f"style= on <{tag}>")


def _parsed(path: Path) -> _Fields:
    p = _Fields()
    # Jinja expressions become plain text; the tags around them are what is checked.
    p.feed(re.sub(r"\{%.*?%\}|\{#.*?#\}", "", path.read_text(), flags=re.S))
    return p


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_field_has_a_label_and_every_heading_cell_a_scope(page: Path) -> None:
    p = _parsed(page)
    for field in p.fields:
        assert field.get("aria-label") or field.get("id") in p.labelled, (page.name, field)
    for th in p.th:
        assert th.get("scope") in ("col", "row", "colgroup", "rowgroup"), (page.name, th)
    assert p.inline == [], page.name


def test_every_page_has_a_language_a_skip_link_and_a_visible_focus() -> None:
    base = (TEMPLATES / "base.html").read_text()
    assert '<html lang="en">' in base
    assert 'class="skip" href="#main"' in base and 'id="main"' in base
    assert all('{% extends "base.html" %}' in p.read_text() for p in PAGES if _is_page(p))
    assert re.search(
        r":focus-visible\s*\{[^}]*outline:\s*3px", (STATIC / "console.css").read_text()
    )


def _is_page(p: Path) -> bool:
    """Whole pages (fragments that htmx swaps in, and includes, are not)."""
    return p.name != "base.html" and "{% extends" in p.read_text()


def _luminance(hex_colour: str) -> float:
    rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def test_the_text_colours_meet_wcag_aa_on_white() -> None:
    css = (STATIC / "console.css").read_text()
    colours = dict(re.findall(r"--(fg|muted|link|warn|bad|ok):\s*(#[0-9a-fA-F]{6})", css))
    assert set(colours) == {"fg", "muted", "link", "warn", "bad", "ok"}
    for name, colour in colours.items():
        ratio = (1.0 + 0.05) / (_luminance(colour) + 0.05)
        assert ratio >= 4.5, (name, colour, round(ratio, 2))
    assert (1.05) / (_luminance(colours["fg"]) + 0.05) >= 17
    assert (1.05) / (_luminance(colours["link"]) + 0.05) >= 7.5
