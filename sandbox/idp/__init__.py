"""The sandbox identity provider: SCIM 2.0 users and groups at ``/idp/scim/v2`` (built on
scim2-server, stored in the world's database), whose mapped groups are pushed into the org
(see :mod:`sandbox.org.provisioning`) after every change, as Okta or Entra ID provisioning does.
"""

from sandbox.idp.app import make_idp_app
from sandbox.idp.control import (
    control_router,
    ensure_idp_group,
    ensure_idp_user,
    idp_user_active,
    sync_all,
)
from sandbox.idp.directory import PROVIDER, Directory

__all__ = [
    "PROVIDER",
    "Directory",
    "control_router",
    "ensure_idp_group",
    "ensure_idp_user",
    "idp_user_active",
    "make_idp_app",
    "sync_all",
]
