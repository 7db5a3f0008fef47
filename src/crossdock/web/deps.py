"""Panel request dependencies: the signed-in browser (or a redirect to sign in) and forms checked for CSRF."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from crossdock.api.deps import HubDep, get_session
from crossdock.store.repo import Tenant
from crossdock.web.context import Panel
from crossdock.web.sessions import COOKIE, csrf_matches, load_session


class SignInRequired(Exception):
    """No valid session: pages redirect to the sign-in page and come back to `next` afterwards."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign in first")
        self.next_path = next_path


class PanelError(Exception):
    """A page that cannot be shown, with what to do, rendered as the panel's error page."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


def is_own_path(value: str) -> bool:
    """Whether a place to send the browser to (after signing in, after an OAuth flow) is a path of this hub: a
    full URL, a scheme-relative //host, a backslash or a control character could send it to another site (an
    open redirect)."""
    parts = urlsplit(value)
    return (
        value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
        and not any(ord(ch) < 0x20 for ch in value)
        and not parts.scheme
        and not parts.netloc
    )


def sign_in_url(next_path: str) -> str:
    return "/login" if next_path in ("", "/") else f"/login?next={quote(next_path, safe='/')}"


async def get_panel(
    request: Request, hub: HubDep, session: Annotated[AsyncSession, Depends(get_session)]
) -> Panel:
    signed = await load_session(session, request.cookies.get(COOKIE))
    if signed is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(path if request.method == "GET" else "/")
    return Panel(
        hub=hub,
        db=session,
        account=signed.account,
        tenant=Tenant(session, signed.account.id),
        who=signed.who,
        csrf=signed.session.csrf_token,
        session_id=signed.session.id,
    )


PanelDep = Annotated[Panel, Depends(get_panel)]


async def checked_form(request: Request, panel: PanelDep) -> FormData:
    """The posted form, refused unless it carries this session's CSRF token."""
    form = await request.form()
    given = form.get("csrf_token")
    if not isinstance(given, str) or not csrf_matches(panel.csrf, given):
        raise PanelError(
            403,
            "Form refused",
            "This form did not come from your current session (it may have been open before you signed in "
            "again). Reload the page and send it again.",
        )
    return form


FormDep = Annotated[FormData, Depends(checked_form)]
