"""What every route of the front door shares: bodies read under a cap, refusals in one shape,
validation errors named field by field, and the OpenAPI description of routes that read their
raw body.

The routes authenticate a signature over the exact bytes received, so they cannot let FastAPI
parse the body first; FastAPI then knows nothing of the body, and the OpenAPI document would
say nothing either. ``raw_body_doc`` puts back what the route reads (the JSON schema of its
pydantic model, inlined, and its signature headers), so that clients, and the property-based
tests (schemathesis), see the real contract.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

MAX_BODY = 64 * 1024  # every inbound payload we take is a few KB


class FieldProblem(BaseModel):
    """One bad field of a request body and what is wrong with it."""

    field: str
    message: str


class Refusal(BaseModel):
    """Every 4xx/5xx answer of the intake: what was wrong, in words (never a stack trace)."""

    ok: Literal[False]
    error: str
    fields: list[FieldProblem] | None = None


async def read_capped(request: Request, limit: int = MAX_BODY) -> bytes | None:
    """The raw body, or None as soon as it is longer than ``limit`` (never read past it).

    A declared Content-Length over the limit is refused before reading; a lying or absent one
    (chunked) is caught while reading, so at most ``limit`` + one chunk is ever held.
    """
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared[:20]) > limit:
        return None
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            return None
    return bytes(buf)


def refuse(status: int, message: str, **extra: Any) -> JSONResponse:
    """A refusal (``Refusal``) with ``status``."""
    return JSONResponse({"ok": False, "error": message, **extra}, status_code=status)


def too_large(limit: int = MAX_BODY) -> JSONResponse:
    return refuse(413, f"request body too large (at most {limit} bytes)")


def explain(exc: ValidationError, *, whole: str = "body") -> list[dict[str, str]]:
    """Each bad field and what is wrong with it, in words a sender's engineer can act on.

    The input is never echoed from pydantic's errors (it may be huge, binary or hostile); our
    own validators quote what they need, escaped. A problem of the body as a whole (a model
    rule, or not an object at all) is named ``whole``.
    """
    out = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(p) for p in err["loc"]) or whole
        out.append({"field": field, "message": err["msg"].removeprefix("Value error, ")})
    return out


def invalid(what: str, exc: ValidationError, *, whole: str = "body") -> JSONResponse:
    """422 naming every bad field: ``invalid <what>: field: why; …`` and ``fields``."""
    problems = explain(exc, whole=whole)
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return refuse(422, f"invalid {what}: {summary}", fields=problems)


# --- OpenAPI ---------------------------------------------------------------------------------


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s validation JSON schema with its ``$defs`` inlined: self-contained, so it can
    sit in a route's ``openapi_extra`` (a ``#/$defs/…`` reference would point into the OpenAPI
    document, not into this schema)."""
    schema = model.model_json_schema(mode="validation")
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return {**resolve(defs[ref.removeprefix("#/$defs/")]), **resolve(rest)}
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)  # a dict, as the schema it resolves
    return resolved


def header(name: str, description: str, *, required: bool = True) -> dict[str, Any]:
    """An OpenAPI header parameter (a string)."""
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": {"type": "string"},
    }


def raw_body_doc(
    *, schema: dict[str, Any], media_type: str = "application/json", headers: list[dict[str, Any]]
) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads and verifies its raw body itself."""
    return {
        "parameters": headers,
        "requestBody": {"required": True, "content": {media_type: {"schema": schema}}},
    }


def answers(
    ok: dict[int, tuple[type[BaseModel], str]], refused: dict[int, str]
) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=``: the success answers (a model and when) and the refusals (when)."""
    out: dict[int | str, dict[str, Any]] = {
        code: {"model": m, "description": d} for code, (m, d) in ok.items()
    }
    out.update({code: {"model": Refusal, "description": d} for code, d in refused.items()})
    return out
