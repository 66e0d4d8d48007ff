"""The console's Starlette app: sign-in, the shared page context, and the pages' routes.

Every change goes through bot/commands.py (or, for a correction, the feedback rules chat uses), as
the caller `web:<name>`: the admin check, the trust rules and what is recorded are chat's. Reading
goes through the stores the CLI reads. Pages are Jinja2 templates with autoescaping on: whatever a
user wrote (a `<script>`, Slack or Discord markup, a very long message) is shown as text.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from bot import commands
from bot.commands import Caller
from bot.types import WEB_PLATFORM, CommandResult, ConversationKey, UserError
from bot.web.auth import (
    OneTimeLinks,
    SignedIn,
    SignInLimiter,
    check_csrf,
    clean_name,
    csrf_token,
    sign_in,
    signed_in,
    token_matches,
    who,
)

if TYPE_CHECKING:
    from bot.core import Core
    from bot.stores.records import Exchange

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
COOKIE = "bot_console"


class Console:
    """What every page shares: the core, the templates, the signed-in admin, running commands."""

    def __init__(self, core: Core, owns_examples: bool, links: OneTimeLinks) -> None:
        self.core, self.owns_examples, self.links = core, owns_examples, links
        self.limiter = SignInLimiter()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.jobs: dict[str, dict[str, Any]] = {}  # import jobs: id -> progress

    def admin(self, request: Request) -> SignedIn:
        """The signed-in admin; else a redirect to sign in, or 403 for a signed-in non-admin."""
        user = signed_in(request)
        if user is None:
            raise HTTPException(303, headers={"Location": f"/signin?next={request.url.path}"})
        if not self.core.is_admin(WEB_PLATFORM, user.name):
            raise HTTPException(403, f"Refused: {who(user)} is not an admin (BOT_ADMINS lists the console's admins).")
        return user

    def page(self, request: Request, template: str, title: str, **context: Any) -> HTMLResponse:
        flashes = request.session.pop("flash", []) if "name" in request.session else []
        return self.templates.TemplateResponse(
            request,
            template,
            {"title": title, "user": signed_in(request), "csrf": csrf_token(request), "flashes": flashes, **context},
        )

    async def run(self, request: Request, user: SignedIn, name: str, **args: Any) -> CommandResult:
        """A chat command as `web:<name>`, off the event loop; its result flashed on the next page."""
        caller = Caller(WEB_PLATFORM, user.name, ConversationKey(WEB_PLATFORM, user.name), is_admin=True)

        def run() -> CommandResult:
            try:
                return commands.run(self.core, caller, commands.named(name, args))
            except UserError as exc:
                return CommandResult(str(exc), ok=False)

        result = await run_in_threadpool(run)
        self.flash(request, result.text, result.ok)
        return result

    async def correct(self, request: Request, user: SignedIn, exchange: Exchange, text: str) -> bool:
        """`text` as `web:<name>`'s correction of the reply, by the rule chat's corrections follow (an
        admin's counts at once); the admin's authority reaches a reply in any scope."""
        rules = self.core.rules
        try:
            result = await run_in_threadpool(rules.correct, WEB_PLATFORM, user.name, exchange.id, text, exchange.scope)
        except UserError as exc:
            self.flash(request, str(exc), ok=False)
            return False
        self.flash(request, result.text, result.ok)
        return result.ok

    def flash(self, request: Request, text: str, ok: bool = True) -> None:
        request.session["flash"] = [*request.session.get("flash", []), {"text": text, "ok": ok}]

    def needs_examples(self, request: Request) -> bool:
        """Whether this process may write examples; says why not when it may not."""
        if not self.owns_examples:
            self.flash(
                request,
                "A bot is running on this data directory and owns its examples: serve the console "
                "from it (BOT_WEB_PORT) to change examples.",
                ok=False,
            )
        return self.owns_examples


def back(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303)  # after a POST: the page is fetched again with GET


def create_app(core: Core, owns_examples: bool = True, links: OneTimeLinks | None = None) -> Starlette:
    from bot.web import exchanges, learning, overview

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
        target = str(form.get("next", "/"))
        return back(target if target.startswith("/") and not target.startswith("//") else "/")

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
