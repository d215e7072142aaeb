"""``/_sandbox``: test-only controls of the world — reset, seed, faults, clock, the request log,
and the actions of people (accept an invite, log in, export) that no admin API offers.
"""

from __future__ import annotations

import dataclasses
import secrets
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func, select

from sandbox.db import Setting
from sandbox.org.models import Member
from sandbox.org.service import Forbidden, OrgService
from sandbox.world import FaultSettings, World

router = APIRouter(prefix="/_sandbox", tags=["sandbox control"])

_SEEDED = "seeded"
# Bumped whenever a new Handover needs what an older sandbox world lacks (tables' columns, seeded
# people): 2 = Slack guest flags, the approvers and alice's alias in the IdP, Jira accounts.
WORLD_VERSION = 2


class OutdatedWorld(RuntimeError):
    """The sandbox database was seeded by an older Handover (the message says what to do)."""


def check_version(world: World, where: object) -> None:
    """Refuse a seeded world an older Handover made: its Slack accounts, IdP people or tables
    would make clicks and requests fail in ways that look like Handover's own refusals.

    Raises:
        OutdatedWorld: seeded with another world version.
    """
    with world.db.session() as s:
        seeded = s.get(Setting, _SEEDED)
        version = seeded.value.get("version", 1) if seeded is not None else WORLD_VERSION
    if version != WORLD_VERSION:
        raise OutdatedWorld(
            f"the sandbox world in {where} was made by an older Handover (world version "
            f"{version}, this one needs {WORLD_VERSION}): remove it (make clean) or use another "
            "--db"
        )


def world_of(request: Request) -> World:
    world: World = request.app.state.world  # Starlette's State is untyped: one set per app
    return world


def is_new(world: World) -> bool:
    """True when no seed was ever applied to this database."""
    with world.db.session() as s:
        return s.get(Setting, _SEEDED) is None


def apply_seed(world: World, spec: str) -> dict[str, Any]:
    """Seed the world (``demo``, ``empty``, ``scale:N``) and remember that it was seeded."""
    from sandbox import seeds  # seeds import every fake system; keep start-up imports light

    summary = seeds.apply(world, seed_spec(spec))
    with world.db.session() as s:
        s.merge(
            Setting(key=_SEEDED, value={"spec": spec, "summary": summary, "version": WORLD_VERSION})
        )
    return summary


def seed_spec(spec: str) -> str:
    """Validate a seed name: ``demo``, ``empty``, ``qa`` or ``scale:N`` (1 ≤ N ≤ 100000)."""
    if spec in ("demo", "empty", "qa"):
        return spec
    if spec.startswith("scale:") and spec[6:].isdigit() and 1 <= int(spec[6:]) <= 100_000:
        return spec
    raise ValueError(f"unknown seed {spec!r}: expected demo, empty, qa or scale:N (1..100000)")


class SeedBody(BaseModel):
    seed: str = "demo"

    @field_validator("seed")
    @classmethod
    def _valid(cls, v: str) -> str:
        return seed_spec(v)


class ClockBody(BaseModel):
    set: datetime | None = Field(None, description="jump to this time (ISO 8601 with zone)")
    advance_seconds: float | None = Field(None, description="move forward by this much")
    advance_days: float | None = None
    real: bool = Field(False, description="back to real time")

    @field_validator("set")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-01-01T00:00:00Z")
        return v


class ActivityBody(BaseModel):
    action: Literal["login", "export", "change", "invite"] = "login"
    target: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


@router.post("/reset")
def reset(request: Request, body: SeedBody | None = None) -> dict[str, Any]:
    """Wipe everything, back to real time, no faults; then seed (default ``empty``)."""
    world = world_of(request)
    world.db.drop_all()
    world.db.create_all()
    world.clock.reset()
    world.set_faults(FaultSettings())
    world.requests.clear()
    return {"ok": True, "summary": apply_seed(world, body.seed if body else "empty")}


@router.post("/seed")
def seed(request: Request, body: SeedBody) -> dict[str, Any]:
    """Add a seed's content to the current world."""
    return {"ok": True, "summary": apply_seed(world_of(request), body.seed)}


class ScimKeyBody(BaseModel):
    key: str = Field("", max_length=200, description="the new key (default: a random one)")


@router.post("/scim-key")
def regenerate_scim_key(request: Request, body: ScimKeyBody | None = None) -> dict[str, str]:
    """Regenerate the org's SCIM key, as an admin does in the console (seed 002): the old key
    is refused from now on; the new one is shown once."""
    world = world_of(request)
    key = (body.key if body else "") or f"scim-{secrets.token_urlsafe(18)}"
    world.credentials = dataclasses.replace(world.credentials, org_scim_key=key)
    return {"key": key}


@router.get("/faults")
def get_faults(request: Request) -> FaultSettings:
    return world_of(request).faults


@router.put("/faults")
def put_faults(request: Request, body: FaultSettings) -> FaultSettings:
    world_of(request).set_faults(body)
    return body


@router.get("/clock")
def get_clock(request: Request) -> dict[str, str]:
    return {"now": world_of(request).clock.now().isoformat()}


@router.post("/clock")
def move_clock(request: Request, body: ClockBody) -> dict[str, str]:
    clock = world_of(request).clock
    if body.real:
        now = clock.reset()
    elif body.set is not None:
        now = clock.set(body.set)
    else:
        now = clock.advance((body.advance_seconds or 0) + (body.advance_days or 0) * 86400)
    return {"now": now.isoformat()}


@router.get("/requests")
def requests_log(
    request: Request,
    since: int = Query(0, ge=0, description="only records with seq > since"),
    api: str | None = None,
    method: str | None = None,
    writes: bool = Query(False, description="only POST/PUT/PATCH/DELETE"),
    limit: int = Query(10_000, ge=1, le=200_000),
) -> dict[str, Any]:
    """The log of API calls, to prove what a run did (or did not) write."""
    out = []
    for r in list(world_of(request).requests):
        if r.seq <= since or (api and r.api != api) or (method and r.method != method.upper()):
            continue
        if writes and r.method in ("GET", "HEAD", "OPTIONS"):
            continue
        out.append(r.as_dict())
    return {"requests": out[-limit:], "count": len(out)}


def _person_action(request: Request, email: str, fn: str) -> dict[str, Any]:
    world = world_of(request)
    from sandbox.idp import idp_user_active  # the IdP decides who may sign in

    with world.db.session() as s:
        if fn in ("accept", "login") and idp_user_active(s, email) is False:
            raise Forbidden(f"{email} is deactivated in the identity provider: sign-in refused")
        org = OrgService(s, world.clock.now())
        m = org.accept_invite(email) if fn == "accept" else org.record_login(email)
        return {
            "email": m.email,
            "status": m.status,
            "last_login_at": m.last_login_at.isoformat() if m.last_login_at else None,
        }


@router.post("/members/{email}/accept")
def accept(request: Request, email: str) -> dict[str, Any]:
    """The invitee accepts the invitation (and signs in for the first time)."""
    return _person_action(request, email, "accept")


@router.post("/members/{email}/login")
def login(request: Request, email: str) -> dict[str, Any]:
    """The member signs in (refused when deactivated in the IdP)."""
    return _person_action(request, email, "login")


@router.post("/members/{email}/activity")
def activity(request: Request, email: str, body: ActivityBody) -> dict[str, Any]:
    """Record something a member did (an export, a change) in the org audit log."""
    world = world_of(request)
    with world.db.session() as s:
        org = OrgService(s, world.clock.now())
        m = org.member(email)
        if body.action == "login":
            org.record_login(m.email)
        else:
            org.log(body.action, body.target, actor=m.email, **body.details)
        return {"ok": True}


@router.get("/summary")
def summary(request: Request) -> dict[str, Any]:
    """Counts of what is in the world (what ``make demo`` prints)."""
    from sandbox import seeds

    world = world_of(request)
    with world.db.session() as s:
        out = seeds.describe(s, world.clock.now())
        out["members"] = out.get("members") or s.scalar(select(func.count(Member.email)))
        return out


@router.get("/roster")
def roster(request: Request, format: Literal["json", "csv"] = "json") -> Any:
    """The HR roster that stands beside the seeded org (what an HRIS export would give)."""
    import csv
    import io

    from fastapi.responses import PlainTextResponse

    from sandbox import seeds

    with world_of(request).db.session() as s:
        rows = seeds.roster_rows(s)
    if format == "json":
        return {"rows": rows}
    buf = io.StringIO()
    w = csv.DictWriter(
        buf, fieldnames=["email", "name", "status", "manager", "department", "end_date"]
    )
    w.writeheader()
    w.writerows(rows)
    return PlainTextResponse(buf.getvalue(), media_type="text/csv")
