"""Rendering panel pages: one Jinja2 environment (autoescaped), the layout's context, the security headers every
page carries, and live regions: a request with `X-Live-Block: NAME` gets only that block of the page, which
`static/live.js` swaps in place."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup
from starlette.templating import Jinja2Templates

from crossdock import __version__
from crossdock.web.context import Panel

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.globals["crossdock_version"] = __version__


def utc_text(value: datetime | None, *, seconds: bool = True) -> str:
    """A moment as every panel page shows it, in UTC; a dash when there is none."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def when_html(value: datetime | None, seconds: bool = True) -> Markup:
    """`{{ moment|when }}` in a template: the moment in a <time> element that machines can read too."""
    if value is None:
        return Markup("—")
    return Markup('<time datetime="{}">{}</time>').format(value.isoformat(), utc_text(value, seconds=seconds))


@pass_context
def post_button(
    context: Context,
    action: str,
    label: str,
    style: str = "",
    aside: str = "",
    aside_class: str = "vh",
    fields: dict[str, object] | None = None,
) -> Markup:
    """`{{ post_button(action, label, ...) }}`: a one-button form posting to `action` with the session's CSRF token
    (and `fields` as hidden inputs). `aside` follows the label, for screen readers only by default, so that the
    buttons of a table's rows can be told apart."""
    hidden = [("csrf_token", context["panel"].csrf), *(fields or {}).items()]
    inputs = Markup("").join(
        Markup('<input type="hidden" name="{}" value="{}">').format(name, value) for name, value in hidden
    )
    words = Markup("{}").format(label)
    if aside:
        words += Markup('<span class="{}"> {}</span>').format(aside_class, aside)
    css = Markup(' class="{}"').format(style) if style else Markup("")
    return Markup(
        '<form method="post" action="{}" class="inline">{}<button type="submit"{}>{}</button></form>'
    ).format(action, inputs, css, words)


templates.env.filters["when"] = when_html
templates.env.globals["post_button"] = post_button

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
