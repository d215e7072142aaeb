"""The Slack Web API fake: ``/slack/api/<method>`` as ``slack_sdk.WebClient`` speaks it.

Like Slack, every method takes its arguments from the query string, a form body (urlencoded or
multipart) or a JSON body, answers HTTP 200 with ``{"ok": false, "error": CODE}`` on failure
(so that slack-sdk raises ``SlackApiError``), and keeps users, conversations and messages —
here in the sandbox database, so tests and ``/_sandbox/slack/messages`` can see what was sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import JSON, ForeignKey, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from sandbox.db import Base, Setting
from sandbox.world import World

router = APIRouter(prefix="/slack/api", tags=["slack"])
control_router = APIRouter(prefix="/_sandbox/slack", tags=["sandbox control"])

TEAM_ID = "T0SANDBOX1"
APP_ID = "A0HANDOVER"  # Handover's Slack app: every interaction payload names it (api_app_id)
BOT_ID = "B0HANDOVER"
BOT_EMAIL = "handover-bot@slack.sandbox"
_TS_KEY = "slack_last_ts"  # last ts handed out, so ts stay unique even when the clock goes back


class SlackUser(Base):
    __tablename__ = "slack_users"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-case
    name: Mapped[str] = mapped_column(String(200))
    real_name: Mapped[str] = mapped_column(String(200), default="")
    is_bot: Mapped[bool] = mapped_column(default=False)
    deleted: Mapped[bool] = mapped_column(default=False)
    # Slack's guests: multi-channel (restricted) and single-channel (ultra-restricted).
    is_restricted: Mapped[bool] = mapped_column(default=False)
    is_ultra_restricted: Mapped[bool] = mapped_column(default=False)


class SlackConversation(Base):
    __tablename__ = "slack_conversations"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(80), unique=True, default=None)  # public
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("slack_users.id"), unique=True, default=None
    )  # the other side of a DM


class SlackMessage(Base):
    __tablename__ = "slack_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(ForeignKey("slack_conversations.id"), index=True)
    ts: Mapped[str] = mapped_column(String(20), unique=True)
    text: Mapped[str] = mapped_column(default="")
    blocks: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    user: Mapped[str] = mapped_column(String(16))
    thread_ts: Mapped[str | None] = mapped_column(String(20), default=None)
    edited: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    history: Mapped[list[Any]] = mapped_column(JSON, default=list)  # earlier versions


class SlackView(Base):
    """A modal opened with ``views.open`` (what the person now sees, to fill and submit)."""

    __tablename__ = "slack_views"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    trigger_id: Mapped[str] = mapped_column(String(200), unique=True)
    view: Mapped[dict[str, Any]] = mapped_column(JSON)


class SlackError(Exception):
    """A Slack error code, answered as ``{"ok": false, "error": code}``."""


def _mint(session: Session, model: type[Base], prefix: str, key: str) -> str:
    """A Slack-looking id derived from ``key``: the same person gets the same id in every
    world (demos and tests can name them), with a counter against the unlikely collision."""
    for n in range(100):
        digest = hashlib.sha256(f"{key}#{n}".encode()).digest()
        ident = prefix + base64.b32encode(digest).decode()[:8]
        if session.get(model, ident) is None:
            return ident
    raise RuntimeError("no free id")  # pragma: no cover


def ensure_user(session: Session, email: str, real_name: str, *, is_bot: bool = False) -> str:
    """Id of the Slack user with this email, created when missing (idempotent)."""
    email = email.strip().lower()
    user = session.scalar(select(SlackUser).where(SlackUser.email == email))
    if user is None:
        user = SlackUser(
            id=_mint(session, SlackUser, "U0", email),
            email=email,
            name=email.split("@")[0],
            real_name=real_name,
            is_bot=is_bot,
        )
        session.add(user)
        session.flush()
    elif real_name and not user.real_name:  # added bare through the control API, named later
        user.real_name = real_name
    return user.id


def ensure_channel(session: Session, name: str) -> str:
    """Id of the public channel ``name`` (``#it-access`` or ``it-access``), created if missing."""
    name = name.strip().lstrip("#").lower()
    conv = session.scalar(select(SlackConversation).where(SlackConversation.name == name))
    if conv is None:
        conv = SlackConversation(id=_mint(session, SlackConversation, "C0", name), name=name)
        session.add(conv)
        session.flush()
    return conv.id


def _dm(session: Session, user: SlackUser) -> SlackConversation:
    conv = session.scalar(select(SlackConversation).where(SlackConversation.user_id == user.id))
    if conv is None:
        conv = SlackConversation(
            id=_mint(session, SlackConversation, "D0", user.id), user_id=user.id
        )
        session.add(conv)
        session.flush()
    return conv


def _resolve(session: Session, ref: Any, *, open_dm: bool = True) -> SlackConversation | None:
    """A channel id, a user id (their DM, as Slack does) or a public channel's name."""
    ref = str(ref or "").strip()
    if not ref:
        return None
    if conv := session.get(SlackConversation, ref):
        return conv
    user = session.get(SlackUser, ref)
    if user is not None:
        if open_dm:
            return _dm(session, user)
        return session.scalar(select(SlackConversation).where(SlackConversation.user_id == ref))
    name = ref.lstrip("#").lower()
    return session.scalar(select(SlackConversation).where(SlackConversation.name == name))


def _user_json(u: SlackUser) -> dict[str, Any]:
    """A user as ``users.info`` shows it: every flag present, ``false`` included, as Slack
    sends them (a deactivated account keeps its profile, with ``deleted: true``)."""
    out: dict[str, Any] = {
        "id": u.id,
        "team_id": TEAM_ID,
        "name": u.name,
        "real_name": u.real_name,
        "deleted": u.deleted,
        "is_bot": u.is_bot,
        "is_app_user": False,
        "is_admin": False,
        "is_owner": False,
        "is_restricted": u.is_restricted or u.is_ultra_restricted,  # Slack sets both for ultra
        "is_ultra_restricted": u.is_ultra_restricted,
        "profile": {"email": u.email, "real_name": u.real_name, "display_name": u.name},
    }
    if u.is_bot:
        out["profile"]["bot_id"] = BOT_ID
    return out


def _message_json(m: SlackMessage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "message",
        "user": m.user,
        "bot_id": BOT_ID,
        "team": TEAM_ID,
        "text": m.text,
        "ts": m.ts,
    }
    if m.blocks:
        out["blocks"] = m.blocks
    if m.thread_ts:
        out["thread_ts"] = m.thread_ts
    if m.edited:
        out["edited"] = m.edited
    return out


def list_messages(
    session: Session, *, channel: str | None = None, user_email: str | None = None
) -> list[dict[str, Any]]:
    """Messages, oldest first, of one channel (id, user id or name) and/or one person's DM."""
    q = select(SlackMessage).order_by(SlackMessage.id)
    refs = [channel] if channel else []
    if user_email:  # an unknown email resolves to nothing, hence no messages
        user = session.scalar(
            select(SlackUser).where(SlackUser.email == user_email.strip().lower())
        )
        refs.append(user.id if user else "")
    for ref in refs:
        conv = _resolve(session, ref, open_dm=False)  # a listing must not open DMs
        if conv is None:
            return []
        q = q.where(SlackMessage.channel == conv.id)
    out = []
    for m in session.scalars(q):
        conv = session.get(SlackConversation, m.channel)  # the identity map caches these
        dm_user = session.get(SlackUser, conv.user_id) if conv and conv.user_id else None
        to = dm_user.email if dm_user else f"#{conv.name}" if conv else None
        out.append({**_message_json(m), "channel": m.channel, "to": to, "history": m.history})
    return out


# --- the Web API methods ----------------------------------------------------------------------


def _bot(session: Session) -> str:
    """The bot's user id: a seeded ``handover-bot@…`` bot if there is one, else our own."""
    q = select(SlackUser.id).where(SlackUser.is_bot, SlackUser.name == "handover-bot")
    q = q.order_by(SlackUser.email == BOT_EMAIL)  # the seeded one wins over our fallback
    return session.scalar(q.limit(1)) or ensure_user(session, BOT_EMAIL, "Handover", is_bot=True)


def _next_ts(session: Session, world: World) -> str:
    """Slack's message id: epoch seconds with 6 decimals, unique and increasing."""
    now = int(world.clock.now().timestamp() * 1_000_000)
    row = session.get(Setting, _TS_KEY)
    micros = max(now, int(row.value["micros"]) + 1) if row else now
    session.merge(Setting(key=_TS_KEY, value={"micros": micros}))
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _blocks(a: dict[str, Any]) -> list[Any] | None:
    raw = a.get("blocks")
    if raw is None or raw == "":
        return None
    try:
        blocks = json.loads(raw) if isinstance(raw, str) else raw  # form bodies carry JSON text
    except ValueError:
        raise SlackError("invalid_blocks") from None
    if (
        not isinstance(blocks, list)
        or len(blocks) > 50
        or not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks)
    ):
        raise SlackError("invalid_blocks")
    return blocks


def _text(a: dict[str, Any]) -> str | None:
    text = a.get("text")
    if text is not None and len(str(text)) > 40_000:
        raise SlackError("msg_too_long")
    return None if text is None else str(text)


def auth_test(s: Session, w: World, a: dict[str, Any]) -> dict[str, Any]:
    return {
        "url": "https://sandbox.slack.com/",
        "team": "Handover Sandbox",
        "user": "handover",
        "team_id": TEAM_ID,
        "user_id": _bot(s),
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "is_enterprise_install": False,
    }


def bots_info(s: Session, w: World, a: dict[str, Any]) -> dict[str, Any]:
    """Handover's own bot (the only one the sandbox has an app for): its app id, which every
    interaction payload carries as ``api_app_id``."""
    if str(a.get("bot") or BOT_ID) != BOT_ID:
        raise SlackError("bot_not_found")
    return {
        "bot": {
            "id": BOT_ID,
            "deleted": False,
            "name": "Handover",
            "updated": 0,
            "app_id": APP_ID,
            "user_id": _bot(s),
            "icons": {},
        }
    }


def chat_post_message(s: Session, w: World, a: dict[str, Any]) -> dict[str, Any]:
    conv = _resolve(s, a.get("channel"))
    if conv is None:
        raise SlackError("channel_not_found")
    text, blocks = _text(a), _blocks(a)
    if not text and not blocks:
        raise SlackError("no_text")
    m = SlackMessage(
        channel=conv.id,
        ts=_next_ts(s, w),
        text=text or "",
        blocks=blocks,
        user=_bot(s),
        thread_ts=str(a["thread_ts"]) if a.get("thread_ts") else None,
    )
    s.add(m)
    s.flush()
    return {"channel": conv.id, "ts": m.ts, "message": _message_json(m)}


def chat_update(s: Session, w: World, a: dict[str, Any]) -> dict[str, Any]:
    conv = _resolve(s, a.get("channel"), open_dm=False)
    if conv is None:
        raise SlackError("channel_not_found")
    m = s.scalar(
        select(SlackMessage).where(
            SlackMessage.channel == conv.id, SlackMessage.ts == str(a.get("ts") or "")
        )
    )
    if m is None:
        raise SlackError("message_not_found")
    text, blocks = _text(a), _blocks(a)
    if text is None and "blocks" not in a:
        raise SlackError("no_text")
    # Slack keeps whatever the update leaves out; an empty blocks array removes the blocks.
    m.history = [*m.history, {"text": m.text, "blocks": m.blocks, "edited": m.edited}]
    m.text = m.text if text is None else text
    m.blocks = m.blocks if "blocks" not in a else blocks
    m.edited = {"user": _bot(s), "ts": _next_ts(s, w)}
    s.flush()
    return {"channel": conv.id, "ts": m.ts, "text": m.text, "message": _message_json(m)}


def users_lookup_by_email(s: Session, w: World, a: dict[str, Any]) -> dict[str, Any]:
    if not a.get("email"):
        raise SlackError("invalid_arguments")
    user = s.scalar(select(SlackUser).where(SlackUser.email == str(a["email"]).strip().lower()))
    if user is None or user.deleted:  # Slack does not find deactivated accounts by email
        raise SlackError("users_not_found")
    return {"user": _user_json(user)}


def users_info(s: Session, w: World, a: dict[str, Any]) -> dict[str, Any]:
    user = s.get(SlackUser, str(a.get("user") or ""))
    if user is None:
        raise SlackError("user_not_found")
    return {"user": _user_json(user)}


def _page(a: dict[str, Any], default: int) -> tuple[int, int]:
    """(offset, limit) from Slack's opaque ``cursor`` (here: an offset) and ``limit``."""
    try:
        limit = int(a.get("limit") or default)
        offset = int(a.get("cursor") or 0)
    except ValueError:
        raise SlackError("invalid_cursor") from None
    return offset, max(1, min(limit, 1000))


def users_list(s: Session, w: World, a: dict[str, Any]) -> dict[str, Any]:
    offset, limit = _page(a, 200)
    users = list(
        s.scalars(select(SlackUser).order_by(SlackUser.email).offset(offset).limit(limit + 1))
    )
    more = len(users) > limit
    return {
        "members": [_user_json(u) for u in users[:limit]],
        "response_metadata": {"next_cursor": str(offset + limit) if more else ""},
    }


def conversations_open(s: Session, w: World, a: dict[str, Any]) -> dict[str, Any]:
    if a.get("channel"):
        conv = _resolve(s, a["channel"], open_dm=False)
        if conv is None:
            raise SlackError("channel_not_found")
        return {"channel": {"id": conv.id}, "no_op": True, "already_open": True}
    ids = [u.strip() for u in str(a.get("users") or "").split(",") if u.strip()]
    if not ids:
        raise SlackError("users_list_not_supplied")
    if len(ids) > 1:
        raise SlackError("not_supported")  # group DMs: nothing in Handover needs them
    user = s.get(SlackUser, ids[0])
    if user is None:
        raise SlackError("user_not_found")
    if user.deleted:
        raise SlackError("user_disabled")
    existed = s.scalar(select(SlackConversation).where(SlackConversation.user_id == user.id))
    conv = _dm(s, user)
    channel: dict[str, Any] = {"id": conv.id}
    if str(a.get("return_im", "")).lower() in ("1", "true"):
        channel |= {"is_im": True, "user": user.id}
    return {"channel": channel, **({"no_op": True, "already_open": True} if existed else {})}


def conversations_history(s: Session, w: World, a: dict[str, Any]) -> dict[str, Any]:
    conv = _resolve(s, a.get("channel"), open_dm=False)
    if conv is None:
        raise SlackError("channel_not_found")
    offset, limit = _page(a, 100)
    # Newest first, thread replies left out (they belong to conversations.replies).
    q = (
        select(SlackMessage)
        .where(SlackMessage.channel == conv.id)
        .where((SlackMessage.thread_ts.is_(None)) | (SlackMessage.thread_ts == SlackMessage.ts))
        .order_by(SlackMessage.id.desc())
        .offset(offset)
        .limit(limit + 1)
    )
    msgs = list(s.scalars(q))
    more = len(msgs) > limit
    return {
        "messages": [_message_json(m) for m in msgs[:limit]],
        "has_more": more,
        "response_metadata": {"next_cursor": str(offset + limit) if more else ""},
    }


def views_open(s: Session, w: World, a: dict[str, Any]) -> dict[str, Any]:
    """A modal for the person whose click carried ``trigger_id``: each trigger opens one view
    (Slack's trigger ids are single-use and expire after 3 seconds; the sandbox checks the
    single use)."""
    trigger = str(a.get("trigger_id") or "")
    if not trigger:
        raise SlackError("invalid_arguments")
    view = a.get("view")
    if isinstance(view, str):
        try:
            view = json.loads(view)
        except ValueError:
            raise SlackError("invalid_arguments") from None
    if not isinstance(view, dict) or view.get("type") != "modal" or not view.get("blocks"):
        raise SlackError("invalid_arguments")
    if s.scalar(select(SlackView).where(SlackView.trigger_id == trigger)) is not None:
        raise SlackError("exchanged_trigger_id")
    n = (s.scalar(select(func.count()).select_from(SlackView)) or 0) + 1
    row = SlackView(id=f"V{n:08d}", trigger_id=trigger, view=view)
    s.add(row)
    return {"view": {"id": row.id, **view}}


METHODS: dict[str, Callable[[Session, World, dict[str, Any]], dict[str, Any]]] = {
    "auth.test": auth_test,
    "bots.info": bots_info,
    "chat.postMessage": chat_post_message,
    "chat.update": chat_update,
    "users.lookupByEmail": users_lookup_by_email,
    "users.info": users_info,
    "users.list": users_list,
    "conversations.open": conversations_open,
    "conversations.history": conversations_history,
    "views.open": views_open,
}


async def _arguments(request: Request) -> dict[str, Any]:
    """Query string, then the body: JSON, urlencoded or multipart (python-multipart is not a
    dependency, so multipart goes through the standard library's MIME parser)."""
    args: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    ctype = request.headers.get("content-type", "").lower()
    if not body:
        return args
    if ctype.startswith("application/json"):
        try:
            data = json.loads(body)
        except ValueError:
            raise SlackError("invalid_json") from None
        if not isinstance(data, dict):
            raise SlackError("invalid_json")
        args.update(data)
    elif ctype.startswith("multipart/form-data"):
        head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
        for part in BytesParser(policy=HTTP).parsebytes(head + body).iter_parts():
            if name := part.get_param("name", header="content-disposition"):
                payload = part.get_payload(decode=True)  # bytes, or None for a nested multipart
                args[str(name)] = payload.decode() if isinstance(payload, bytes) else ""
    else:
        args.update(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
    return args


def _call(world: World, method: str, args: dict[str, Any]) -> dict[str, Any]:
    with world.db.session() as s:
        return METHODS[method](s, world, args)


@router.api_route("/{method}", methods=["GET", "POST"])
async def web_api(method: str, request: Request) -> JSONResponse:
    """One Slack Web API method; errors are HTTP 200 with ``ok: false``, as Slack answers."""
    world: World = request.app.state.world
    if method not in METHODS:
        return JSONResponse({"ok": False, "error": "unknown_method", "req_method": method}, 404)
    try:
        args = await _arguments(request)
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else args.get("token")
        if not token:
            raise SlackError("not_authed")
        if token != world.credentials.slack_bot_token:
            raise SlackError("invalid_auth")
        # The database lock may be held by another request: wait for it off the event loop.
        result = await run_in_threadpool(_call, world, method, args)
    except SlackError as e:
        return JSONResponse({"ok": False, "error": str(e)})
    return JSONResponse({"ok": True, **result})


# --- /_sandbox/slack --------------------------------------------------------------------------


class NewUser(BaseModel):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    real_name: str = ""
    is_bot: bool = False


@control_router.get("/messages")
def get_messages(
    request: Request, channel: str | None = None, user_email: str | None = None
) -> dict[str, Any]:
    """Messages sent so far, oldest first (filter by channel and/or recipient's email)."""
    with request.app.state.world.db.session() as s:
        msgs = list_messages(s, channel=channel, user_email=user_email)
    return {"messages": msgs, "count": len(msgs)}


@control_router.get("/views")
def get_views(request: Request) -> dict[str, Any]:
    """The modals opened so far, oldest first (what each person was shown to fill in)."""
    with request.app.state.world.db.session() as s:
        rows = list(s.scalars(select(SlackView).order_by(SlackView.id)))
        return {"views": [{"id": v.id, "trigger_id": v.trigger_id, **v.view} for v in rows]}


@control_router.get("/users")
def get_users(request: Request) -> dict[str, Any]:
    with request.app.state.world.db.session() as s:
        users = [_user_json(u) for u in s.scalars(select(SlackUser).order_by(SlackUser.email))]
    return {"users": users, "count": len(users)}


@control_router.post("/users")
def add_user(request: Request, body: NewUser) -> dict[str, Any]:
    """Add a person to the workspace (idempotent on the email)."""
    with request.app.state.world.db.session() as s:
        uid = ensure_user(s, body.email, body.real_name, is_bot=body.is_bot)
        user = _user_json(s.get(SlackUser, uid))
    return {"ok": True, "user": user}


class UserStanding(BaseModel):
    """What a workspace admin changes about an account (``None``: left as it is)."""

    deleted: bool | None = Field(None, description="deactivate (true) or reactivate (false)")
    is_restricted: bool | None = Field(None, description="a multi-channel guest")
    is_ultra_restricted: bool | None = Field(None, description="a single-channel guest")
    is_bot: bool | None = None


@control_router.patch("/users/{ref}", response_model=None)
def set_standing(request: Request, ref: str, body: UserStanding) -> dict[str, Any] | JSONResponse:
    """Deactivate a person, make them a guest, or undo it, as a Slack admin would (by user id
    or email); the account keeps its id and email, as in Slack."""
    with request.app.state.world.db.session() as s:
        user = s.get(SlackUser, ref) or s.scalar(
            select(SlackUser).where(SlackUser.email == ref.strip().lower())
        )
        if user is None:
            return JSONResponse({"ok": False, "error": "user_not_found"}, status_code=404)
        for name, value in body.model_dump(exclude_none=True).items():
            setattr(user, name, value)
        s.flush()
        return {"ok": True, "user": _user_json(user)}
