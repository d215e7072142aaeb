"""Jira REST v2 fake (placeholder; being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/jira")
control_router = APIRouter(prefix="/_sandbox/jira")
