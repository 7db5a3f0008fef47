"""Mounting the panel on the hub's FastAPI app: its pages, static files and how its errors are answered."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from crossdock.web import (
    pages_auth,
    pages_connections,
    pages_dashboard,
    pages_failures,
    pages_orders,
    pages_rules,
    pages_webhooks,
)
from crossdock.web.deps import PanelError, SignInRequired, sign_in_url
from crossdock.web.render import error_page

# Each page module has a `router`; a new page is one module added here.
PAGES = (
    pages_auth,
    pages_dashboard,
    pages_webhooks,
    pages_orders,
    pages_connections,
    pages_rules,
    pages_failures,
)


def install(app: FastAPI) -> None:
    for module in PAGES:
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")

    async def sign_in_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        if request.headers.get("x-live-block"):
            # A live region of a page whose session ended: the script reloads, which leads to the sign-in.
            return Response(status_code=401, headers={"X-Sign-In": sign_in_url(exc.next_path)})
        return RedirectResponse(sign_in_url(exc.next_path), status_code=303)

    async def panel_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PanelError)
        return error_page(request, exc.status, exc.title, exc.detail)

    app.add_exception_handler(SignInRequired, sign_in_required)
    app.add_exception_handler(PanelError, panel_error)
