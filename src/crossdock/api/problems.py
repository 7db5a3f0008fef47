"""Errors as RFC 9457 problem details (application/problem+json), naming the field at fault."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from crossdock.logs import get_logger
from crossdock.store.repo import Conflict, NotFound

PROBLEM_JSON = "application/problem+json"
log = get_logger(__name__)


class FieldError(BaseModel):
    field: str = Field(description="The field at fault, e.g. 'lines[0].quantity' or 'cursor'.")
    message: str


class ProblemDetails(BaseModel):
    """The body of every error answer: RFC 9457 problem details, as `problem_response` writes them."""

    type: str = Field(description="urn:crossdock:problem:<kind>, e.g. urn:crossdock:problem:validation.")
    title: str
    status: int
    detail: str = Field(description="What went wrong and what to do about it.")
    instance: str = Field(description="The request's path.")
    errors: list[FieldError] = Field(
        default_factory=list, description="Each field at fault; present when fields are at fault."
    )


PROBLEM_SCHEMA_REF = "#/components/schemas/ProblemDetails"
_DESCRIPTIONS = {
    401: "No API token, or one that is unknown or revoked.",
    404: "No such object in the caller's account.",
    413: "The request body is larger than the hub accepts (CROSSDOCK_MAX_BODY_BYTES).",
    409: "The request conflicts with the object's state (or a cursor this API did not issue).",
    422: "The request is invalid; `errors` names each field at fault.",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the given error statuses, answered as application/problem+json."""
    return {status: _problem_doc(status) for status in statuses}


def _problem_doc(status: int) -> dict[str, Any]:
    return {
        "description": _DESCRIPTIONS.get(status, "The request failed."),
        "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}},
    }


def declare_problems(document: dict[str, Any]) -> None:
    """Declare in an OpenAPI document the problem answers every operation can give through the shared
    machinery: 401 where a bearer token is required, 404 where a path names an object, 409 where a page cursor
    is taken, 413 where there is a body, 422 where there are parameters or a body (instead of FastAPI's default
    application/json shape, which crossdock never sends). Statuses particular to a route (409 for a state
    conflict) are declared on the route."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["ProblemDetails"] = problem
    fastapi_422 = {"$ref": "#/components/schemas/HTTPValidationError"}
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            parameters = operation.get("parameters", [])
            wanted = []
            if operation.get("security"):
                wanted.append(401)
            if any(p.get("in") == "path" for p in parameters):
                wanted.append(404)
            if any(p.get("in") == "query" and p.get("name") == "cursor" for p in parameters):
                wanted.append(409)  # repo.decode_cursor: a cursor this API did not issue
            if "requestBody" in operation:
                wanted.append(413)  # limits.BodySizeLimit
            if parameters or "requestBody" in operation:
                wanted.append(422)
            existing_422 = responses.get("422", {}).get("content", {}).get("application/json", {})
            if existing_422.get("schema") == fastapi_422:
                del responses["422"]
            for status in wanted:
                responses.setdefault(str(status), _problem_doc(status))
    if not any(fastapi_422 == c.get("schema") for c in _all_contents(document)):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)


def _all_contents(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        content
        for item in document.get("paths", {}).values()
        for operation in item.values()
        if isinstance(operation, dict)
        for response in operation.get("responses", {}).values()
        for content in response.get("content", {}).values()
    ]


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        kind: str = "error",
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind
        self.errors = errors or []
        self.headers = headers or {}


def invalid(field: str, message: str) -> Problem:
    """A 422 naming the field at fault, for checks made after the request body parsed."""
    return Problem(
        422,
        "Invalid request",
        f"{field}: {message}",
        kind="validation",
        errors=[{"field": field, "message": message}],
    )


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str,
    *,
    kind: str,
    errors: Sequence[dict[str, str]] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:crossdock:problem:{kind}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors:
        body["errors"] = list(errors)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_path(loc: Sequence[Any]) -> str:
    """('body', 'lines', 0, 'quantity') -> 'lines[0].quantity'; ('query', 'limit') -> 'limit'."""
    parts = list(loc)
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and (
            part.startswith("function-") or part in {"json-or-python[json=function-after"}
        ):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def message(error: Mapping[str, Any]) -> str:
    msg = str(error.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        msg = f"the request body is not valid JSON{': ' + str(reason) if reason else ''}"
    return msg


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            declare_problems(FastAPI.openapi(app))
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": field_path(e.get("loc", ())), "message": message(e)} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return problem_response(
            request,
            422,
            "Invalid request",
            f"{first['field']}: {first['message']}",
            kind="validation",
            errors=errors,
        )

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.title, exc.detail, kind=exc.kind, errors=exc.errors, headers=exc.headers
        )

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return problem_response(request, 404, "Not found", str(exc), kind="not-found")

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        errors = [{"field": exc.field, "message": str(exc)}] if exc.field else []
        return problem_response(request, 409, "Conflict", str(exc), kind="conflict", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI answers a JSON body that is not UTF-8 with a bare 400 ("There was an error parsing the
            # body"), while malformed JSON gets the 422 naming the body: answer both the same way.
            problem = "the request body is not valid JSON: it is not UTF-8 text"
            return problem_response(
                request,
                422,
                "Invalid request",
                f"body: {problem}",
                kind="validation",
                errors=[{"field": "body", "message": problem}],
            )
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        return problem_response(
            request,
            exc.status_code,
            _title(exc.status_code),
            detail,
            kind="http",
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", path=request.url.path, error_type=type(exc).__name__, exc_info=exc)
        return problem_response(
            request,
            500,
            "Internal error",
            "crossdock hit an unexpected error; nothing was changed. The server log has the details.",
            kind="internal",
        )


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _nul_at(value: Any, path: str) -> str | None:
    """The path of the first string (or object key) in a parsed JSON value that holds a NUL character."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, list):
        for i, item in enumerate(value):
            if (found := _nul_at(item, f"{path}[{i}]")) is not None:
                return found
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return child
            if (found := _nul_at(item, child)) is not None:
                return found
    return None


async def refuse_nul_characters(request: Request) -> None:
    """A router dependency: a NUL character in a query parameter or a JSON body's string is a 422 naming it.
    PostgreSQL cannot store NUL in text or jsonb, so such a value would otherwise fail in the database with a 500
    (found by schemathesis); it is refused on SQLite too, so that both behave alike."""
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise invalid(name.replace("\x00", ""), "must not contain the NUL character (\\u0000)")
    if "json" not in request.headers.get("content-type", ""):
        return
    try:
        body = json.loads(await request.body())
    except ValueError:
        return  # FastAPI has answered malformed JSON with its own 422 before dependencies run
    field = _nul_at(body, "")
    if field is not None:
        raise invalid(field.replace("\x00", "") or "body", "must not contain the NUL character (\\u0000)")
