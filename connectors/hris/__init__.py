"""The HR system: the roster as a file (:mod:`connectors.hris.file`) or read from the HR
vendor's API (:mod:`connectors.hris.api`: HiBob, BambooHR, Merge, and Personio's person read).

:func:`make_roster` picks the roster the settings name: ``HANDOVER_ROSTER`` (a file) first,
else ``HANDOVER_HR_API`` (a vendor's API), else none.
"""

from __future__ import annotations

from connectors.capabilities import Roster
from connectors.hris.api import (
    BambooHrApi,
    HibobApi,
    HrApi,
    MergeApi,
    PersonioApi,
    make_hr_api,
)
from connectors.hris.file import COLUMNS, REQUIRED, RosterError, RosterFile, RowError
from connectors.settings import Settings

# The HR APIs that give a roster (Personio is read for single persons only).
ROSTER_APIS = ("hibob", "bamboohr", "merge")

__all__ = [
    "COLUMNS",
    "REQUIRED",
    "ROSTER_APIS",
    "BambooHrApi",
    "HibobApi",
    "HrApi",
    "MergeApi",
    "PersonioApi",
    "RosterError",
    "RosterFile",
    "RowError",
    "make_hr_api",
    "make_roster",
]


def make_roster(settings: Settings) -> Roster | None:
    """The roster file when one is set, else the HR API's roster, else None.

    Personio is read for single persons only (its webhooks), not as a roster: None.

    Raises:
        RosterError: the roster file is missing or invalid.
        SettingsError: ``HANDOVER_HR_API`` names no known vendor.
    """
    if settings.roster:
        return RosterFile(settings.roster)
    api = make_hr_api(settings)
    return api if isinstance(api, Roster) else None
