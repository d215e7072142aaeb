"""The sandbox identity provider (placeholder; being written)."""

from typing import Any

from fastapi import APIRouter, FastAPI

control_router = APIRouter(prefix="/_sandbox/idp")


def make_idp_app(world: Any) -> Any:
    return FastAPI()


def idp_user_active(session: Any, email: str) -> bool | None:
    """True/False for a known IdP user, None when the IdP does not know the email."""
    return None
