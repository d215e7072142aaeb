"""Settings and credentials (INTERFACES.md "Configuration"): environment variables
``HANDOVER_*``, a ``.env`` or a ``handover.toml``; defaults point at the sandbox on
127.0.0.1:8800 with its published development credentials.

Secrets are ``SecretStr`` (masked in every repr). The published development credentials work
only in the explicit sandbox mode (``HANDOVER_SANDBOX=1``, which ``make demo``, ``make up`` and
the tests set) and only towards loopback; anywhere else Handover refuses to start with one.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from domain.request_kind import RequestKinds

SANDBOX = "http://127.0.0.1:8800"
# The intake `handover up` serves (cli/up.py: --port-intake): where the links in DMs point.
SANDBOX_INTAKE = "http://127.0.0.1:8801"
# HANDOVER_SECRETS_KEY: key material, not a password (HKDF derives the keys from it).
SECRETS_KEY_MIN_CHARS = 32
# The sandbox Slack's workspace and app (sandbox/slack.py, which production code cannot import):
# the defaults of the workspace and app a click must come from.
SANDBOX_SLACK_TEAM_ID = "T0SANDBOX1"
SANDBOX_SLACK_APP_ID = "A0HANDOVER"

# The web console's roles that come from IdP groups, and the groups' default display names.
ConsoleRole = Literal["it_admin", "security", "auditor"]
DEFAULT_CONSOLE_GROUPS: dict[ConsoleRole, str] = {
    "it_admin": "handover-it-admins",
    "security": "handover-security",
    "auditor": "handover-auditors",
}

# The published development credentials of the sandbox (README) — never valid elsewhere.
ORG_BACKENDS = ("amplitude", "sandbox")  # connectors.org.make_org builds each
# HANDOVER_IDP_KIND: connectors.idp.make_idp builds each; the sandbox imitates each (its
# default URL per kind: _IDP_URLS).
IDP_KINDS = ("scim", "okta", "entra")
# The sandbox's Entra tenant (a real one is a GUID too; HANDOVER_IDP_TENANT_ID).
SANDBOX_TENANT_ID = "5a7d0c2e-0000-4000-8000-5a4db0c5e5e5"
# The application (client) id of Handover's app registration in the sandbox's tenant; its secret
# is SANDBOX_ONLY_CREDENTIALS["idp_client_secret"] (HANDOVER_IDP_CLIENT_ID elsewhere).
SANDBOX_ENTRA_CLIENT_ID = "4a1d0c2e-0000-4000-8000-4a4d0c5e5e5e"
# Where each IdP kind's API sits in the sandbox (under its root URL).
SANDBOX_IDP_PATHS = {"scim": "/idp/scim/v2", "okta": "/okta", "entra": "/graph/v1.0"}
_ENTRA_LOGIN = "https://login.microsoftonline.com"
# An Okta org's URL is https://<org>.okta.com (/api/v1 under it); Microsoft Graph's root is
# https://graph.microsoft.com/v1.0.
_IDP_URLS = {kind: f"{SANDBOX}{path}" for kind, path in SANDBOX_IDP_PATHS.items()}
# The HR systems whose API the roster can be read from (HANDOVER_HR_API), and their sandbox URLs.
HR_APIS = ("hibob", "bamboohr", "merge", "personio")
# Where each HR system's API sits in the sandbox; the real ones: https://api.hibob.com/v1,
# https://api.bamboohr.com/api/gateway.php/<company>, https://api.merge.dev/api/hris/v1,
# https://api.personio.de/v2.
SANDBOX_HR_PATHS = {
    "hibob": "/hibob/v1",
    "bamboohr": "/bamboohr/api/gateway.php/acme",
    "merge": "/merge/api/hris/v1",
    "personio": "/personio/v2",
}
_HR_API_URLS = {vendor: f"{SANDBOX}{path}" for vendor, path in SANDBOX_HR_PATHS.items()}
# The sandbox's HiBob service user id and Personio client id (not secrets: ids).
SANDBOX_HR_API_USER = "sandbox-hr-user"
# Credentials that exist only where a kind or vendor is chosen: empty by default, and in sandbox
# mode filled with these published values (so a real deployment never carries one it does not use,
# and check_safe has nothing to refuse there).
SANDBOX_ONLY_CREDENTIALS: dict[str, str] = {
    "idp_client_secret": "sandbox-entra-secret",
    "hr_hibob_secret": "sandbox-hibob-secret",
    "hr_bamboohr_secret": "sandbox-bamboohr-secret",
    "hr_personio_token": "sandbox-personio-token",
    "hr_merge_key": "sandbox-merge-key",
    "hr_api_token": "sandbox-hr-api-token",
    "hr_api_account_token": "sandbox-merge-account-token",
}
DEV_CREDENTIALS: dict[str, str] = {
    "org_scim_token": "sandbox-scim-key",
    "org_admin_token": "sandbox-admin-token",
    "idp_token": "sandbox-idp-token",
    "slack_bot_token": "xoxb-sandbox",
    "slack_signing_secret": "sandbox-signing-secret",
    "jira_token": "sandbox-jira-token",
    "hr_webhook_secret": "sandbox-hr-secret",
    "jira_webhook_secret": "sandbox-jira-secret",
    # The key that authenticates the audit log (ledger/anchor.py); it is sent nowhere.
    "audit_key": "sandbox-audit-key",
    # Encrypts rotated secrets in the ledger and signs the intake's sign-in cookies.
    "secrets_key": "sandbox-secrets-key-published-not-secret",
}
# A real audit key's least length (`openssl rand -hex 32` gives 64 characters: use that).
AUDIT_KEY_MIN = 16
# Which URL each credential is sent to; the inbound secrets (webhooks, Slack's signing secret)
# guard our own intake, so it is the intake that must be on loopback for them — never the URL of
# an outbound system, which says nothing about who can reach the intake.
_CREDENTIAL_URL = {
    "org_scim_token": "org_url",
    "org_admin_token": "org_url",
    "idp_token": "idp_url",
    "slack_bot_token": "slack_api_url",
    "slack_signing_secret": "intake_url",
    "jira_token": "jira_url",
    "hr_webhook_secret": "intake_url",
    "jira_webhook_secret": "intake_url",
    "secrets_key": "intake_url",  # whose links the key's sealed secrets are retrieved from
    "idp_client_secret": "idp_token_url",
    "hr_hibob_secret": "intake_url",
    "hr_bamboohr_secret": "intake_url",
    "hr_personio_token": "intake_url",
    "hr_merge_key": "intake_url",
    "hr_api_token": "hr_api_url",
    "hr_api_account_token": "hr_api_url",
}


class SettingsError(ValueError):
    """The configuration cannot be used (said without ever printing a secret)."""


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


ORG_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


class OrgSettings(BaseModel):
    """Another org than the main one (``HANDOVER_EXTRA_ORGS``, e.g. the QA org): where it is,
    which backend, and its tokens."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000)
    backend: str = "sandbox"
    scim_token: SecretStr
    admin_token: SecretStr = SecretStr("")


class Settings(BaseSettings):
    """Where the outside systems are, and how to authenticate to them."""

    model_config = SettingsConfigDict(
        env_prefix="HANDOVER_", env_file=".env", toml_file="handover.toml", extra="ignore"
    )

    # The main org (seed 003: "the production org"), and any other (e.g. {"qa": {"url": …,
    # "backend": "sandbox", "scim_token": …, "admin_token": …}}, as JSON): offboarding removes
    # a person from every one of them.
    org_name: str = "production"
    extra_orgs: dict[str, OrgSettings] = Field(default_factory=dict)
    org_url: str = SANDBOX
    org_scim_token: SecretStr = SecretStr(DEV_CREDENTIALS["org_scim_token"])
    org_admin_token: SecretStr = SecretStr(DEV_CREDENTIALS["org_admin_token"])
    # "sandbox": the admin API covers transfers, keys, project roles; "amplitude": SCIM only
    # (docs/deployment.md: what the runbooks cannot do on it yet).
    org_backend: str = "sandbox"
    # The org is provisioned by the IdP (SCIM): onboarding pre-provisions there, not by invite.
    idp_managed: bool = False
    org_scim_rate_per_minute: int = 100
    org_admin_rate_per_minute: int = 600
    # Which IdP (IDP_KINDS): its API root in idp_url (default: the sandbox's imitation of it).
    idp_kind: str = "scim"
    idp_url: str = ""
    # SCIM: the bearer token; Okta: an API token (``SSWS``) unless idp_client_id is set.
    idp_token: SecretStr = SecretStr(DEV_CREDENTIALS["idp_token"])
    # OAuth 2.0 client credentials: Okta's service app (private_key_jwt with idp_private_key, a
    # PEM or a JWK) or Entra's app registration (idp_client_secret), at idp_token_url (default:
    # Okta's ``<idp_url>/oauth2/v1/token``; Entra's token endpoint of idp_tenant_id).
    idp_client_id: str = ""
    idp_client_secret: SecretStr = SecretStr("")
    idp_private_key: SecretStr = SecretStr("")
    idp_tenant_id: str = ""
    idp_token_url: str = ""
    idp_rate_per_minute: int = 600
    # Where every rate limit (the org's, the IdP's, Slack's, Jira's) is counted: "shared" (the
    # default) in the ledger's database, so every process of a deployment (workers, the intake,
    # the CLI) spends one allowance per backend together; "process": each process its own
    # buckets (then N processes may send N times the limit).
    rate_limits: Literal["shared", "process"] = "shared"
    slack_api_url: str = f"{SANDBOX}/slack/api/"
    slack_bot_token: SecretStr = SecretStr(DEV_CREDENTIALS["slack_bot_token"])
    # Slack's published tiers are floors ("50+ per minute"): a workspace whose app is allowed
    # more (or a sandbox, which has no limit) multiplies every Slack bucket by this.
    slack_rate_scale: float = Field(default=1.0, gt=0)
    slack_signing_secret: SecretStr = SecretStr(DEV_CREDENTIALS["slack_signing_secret"])
    # A signed click counts only from this workspace (the payload's ``team.id``) and this app
    # (``api_app_id``): the signing secret is per app, but one leaked or shared secret must not
    # let another workspace's or app's clicks decide here.
    slack_team_id: str = Field(SANDBOX_SLACK_TEAM_ID, min_length=1, max_length=64)
    slack_app_id: str = Field(SANDBOX_SLACK_APP_ID, min_length=1, max_length=64)
    jira_url: str = f"{SANDBOX}/jira"
    jira_user: str = "handover"
    jira_token: SecretStr = SecretStr(DEV_CREDENTIALS["jira_token"])
    # Jira Cloud publishes no fixed limit (it answers 429 with Retry-After): a cautious default.
    jira_rate_per_minute: int = Field(300, ge=1)
    hr_webhook_secret: SecretStr = SecretStr(DEV_CREDENTIALS["hr_webhook_secret"])
    # The HR vendors' webhooks (/hooks/hr/<vendor>), each verified in its vendor's own scheme;
    # a vendor whose secret is empty is not configured (its route refuses everything).
    hr_hibob_secret: SecretStr = SecretStr("")
    hr_bamboohr_secret: SecretStr = SecretStr("")
    hr_personio_token: SecretStr = SecretStr("")
    hr_merge_key: SecretStr = SecretStr("")
    # The HR system's API (HR_APIS; "": none): where BambooHR's events are read from, and the
    # roster of access reviews when no roster file is given.
    hr_api: str = ""
    hr_api_url: str = ""
    hr_api_user: str = ""  # HiBob's service user id
    hr_api_token: SecretStr = SecretStr("")  # HiBob's service user token; BambooHR's / Merge's key
    hr_api_account_token: SecretStr = SecretStr("")  # Merge's X-Account-Token (the linked HR)
    jira_webhook_secret: SecretStr = SecretStr(DEV_CREDENTIALS["jira_webhook_secret"])
    # Which tickets are access requests: issue type names (Jira Software) or request types
    # (Jira Service Management), comma-separated, and/or a label.
    jira_request_types: str = "Access Request"
    jira_request_label: str = ""
    ledger_url: str | None = None
    policy: Path | None = None
    roster: Path | None = None  # the HR roster (CSV or JSON) the runbooks read managers from
    home: Path = Path(".handover")
    # The audit log's key (never stored in the ledger) and where its head is checkpointed
    # (default ``<home>/audit-checkpoint.jsonl``; best on another volume than the ledger's).
    audit_key: SecretStr = SecretStr(DEV_CREDENTIALS["audit_key"])
    audit_checkpoint: Path | None = None
    # The explicit sandbox mode (HANDOVER_SANDBOX=1): development credentials and the
    # self-declared `--as` are accepted only then. Never inferred from a URL: a loopback URL
    # may be a tunnel to a real system.
    sandbox: bool = False
    # Who signs people in (OpenID Connect): the IdP's issuer and Handover's public client there.
    oidc_issuer: str = f"{SANDBOX}/idp/oidc"
    oidc_client_id: str = "handover-cli"
    # The browser's client at the same IdP (authorization code + PKCE, public): the intake's
    # sign-in before a rotated secret is shown (intake/secrets_page.py). Its redirect URI is
    # ``<intake_url>/secrets/callback``.
    oidc_web_client_id: str = "handover-console"
    # The intake as people's browsers reach it: the base of the links sent in Slack.
    intake_url: str = Field(SANDBOX_INTAKE, pattern=r"^https?://[^/\s?#]+(/[^\s?#]*)?$")
    # Encrypts each rotated key's new secret in the ledger until its recipient retrieves it,
    # and signs the intake's sign-in cookies. Lives outside the ledger: whoever holds the
    # database alone cannot read a secret. At least 32 characters of random
    # (`python -c "import secrets; print(secrets.token_urlsafe(32))"`).
    secrets_key: SecretStr = SecretStr(DEV_CREDENTIALS["secrets_key"])
    # How long a rotated secret's link works; after that the secret is erased unread.
    secret_link_hours: int = Field(24, ge=1, le=168)
    # The web console's roles from the IdP's groups (approvals/console_roles.py): role → the
    # display name of the IdP group whose members hold it. As JSON in the environment:
    # HANDOVER_CONSOLE_GROUPS='{"security": "sec-team", ...}'. Every active IdP user is a
    # requester; approvers are whoever holds a seat of the approval at hand.
    console_groups: dict[ConsoleRole, str] = Field(
        default_factory=lambda: dict(DEFAULT_CONSOLE_GROUPS)
    )
    # The Prefect UI people's browsers reach, for the console's links to flow runs ("": none).
    prefect_ui_url: str = ""

    @model_validator(mode="after")
    def _kind_defaults(self) -> Settings:
        """The URLs of the chosen IdP kind and HR API where none is set, and the credentials
        only the sandbox has values for (SANDBOX_ONLY_CREDENTIALS), in sandbox mode."""
        kind = self.idp_kind.strip().lower()
        if not self.idp_url and kind in _IDP_URLS:
            self.idp_url = _IDP_URLS[kind]
        if kind == "entra" and self.sandbox and is_loopback(self.idp_url):
            self.idp_tenant_id = self.idp_tenant_id or SANDBOX_TENANT_ID
            self.idp_client_id = self.idp_client_id or SANDBOX_ENTRA_CLIENT_ID
        if not self.idp_token_url:
            if kind == "okta":
                self.idp_token_url = self.idp_url.rstrip("/") + "/oauth2/v1/token"
            elif kind == "entra" and self.idp_tenant_id:
                # The sandbox's Microsoft identity platform sits beside its Graph.
                where = urlsplit(self.idp_url)
                sandbox = f"{where.scheme}://{where.netloc}/entra"
                base = sandbox if is_loopback(self.idp_url) else _ENTRA_LOGIN
                self.idp_token_url = f"{base}/{self.idp_tenant_id}/oauth2/v2.0/token"
        hr = self.hr_api.strip().lower()
        if not self.hr_api_url and hr in _HR_API_URLS:
            self.hr_api_url = _HR_API_URLS[hr]
        if self.sandbox and hr in ("hibob", "personio") and not self.hr_api_user:
            self.hr_api_user = SANDBOX_HR_API_USER  # the sandbox's service user / client id
        if self.sandbox:
            for name, value in SANDBOX_ONLY_CREDENTIALS.items():
                url = getattr(self, _CREDENTIAL_URL[name])
                # Only towards the sandbox: never a published value for a real system's URL.
                if not getattr(self, name).get_secret_value() and (not url or is_loopback(url)):
                    setattr(self, name, SecretStr(value))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments, then the environment, then .env, then handover.toml.
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls),
            file_secret_settings,
        )

    def secret_values(self) -> list[str]:
        """Every configured secret, for the log redaction filter and the leak tests."""
        out = [
            t.get_secret_value()
            for o in self.extra_orgs.values()
            for t in (o.scim_token, o.admin_token)
            if t.get_secret_value()
        ]
        for name, value in self:
            if isinstance(value, SecretStr) and value.get_secret_value():
                out.append(value.get_secret_value())
            elif name == "ledger_url" and value and "@" in str(value):
                password = urlsplit(str(value)).password
                if password:
                    out.append(password)
        # Prefect's API credential (``handover up`` makes one): a secret of ours in every log.
        prefect_auth = os.environ.get("PREFECT_API_AUTH_STRING", "")
        if prefect_auth:
            out += [prefect_auth, prefect_auth.partition(":")[2]]
        return out

    def check_safe(self) -> None:
        """Refuse a development credential outside sandbox mode, or sent anywhere but
        loopback even in sandbox mode.

        Raises:
            SettingsError: naming the settings to set (never their values).
        """
        dev_used = [
            name
            for name, dev in (DEV_CREDENTIALS | SANDBOX_ONLY_CREDENTIALS).items()
            if getattr(self, name).get_secret_value() == dev
        ]
        dev = {DEV_CREDENTIALS["org_scim_token"], DEV_CREDENTIALS["org_admin_token"]}
        extra_used = [
            name
            for name, o in self.extra_orgs.items()
            if {o.scim_token.get_secret_value(), o.admin_token.get_secret_value()} & dev
        ]
        if not self.sandbox and (dev_used or extra_used):
            names = [f"HANDOVER_{n.upper()}" for n in dev_used]
            names += [f"HANDOVER_EXTRA_ORGS[{n}]" for n in extra_used]
            raise SettingsError(
                "the sandbox's published development credentials work only in sandbox mode: "
                f"set HANDOVER_SANDBOX=1 to use the sandbox, or set {', '.join(names)}"
            )
        if not self.sandbox and len(self.audit_key.get_secret_value()) < AUDIT_KEY_MIN:
            raise SettingsError(
                f"HANDOVER_AUDIT_KEY must be at least {AUDIT_KEY_MIN} characters outside "
                "sandbox mode (e.g. the output of `openssl rand -hex 32`)"
            )
        # A credential sent nowhere (the audit key) has no URL to check.
        # A credential whose URL is unset (an HR API nobody chose) is sent nowhere either.
        bad = [
            n
            for n in dev_used
            if n in _CREDENTIAL_URL
            and getattr(self, _CREDENTIAL_URL[n])
            and not is_loopback(getattr(self, _CREDENTIAL_URL[n]))
        ]
        bad += [f"EXTRA_ORGS[{n}]" for n in extra_used if not is_loopback(self.extra_orgs[n].url)]
        if bad:
            raise SettingsError(
                "the sandbox's published development credentials cannot be used outside the "
                f"sandbox: set {', '.join('HANDOVER_' + b.upper() for b in bad)}"
            )

    def check_secrets_key(self) -> None:
        """The secrets key is long enough to be key material.

        Raises:
            SettingsError: it is shorter than 32 characters (never saying what it is).
        """
        if len(self.secrets_key.get_secret_value()) < SECRETS_KEY_MIN_CHARS:
            raise SettingsError(
                f"HANDOVER_SECRETS_KEY must be at least {SECRETS_KEY_MIN_CHARS} characters "
                "of random (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )

    def check_orgs(self) -> None:
        """The orgs' names and backends.

        Raises:
            SettingsError: a name that is not lower-case letters, digits and dashes, an extra
                org named as the main one, or an unknown backend.
        """
        for name in (self.org_name, *self.extra_orgs):
            if not ORG_NAME.match(name):
                raise SettingsError(
                    f"org name {name!r}: lower-case letters, digits and dashes (at most 31)"
                )
        if self.org_name in self.extra_orgs:
            raise SettingsError(f"HANDOVER_EXTRA_ORGS names the main org {self.org_name!r}")
        for name, o in self.extra_orgs.items():
            if o.backend.strip().lower() not in ORG_BACKENDS:
                raise SettingsError(
                    f"HANDOVER_EXTRA_ORGS[{name}].backend must be one of "
                    f"{', '.join(ORG_BACKENDS)}, not {o.backend!r}"
                )

    def for_org(self, name: str) -> Settings:
        """These settings with ``name``'s org as the org (the main org: these settings).

        Raises:
            SettingsError: no such org.
        """
        if name in ("", self.org_name):
            return self
        o = self.extra_orgs.get(name)
        if o is None:
            known = ", ".join([self.org_name, *sorted(self.extra_orgs)])
            raise SettingsError(f"unknown org {name!r}: the orgs are {known}")
        return self.model_copy(
            update={
                "org_name": name,
                "extra_orgs": {},
                "org_url": o.url,
                "org_backend": o.backend,
                "org_scim_token": o.scim_token,
                "org_admin_token": o.admin_token,
            }
        )

    def org_backend_kind(self) -> str:
        """``org_backend`` as one of :data:`ORG_BACKENDS` (case and spaces ignored).

        Raises:
            SettingsError: it names neither.
        """
        backend = self.org_backend.strip().lower()
        if backend not in ORG_BACKENDS:
            raise SettingsError(
                f"HANDOVER_ORG_BACKEND must be one of {', '.join(ORG_BACKENDS)}, "
                f"not {self.org_backend!r}"
            )
        return backend

    def idp_kind_checked(self) -> str:
        """``idp_kind`` as one of :data:`IDP_KINDS` (case and spaces ignored).

        Raises:
            SettingsError: it names none of them.
        """
        kind = self.idp_kind.strip().lower()
        if kind not in IDP_KINDS:
            raise SettingsError(
                f"HANDOVER_IDP_KIND must be one of {', '.join(IDP_KINDS)}, not {self.idp_kind!r}"
            )
        return kind

    def hr_api_checked(self) -> str:
        """``hr_api`` as one of :data:`HR_APIS`, or "" (none).

        Raises:
            SettingsError: it names another.
        """
        vendor = self.hr_api.strip().lower()
        if vendor and vendor not in HR_APIS:
            raise SettingsError(
                f"HANDOVER_HR_API must be one of {', '.join(HR_APIS)} (or empty), "
                f"not {self.hr_api!r}"
            )
        return vendor

    def request_types(self) -> list[str]:
        """``jira_request_types`` as names (comma-separated; blanks dropped)."""
        return [t.strip() for t in self.jira_request_types.split(",") if t.strip()]

    def request_kinds(self) -> RequestKinds:
        """Which tickets are access requests (``domain.request_kind``): the request types and
        the label.

        Raises:
            SettingsError: neither is set, or the label has spaces.
        """
        try:
            return RequestKinds(
                types=tuple(self.request_types()), label=self.jira_request_label.strip()
            )
        except ValidationError as e:
            why = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in e.errors())
            raise SettingsError(
                f"HANDOVER_JIRA_REQUEST_TYPES / HANDOVER_JIRA_REQUEST_LABEL: {why}"
            ) from None

    def ledger_database_url(self) -> str:
        return self.ledger_url or f"sqlite:///{self.home / 'ledger.db'}"

    def audit_checkpoint_path(self) -> Path:
        """Where the audit log's head is checkpointed (``HANDOVER_AUDIT_CHECKPOINT``)."""
        return self.audit_checkpoint or self.home / "audit-checkpoint.jsonl"


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, check them, and install the log redaction of their secrets."""
    from connectors.redact import install_redaction

    settings = Settings(**overrides)
    settings.check_safe()
    settings.org_backend_kind()  # a misspelt backend is refused here, not in a run
    settings.idp_kind_checked()
    settings.hr_api_checked()
    settings.check_orgs()
    settings.check_secrets_key()
    install_redaction(settings.secret_values())
    return settings
