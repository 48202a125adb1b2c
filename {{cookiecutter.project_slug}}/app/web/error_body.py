"""The error body every 4xx and 5xx carries, as the OpenAPI document declares it.

`app/web/errors.py` builds the body; these models only describe it. Routes list the
statuses they can return with `responses=error_responses(404, 409)`; the document's
422s and 413s are filled in for every route by `app/api/openapi.py`.
"""

from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from app.web.errors import RETRY_AFTER_SECONDS

__all__ = ["DESCRIPTIONS", "ErrorBody", "ErrorDetail", "FieldProblem", "error_responses"]


class FieldProblem(BaseModel):
    field: str = Field(examples=["body.email"])
    message: str = Field(examples=["String should have at most 320 characters"])


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, for programs to match on.", examples=["not_found"])
    message: str = Field(description="For people; may change.")
    request_id: str | None = Field(description="The X-Request-ID, to quote in a report.")
    # Only validation errors have it; the key is left out otherwise, never null.
    details: list[FieldProblem] | SkipJsonSchema[None] = Field(
        default=None, description="Each invalid input, on a 422."
    )


class ErrorBody(BaseModel):
    error: ErrorDetail


# What each error status means here, with the `code` it carries.
DESCRIPTIONS = {
    400: "The body is not UTF-8 JSON (`bad_request`).",
    404: "Nothing exists at this address (`not_found`).",
    409: "A unique value is already taken (`conflict`).",
    413: "The body is larger than MAX_REQUEST_BODY_BYTES (`content_too_large`).",
    422: "An input is not valid; `details` names each one (`validation_error`).",
    503: "No database connection could be had: every one is busy (`database_busy`), or the "
    "database is down, unreachable or lost the connection (`database_unavailable`); retry "
    "after Retry-After.",
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": f"Seconds to wait before retrying ({RETRY_AFTER_SECONDS}).",
        "schema": {"type": "integer"},
    }
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that can answer each of `statuses` with an error."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {"model": ErrorBody, "description": DESCRIPTIONS[status]}
        if status == 503:
            response["headers"] = _RETRY_AFTER
        responses[status] = response
    return responses
