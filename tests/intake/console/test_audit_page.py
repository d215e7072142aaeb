"""The console's audit page over HTTP: only security and auditors read it; the search's filters,
its exports (JSON lines and CSV, a formula written as text), and "Verify now", which records
what it found in the log under the viewer's name — ok, or the fault of a log edited in the
database.

A real emergency offboarding on the world's stack writes the events searched; one event whose
target a spreadsheet would run as a formula is appended as a hostile asset name would be.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from domain.records import AuditEvent
from ledger.audit import append, records
from ledger.audit_search import VERIFIED, AuditQuery, search
from tests.intake.console.world import ConsoleWorld, Person, console_world

pytestmark = pytest.mark.slow
console = pytest.fixture(scope="module")(console_world)

REQUESTER = "sofia.lead@acme.com"
SECURITY = "sec.lead@acme.com"
AUDITOR = "audra.audit@acme.com"
IT_ADMIN = "alice.admin@acme.com"
DANA = "dana.sole@acme.com"
FORMULA = '=HYPERLINK("https://evil.example","open")'


@pytest.fixture(scope="module")
def logged(console: ConsoleWorld) -> Iterator[int]:
    """The log after an emergency offboarding and one hostile event; the hostile event's seq."""
    res = console.stack.start(**console.stack.emergency(DANA)).wait()
    assert res["status"] == "done", res
    rec = append(
        console.stack.svc.ledger,
        AuditEvent(
            action="asset.renamed", subject="eve@acme.com", target=FORMULA, effect="updated"
        ),
    )
    yield rec.seq


def seqs(page: str) -> list[int]:
    import re

    return [int(n) for n in re.findall(r'<tr>\s*<th scope="row">(\d+)</th>', page)]


def test_only_security_and_auditors_read_the_audit_log(console: ConsoleWorld, logged: int) -> None:
    for who in (REQUESTER, IT_ADMIN):
        p = Person(console, who)
        assert p.get("/console/audit").status_code == 403, who
        assert p.get("/console/audit/export.csv").status_code == 403, who
        assert p.post("/console/audit/verify", {"csrf": "0" * 64}).status_code == 403, who
        assert "/console/audit" not in p.get("/console/").text  # not in their navigation
    for who in (SECURITY, AUDITOR):
        page = Person(console, who).get("/console/audit")
        assert page.status_code == 200, who
        assert logged in seqs(page.text)


def test_the_search_filters_the_log(console: ConsoleWorld, logged: int) -> None:
    p = Person(console, AUDITOR)
    every = seqs(p.get("/console/audit").text)
    assert every == sorted(every, reverse=True)  # newest first
    page = p.get("/console/audit", params={"action": "offboard.revoke"}).text
    assert len(seqs(page)) == 2 and "2 events" in page
    assert ">offboard.revoke_key<" in page and ">offboard.remove_member<" not in page
    declared = p.get("/console/audit", params={"action": "offboard.emergency"}).text
    assert len(seqs(declared)) == 1 and ">sandbox-as<" in declared  # how the declarer was known
    by = seqs(p.get("/console/audit", params={"actor": "SEC.lead"}).text)
    security = {
        e.seq for e in records(console.stack.svc.ledger) if SECURITY in (e.actor, e.on_behalf_of)
    }
    assert by and set(by) == security  # the declaration, the post-hoc review (and verifications)
    assert seqs(p.get("/console/audit", params={"subject": "eve@"}).text) == [logged]
    # Any text, the step's before/after included: one key's name is in its revocation only.
    assert len(seqs(p.get("/console/audit", params={"text": "warehouse export"}).text)) == 1
    assert seqs(p.get("/console/audit", params={"text": "100%_"}).text) == []  # no wildcards
    assert seqs(p.get("/console/audit", params={"seq_from": 2, "seq_to": 4}).text) == [4, 3, 2]
    today = datetime.now(UTC).date()
    assert logged in seqs(
        p.get("/console/audit", params={"from": str(today), "to": str(today)}).text
    )
    tomorrow = str(today + timedelta(days=1))
    assert seqs(p.get("/console/audit", params={"from": tomorrow}).text) == []


def test_bad_search_input_is_named_and_the_rest_still_works(
    console: ConsoleWorld, logged: int
) -> None:
    p = Person(console, AUDITOR)
    r = p.get("/console/audit", params={"seq_from": "abc", "to": "tomorrow", "subject": "eve@"})
    assert r.status_code == 400
    assert "Seq from: &#39;abc&#39; is not a whole number of at least 1" in r.text
    assert "To: &#39;tomorrow&#39; is not a date (YYYY-MM-DD)" in r.text
    assert seqs(r.text) == [logged]  # the good filter still applies
    r = p.get("/console/audit", params={"seq_from": 9, "seq_to": 3})
    assert r.status_code == 400 and "Seq: the start is after the end" in r.text
    refused = p.get("/console/audit/export.csv", params={"seq_from": "abc"})
    assert refused.status_code == 400 and "Seq from" in refused.text
    assert p.get("/console/audit/export.xlsx").status_code == 404


def test_exports_hold_the_search_and_csv_runs_no_formula(
    console: ConsoleWorld, logged: int
) -> None:
    p = Person(console, SECURITY)
    page = p.get("/console/audit", params={"action": "offboard.", "page": "1"}).text
    assert 'href="/console/audit/export.csv?action=offboard."' in page  # the search, not the page
    lines = p.get("/console/audit/export.jsonl", params={"action": "offboard."})
    assert lines.status_code == 200 and lines.headers["content-type"].startswith(
        "application/x-ndjson"
    )
    assert 'filename="handover-audit.jsonl"' in lines.headers["content-disposition"]
    rows = [json.loads(x) for x in lines.text.splitlines()]
    assert rows and all(r["action"].startswith("offboard.") for r in rows)
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)  # oldest first
    assert {"hash", "mac", "prev_hash"} <= set(rows[0])
    hostile = p.get("/console/audit/export.csv", params={"subject": "eve@acme.com"})
    assert hostile.status_code == 200 and hostile.headers["content-type"].startswith("text/csv")
    header, row = list(csv.reader(io.StringIO(hostile.text)))
    assert row[header.index("target")] == "'" + FORMULA
    assert row[header.index("seq")] == str(logged)
    # On the page the same value is text, not markup.
    shown = p.get("/console/audit", params={"subject": "eve@"}).text
    assert "=HYPERLINK(&#34;https://evil.example&#34;,&#34;open&#34;)" in shown


def _verify(p: Person) -> str:
    page = p.get("/console/audit")
    done = p.post("/console/audit/verify", {"csrf": p.csrf_of(page, "/console/audit/verify")})
    assert done.status_code == 303 and done.headers["location"] == "/console/audit?verified=1"
    return p.get(done.headers["location"]).text


def test_verify_now_records_who_verified_what(console: ConsoleWorld, logged: int) -> None:
    p = Person(console, SECURITY)
    ledger = console.stack.svc.ledger
    before, _ = search(ledger, AuditQuery(action=VERIFIED), limit=1000)
    stale = p.post("/console/audit/verify", {"csrf": "0" * 64})
    assert stale.status_code == 403
    assert search(ledger, AuditQuery(action=VERIFIED))[1] == len(before)  # nothing recorded
    page = _verify(p)
    assert "Verified: the result is recorded below." in page
    result = page.split('id="verify-result"')[1].split("</dd>")[0]
    assert '<span class="badge ok">ok</span>' in result
    assert f'{SECURITY} <span class="muted">(console, oidc-code)</span>' in page
    (event,), _ = search(ledger, AuditQuery(action=VERIFIED), limit=1)
    assert event.on_behalf_of == SECURITY and event.effect == "ok"
    facts = event.after or {}
    assert facts["auth"] == "oidc-code" and facts["channel"] == "console" and facts["auth_subject"]
    assert facts["head_seq"] == event.seq - 1 and facts["checkpoint"]["seq"] == event.seq - 1
    assert f"seq {event.seq - 1}, hash <code" in page.split('id="verify-checkpoint"')[1]


def test_a_log_edited_in_the_database_shows_verification_failed_with_the_reason(
    console: ConsoleWorld, logged: int
) -> None:
    ledger = console.stack.svc.ledger
    p = Person(console, AUDITOR)
    with ledger.engine.begin() as c:
        was = c.execute(text("SELECT effect FROM audit_events WHERE seq = 3")).scalar_one()
        c.execute(text("UPDATE audit_events SET effect = 'noop(nothing)' WHERE seq = 3"))
    try:
        page = _verify(p)
        result = page.split('id="verify-result"')[1].split("</dd>")[0]
        assert '<span class="badge bad">failed</span> at seq 3' in result
        assert "content does not match its hash (the stored event was changed)" in result
        assert f'{AUDITOR} <span class="muted">(console, oidc-code)</span>' in page
        # A record of a verification forged in the database says so on the page.
        (event,), _ = search(ledger, AuditQuery(action=VERIFIED), limit=1)
        forged = json.dumps({**(event.after or {}), "ok": True, "reason": ""})
        with ledger.engine.begin() as c:
            c.execute(
                text("UPDATE audit_events SET after = :a WHERE seq = :s"),
                {"a": forged, "s": event.seq},
            )
        page = p.get("/console/audit").text
        assert '<span class="badge ok">ok</span>' in page
        assert "does not authenticate with the audit key" in page
        with ledger.engine.begin() as c:
            c.execute(
                text("UPDATE audit_events SET after = :a WHERE seq = :s"),
                {"a": json.dumps(event.after), "s": event.seq},
            )
    finally:
        with ledger.engine.begin() as c:
            c.execute(text("UPDATE audit_events SET effect = :e WHERE seq = 3"), {"e": was})
    again = _verify(p).split('id="verify-result"')[1].split("</dd>")[0]
    assert '<span class="badge ok">ok</span>' in again  # put back as it was: whole again


def test_the_log_is_read_50_events_a_page_newest_first(console: ConsoleWorld, logged: int) -> None:
    import re

    who = "paging@acme.com"
    for n in range(60):
        append(
            console.stack.svc.ledger, AuditEvent(action="asset.viewed", subject=who, target=f"{n}")
        )
    auditor = Person(console, AUDITOR)
    first = auditor.get("/console/audit", params={"subject": who})
    shown = seqs(first.text)
    assert len(shown) == 50 and shown == sorted(shown, reverse=True)
    older = re.search(r'<a rel="next" href="(/console/audit\?[^"]*)">Older</a>', first.text)
    assert older and 'rel="prev"' not in first.text
    second = auditor.get(older.group(1).replace("&amp;", "&"))
    rest = seqs(second.text)
    assert len(rest) == 10 and max(rest) < min(shown) and 'rel="prev"' in second.text
    assert 'rel="next"' not in second.text
