"""How a person who acts was authenticated: recorded with every decision and task answer.

Handover records *who* (the IdP user's address) and *how that was proven*: an OIDC sign-in (the
CLI's device flow, the console's authorization code flow), a Slack click from the configured
workspace and app by a full member whose email maps to an IdP user, or — only in sandbox mode —
a self-declared ``--as``. The audit event of a decision names both.
"""

from __future__ import annotations

from dataclasses import dataclass

# The methods Handover knows; an audit reader can tell a proven identity from a declared one.
OIDC_DEVICE = "oidc-device"  # `handover login`: OAuth 2.0 device authorization grant + ID token
OIDC_CODE = "oidc-code"  # the web console: authorization code + PKCE + ID token
SLACK = "slack"  # a signed Slack interaction from the configured workspace and app
SANDBOX_AS = "sandbox-as"  # `--as EMAIL` in sandbox mode: self-declared, never outside it


@dataclass(frozen=True)
class Verified:
    """How one person's identity was established for one action.

    ``subject``: what the authority vouched for (an OIDC ``sub``, a Slack user id);
    ``issuer``: the authority (an OIDC issuer URL, a Slack team id).
    """

    method: str
    subject: str = ""
    issuer: str = ""

    @property
    def proven(self) -> bool:
        """Whether an authority vouched for the person (not a sandbox ``--as``)."""
        return self.method != SANDBOX_AS

    def audit(self) -> dict[str, str]:
        """The fields an audit event records about it."""
        out = {"auth": self.method}
        if self.subject:
            out["auth_subject"] = self.subject
        if self.issuer:
            out["auth_issuer"] = self.issuer
        return out


SELF_DECLARED = Verified(SANDBOX_AS)


@dataclass(frozen=True)
class ChatMember:
    """What the chat workspace says of the account behind a click (Slack's ``users.info``).

    ``team_id``: the workspace the account belongs to (a Slack Connect user from another
    workspace has another); ``guest``: a single- or multi-channel guest (``is_restricted`` /
    ``is_ultra_restricted``); ``deleted``: deactivated; ``bot``: an app's bot user; ``email``:
    the profile's address, lower-case ("" when Slack shows none).
    """

    id: str
    team_id: str
    email: str
    deleted: bool = False
    guest: bool = False
    bot: bool = False
