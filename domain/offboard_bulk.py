"""Bulk offboarding (``handover offboard --csv FILE``): the list of leavers, and the batch that
one approval covers.

Pure: no I/O. The file is either a CSV whose header names an ``email`` column (other columns,
such as a name or a department from an HR export, are ignored), or one address per line with no
header. A UTF-8 BOM, CRLF line ends, blank lines and ``#`` comment lines are fine.

A bad entry (not an email, or an address given earlier) is reported with its line and does not
stop the others. Every good entry is planned by the single-person planner
(:func:`domain.plan.make_offboarding_plan`); the batch's hash covers each entry's plan hash and
error, so approvers approve exactly these plans.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass

from domain.access_request import _email
from domain.plan import Inventory, Plan
from domain.runbook import batch_counts, batch_hash

MAX_LEAVERS = 5000
# What an approval message shows of a batch (the flow's table artifact lists every leaver).
SHOWN = 20


class LeaverFileError(ValueError):
    """The file as a whole cannot be used (empty, a header without ``email``, too long)."""


@dataclass(frozen=True)
class Leaver:
    """One entry of the file: its line (1-based), the address, or why it cannot be used."""

    line: int
    email: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def parse_leavers(text: str) -> list[Leaver]:
    """Every entry of a leavers file, in file order (see the module docstring).

    Raises:
        LeaverFileError: the file has no entry, a header without ``email``, or more than
            ``MAX_LEAVERS`` entries.
    """
    rows = [
        (n, row)
        for n, row in enumerate(csv.reader(io.StringIO(text.removeprefix("\ufeff"))), 1)
        if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")
    ]
    if not rows:
        raise LeaverFileError("the file is empty: expected one email per line, or a CSV header")
    column = 0
    header = [c.strip().casefold() for c in rows[0][1]]
    if "@" not in ",".join(header):
        if "email" not in header:
            raise LeaverFileError(
                f"line {rows[0][0]} (header): no 'email' column (columns: {', '.join(header)})"
            )
        column = header.index("email")
        rows = rows[1:]
    if len(rows) > MAX_LEAVERS:
        raise LeaverFileError(f"{len(rows)} entries: at most {MAX_LEAVERS} in one batch")
    out: list[Leaver] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        raw = row[column].strip() if column < len(row) else ""
        email, why = _email(raw)
        if email is None:
            out.append(Leaver(line, raw, why or "not an email"))
        elif email in seen:
            out.append(Leaver(line, email, f"already on line {seen[email]}"))
        else:
            seen[email] = line
            out.append(Leaver(line, email))
    return out


@dataclass
class BatchMember:
    """One leaver of a batch: the plan made for them, or why there is none."""

    index: int  # 1-based position in the batch (the CLI maps it back to a line)
    email: str
    plan: Plan | None = None
    error: str = ""
    invalid: bool = False  # the entry itself is wrong (not an email, a repeat)
    manager: str | None = None  # the HR roster's manager of this leaver
    inventory: Inventory | None = None  # what the plan was made of

    @property
    def status(self) -> str:
        """invalid | failed (no plan could be made) | blocked | nothing_to_do | ready."""
        if self.plan is None:
            return "invalid" if self.invalid else "failed"
        if self.plan.blockers:
            return "blocked"
        return "nothing_to_do" if not self.plan.steps else "ready"

    @property
    def message(self) -> str:
        if self.plan is None:
            return self.error
        if self.plan.blockers:
            return "; ".join(self.plan.blockers)
        counts = self.plan.counts_by_kind()
        return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "nothing to remove"


@dataclass
class OffboardBatch:
    """Every leaver of a batch with their plan: what one approval covers."""

    reason: str
    members: list[BatchMember]

    @property
    def ready(self) -> list[BatchMember]:
        return [m for m in self.members if m.status == "ready"]

    @property
    def hash(self) -> str:
        entries = [(m.index, m.email, m.plan, m.error) for m in self.members]
        return batch_hash("offboard-bulk", entries, key="members", reason=self.reason)

    def counts_by_kind(self) -> dict[str, int]:
        return batch_counts(m.plan for m in self.ready)

    def summary(self) -> str:
        """``13 leavers, 10 ready, 2 left out``."""
        left_out = sum(m.status in ("invalid", "failed", "blocked") for m in self.members)
        return f"{len(self.members)} leavers, {len(self.ready)} ready, {left_out} left out"

    def hold_back_leaving_receivers(self) -> None:
        """Block each leaver whose content would go to someone leaving in this batch (the
        planner sees one leaver at a time): that content would be orphaned again, or its
        transfer refused, depending on which subflow runs first."""
        leaving = {m.email for m in self.members if m.plan is not None and m.plan.steps}
        for m in self.ready:
            assert m.plan is not None
            gone = sorted(set(m.plan.receivers) & leaving)
            if gone:
                why = (
                    f"their content would go to {', '.join(gone)}, who leave(s) in this batch: "
                    "choose a receiver (--receiver), or offboard them in a later batch"
                )
                m.plan = m.plan.model_copy(update={"blockers": [*m.plan.blockers, why]})

    def common_manager(self) -> str | None:
        """The one manager every ready leaver has (from the plans' inventories), else None."""
        managers = {m.manager for m in self.ready}
        return managers.pop() if len(managers) == 1 else None

    def warnings(self) -> list[str]:
        """Every entry that will not be applied (``#index email: status: why``), then the
        ready plans' warnings (counted when several leavers share one)."""
        out = [
            f"#{m.index} {m.email}: {m.status}: {m.message}"
            for m in self.members
            if m.status in ("invalid", "failed", "blocked")
        ]
        counted: Counter[str] = Counter()
        for m in self.ready:
            assert m.plan is not None
            counted.update(m.plan.warnings)
        return out + [w if n == 1 else f"{w} ({n} leavers)" for w, n in counted.items()]

    def summary_lines(self) -> list[str]:
        """What approvers read besides the step counts: who leaves (the first ``SHOWN``), then
        :meth:`warnings`."""
        ready = [m.email for m in self.ready]
        more = f" and {len(ready) - SHOWN} more" if len(ready) > SHOWN else ""
        leaving = [f"{len(ready)} leaving: " + ", ".join(ready[:SHOWN]) + more] if ready else []
        return leaving + self.warnings()
