"""What every page of the console shares (`Console`): the core, the templates, the signed-in admin,
flashed messages, and running a change as `web:<name>` through bot/commands.py or the feedback rules."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.templating import Jinja2Templates

from bot import commands
from bot.commands import Caller
from bot.types import WEB_PLATFORM, CommandResult, ConversationKey, UserError
from bot.web.auth import OneTimeLinks, SignedIn, SignInLimiter, csrf_token, signed_in, who

if TYPE_CHECKING:
    from bot.core import Core
    from bot.stores.records import Exchange

HERE = Path(__file__).parent
MAX_JOBS = 64  # imports whose progress pages stay reachable, the oldest forgotten first


def when(at: float) -> str:
    """A stored time (seconds since the epoch) as people read it, in UTC."""
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


class Console:
    """What every page shares: the core, the templates, the signed-in admin, running commands."""

    def __init__(self, core: Core, owns_examples: bool, links: OneTimeLinks) -> None:
        self.core, self.owns_examples, self.links = core, owns_examples, links
        self.limiter = SignInLimiter()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["when"] = when
        self.jobs: LRUCache[str, dict[str, Any]] = LRUCache(MAX_JOBS)  # import jobs: id -> progress

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


def back(to: str, default: str = "/") -> RedirectResponse:
    """After a POST, the page `to` fetched again with GET; a target off this site (`//host`, a full
    address: a form can carry anything) goes to `default` instead."""
    local = to.startswith("/") and not to.startswith("//") and "\\" not in to
    return RedirectResponse(to if local else default, status_code=303)
