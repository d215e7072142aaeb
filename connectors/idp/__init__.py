"""The identity provider, whichever the organisation runs (``HANDOVER_IDP_KIND``): a generic
SCIM 2.0 service (:mod:`connectors.idp.scim`), Okta's Management API (:mod:`connectors.idp.okta`)
or Microsoft Graph for Entra ID (:mod:`connectors.idp.graph`). Each implements the same
capability Protocols (``connectors.capabilities``: ``UserDirectory``, ``GroupMembership`` and,
where the vendor has an API for it, ``SessionControl``) and passes the same contract suite
(tests/connectors/test_idp_contract.py); :func:`make_idp` builds the one the settings name.
"""

from __future__ import annotations

from connectors.capabilities import IdentityProvider
from connectors.idp.graph import GraphIdp
from connectors.idp.okta import OktaIdp
from connectors.idp.scim import ScimIdp
from connectors.settings import IDP_KINDS, Settings, SettingsError

__all__ = ["IDP_KINDS", "GraphIdp", "OktaIdp", "ScimIdp", "make_idp"]


def make_idp(settings: Settings) -> IdentityProvider:
    """The IdP connector of ``settings.idp_kind``.

    Raises:
        SettingsError: an unknown kind (the settings already refuse one; kept for callers that
            build settings by hand).
    """
    match settings.idp_kind.strip().lower():
        case "scim":
            return ScimIdp(settings)
        case "okta":
            return OktaIdp(settings)
        case "entra":
            return GraphIdp(settings)
    raise SettingsError(f"unknown IdP kind {settings.idp_kind!r}: one of {', '.join(IDP_KINDS)}")
