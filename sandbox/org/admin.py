"""Admin API placeholder."""
from fastapi import APIRouter

router = APIRouter(prefix="/admin/v1")
ingest_router = APIRouter(prefix="/ingest")
