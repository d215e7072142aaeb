"""SCIM placeholder."""
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sandbox.org.service import OrgError

router = APIRouter(prefix="/scim/1")


async def org_error_handler(request: Request, exc: OrgError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status)
