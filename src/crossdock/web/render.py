"""Rendering panel pages: one Jinja2 environment (autoescaped), the layout's context, the security headers every
page carries, and live regions: a request with `X-Live-Block: NAME` gets only that block of the page, which
`static/live.js` swaps in place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from crossdock import __version__
from crossdock.web.context import Panel

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.globals["crossdock_version"] = __version__

# Pages are never cached (they show one account's data) and never framed. Scripts and styles come from this hub
# only; frames and objects only from this hub (the label preview); images may be data: URLs.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-src 'self'; object-src 'self'; "
        "base-uri 'none'; frame-ancestors 'self'"
    ),
}

NAV = (
    ("dashboard", "/", "Dashboard"),
    ("orders", "/orders", "Orders"),
    ("connections", "/connections", "Connections"),
    ("failures", "/failures", "Failures"),
    ("rules", "/rules", "Shipping rules"),
    ("webhooks", "/webhooks", "Webhooks"),
)


def render(
    request: Request,
    template: str,
    *,
    panel: Panel | None = None,
    active: str = "",
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """The page, or only the block a live region asked for (X-Live-Block) when the template has it."""
    values: dict[str, Any] = {
        "request": request,
        "panel": panel,
        "nav": NAV,
        "active": active,
        "notice": request.query_params.get("notice"),
        **context,
    }
    block = request.headers.get("x-live-block")
    page = templates.get_template(template)
    if block and block in page.blocks:
        body = "".join(page.blocks[block](page.new_context(values)))
        response = HTMLResponse(body, status_code=status_code)
    else:
        response = HTMLResponse(page.render(values), status_code=status_code)
    response.headers.update(PAGE_HEADERS)
    return response


def error_page(
    request: Request,
    status_code: int,
    title: str,
    detail: str,
    panel: Panel | None = None,
    *,
    back: tuple[str, str] = ("/", "Back to the dashboard"),
) -> HTMLResponse:
    """The panel's error page: what went wrong, what to do, and a way back (a path of this hub, and its words)."""
    return render(
        request, "error.html", panel=panel, status_code=status_code, title=title, detail=detail, back=back
    )
