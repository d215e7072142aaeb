"""The task page and the rotated-secret page of the console over HTTP, as a browser without
JavaScript sends them (``Person``: signed in at the sandbox IdP): who sees a task, who answers
it (an assignee, once, recorded and audited as the Slack buttons record it), the refusals (no
role, stale or forged form, Can't do without a note, a second answer), and a sealed secret
revealed once to a recipient.

The tasks are filed as a run files them (``approvals.tasks.open_task``) without a run waiting:
the browser test (test_task_browser.py) answers one a real run waits for."""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr

from approvals.secret_links import link_ttl, secret_box
from approvals.tasks import Where, open_task
from domain.tasks import TaskRecord, TaskState, transfer_content_task
from intake.web import csrf_token
from ledger.audit import records
from ledger.rotated_secrets import Rotation, derive_key, seal_secret
from ledger.tasks import get_task, mark_escalated
from tests.intake.console.browser import wait_for
from tests.intake.console.world import ConsoleWorld, Person, console_world

pytestmark = pytest.mark.slow
console = pytest.fixture(scope="module")(console_world)

ALICE = "alice.admin@acme.com"  # an IT admin: an assignee of every task
RAJ = "raj.admin@acme.com"  # the other IT admin
SECURITY = "sec.lead@acme.com"  # sees every task, is no assignee
AUDITOR = "audra.audit@acme.com"
REQUESTER = "sofia.lead@acme.com"  # neither assignee nor IT
LEAVER = "ben.haddad@acme.com"


def file_task(world: ConsoleWorld, case_id: int) -> TaskRecord:
    """A transfer task of case ``case_id``, filed and posted as a run files it."""
    svc = world.stack.svc
    return open_task(
        svc,
        Where(runbook="offboard", subject=LEAVER, case_id=case_id),
        step_id=f"transfer_content:{LEAVER}",
        task=transfer_content_task(LEAVER, REQUESTER),
        flow_run_id="",
    )


def valid_csrf(world: ConsoleWorld, person: Person, target: str) -> str:
    """The token this person's session would carry for ``target`` (computed from the secrets
    key, as only the intake can): a form whose page they were never given."""
    value = person.http.cookies.get("handover_console", path="/console")
    assert value is not None
    sid = json.loads(base64.urlsafe_b64decode(value.split(".")[0]))["sid"]
    master = world.stack.rt.settings.secrets_key.get_secret_value()
    return csrf_token(derive_key(master, b"handover console: csrf v1"), sid, target)


def audit(world: ConsoleWorld, action: str, target: str = "") -> list[dict[str, object]]:
    return [
        {"by": e.on_behalf_of or e.actor, **(e.after or {})}
        for e in records(world.stack.rt.ledger)
        if e.action == action and (not target or e.target == target)
    ]


def test_a_task_is_shown_to_its_assignees_and_it_read_only_to_auditors_and_security(
    console: ConsoleWorld,
) -> None:
    task = file_task(console, 901)
    path = f"/console/tasks/{task.id}"
    alice = Person(console, ALICE)
    inbox = alice.get("/console/")
    assert path in inbox.text  # the inbox links it
    page = alice.get(path)
    assert page.status_code == 200, page.text
    for shown in (task.title, LEAVER, "/console/cases/901", "Bulk Transfer Edit Access"):
        assert html.escape(shown) in page.text, shown
    assert f'action="{path}"' in page.text and 'name="answer" value="cant"' in page.text
    # Other sites get no Referer; the console's own posts carry their origin (a browser sends
    # "Origin: null" under "no-referrer", which the form check refuses).
    assert page.headers["referrer-policy"] == "same-origin"
    assert "escalated" not in page.text
    mark_escalated(console.stack.rt.ledger, task.id, at=console.stack.svc.clock())
    assert "open, escalated" in alice.get(path).text
    for who in (AUDITOR, SECURITY):
        seen = Person(console, who).get(path)
        assert seen.status_code == 200 and html.escape(task.title) in seen.text
        assert f'action="{path}"' not in seen.text and 'name="answer"' not in seen.text
        assert "only its assignees answer it" in seen.text
    assert Person(console, REQUESTER).get(path).status_code == 403
    assert alice.get("/console/tasks/task-9-00000000").status_code == 404


def test_only_an_assignee_answers_and_never_with_a_stale_or_forged_form(
    console: ConsoleWorld,
) -> None:
    task = file_task(console, 902)
    path = f"/console/tasks/{task.id}"
    # A non-assignee with a form token valid for their session is still refused: the server
    # decides who answers, not the form.
    for who in (SECURITY, AUDITOR, REQUESTER):
        p = Person(console, who)
        r = p.post(path, {"csrf": valid_csrf(console, p, f"task:{task.id}"), "answer": "done"})
        assert r.status_code == 403, (who, r.text)
    alice = Person(console, ALICE)
    other = file_task(console, 903)
    # Another task's token, a made-up one, another session's and none: refused, nothing changed.
    elsewhere = alice.csrf_of(alice.get(f"/console/tasks/{other.id}"), f"/console/tasks/{other.id}")
    raj = Person(console, RAJ)
    rajs = raj.csrf_of(raj.get(path), path)
    for token in (elsewhere, "0" * 64, rajs, ""):
        r = alice.post(path, {"csrf": token, "answer": "done"})
        assert r.status_code == 403 and "stale" in r.text, r.text
    token = alice.csrf_of(alice.get(path), path)
    r = alice.post(path, {"csrf": token, "answer": "done"}, headers={"Origin": "https://evil.io"})
    assert r.status_code == 403
    assert get_task(console.stack.rt.ledger, task.id).state is TaskState.OPEN
    assert audit(console, "task.done", task.id) == []


def test_cant_do_needs_a_note_and_is_recorded_with_it(console: ConsoleWorld) -> None:
    task = file_task(console, 904)
    path = f"/console/tasks/{task.id}"
    alice = Person(console, ALICE)
    token = alice.csrf_of(alice.get(path), path)
    blank = alice.post(path, {"csrf": token, "answer": "cant", "note": "   "})
    assert blank.status_code == 400 and "needs a note" in blank.text
    assert get_task(console.stack.rt.ledger, task.id).state is TaskState.OPEN
    said = alice.post(path, {"csrf": token, "answer": "cant", "note": "sofia left too"})
    assert said.status_code == 303
    refused = get_task(console.stack.rt.ledger, task.id)
    assert refused.state is TaskState.CANT and refused.note == "sofia left too"
    assert refused.decided_by == ALICE


def test_done_is_recorded_once_as_the_signed_in_person_and_a_second_answer_is_refused(
    console: ConsoleWorld,
) -> None:
    task = file_task(console, 905)
    path = f"/console/tasks/{task.id}"
    alice, raj = Person(console, ALICE), Person(console, RAJ)
    alices = alice.csrf_of(alice.get(path), path)
    rajs = raj.csrf_of(raj.get(path), path)  # raj opened the page too, before alice answered
    done = alice.post(path, {"csrf": alices, "answer": "done", "note": "moved <all> to sofia"})
    assert done.status_code == 303 and done.headers["location"] == f"{path}?answered=1"
    page = alice.get(done.headers["location"])
    assert "Your answer is recorded" in page.text
    assert f"by <strong>{ALICE}</strong>" in page.text
    assert "moved &lt;all&gt; to sofia" in page.text  # a note is text, never markup
    assert f'action="{path}"' not in page.text  # answered: no form any more
    (event,) = audit(console, "task.done", task.id)
    assert event["by"] == ALICE and event["channel"] == "console"
    assert event["auth"] == "oidc-code" and event["auth_subject"]
    # raj's page still had the form: his answer is refused, and says who answered.
    again = raj.post(path, {"csrf": rajs, "answer": "cant", "note": "no"})
    assert again.status_code == 409, again.text
    assert f"already done by {ALICE}" in again.text
    after = get_task(console.stack.rt.ledger, task.id)
    assert after.state is TaskState.DONE and after.decided_by == ALICE
    assert after.note == "moved <all> to sofia"
    assert len(audit(console, "task.done", task.id)) == 1 and not audit(
        console, "task.cant", task.id
    )
    # The Slack messages are told who answered, as after a Slack click (after the response).
    wait_for(
        lambda: f"Done by {ALICE}" in [m["text"] for m in console.stack.dms(RAJ)],
        what="raj's message of the task saying alice answered",
    )


def seal(world: ConsoleWorld, secret: str, case_id: int) -> str:
    """A secret sealed for alice as the offboarding seals one; its link's id."""
    s = world.stack.rt.settings
    sealed = seal_secret(
        world.stack.rt.ledger,
        secret_box(s),
        Rotation(
            case_id=case_id,
            step_id="rotate_key:9",
            subject="someone.gone@acme.com",
            key_id="9",
            key_name="Test key",
            recipients=(ALICE,),
        ),
        SecretStr(secret),
        now=world.stack.svc.clock(),
        ttl=link_ttl(s),
    )
    return sealed.id


def shown_secret(r: httpx.Response) -> str:
    found = re.search(r'<output id="secret" class="secret">(.*?)</output>', r.text, re.S)
    assert found, r.text
    return html.unescape(found.group(1))


def test_a_sealed_secret_is_listed_for_its_recipient_and_revealed_once(
    console: ConsoleWorld,
) -> None:
    secret = "s3cr3t-<value>-for-alice"
    link_id = seal(console, secret, 906)
    path = f"/console/secrets/{link_id}"
    alice = Person(console, ALICE)
    inbox = alice.get("/console/")
    assert path in inbox.text and "Test key" in inbox.text
    page = alice.get(path)
    assert page.status_code == 200 and "Show the secret once" in page.text
    assert secret not in html.unescape(page.text)  # nothing revealed by a GET
    assert page.headers["cache-control"] == "no-store"

    # Someone else: refused on the page and on the form (even with a valid token), audited.
    sofia = Person(console, REQUESTER)
    assert path not in sofia.get("/console/").text
    assert sofia.get(path).status_code == 403
    r = sofia.post(path, {"csrf": valid_csrf(console, sofia, f"secret:{link_id}")})
    assert r.status_code == 403 and secret not in html.unescape(r.text)
    assert [e["by"] for e in audit(console, "secret.refused")] == [REQUESTER, REQUESTER]

    stale = alice.post(path, {"csrf": "0" * 64})
    assert stale.status_code == 403 and secret not in html.unescape(stale.text)
    shown = alice.post(path, {"csrf": alice.csrf_of(page, path)})
    assert shown.status_code == 200, shown.text
    assert shown_secret(shown) == secret
    assert shown.headers["cache-control"] == "no-store"
    (got,) = audit(console, "secret.retrieved")
    assert got["by"] == ALICE and got["auth"] == "oidc-code"
    assert secret not in json.dumps(got)

    again = alice.post(path, {"csrf": alice.csrf_of(page, path)})
    assert again.status_code == 410 and f"Already retrieved by {ALICE}" in again.text
    assert secret not in html.unescape(again.text)
    assert alice.get(path).status_code == 410
    assert path not in alice.get("/console/").text  # retrieved: no longer listed


def test_an_expired_secret_is_not_listed(console: ConsoleWorld) -> None:
    link_id = seal(console, "old", 907)
    clock = console.stack.svc.clock
    from ledger.rotated_secrets import waiting_secrets

    later = clock() + link_ttl(console.stack.rt.settings) + timedelta(minutes=1)
    assert link_id in [s.id for s in waiting_secrets(console.stack.rt.ledger, [ALICE], now=clock())]
    assert not waiting_secrets(console.stack.rt.ledger, [ALICE], now=later)
    assert not waiting_secrets(console.stack.rt.ledger, [REQUESTER], now=clock())
