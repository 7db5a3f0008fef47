"""The control panel: server-rendered pages (Jinja2) for the people who run crossdock, at `/`.

Pages work without JavaScript; `static/live.js` refreshes marked regions in place. Sign-in is a local user or an
API token; every page is scoped to the signed-in account, and every form carries the session's CSRF token.
"""
