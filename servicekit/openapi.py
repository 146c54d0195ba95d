"""What a service's OpenAPI says about its refusals.

FastAPI documents a 422 as its own validation error (``detail``: a list of problems), but
our handlers also answer 422 with a sentence (``HTTPException(422, "...")``: an unknown
category, a note missing). Both reach clients, so both are in the schema: pass
``REFUSAL_RESPONSES`` as ``FastAPI(responses=...)`` and every route documents it."""

from typing import Any

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
