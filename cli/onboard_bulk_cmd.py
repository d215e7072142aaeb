"""``handover onboard --csv FILE``: onboard every row of a CSV with one approval (issue 6).

``--csv FILE [--dry-run] [--json] [--requester WHO] [--max-workers N]``. The file is read and
its header checked before anything else: a missing, unreadable, non-UTF-8 or empty file, or a
header without ``email`` and ``projects`` (or with an unknown column), exits 2 with a clear
message and nothing is read from the org. Bad *rows* do not stop the batch: each is listed with
its line and the good rows go on (see :mod:`domain.bulk` and :mod:`flows.onboard_bulk`).

Exit codes: 0 done or planned, 1 partial or failed (some rows need attention), 2 bad input,
3 denied.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from cli.runbooks import EXIT, _bad, batch_summary, read_text_arg, run_flow

BULK_EXIT = {**EXIT, "partial": 1}
STATUS_STYLE = {"done": "green", "nothing_to_do": "green", "ready": "cyan", "failed": "red"}


def read_csv_file(file: Path) -> str:
    """The file's text; raises ``typer.Exit(2)`` with a clear message when it cannot be used."""
    from domain.bulk import BulkFileError, parse_bulk_csv

    text = read_text_arg(file, option="--csv", noun="CSV file", it="the CSV")
    try:
        parse_bulk_csv(text, today=datetime.now(UTC).date())
    except BulkFileError as e:
        raise _bad(f"--csv {file}: {e}") from None
    return text


def show_rows(result: dict[str, Any]) -> None:
    c = Console()
    t = Table(title=f"batch {result['plan']['hash'][:12]} — {result['status']}")
    for col in ("line", "email", "status", "message"):
        t.add_column(col)
    for r in result["rows"]:
        style = STATUS_STYLE.get(r["status"], "yellow")
        t.add_row(str(r["row"]), r["email"], f"[{style}]{r['status']}[/]", r["message"])
    c.print(t)
    c.print(batch_summary(result, noun="rows"))
    if "elapsed_s" in result:
        c.print(f"elapsed: {result['elapsed_s']} s")


def onboard_csv(
    file: Path,
    *,
    dry_run: bool = False,
    as_json: bool = False,
    requester: str = "operator",
    max_workers: int = 4,
) -> None:
    """Bulk joiner runbook: plan every row, one approval, apply under the rate limit.

    Raises:
        typer.Exit: with the batch's exit code (2 for a file that cannot be used).
    """
    from flows.onboard_bulk import onboard_bulk

    if not 1 <= max_workers <= 32:
        raise _bad(f"--max-workers {max_workers}: between 1 and 32")
    text = read_csv_file(file)
    result = run_flow(
        onboard_bulk,
        {"csv_text": text, "requester": requester, "dry_run": dry_run, "max_workers": max_workers},
        as_json=as_json,
    )
    if as_json:
        typer.echo(json.dumps(result, default=str))
    else:
        show_rows(result)
        if result["status"] == "denied":
            typer.secho("denied: nothing was provisioned", err=True, fg="red")
    raise typer.Exit(BULK_EXIT.get(result["status"], 1))
