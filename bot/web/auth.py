"""Who may use the console: sign-in by the secret `web.token` or a one-time link `bot web` prints,
a signed session cookie (Starlette's SessionMiddleware: HttpOnly, SameSite strict, expiring), a
CSRF token in every form, and sign-in attempts limited per client.

A signed-in user is `web:<name>`. The console's pages and actions are for admins, decided as for
chat: `web:<name>` in `BOT_ADMINS`. `bot web` lists the data directory's owner (who gets its
one-time link) as `web:<their login>`, as the CLI's user is an admin."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from cachetools import TTLCache
from starlette.exceptions import HTTPException
from starlette.requests import Request

from bot.types import WEB_PLATFORM

ONE_TIME_LINK_S = 600.0  # a one-time link works once, for ten minutes
ATTEMPTS, ATTEMPTS_WINDOW_S = 5, 300.0  # failed sign-ins allowed per client in the window
NAME_CHARS = 40


@dataclass(frozen=True)
class SignedIn:
    name: str
    owner: bool  # signed in by the one-time link (`bot web`'s user), not by the shared secret


class OneTimeLinks:
    """Tokens that sign in once; kept in this process only (a restart invalidates them)."""

    def __init__(self) -> None:
        self._tokens: TTLCache[str, str] = TTLCache(64, ONE_TIME_LINK_S)
        self._lock = threading.Lock()

    def issue(self, name: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = name
        return token

    def redeem(self, token: str) -> str | None:
        with self._lock:
            return self._tokens.pop(token, None)


class SignInLimiter:
    """At most ATTEMPTS failed sign-ins per client address in ATTEMPTS_WINDOW_S."""

    def __init__(self) -> None:
        self._failures: TTLCache[str, list[float]] = TTLCache(4096, ATTEMPTS_WINDOW_S)
        self._lock = threading.Lock()

    def allowed(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if now - t < ATTEMPTS_WINDOW_S]
            return len(recent) < ATTEMPTS

    def failed(self, client: str) -> None:
        with self._lock:
            self._failures[client] = [*self._failures.get(client, []), time.monotonic()]


def token_matches(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def clean_name(name: str) -> str:
    """A sign-in name as an id: letters, digits, `.`, `-`, `_` (it is recorded as `web:<name>`)."""
    kept = "".join(c for c in name.strip() if c.isalnum() or c in "._-")[:NAME_CHARS]
    if not kept:
        raise ValueError("give your name (letters, digits, . - _): actions are recorded under it")
    return kept


def sign_in(request: Request, name: str, owner: bool) -> None:
    request.session.clear()
    request.session.update({"name": name, "owner": owner, "csrf": secrets.token_urlsafe(24)})


def signed_in(request: Request) -> SignedIn | None:
    name = request.session.get("name")
    return SignedIn(str(name), bool(request.session.get("owner"))) if name else None


def csrf_token(request: Request) -> str:
    return str(request.session.get("csrf", ""))


async def check_csrf(request: Request) -> dict[str, str]:
    """The POSTed form, once its CSRF token matches the session's; 403 otherwise."""
    form = await request.form()
    given, expected = str(form.get("csrf", "")), csrf_token(request)
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(403, "Refused: the form's CSRF token is missing or wrong. Reload the page and try again.")
    return {k: v for k, v in form.items() if isinstance(v, str)}


def who(user: SignedIn) -> str:
    return f"{WEB_PLATFORM}:{user.name}"
