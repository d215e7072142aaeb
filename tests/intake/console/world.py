"""The console's world: the demo sandbox on loopback, a stack over it (runbooks on the session's
Prefect server), and the intake served where ``HANDOVER_INTAKE_URL`` says, so a browser signs in
at the sandbox IdP and comes back to it.

Test modules import the fixtures from here: a conftest.py would import Prefect before
tests/conftest.py points it at the session's server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from cli.stack import Running, free_port, serve_app
from intake.app import create_intake
from sandbox.app import create_app
from tests.conftest import LiveSandbox, serve
from tests.flows.offboard_stack import OffboardStack, make_stack
from tests.intake.console.browser import PASSWORD


@dataclass
class ConsoleWorld:
    sandbox: LiveSandbox
    stack: OffboardStack
    intake: Running

    @property
    def url(self) -> str:
        return self.intake.url


def _world(
    tmp_path_factory: pytest.TempPathFactory, backend: str = "sandbox"
) -> Iterator[ConsoleWorld]:
    sb = serve(create_app(None, seed="demo", rng_seed=5))
    intake: Running | None = None
    try:
        port = free_port()
        stack = make_stack(
            sb,
            tmp_path_factory.mktemp("console"),
            intake_url=f"http://127.0.0.1:{port}",
            backend=backend,
        )
        intake = serve_app(create_intake(stack.svc), port=port, name="intake")
        yield ConsoleWorld(sb, stack, intake)
    finally:
        if intake is not None:
            intake.stop()
        sb.stop()


def console_world(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: str
) -> Iterator[ConsoleWorld]:
    """A fresh demo world, its intake on a loopback port (a fixture:
    ``console = pytest.fixture(scope="module")(console_world)``)."""
    yield from _world(tmp_path_factory)


def console_world_scim(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: str
) -> Iterator[ConsoleWorld]:
    """As :func:`console_world`, on the demo's SCIM-only org (``HANDOVER_ORG_BACKEND=amplitude``):
    the steps no API can do are human tasks (a fixture: ``pytest.fixture(...)``)."""
    yield from _world(tmp_path_factory, "amplitude")


class Person:
    """A browser without JavaScript (httpx with cookies), signed in at the sandbox IdP: for the
    server-side checks, which must hold whatever a browser runs."""

    def __init__(self, world: ConsoleWorld | str, email: str) -> None:
        """``world``: the console's world, or the intake's URL where another process serves it."""
        from urllib.parse import parse_qsl, urlsplit

        self.email = email
        url = world if isinstance(world, str) else world.url
        self.http = httpx.Client(base_url=url, timeout=30, follow_redirects=False)
        go = self.http.get("/console/sign-in", params={"next": "/console/"})
        assert go.status_code == 302, go.text
        authorize = go.headers["location"]
        params = dict(parse_qsl(urlsplit(authorize).query))
        back = httpx.post(
            authorize.split("?")[0],
            data={**params, "email": email, "password": PASSWORD, "action": "allow"},
            timeout=30,
        )
        assert back.status_code == 302, back.text
        done = self.http.get(back.headers["location"])
        assert done.status_code == 303, done.text

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, data: dict[str, Any], **kw: Any) -> httpx.Response:
        return self.http.post(path, data=data, **kw)

    def csrf_of(self, page: httpx.Response, form_action: str) -> str:
        """The CSRF token of the form posting to ``form_action`` on ``page``."""
        import re

        found = re.search(
            rf'action="{re.escape(form_action)}".*?name="csrf" value="([0-9a-f]{{64}})"',
            page.text,
            re.S,
        )
        assert found, f"no form to {form_action} on the page"
        return found.group(1)
