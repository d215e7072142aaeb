"""The baseline of ``bench/offboard_bulk.py``: a plain sequential script that does the same
removals as the offboarding runbook, with httpx and nothing else (no Prefect, no ledger, no
approval, no inventory or verification, no ticket or Slack message).

For each leaver, in order: list the assets they own; transfer them to a receiver who may
receive (their manager from the HR roster if joined and logged in within 30 days, else the admin
of each asset's project who is); rotate each active API key they manage and take them off its
managers; remove them from the org (SCIM ``active: false``, which also drops their project roles
and group memberships, as in the product). A 429 is waited out for its ``Retry-After``; a 5xx or
a dropped connection is tried again (at most 5 times).

Run: ``.venv/bin/python bench/baseline_offboard.py --url URL --emails-file FILE
[--roster roster.csv] [--receiver EMAIL] [--json]`` against a sandbox (its development
credentials are the defaults). Importable: :func:`offboard_all`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

# Python puts this folder first on sys.path; keep it from shadowing top-level packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

RECEIVER_LOGIN_DAYS = 30  # the product's rule for who may receive content
PAGE = 1000


@dataclass
class Baseline:
    """What the script did, and what it cost."""

    members: int = 0
    removed: int = 0
    not_found: int = 0
    transferred: int = 0
    keys_rotated: int = 0
    calls: Counter[str] = field(default_factory=Counter)  # per API
    rate_limited: int = 0  # 429s received
    retries: int = 0
    slept_s: float = 0.0  # waiting out Retry-After
    http_s: float = 0.0  # inside HTTP calls
    wall_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "members": self.members,
            "removed": self.removed,
            "not_found": self.not_found,
            "transferred": self.transferred,
            "keys_rotated": self.keys_rotated,
            "calls": dict(self.calls),
            "429s": self.rate_limited,
            "retries": self.retries,
            "slept_s": round(self.slept_s, 2),
            "http_s": round(self.http_s, 2),
            "wall_s": round(self.wall_s, 2),
            "errors": self.errors[:20],
        }


class Api:
    """One httpx client for the org's admin and SCIM APIs, waiting out 429s."""

    def __init__(self, url: str, *, admin_token: str, scim_token: str, out: Baseline) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.Client(timeout=30)
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.scim = {"Authorization": f"Bearer {scim_token}"}
        self.out = out

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        api = "org_scim" if path.startswith("/scim/") else "org_admin"
        headers = self.scim if api == "org_scim" else self.admin
        for attempt in range(6):
            self.out.calls[api] += 1
            if attempt:
                self.out.retries += 1
            t = time.perf_counter()
            try:
                resp = self.client.request(method, f"{self.url}{path}", headers=headers, **kw)
            except httpx.TransportError:
                resp = None
            finally:
                self.out.http_s += time.perf_counter() - t
            if resp is not None and resp.status_code == 429:
                self.out.rate_limited += 1
                wait = float(resp.headers.get("retry-after", "1") or 1)
            elif resp is None or resp.status_code >= 500:
                wait = min(8.0, 0.5 * 2**attempt)
            else:
                return resp
            self.out.slept_s += wait
            time.sleep(wait)
        raise RuntimeError(f"{method} {path}: gave up after 6 attempts")

    def json(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.call(method, path, **kw)
        resp.raise_for_status()
        return resp.json() if resp.content else None


def _may_receive(member: dict[str, Any] | None, now: datetime) -> bool:
    if member is None or member.get("status") != "joined" or not member.get("last_login_at"):
        return False
    last = datetime.fromisoformat(member["last_login_at"].replace("Z", "+00:00"))
    if last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    return now - last <= timedelta(days=RECEIVER_LOGIN_DAYS)


def offboard_all(
    url: str,
    emails: Iterable[str],
    *,
    managers: dict[str, str] | None = None,
    receiver: str | None = None,
    admin_token: str = "sandbox-admin-token",
    scim_token: str = "sandbox-scim-key",
) -> Baseline:
    """Offboard every address in ``emails``, one after the other (see the module docstring).

    Args:
        url: the org backend (the sandbox's base URL).
        emails: the leavers.
        managers: leaver → manager (the HR roster); the manager receives the content.
        receiver: who receives everyone's content instead (checked like a manager).
        admin_token: the admin API's bearer token.
        scim_token: the SCIM API's bearer token.

    Returns:
        What was done and what it cost (calls per API, 429s, retries, wall time).
    """
    out = Baseline()
    api = Api(url, admin_token=admin_token, scim_token=scim_token, out=out)
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    eligible: dict[str, bool] = {}
    project_admins: dict[str, list[str]] | None = None

    def can_receive(email: str) -> bool:
        if email not in eligible:
            resp = api.call("GET", f"/admin/v1/members/{email}")
            eligible[email] = resp.status_code == 200 and _may_receive(resp.json(), now)
        return eligible[email]

    def receiver_for(leaver: str, project: str) -> str | None:
        nonlocal project_admins
        first = receiver or (managers or {}).get(leaver)
        if first and first != leaver and can_receive(first):
            return first
        if project_admins is None:
            data = api.json("GET", "/admin/v1/projects")
            project_admins = {p["name"]: p.get("admins", []) for p in data["projects"]}
        return next(
            (a for a in project_admins.get(project, []) if a != leaver and can_receive(a)), None
        )

    for email in emails:
        out.members += 1
        try:
            assets: list[dict[str, Any]] = []
            while True:
                page = api.json(
                    "GET",
                    "/admin/v1/assets",
                    params={"owner": email, "offset": len(assets), "limit": PAGE},
                )
                assets += page["assets"]
                if not page["assets"] or len(assets) >= page["total"]:
                    break
            by_receiver: dict[str, list[int]] = {}
            for a in assets:
                to = receiver_for(email, a.get("project") or "")
                if to is None:
                    raise RuntimeError(f"nobody may receive asset {a['id']}")
                by_receiver.setdefault(to, []).append(a["id"])
            for to, ids in by_receiver.items():
                api.json("POST", "/admin/v1/assets/transfer", json={"asset_ids": ids, "to": to})
                out.transferred += len(ids)
            keys = api.json("GET", "/admin/v1/api-keys", params={"manager": email})["api_keys"]
            for k in keys:
                if k["status"] != "active":
                    continue
                api.json("POST", f"/admin/v1/api-keys/{k['id']}/rotate")
                others = [m for m in k["managers"] if m != email]
                api.json("PUT", f"/admin/v1/api-keys/{k['id']}/managers", json={"managers": others})
                out.keys_rotated += 1
            resp = api.call(
                "PATCH",
                f"/scim/1/Users/{email}",
                json={
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "active", "value": False}],
                },
            )
            if resp.status_code == 404:
                out.not_found += 1
            else:
                resp.raise_for_status()
                out.removed += 1
        except (httpx.HTTPError, RuntimeError, KeyError) as exc:  # one leaver; the next goes on
            out.errors.append(f"{email}: {exc}")
    out.wall_s = time.perf_counter() - t0
    return out


def read_managers(roster: Path) -> dict[str, str]:
    """leaver → manager, from the HR roster CSV (columns ``email`` and ``manager``)."""
    with roster.open(newline="") as f:
        return {r["email"]: r["manager"] for r in csv.DictReader(f) if r.get("manager")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="the sandbox, e.g. http://127.0.0.1:8800")
    ap.add_argument("--emails-file", type=Path, required=True, help="one address per line")
    ap.add_argument("--roster", type=Path, help="HR roster CSV (email, manager)")
    ap.add_argument("--receiver", help="who receives everyone's content")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--json-out", type=Path, help="write the JSON object to this file")
    args = ap.parse_args()
    emails = [
        line.strip()
        for line in args.emails_file.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    managers = read_managers(args.roster) if args.roster else None
    res = offboard_all(args.url, emails, managers=managers, receiver=args.receiver)
    if args.json_out:
        args.json_out.write_text(json.dumps(res.as_dict()))
        return
    if args.json:
        print(json.dumps(res.as_dict()))
        return
    calls = sum(res.calls.values())
    print(
        f"baseline: {res.removed}/{res.members} removed, {res.transferred} assets transferred, "
        f"{res.keys_rotated} keys rotated; {calls} calls ({dict(res.calls)}), "
        f"{res.rate_limited} x 429, {res.retries} retries, {res.wall_s:.1f} s"
    )
    for e in res.errors:
        print(f"error: {e}")


if __name__ == "__main__":
    main()
