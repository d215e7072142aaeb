"""``handover offboard --csv FILE --reason R``: offboard every leaver of a file with one approval
(issue 8).

``--csv FILE --reason R [--receiver EMAIL] [--requester WHO] [--dry-run] [--json]
[--max-workers N]``. The file is a CSV with an ``email`` column (an HR export: other columns are
ignored) or one address per line (:mod:`domain.offboard_bulk`). A missing, unreadable, non-UTF-8
or empty file, or a header without ``email``, exits 2 with a clear message before anything is
read from the org. Bad *entries* do not stop the batch: each is listed with its line and the
good ones go on (see :mod:`flows.offboard_bulk`).

Exit codes: 0 done, planned or nothing to do, 1 partial or failed (some leavers need
attention), 2 bad input, 3 denied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from cli.runbooks import EXIT, _bad, batch_summary, read_text_arg, run_flow, validation_message

BULK_EXIT = {**EXIT, "partial": 1}
STATUS_STYLE = {"done": "green", "nothing_to_do": "green", "ready": "cyan", "failed": "red"}


def read_leavers_file(file: Path) -> list[Any]:
    """The file's entries; raises ``typer.Exit(2)`` with a clear message when it is unusable."""
    from domain.offboard_bulk import LeaverFileError, parse_leavers

    text = read_text_arg(file, option="--csv", noun="file", it="it")
    try:
        return parse_leavers(text)
    except LeaverFileError as e:
        raise _bad(f"--csv {file}: {e}") from None


def show_members(result: dict[str, Any], lines: dict[int, int]) -> None:
    c = Console()
    t = Table(title=f"batch {result['plan']['hash'][:12]} — {result['status']}")
    for col in ("line", "email", "status", "ticket", "message"):
        t.add_column(col)
    for m in result["members"]:
        style = STATUS_STYLE.get(m["status"], "yellow")
        t.add_row(
            str(lines.get(m["index"], m["index"])),
            m["email"],
            f"[{style}]{m['status']}[/]",
            m.get("ticket", ""),
            m["message"],
        )
    c.print(t)
    c.print(batch_summary(result, noun="leavers"))
    # Entries left out ("#3 …") are rows of the table already.
    for w in [w for w in result.get("warnings", []) if not w.startswith("#")][:20]:
        c.print(f"[yellow]warning:[/] {w}")
    if "elapsed_s" in result:
        c.print(f"elapsed: {result['elapsed_s']} s")


def offboard_csv(
    file: Path,
    *,
    reason: str,
    receiver: str | None = None,
    requester: str = "operator",
    dry_run: bool = False,
    as_json: bool = False,
    max_workers: int = 8,
) -> None:
    """Bulk leaver runbook: plan every leaver, one approval, offboard them under the rate limit.

    Raises:
        typer.Exit: with the batch's exit code (2 for a file or option that cannot be used).
    """
    from flows.offboard_bulk import BulkOffboardRequest, offboard_bulk

    leavers = read_leavers_file(file)
    params: dict[str, Any] = {
        "emails": [le.email for le in leavers],
        "reason": reason,
        "receiver": receiver,
        "requester": requester,
        "dry_run": dry_run,
        "max_workers": max_workers,
    }
    try:
        BulkOffboardRequest(**params)
    except ValidationError as e:
        raise _bad(validation_message(e)) from None
    # The subflows draw their own steps; the bar follows the batch (the flow's own thread).
    result = run_flow(offboard_bulk, params, as_json=as_json, only_this_thread=True)
    if as_json:
        typer.echo(json.dumps(result, default=str))
    else:
        show_members(result, {i: le.line for i, le in enumerate(leavers, 1)})
        if result["status"] == "denied":
            typer.secho("denied: nobody was offboarded", err=True, fg="red")
    raise typer.Exit(BULK_EXIT.get(result["status"], 1))
