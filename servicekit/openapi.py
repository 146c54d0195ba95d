"""What a service's OpenAPI says about its refusals.

FastAPI documents a 422 as its own validation error (``detail``: a list of problems), but
our handlers also answer 422 with a sentence (``HTTPException(422, "...")``: an unknown
category, a note missing). Both reach clients, so both are in the schema: pass
``REFUSAL_RESPONSES`` as ``FastAPI(responses=...)`` and every route documents it; and
``validation_refusal`` answers FastAPI's own 422 even when the input held a NaN."""

import math
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict


class ValidationProblem(BaseModel):
    """One problem FastAPI found with a request (its own 422 body's items)."""

    model_config = ConfigDict(extra="allow")  # FastAPI adds "input", "ctx", "url"
    loc: list[str | int]
    msg: str
    type: str


class Refusal(BaseModel):
    """A refused request: why, as a sentence, or as FastAPI's list of problems."""

    detail: str | list[ValidationProblem]


REFUSAL_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": Refusal, "description": "The request was understood but refused: why, in detail"},
}


def validation_refusal(exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 for ``exc``, made JSON: a NaN or infinity in the input (Python's JSON
    reader takes them) is echoed as a string instead of failing the answer with a 500."""
    return JSONResponse({"detail": _finite(jsonable_encoder(exc.errors()))}, status_code=422)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
