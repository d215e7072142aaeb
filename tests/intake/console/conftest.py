"""The console tests' browser fixture (tests/intake/console/browser.py: Debian's Chromium through
Selenium). The world with Prefect is imported by each module from world.py instead: a conftest
that imported Prefect would do so before tests/conftest.py points it at the session's server."""

from __future__ import annotations

import pytest

from tests.intake.console.browser import chromium

browser = pytest.fixture(chromium)
