"""A real headless Chromium for the console's tests: Debian's ``chromium`` driven by Selenium
through Debian's ``chromedriver`` (``make test``'s set-up installs both where it may).

Where neither can be installed the browser tests are skipped, saying so; the console's
server-side checks are still tested over HTTP (test_console_http.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PASSWORD = "sandbox-password"  # the sandbox IdP's published password
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or ""
CHROMEDRIVER = shutil.which("chromedriver") or ""
# Where the tests leave their screenshots; with HANDOVER_DOCS_SHOTS=1 (`make screenshots`) they
# also replace the manual's pictures in docs/img/.
SHOTS = Path(__file__).resolve().parents[3] / ".handover" / "screenshots"
DOCS_SHOTS = Path(__file__).resolve().parents[3] / "docs" / "img"
# The viewer's zone in the browser: the console shows times in it (static/console.js).
VIEWER_TZ = "Asia/Tokyo"


def _no_browser_reason() -> str:
    if not CHROMIUM:
        return "no chromium on this machine (apt-get install chromium chromium-driver)"
    if not CHROMEDRIVER:
        return "no chromedriver on this machine (apt-get install chromium-driver)"
    return ""


def new_browser() -> Any:
    """A fresh headless Chromium (its own profile), or a skip saying why there is none."""
    reason = _no_browser_reason()
    if reason:
        pytest.skip(f"browser tests: {reason}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="handover-chromium-")
    # As the machine's probe found: without the background-networking flags Chromium keeps
    # trying Google's hosts, which a closed network refuses.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, env={"TZ": VIEWER_TZ})
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(30)
    driver.implicitly_wait(0)
    return driver


def chromium() -> Iterator[Any]:
    """One person's browser for one test (the ``browser`` fixture of conftest.py)."""
    driver = new_browser()
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy; that value. An element that htmx
    replaced while ``check`` read it (stale) is read again at the next poll."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
        except StaleElementReferenceException:
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.2)


def sign_in(driver: Any, intake: str, email: str, path: str = "/console/") -> None:
    """Open ``path`` on the intake, sign in at the sandbox IdP's form as ``email``, land back."""
    from selenium.webdriver.common.by import By

    driver.get(intake + path)
    wait_for(lambda: driver.find_elements(By.NAME, "email"), what="the IdP's sign-in form")
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "button[value='allow']").click()
    wait_for(lambda: driver.find_elements(By.ID, "viewer"), what="the console, signed in")
    assert driver.find_element(By.ID, "viewer").text == email


def screenshot(driver: Any, name: str) -> Path:
    """A full-page PNG of what the browser shows, under .handover/screenshots/ and, with
    HANDOVER_DOCS_SHOTS=1, docs/img/ (so the manual shows what the tests saw)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(600, min(int(height) + 40, 3000)))
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    if os.environ.get("HANDOVER_DOCS_SHOTS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SHOTS / f"{name}.png")
    return path
