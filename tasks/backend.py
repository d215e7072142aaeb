"""What a runbook needs of the org by API, and the clear refusal where the org lacks it.

Real Amplitude offers SCIM only (``HANDOVER_ORG_BACKEND=amplitude``): no project roles,
modules, content or activity by API. Offboarding and onboarding put a human task where they
need those; the runbooks listed here do not yet, so on such an org they end *blocked* before
reading or writing anything, saying what they would need — never a crash halfway, never a
silent skip.
"""

from __future__ import annotations

from prefect import task

from connectors.capabilities import (
    Invitations,
    ModuleAccess,
    ProjectAccess,
    has,
)
from tasks.runtime import UNCACHED, Runtime

# runbook → (the capabilities it reads or writes through, in words for the message)
NEEDS: dict[str, tuple[tuple[type, ...], str]] = {
    "onboard-bulk": ((ProjectAccess, Invitations), "project roles and invitations"),
}


@task(name="org_lacks", cache_policy=UNCACHED)
def org_lacks(rt: Runtime, runbook: str) -> str:
    """Why ``runbook`` cannot run on this org (empty when it can)."""
    caps, what = NEEDS[runbook]
    missing = [c.__name__ for c in caps if not has(rt.org, c)]
    if not missing:
        return ""
    return (
        f"{runbook} does not run on this org yet: it reads or writes {what} by API "
        f"({', '.join(missing)}), which this org ({rt.settings.org_backend}: SCIM only) offers "
        "in its web console only; nothing was read or written"
    )


def roles_by_api(rt: Runtime) -> bool:
    """Whether the org reads and sets project roles and modules by API (else a person does, in
    its console)."""
    return has(rt.org, ProjectAccess) and has(rt.org, ModuleAccess)
