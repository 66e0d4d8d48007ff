"""The console's Starlette app: sign-in, the shared page context, and the pages' routes.

Every change goes through bot/commands.py (or, for a correction, the feedback rules chat uses), as
the caller `web:<name>`: the admin check, the trust rules and what is recorded are chat's. Reading
goes through the stores the CLI reads. Pages are Jinja2 templates with autoescaping on: whatever a
user wrote (a `<script>`, Slack or Discord markup, a very long message) is shown as text.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bot.web import exchanges, learning, overview
from bot.web.auth import OneTimeLinks, check_csrf, clean_name, sign_in, token_matches
from bot.web.console import HERE, Console, back

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

COOKIE = "bot_console"


def create_app(core: Core, owns_examples: bool = True, links: OneTimeLinks | None = None) -> Starlette:
    console = Console(core, owns_examples, links or OneTimeLinks())

    async def signin_form(request: Request) -> Response:
        return console.page(request, "signin.html", "Sign in", next=request.query_params.get("next", "/"))

    async def signin(request: Request) -> Response:
        client = request.client.host if request.client else "?"
        if not console.limiter.allowed(client):
            return PlainLimited()
        form = await request.form()
        token, name = str(form.get("token", "")), str(form.get("name", ""))
        if not token_matches(token, core.settings.web.token):
            console.limiter.failed(client)
            log.warning("console: a failed sign-in from %s", client)
            return console.page(request, "signin.html", "Sign in", error="Wrong secret.", next="/")
        try:
            sign_in(request, clean_name(name), owner=False)
        except ValueError as exc:
            return console.page(request, "signin.html", "Sign in", error=str(exc), next="/")
        return back(str(form.get("next", "/")))

    async def signin_link(request: Request) -> Response:
        name = console.links.redeem(request.path_params["token"])
        if name is None:
            return console.page(request, "signin.html", "Sign in", error="That link was used or has expired.", next="/")
        sign_in(request, name, owner=True)
        return back("/")

    async def signout(request: Request) -> Response:
        await check_csrf(request)
        request.session.clear()
        return back("/signin")

    routes = [
        Route("/signin", signin_form, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signin/{token}", signin_link, methods=["GET"]),
        Route("/signout", signout, methods=["POST"]),
        *overview.routes(console),
        *exchanges.routes(console),
        *learning.routes(console),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    session_s = int(core.settings.web.session_hours * 3600)
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=secrets.token_urlsafe(32),
            session_cookie=COOKIE,
            max_age=session_s,
            same_site="strict",
            https_only=False,
        ),
    ]
    return Starlette(routes=routes, middleware=middleware)


# No framing (clickjacking), scripts and styles from the console only, no referrer (a one-time link).
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response (a plain ASGI middleware: streaming stays as it is)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


class PlainLimited(Response):
    def __init__(self) -> None:
        super().__init__(
            "Too many sign-in attempts from here; wait five minutes.",
            status_code=429,
            media_type="text/plain",
            headers={"Retry-After": "300"},
        )


__all__ = ["Console", "back", "check_csrf", "create_app"]
