"""The OpenAPI document, with the service's real error body wherever an error can occur.

FastAPI documents every 422 with its own `HTTPValidationError`, a `{"detail": [...]}`
that this service never sends, and leaves out the statuses its request handling
adds by itself. `document_errors(app)` makes `/openapi.json` say what the handlers
in `app/web/errors.py` really send:

- every 422 (any route with parameters or a body) points at `ErrorBody`, and
  `HTTPValidationError` and `ValidationError` leave the document;
- every route that takes a body also lists 400 (a body that is not UTF-8 JSON) and
  413 (a body over MAX_REQUEST_BODY_BYTES, see `app/web/body_limit.py`).

The statuses only a route knows about (404, 409, 503) it declares itself, with
`responses=error_responses(...)` from `app.web.error_body`.
"""

from typing import Any

from fastapi import FastAPI

from app.web.error_body import DESCRIPTIONS, ErrorBody

__all__ = ["document_errors"]

_COMPONENTS = "#/components/schemas/"
_FASTAPI_DEFAULTS = ("HTTPValidationError", "ValidationError")
_DEFAULT_422 = {"$ref": f"{_COMPONENTS}HTTPValidationError"}
_BODY_STATUSES = ("400", "413", "422")


def document_errors(app: FastAPI) -> None:
    """Make `app.openapi()` describe the error body the service really sends."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        # FastAPI caches the document and builds it anew when routes are added, so the
        # rewrite, which is idempotent, runs on whatever it returns.
        document = generate()
        _use_error_body(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _use_error_body(document: dict[str, Any]) -> None:
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_DEFAULTS:
        schemas.pop(name, None)
    body = ErrorBody.model_json_schema(ref_template=_COMPONENTS + "{model}", mode="serialization")
    for name, schema in {**body.pop("$defs"), ErrorBody.__name__: body}.items():
        schemas.setdefault(name, schema)
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            responses: dict[str, Any] = operation["responses"]
            statuses = set(_BODY_STATUSES) if "requestBody" in operation else set()
            if "422" in responses:
                statuses.add("422")
            for status in sorted(statuses):
                declared = responses.get(status, {}).get("content", {})
                schema = declared.get("application/json", {}).get("schema")
                if schema is None or schema == _DEFAULT_422:
                    responses[status] = _error_response(int(status))


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": f"{_COMPONENTS}ErrorBody"}}},
    }
