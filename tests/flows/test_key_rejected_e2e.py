"""The org's SCIM key regenerated in its console (seed 002: the old key stops working at once):
the first run that meets the 401 holds new runs — audited, IT told once in Slack — and says
which credential to replace; a run started meanwhile pauses before reading anything (Prefect
state Paused), the CLI refuses to start one, ``handover org resume`` refuses while the org still
rejects the key and, once it accepts it, lets the held run go on (it wakes it).
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from ledger.audit import records
from tests.flows.offboard_stack import ADMIN, OffboardStack, scim_stack

pytestmark = pytest.mark.slow

GINA, HR, ALICE = "gina.groups@acme.com", "hr.partner@acme.com", "alice.admin@acme.com"
SANDBOX_KEY = "sandbox-scim-key"  # the key the stack's settings hold


scim = pytest.fixture(name="scim")(scim_stack)


def set_key(st: OffboardStack, key: str = "") -> str:
    r = httpx.post(f"{st.url}/_sandbox/scim-key", json={"key": key}, headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["key"])


def cli(st: OffboardStack, *args: str) -> tuple[int, str, str]:
    p = st.handover(*args)
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err


def paused_on_hold() -> list[str]:
    """The flow runs the Prefect server has Paused on a hold."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    only_paused = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    with get_client(sync_client=True) as c:
        runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(state=only_paused))
    return [
        str(r.id)
        for r in runs
        if r.state is not None and (r.state.state_details.pause_key or "").startswith("org-hold-")
    ]


def test_a_rejected_key_holds_new_runs_until_it_is_replaced(scim: OffboardStack) -> None:
    st = scim
    set_key(st)  # an admin regenerates the key in the console

    first = st.start(email=GINA, reason="termination", requester=HR)
    first.thread.join(120)
    assert not first.thread.is_alive()
    assert first.error, "the run that meets the 401 fails"
    assert "the SCIM key was rejected (regenerated?" in str(first.error[0])
    assert st.member(GINA) is not None  # nothing was written

    code, out, _ = cli(st, "org", "--json")
    assert code == 1 and json.loads(out)["held"] is True, out
    (event,) = [r for r in records(st.rt.ledger) if r.action == "org.credentials_rejected"]
    assert "SCIM key was rejected" in (event.after or {}).get("reason", "")
    told = [m for m in st.get("/_sandbox/slack/messages")["messages"] if "rejected" in m["text"]]
    assert len(told) == 1 and "handover org resume" in told[0]["text"], told

    # Started while held: paused before it reads anything.
    seq = st.seq()
    held = st.start(email=GINA, reason="termination", requester=HR, dry_run=True)
    deadline = time.monotonic() + 60
    while not paused_on_hold() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert paused_on_hold() and held.thread.is_alive()
    assert not [
        r for r in st.get("/_sandbox/requests", since=seq)["requests"] if "/scim/" in r["path"]
    ]

    # The CLI does not start one; nor does a second rejection alert again.
    code, _, err = cli(st, "offboard", GINA, "--reason", "termination", "--dry-run")
    assert code == 1 and "new runs are held" in err, err

    # Resume while the org still rejects the key: refused, still held.
    code, _, err = cli(st, "org", "resume", "--as", ALICE)
    assert code == 1 and "still refuses" in err, err
    assert paused_on_hold()

    # The key the settings hold works again (the new key was put in the settings).
    set_key(st, SANDBOX_KEY)
    code, out, err = cli(st, "org", "resume", "--as", ALICE)
    assert code == 0 and "new runs go on" in out, (out, err)
    # Woken by the command, not left to its next poll (every 15 s).
    assert "1 held run woken" in out, (out, err)
    res = held.wait(timeout=120)
    assert res["status"] == "planned", res
    (back,) = [r for r in records(st.rt.ledger) if r.action == "org.credentials_restored"]
    assert back.on_behalf_of == ALICE
    code, out, _ = cli(st, "org", "--json")
    assert code == 0 and json.loads(out) == {"held": False}
