"""Signing in and out of the panel: a local user's e-mail and password, or an API token."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.api.deps import HubDep, get_session
from crossdock.store import repo
from crossdock.store import tables as t
from crossdock.web.deps import FormDep, PanelDep, is_own_path
from crossdock.web.render import render
from crossdock.web.sessions import COOKIE, IDLE_TIMEOUT, end_session, start_session
from crossdock.web.users import check_sign_in

router = APIRouter(include_in_schema=False)

# The sign-in form has no session yet: its CSRF token is a random cookie that the form must repeat (double
# submit), so that another site cannot sign a browser in to an account of its choosing.
LOGIN_COOKIE = "crossdock_login_csrf"


def _own_path(value: str | None) -> str:
    return value if value and is_own_path(value) else "/"


def _secure(request: Request, public_url: str) -> bool:
    return request.url.scheme == "https" or public_url.startswith("https://")


def _login_page(
    request: Request, secure: bool, *, error: str | None = None, status_code: int = 200, email: str = ""
) -> Response:
    token = request.cookies.get(LOGIN_COOKIE)
    if not token or len(token) > 100:
        token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        status_code=status_code,
        login_csrf=token,
        error=error,
        email=email,
        next_path=_own_path(request.query_params.get("next")),
    )
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="lax", secure=secure, path="/login")
    return response


@router.get("/login")
async def login_page(request: Request, hub: HubDep) -> Response:
    return _login_page(request, _secure(request, hub.settings.public_url))


@router.post("/login")
async def login(
    request: Request,
    hub: HubDep,
    session: Annotated[AsyncSession, Depends(get_session)],
    csrf_token: Annotated[str, Form()] = "",
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    api_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    secure = _secure(request, hub.settings.public_url)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf_token.encode()):
        return _login_page(
            request,
            secure,
            status_code=403,
            error="This sign-in form expired or did not come from this page. Sign in again below.",
        )
    client = request.client.host if request.client else "unknown"
    account_id = user_id = token_id = None
    if api_token.strip():
        found = await repo.find_token(session, api_token.strip())
        if found is None:
            return _login_page(
                request,
                secure,
                status_code=401,
                error="This API token is unknown or revoked. Create one with 'crossdock tokens create'.",
            )
        account_id, token_id = found[0].account_id, found[0].id
    else:
        result = await check_sign_in(session, email, password, client)
        if result.retry_after is not None:
            minutes = max(1, round(result.retry_after.total_seconds() / 60))
            response = _login_page(
                request,
                secure,
                status_code=429,
                email=email,
                error=f"Too many refused sign-ins. Wait {minutes} minute{'s' if minutes != 1 else ''} and try "
                "again, or have a new password set with 'crossdock users set-password'.",
            )
            response.headers["Retry-After"] = str(int(result.retry_after.total_seconds()) + 1)
            return response
        if result.user is None:
            return _login_page(
                request,
                secure,
                status_code=401,
                email=email,
                error="The e-mail address or the password is wrong. Check both and try again.",
            )
        account_id, user_id = result.user.account_id, result.user.id
    secret = await start_session(session, account_id, user_id=user_id, token_id=token_id)
    response = RedirectResponse(_own_path(next), status_code=303)
    response.set_cookie(
        COOKIE,
        secret,
        max_age=int(IDLE_TIMEOUT.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(panel: PanelDep, _form: FormDep) -> Response:
    row = await panel.db.get(t.PanelSession, panel.session_id)
    if row is not None:
        await end_session(panel.db, row)
    response = RedirectResponse("/login?notice=You+are+signed+out.", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
