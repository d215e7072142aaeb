"""``handover expire``: one temporary-access expiry sweep in this process (revoke what is due,
remind before the end, report drift); ``cli.sweep_cmd`` runs and prints it.
"""

from __future__ import annotations

from cli.sweep_cmd import AS_JSON, DRY_RUN, NOW, run_sweep


def expire(now: str | None = NOW, dry_run: bool = DRY_RUN, as_json: bool = AS_JSON) -> None:
    """Temporary-access expiry: revoke due grants, remind before the end, report drift."""
    from flows.expire import expire_access

    run_sweep(
        expire_access,
        now=now,
        dry_run=dry_run,
        as_json=as_json,
        nothing="no grant to revoke or remind about",
    )
