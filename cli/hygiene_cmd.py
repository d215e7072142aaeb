"""``handover hygiene``: one invitation-hygiene sweep in this process (resend at 48 h once,
revoke at 14 days, record acceptances); ``cli.sweep_cmd`` runs and prints it.
"""

from __future__ import annotations

from cli.sweep_cmd import AS_JSON, DRY_RUN, NOW, run_sweep


def hygiene(now: str | None = NOW, dry_run: bool = DRY_RUN, as_json: bool = AS_JSON) -> None:
    """Invitation hygiene: resend unaccepted invitations once, revoke stale ones, record
    acceptances."""
    from flows.hygiene import invitation_hygiene

    run_sweep(
        invitation_hygiene,
        now=now,
        dry_run=dry_run,
        as_json=as_json,
        nothing="no invitation to resend, revoke or record",
    )
