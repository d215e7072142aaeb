"""Seeds of the sandbox world (placeholder; being written)."""

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session


def apply(world: Any, spec: str) -> dict[str, Any]:
    return {"seed": spec}


def describe(session: Session, now: datetime) -> dict[str, Any]:
    return {}
