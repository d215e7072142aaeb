"""The access review on a SCIM-only org (``HANDOVER_ORG_BACKEND=amplitude``): SCIM lists the
members but says no last login, org role or status. Without the console's Members export the
review makes the findings it can (HR's terminations) and says which it could not; with the
export (downloaded from the sandbox's console, as an admin does) it also finds the inactive and
on-leave people, the joined members unknown to HR and the Admins. What SCIM cannot say at all
(project roles, invitations) is said too.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from domain.review import NO_EXPORT
from tests.flows.offboard_stack import ADMIN, OffboardStack, scim_stack

pytestmark = pytest.mark.slow

CYRILLIC = "j\u043en.smith@acme.com"
ALICE = "alice.admin@acme.com"


scim = pytest.fixture(name="scim")(scim_stack)


def review(st: OffboardStack, **params: Any) -> dict[str, Any]:
    from flows.review import access_review

    return st.start(
        access_review, roster=str(st.roster), dry_run=True, report_dir=str(st.tmp), **params
    ).wait()


def test_the_review_on_scim_says_what_it_could_not_check_and_uses_the_export(
    scim: OffboardStack,
) -> None:
    seq = scim.seq()
    bare = review(scim)
    assert bare["status"] == "planned", bare
    found = {(f["kind"], f["subject"]) for f in bare["findings"]}
    assert found == {
        ("terminated_still_in_org", "dana.sole@acme.com"),
        ("terminated_still_in_org", "frank.former@acme.com"),
        ("unknown_to_hr", "jon.smith@gmail.com"),  # look-alikes: to look at, not to remove
        ("unknown_to_hr", CYRILLIC),
    }, found
    looked = {f["subject"]: f["action"] for f in bare["findings"] if f["kind"] == "unknown_to_hr"}
    assert set(looked.values()) == {"review"}, looked
    assert NO_EXPORT in bare["warnings"]  # no "0 org Admins": nobody's role was read
    assert any("over-privilege through groups was not checked" in w for w in bare["warnings"])
    assert any("cannot list invitations" in w for w in bare["warnings"])

    r = httpx.get(
        f"{scim.url}/admin/v1/export/members.csv",
        headers={**ADMIN, "X-Acting-User": ALICE},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    export = scim.tmp / "members.csv"
    export.write_text(r.text, encoding="utf-8")

    full = review(scim, members_export=str(export))
    found = {(f["kind"], f["subject"]) for f in full["findings"]}
    assert found == {
        ("admins", "org"),
        ("terminated_still_in_org", "dana.sole@acme.com"),
        ("terminated_still_in_org", "frank.former@acme.com"),
        ("unknown_to_hr", "jon.smith@gmail.com"),
        ("unknown_to_hr", CYRILLIC),
        ("on_leave", "leo.leave@acme.com"),
    }, found
    assert NO_EXPORT not in full["warnings"]
    acted = {f["subject"]: f["action"] for f in full["findings"] if f["kind"] == "unknown_to_hr"}
    assert acted == {"jon.smith@gmail.com": "remove", CYRILLIC: "revoke_invitation"}, acted
    admins = next(f for f in full["findings"] if f["kind"] == "admins")["detail"]
    assert "alice.admin@acme.com" in admins and "raj.admin@acme.com" in admins
    assert scim.writes(seq) == []  # dry runs: nothing changed


def test_a_bad_members_export_exits_2_naming_the_line(scim: OffboardStack) -> None:
    bad = scim.tmp / "members.csv"
    bad.write_text("Email,Role,Last Login\na@acme.com,boss,2026-01-01\n", encoding="utf-8")
    seq = scim.seq()
    cli = scim.handover("review", "--roster", str(scim.roster), "--members-export", str(bad))
    _, err = cli.communicate(timeout=120)
    assert cli.returncode == 2 and "line 2: role 'boss'" in err, err
    assert scim.writes(seq) == []
