"""What the org can do by API: real Amplitude offers SCIM only (``HANDOVER_ORG_BACKEND=amplitude``:
no project roles, modules, content or activity by API), where every runbook puts a human task
in place of what it cannot do — never a crash halfway, never a silent skip.
"""

from __future__ import annotations

from connectors.capabilities import ModuleAccess, ProjectAccess, has
from tasks.runtime import Runtime


def roles_by_api(rt: Runtime) -> bool:
    """Whether the org reads and sets project roles and modules by API (else a person does, in
    its console)."""
    return has(rt.org, ProjectAccess) and has(rt.org, ModuleAccess)
