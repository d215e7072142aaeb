"""The options every runbook command takes (offboard, onboard, change, change-email), declared
once so that they read and behave the same everywhere: ``dry_run: DryRun = False``,
``as_json: AsJson = False``, ``requester: Requester = None`` (resolved by
:func:`cli.identity.requester_of`: the signed-in person; ``--requester`` in sandbox mode only,
where the default stays ``operator`` when nobody signed in)."""

from __future__ import annotations

from typing import Annotated

import typer

DryRun = Annotated[bool, typer.Option(help="show the plan; write nothing")]
AsJson = Annotated[bool, typer.Option("--json", help="one JSON object on stdout")]
Requester = Annotated[
    str | None,
    typer.Option(
        help="sandbox mode only: who asks (never their own approver); else the signed-in person"
    ),
]
