"""What every runbook command shares (``cli/*_cmd.py``): validate, run the flow in this
process with a progress bar, print the outcome as a table or as one JSON object.

Exit codes (INTERFACES.md): 0 done or planned, 1 failed or blocked, 2 bad input (nothing
changed), 3 denied or timed out.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from connectors.settings import SettingsError, load_settings
from domain.runbook import call_runbook
from domain.tasks import is_ok

EXIT = {
    "done": 0,
    "planned": 0,
    "nothing_to_do": 0,
    "waiting_for_task": 0,  # what was left is a person's task, filed (a sweep does not wait)
    "failed": 1,
    "blocked": 1,
    "denied": 3,
}


def _bad(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


def read_text_arg(file: Path, *, option: str, noun: str, it: str) -> str:
    """The text (UTF-8, a BOM allowed) of the file an option names; raises ``typer.Exit(2)``
    with a clear message when it is missing, a directory, unreadable or not UTF-8 (``noun``:
    what it should be, e.g. "CSV file"; ``it``: how the hint names it, e.g. "the CSV")."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise _bad(f"{option} {file}: no such file") from None
    except IsADirectoryError:
        raise _bad(f"{option} {file}: is a directory, not a {noun}") from None
    except OSError as e:
        raise _bad(f"{option} {file}: cannot be read ({e.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _bad(f"{option} {file}: not UTF-8 text (save {it} as UTF-8)") from None


def validation_message(e: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, err['loc'])) or 'input'}: {err['msg']}" for err in e.errors()
    )


NO_SERVER = (
    "no Prefect server is reachable: PREFECT_API_URL is not set and no running 'handover up' "
    "was found in {home}. This run may wait for an approval or a person's task, and neither "
    "approvals nor Slack clicks could reach it on a throw-away server, so it was not started "
    "(nothing changed). Start `make up` (or `handover up`) in another shell of this directory, "
    "or set PREFECT_API_URL to your Prefect server; --dry-run needs no server"
)
DEAD_SERVER = (
    "no Prefect server answers at PREFECT_API_URL={url}: approvals and Slack clicks could not "
    "reach this run, so it was not started (nothing changed). Start it (`make up`), or fix "
    "PREFECT_API_URL"
)


def require_prefect_server(*, dry_run: bool) -> None:
    """Exit 2 (nothing read or written) unless this run's Prefect server answers.

    A run that may wait at a gate (an approval, a person's task) must be on a server that the
    intake and the other shells reach: on Prefect's throw-away in-process server a Slack click
    is recorded but never resumes it, and it waits until killed. So: no ``PREFECT_API_URL``
    (none set and no ``handover up`` joined, ``cli.stack.join_running_stack``) is refused
    unless ``dry_run`` (a dry run has no gate); a ``PREFECT_API_URL`` whose server does not
    answer ``/health`` is refused either way.
    """
    import os

    from prefect.settings import get_current_settings

    from cli.stack import HOME, prefect_answers

    url = get_current_settings().api.url
    if not url:
        if dry_run:
            return
        home = Path(os.environ.get("HANDOVER_HOME") or HOME)
        raise _bad(NO_SERVER.format(home=home))
    if not prefect_answers(url):
        raise _bad(DEAD_SERVER.format(url=url))


def run_flow(
    fn: Callable[..., dict[str, Any]],
    params: Mapping[str, object],
    *,
    as_json: bool,
    only_this_thread: bool = False,
) -> dict[str, Any]:
    """Run a runbook flow here, with ``params`` as its parameters, a progress bar and the
    approval-waiting line; on a Prefect server that answers, unless ``params["dry_run"]``
    (:func:`require_prefect_server`).

    ``only_this_thread``: the bar follows the flow itself, not the subflows it runs in other
    threads (a bulk runbook's bar counts leavers, not each leaver's steps).
    """
    from approvals.gate import set_waiting_hook
    from approvals.holds import held
    from approvals.policy import PolicyError
    from cli.identity import decide_hint, resume_hint
    from tasks.progress import set_reporter
    from tasks.runtime import Runtime, use_runtime

    require_prefect_server(dry_run=bool(params.get("dry_run")))
    try:
        rt = Runtime.from_settings(load_settings())
    except (SettingsError, PolicyError) as e:
        raise _bad(str(e)) from None
    err = Console(stderr=True)
    if (hold := held(rt)) is not None:  # the run would pause here, in the terminal, for hours
        typer.secho(
            f"error: new runs are held since {hold.since.isoformat(timespec='seconds')}: "
            f"{hold.reason}; replace the key, then: {resume_hint()}",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(1)

    def waiting(appr: Any, who: list[str]) -> None:
        err.print(
            f"approval {appr.id} waiting for {', '.join(who) or 'the fallback group'}"
            f" — decide in Slack, or: {decide_hint(appr.id)}"
        )

    set_waiting_hook(waiting)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        console=err,
        transient=True,
        disable=as_json,
    ) as bar:
        task_id = bar.add_task("planning", total=None)
        here = threading.get_ident()

        def progress(done: int, total: int, what: str) -> None:
            if only_this_thread and threading.get_ident() != here:
                return
            bar.update(task_id, completed=done, total=total, description=what[:60])

        set_reporter(progress)
        try:
            with use_runtime(rt):  # the flow (and its subflows) run on this runtime
                return call_runbook(fn, **params)
        finally:
            set_reporter(None)
            set_waiting_hook(None)


def batch_summary(result: Mapping[str, Any], *, noun: str) -> str:
    """A batch's outcome in one line: ``<noun>: <status> <count>, …; steps: {kind: count}``."""
    counts = ", ".join(f"{k} {n}" for k, n in sorted(result.get("counts", {}).items()))
    steps: dict[str, int] = {}
    for s in result["plan"]["steps"]:
        steps[s["kind"]] = steps.get(s["kind"], 0) + 1
    return f"{noun}: {counts or 'none'}; steps: {steps or 'none'}"


def show(result: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    c = Console()
    t = Table(title=f"plan {result['plan']['hash'][:12]} — {result['status']}")
    for col in ("#", "step", "target", "effect", "reason"):
        t.add_column(col)
    effects = result.get("effects", {})
    for i, s in enumerate(result["plan"]["steps"], 1):
        t.add_row(
            str(i),
            s["kind"],
            s["target"],
            effects.get(f"{s['kind']}:{s['target']}", "—"),
            s["reason"],
        )
    c.print(t)
    if result.get("verification"):
        c.print(verification_table(result["verification"]))
    for b in result["plan"].get("blockers", []):
        c.print(f"[red]needs a choice:[/] {b}")
    for w in result.get("warnings", []):
        c.print(f"[yellow]warning:[/] {w}")
    if result.get("failure"):
        c.print(
            f"[red]stopped:[/] {result['failure']}; not done: "
            f"{', '.join(result.get('not_done', []))} — run the same command again to "
            "continue"
        )


def verification_table(checks: Mapping[str, str], title: str = "verification") -> Table:
    """Each check and its result: green when it stands (a pass, or attested by a person)."""
    t = Table(title=title)
    t.add_column("check")
    t.add_column("result")
    for k, r in checks.items():
        t.add_row(k, f"[green]{r}[/]" if is_ok(r) else f"[red]{r}[/]")
    return t
