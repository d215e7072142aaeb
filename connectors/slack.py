"""Slack, through ``slack_sdk.WebClient``: the :class:`~connectors.capabilities.Messenger`.

People are found by email (``users.lookupByEmail``), messaged in their DM
(``conversations.open`` then ``chat.postMessage``) and messages are updated in place
(``chat.update``) once an approval is decided. Both lookups are cached for the life of the
connector (a run, typically): a person's user id and DM channel do not change within one. That
an email has *no* Slack account is remembered for :data:`UNKNOWN_FOR` seconds only (the person
may be given one), so a requester outside Slack costs one lookup per few minutes, not one per
message: ``users.lookupByEmail`` is a tier-3 method (50 a minute).

Retries come in two layers, each doing what it is best at: slack-sdk's own handlers sleep out a
429 for exactly its ``Retry-After`` and repeat a request whose connection was reset; what is
still failing after that (5xx, time-outs, a 429 that outlasted the handler) becomes a
:class:`~connectors.errors.TransientError`, retried by :func:`connectors.retry.call_with_retry`.
``chat.postMessage`` has no idempotency key, so a 5xx answered *after* Slack stored the message
can leave a duplicate; for a notification that is the lesser harm than a missing one.

Every ``SlackApiError`` and transport error is translated in :func:`_translate`, and nowhere else.
The bot token never appears in a message, a log line or ``repr``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.client import HTTPException
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.web import SlackResponse

from connectors.capabilities import MessageRef
from connectors.errors import (
    AuthError,
    ConnectorError,
    InvalidRequestError,
    NotFoundError,
    TransientError,
    error_for_status,
    parse_retry_after,
)
from connectors.rate import current_limits
from connectors.retry import call_with_retry
from connectors.settings import Settings, load_settings
from domain.escaping import mrkdwn
from domain.identity import ChatMember
from domain.models import Effect, WriteResult

SYSTEM = "slack"

# Slack's ``ok: false`` error codes, by what they mean for us.
_NOT_FOUND = {
    "users_not_found",
    "user_not_found",
    "channel_not_found",
    "message_not_found",
    "user_disabled",  # a deactivated account cannot be messaged: as good as not there
    "is_archived",
}
_AUTH = {
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "missing_scope",
    "not_allowed_token_type",
    "ekm_access_denied",
}
_TRANSIENT = {
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
}

# Slack limits each Web API method separately (its "tiers", per workspace and app), so each
# method gets its own bucket, sized to its tier: requests per minute.
METHOD_LIMITS = {
    "users.lookupByEmail": 50,  # tier 3
    "users.info": 100,  # tier 4
    "conversations.open": 50,  # tier 3
    # "Special": one message per second *per channel* (bursts tolerated), plus a workspace-wide
    # ceiling Slack does not publish; ours is set well under what workspaces see in practice.
    # One bucket for all channels (what this was) made 20 back-to-back emergency runs, each
    # telling different people, queue behind one another at one message a second.
    "chat.postMessage": 300,
    "chat.update": 50,  # tier 3
    "views.open": 100,  # tier 4
}
PER_CHANNEL_POSTS_PER_MINUTE = 60
# How long "no Slack account with this email" is believed, in seconds.
UNKNOWN_FOR = 300.0


def _retry_after(response: SlackResponse | None) -> float | None:
    if response is None:
        return None
    headers = response.headers or {}
    for name, value in headers.items():
        if str(name).lower() == "retry-after":
            # slack-sdk keeps header values as lists on some paths and as strings on others
            first = value[0] if isinstance(value, list | tuple) and value else value
            return parse_retry_after(str(first))
    return None


def _translate(exc: Exception, *, operation: str, subject: str | None) -> ConnectorError:
    """The one mapping from slack-sdk's and the transport's exceptions to our error tree."""
    kw: dict[str, Any] = {"system": SYSTEM, "operation": operation, "subject": subject}
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = getattr(response, "status_code", 200)
        data = response.data if response is not None and isinstance(response.data, dict) else {}
        code = str(data.get("error") or "unknown_error")
        retry_after = _retry_after(response)
        if status != 200:  # 429 and 5xx come as HTTP statuses, not only as error codes
            return error_for_status(status, code, retry_after=retry_after, **kw)
        if code in _TRANSIENT:
            return TransientError(code, retry_after=retry_after, **kw)
        if code in _NOT_FOUND:
            return NotFoundError(code, **kw)
        if code in _AUTH:
            return AuthError(code, **kw)
        return InvalidRequestError(code, **kw)
    if isinstance(exc, TimeoutError) or (
        isinstance(exc, URLError) and isinstance(exc.reason, TimeoutError)
    ):
        return TransientError("timed out", **kw)
    if isinstance(exc, OSError | HTTPException):  # URLError, connection refused or reset, …
        reason = exc.reason if isinstance(exc, URLError) else type(exc).__name__
        return TransientError(f"connection failed ({reason})", **kw)
    # SlackClientError: e.g. a malformed body; nothing a retry fixes
    return InvalidRequestError(f"{type(exc).__name__}: {exc}", **kw)


class SlackMessenger:
    """The Messenger capability over the Slack Web API.

    Args:
        settings: where Slack is and the bot token; ``load_settings()`` when omitted.
        client: a ready ``WebClient`` to use instead (its own base URL, token and handlers).
        attempts: how many times a transient failure is tried in all (our layer).
        max_seconds: the bound on the time spent retrying one call.
        clock: seconds, monotonic; how long an unknown email is believed is measured on it.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        client: WebClient | None = None,
        attempts: int = 6,
        max_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if client is None:
            settings = settings or load_settings()
            client = WebClient(
                base_url=settings.slack_api_url.rstrip("/") + "/",
                token=settings.slack_bot_token.get_secret_value(),
                timeout=15,
                retry_handlers=[
                    ConnectionErrorRetryHandler(max_retry_count=1),
                    RateLimitErrorRetryHandler(max_retry_count=2),
                ],
            )
        self.client = client
        self.base_url = client.base_url
        self.attempts, self.max_seconds = attempts, max_seconds
        # Slack's tiers are floors ("50+ per minute"); a workspace allowed more scales them.
        self.rate_scale = settings.slack_rate_scale if settings is not None else 1.0
        self._clock = clock
        # The limits in use where it is built (shared ones inside use_shared_limits): its
        # buckets, per method and per channel, are made as calls need them.
        self.limits = current_limits()
        self._user_ids: dict[str, str] = {}
        self._unknown: dict[str, float] = {}  # email -> when Slack last said "no such user"
        self._emails: dict[str, str] = {}
        self._dm_channels: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the client: it holds the token
        return f"SlackMessenger(base_url={self.base_url!r})"

    # ---------------------------------------------------------------- the one way to call
    def _call(
        self,
        method: str,
        fn: Callable[[], SlackResponse],
        *,
        operation: str,
        subject: str | None = None,
        channel: str | None = None,
    ) -> SlackResponse:
        """One Web API call: wait for the method's bucket (and the channel's, for a post),
        translate errors, retry transients."""
        scale = self.rate_scale
        limiter = self.limits.limiter_for(
            f"slack {method}", self.base_url, METHOD_LIMITS.get(method, 50) * scale
        )
        per_channel = (
            self.limits.limiter_for(
                f"slack {method} {channel}", self.base_url, PER_CHANNEL_POSTS_PER_MINUTE * scale
            )
            if channel
            else None
        )

        def attempt() -> SlackResponse:
            if per_channel is not None:
                per_channel.acquire()
            limiter.acquire()
            try:
                return fn()
            except (SlackClientError, OSError, HTTPException) as exc:  # URLError is an OSError
                err = _translate(exc, operation=operation, subject=subject)
                if isinstance(err, TransientError) and err.status_code == 429:
                    limiter.penalize(err.retry_after or 1.0)
                raise err from exc

        return call_with_retry(attempt, attempts=self.attempts, max_seconds=self.max_seconds)

    # ---------------------------------------------------------------- people
    def user_id(self, email: str) -> str | None:
        """The Slack user id of the person with this email, or None if Slack has nobody.

        Args:
            email: compared case-insensitively, as Slack does.

        Returns:
            e.g. ``U0ABCDEF12``; None for no (active) account.

        Raises:
            ConnectorError: any other failure (auth, transport after retries).
        """
        key = email.strip().lower()
        if key in self._user_ids:
            return self._user_ids[key]
        said_unknown = self._unknown.get(key)
        if said_unknown is not None and self._clock() - said_unknown < UNKNOWN_FOR:
            return None
        try:
            resp = self._call(
                "users.lookupByEmail",
                lambda: self.client.users_lookupByEmail(email=key),
                operation="lookup_user",
                subject=key,
            )
        except NotFoundError:
            with self._lock:
                self._unknown[key] = self._clock()
            return None
        uid = str(resp["user"]["id"])
        with self._lock:
            self._user_ids[key] = uid
            self._emails.setdefault(uid, key)
        return uid

    def email_of(self, user_id: str) -> str | None:
        """The email of a Slack user (e.g. the one who clicked a button), or None.

        Args:
            user_id: a Slack user id.

        Returns:
            The email in lower case; None for an unknown user or one without a visible email.

        Raises:
            ConnectorError: any other failure.
        """
        if user_id in self._emails:
            return self._emails[user_id]
        found = self.member(user_id)
        email = found.email if found is not None else ""
        if not email:  # no such user, the app lacks users:read.email, or a bot
            return None
        with self._lock:
            self._emails[user_id] = email
            self._user_ids.setdefault(email, user_id)
        return email

    def member(self, user_id: str) -> ChatMember | None:
        """The account behind a click as Slack describes it now (``users.info``): its
        workspace, email, and whether it is deactivated, a guest or a bot.

        Not cached, unlike :meth:`email_of`: an account deactivated or made a guest a minute ago
        must not click with its old standing. ``users.info`` is tier 4 (100 a minute), far
        above how often people click.

        Args:
            user_id: a Slack user id (a click's ``user.id``).

        Returns:
            The member, or None when Slack has no such user.

        Raises:
            ConnectorError: any other failure, after retries.
        """
        try:
            resp = self._call(
                "users.info",
                lambda: self.client.users_info(user=user_id),
                operation="user_info",
                subject=user_id,
            )
        except NotFoundError:
            return None
        found = resp.get("user")
        user: dict[str, Any] = found if isinstance(found, dict) else {}
        shown = user.get("profile")
        profile: dict[str, Any] = shown if isinstance(shown, dict) else {}
        return ChatMember(
            id=str(user.get("id") or user_id),
            team_id=str(user.get("team_id") or ""),
            email=str(profile.get("email") or "").strip().lower(),
            # Slack sends each flag for every user; one missing is read as the refused side,
            # so a changed or partial answer never lets a click through.
            deleted=user.get("deleted") is not False,
            # Slack's two guest kinds: multi-channel (restricted), single-channel (ultra).
            guest=any(user.get(k) is not False for k in ("is_restricted", "is_ultra_restricted")),
            bot=user.get("is_bot") is not False,
        )

    def _dm_channel(self, email: str) -> str:
        key = email.strip().lower()
        if key in self._dm_channels:
            return self._dm_channels[key]
        uid = self.user_id(key)
        if uid is None:
            raise NotFoundError(
                "no Slack account with this email", system=SYSTEM, operation="dm", subject=key
            )
        resp = self._call(
            "conversations.open",
            lambda: self.client.conversations_open(users=uid),
            operation="open_dm",
            subject=key,
        )
        channel = str(resp["channel"]["id"])
        with self._lock:
            self._dm_channels[key] = channel
        return channel

    # ---------------------------------------------------------------- messages
    def dm(self, email: str, text: str, blocks: list[dict[str, Any]] | None = None) -> MessageRef:
        """A direct message to a person, found by email.

        Args:
            email: the person's email (case-insensitive).
            text: the notification text (and what clients without blocks show), plain: it is
                shown as written (``&``, ``<``, ``>`` escaped for mrkdwn here).
            blocks: Block Kit blocks, e.g. from :mod:`domain.blocks`.

        Returns:
            Where the message lives, to update it later.

        Raises:
            NotFoundError: nobody in Slack has this email (or the account is deactivated).
            AuthError: the bot token is wrong or lacks a scope.
            ConnectorError: any other failure, after retries.
        """
        channel = self._dm_channel(email)
        return self._post(channel, text, blocks, operation="dm", subject=email.strip().lower())

    def post(
        self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> MessageRef:
        """A message to a channel, by id or name (``#it-access`` or ``it-access``).

        Args:
            channel: the channel.
            text: the notification text, plain (escaped for mrkdwn here).
            blocks: Block Kit blocks.

        Returns:
            Where the message lives.

        Raises:
            NotFoundError: no such channel.
            ConnectorError: any other failure, after retries.
        """
        return self._post(channel, text, blocks, operation="post", subject=channel)

    def _post(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None,
        *,
        operation: str,
        subject: str,
    ) -> MessageRef:
        # Every message text is shown as written (domain/escaping.py): a ticket line holding
        # "<!channel>" or "<http://evil|click>" notifies nobody and links nowhere. Blocks are
        # escaped by their builders (domain/blocks.py).
        kwargs: dict[str, Any] = {"channel": channel, "text": mrkdwn(text)}
        if blocks is not None:
            kwargs["blocks"] = blocks
        resp = self._call(
            "chat.postMessage",
            lambda: self.client.chat_postMessage(**kwargs),
            operation=operation,
            subject=subject,
            channel=channel,
        )
        return MessageRef(channel=str(resp["channel"]), ts=str(resp["ts"]))

    def update(
        self, ref: MessageRef, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> WriteResult:
        """Replace a posted message's text (and blocks).

        ``blocks=None`` leaves the message's blocks as they are, as Slack does; pass ``[]`` to
        remove them (e.g. the buttons of a decided approval, when no new blocks are given).

        Args:
            ref: the message, as :meth:`dm` or :meth:`post` returned it.
            text: the new text, plain (escaped for mrkdwn here).
            blocks: the new blocks.

        Returns:
            ``updated`` (setting the same content again is harmless, so retries are safe).

        Raises:
            NotFoundError: the channel or the message does not exist.
            ConnectorError: any other failure, after retries.
        """
        kwargs: dict[str, Any] = {"channel": ref.channel, "ts": ref.ts, "text": mrkdwn(text)}
        if blocks is not None:
            kwargs["blocks"] = blocks
        self._call(
            "chat.update",
            lambda: self.client.chat_update(**kwargs),
            operation="update_message",
            subject=f"{ref.channel}/{ref.ts}",
        )
        return WriteResult(effect=Effect.UPDATED, detail={"channel": ref.channel, "ts": ref.ts})

    # ---------------------------------------------------------------- modals
    def open_view(self, trigger_id: str, view: dict[str, Any]) -> str:
        """Open a modal (``views.open``) for the person whose click carried ``trigger_id``
        (Slack accepts it for 3 seconds after the click); the view's id.

        Raises:
            ConnectorError: Slack refused (an expired trigger: ``expired_trigger_id``) or
                could not answer, after retries.
        """
        resp = self._call(
            "views.open",
            lambda: self.client.views_open(trigger_id=trigger_id, view=view),
            operation="open_view",
        )
        opened = resp["view"]
        return str(opened["id"]) if isinstance(opened, dict) else ""
