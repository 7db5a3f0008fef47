"""Errors as RFC 9457 problem details (application/problem+json), naming the field at fault."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from crossdock.logs import get_logger
from crossdock.store.repo import Conflict, NotFound

PROBLEM_JSON = "application/problem+json"
log = get_logger(__name__)


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
