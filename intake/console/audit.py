"""The audit log, ``/console/audit`` (security and auditors only): search it, export what was
found (JSON lines or CSV, as ``handover audit export`` writes them), and verify it.

"Verify now" runs ``handover audit verify``'s check (ledger.audit.verify: chain, MACs, latest
checkpoint) and records what it found as an ``audit.verified`` event by the viewer — in the log
itself, keyed and anchored like every other event, so the record of a verification cannot be
edited without the next verification saying so. The page shows the newest such record.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from approvals.console_roles import Role
from intake.console.base import HEADERS, PREFIX, Console
from intake.console.query import PAGE_SIZE, Filters
from ledger.audit import verify
from ledger.audit_search import (
    AuditQuery,
    export_search,
    last_verification,
    record_verification,
    search,
)

READERS = (Role.SECURITY, Role.AUDITOR)
TARGET = "audit:verify"
EXPORTS = {"jsonl": "application/x-ndjson; charset=utf-8", "csv": "text/csv; charset=utf-8"}


def _query(f: Filters) -> AuditQuery:
    """The search the query string asks for (a bad value is named in ``f.problems`` and
    left out)."""
    since, until = f.day("from", "From"), f.day("to", "To", end=True)
    if not f.times_ok(since, until, "Time"):
        since = until = None
    seq_from, seq_to = (
        f.number("seq_from", "Seq from", least=1),
        f.number("seq_to", "Seq to", least=1),
    )
    if not f.range_ok(seq_from, seq_to, "Seq"):
        seq_from = seq_to = None
    return AuditQuery(
        action=f.text("action"),
        subject=f.text("subject"),
        actor=f.text("actor"),
        text=f.text("text"),
        since=since,
        until=until,
        seq_from=seq_from,
        seq_to=seq_to,
    )


def routes(router: APIRouter, c: Console) -> None:
    @router.get("/audit")
    def audit(request: Request) -> Response:
        """A page of the events matching the search, newest first, and the last verification."""
        who = c.need(request, *READERS)
        f = Filters(request.query_params)
        q = _query(f)
        page = f.page()
        events, total = search(c.svc.ledger, q, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        return c.render(
            who,
            "audit.html",
            status=400 if f.problems else 200,
            title="Audit log",
            events=events,
            total=total,
            page=page,
            pages=max(1, -(-total // PAGE_SIZE)),
            f=f,
            export=f.link(page=""),
            last=last_verification(c.svc.ledger),
            flash="Verified: the result is recorded below."
            if "verified" in request.query_params
            else "",
        )

    @router.get("/audit/export.{fmt}")
    def export(request: Request, fmt: str) -> Response:
        """The events matching the search, oldest first, as a file (the filters as on the
        page; a bad one is refused here, since a file cannot say what was left out)."""
        who = c.need(request, *READERS)
        if fmt not in EXPORTS:
            return c.render(
                who,
                "message.html",
                status=404,
                title="No such export",
                why="Export as .jsonl or .csv.",
            )
        f = Filters(request.query_params)
        q = _query(f)
        if f.problems:
            return c.render(
                who, "message.html", status=400, title="Export refused", why="; ".join(f.problems)
            )
        return StreamingResponse(
            export_search(c.svc.ledger, q, fmt),
            media_type=EXPORTS[fmt],
            headers={
                **HEADERS,
                "Content-Disposition": f'attachment; filename="handover-audit.{fmt}"',
            },
        )

    @router.post("/audit/verify")
    async def verify_now(request: Request) -> Response:
        """Verify the log now and record the result under the viewer's name."""
        who, _form = await c.posted(request, TARGET, *READERS)
        v = await run_in_threadpool(verify, c.svc.ledger)
        details = {"channel": "console", **who.verified.audit()}
        await run_in_threadpool(
            record_verification, c.svc.ledger, v, by=who.email, details=details, now=c.svc.clock()
        )
        return c.redirect(f"{PREFIX}/audit?verified=1")
