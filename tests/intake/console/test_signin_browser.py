"""Signing in to the console in a real headless Chromium: the browser is sent to the sandbox
IdP, signs in there, and comes back to the page it asked for, its times in the viewer's zone."""

from __future__ import annotations

from typing import Any

import pytest

from tests.intake.console.browser import VIEWER_TZ, sign_in
from tests.intake.console.world import ConsoleWorld, console_world

pytestmark = pytest.mark.slow
console = pytest.fixture(scope="module")(console_world)


def test_a_browser_signs_in_at_the_idp_and_lands_on_its_inbox(
    console: ConsoleWorld, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, console.url, "sec.lead@acme.com")
    assert browser.current_url == f"{console.url}/console/"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Inbox"
    assert "security" in browser.find_element(By.CLASS_NAME, "who").text
    assert VIEWER_TZ  # the zone the browser runs in (checked where a page shows times)
