"""Slack Web API fake (placeholder; being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/slack/api")
control_router = APIRouter(prefix="/_sandbox/slack")
