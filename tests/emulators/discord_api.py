"""A local Discord emulator: REST API and gateway websocket on loopback, for the real discord.py.

It runs an aiohttp server on its own event loop in a background thread, so a test can drive it
with plain synchronous calls while the bot runs on another loop. It speaks just enough of the
wire protocol (API v10) for discord.py 2.x to log in, connect, resume, receive messages,
reactions and interactions (slash commands, autocomplete, button clicks, modal submits), and send,
edit (message components included), react, defer, follow up, open modals and answer autocomplete.
Every REST call is recorded; the next N calls of a route can be answered with a 429 to exercise
rate-limit retries, or a route held to a rate as Discord does (`limit_route`: X-RateLimit headers on
every answer, 429 with Retry-After beyond it). `refuse_message_content` makes the gateway refuse the
privileged intent (close 4014); a session without it gets server messages that do not mention the
bot with their content withheld, as Discord sends them.

Facts discord.py relies on (read from its source): a JSON body is only parsed when Content-Type
is exactly ``application/json``; a 429 is only retried when it has a ``Via`` header and a JSON
``retry_after``; READY's ``resume_gateway_url`` is where a RESUME reconnects.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import unquote

from aiohttp import WSMsgType, web

from tests.emulators.discord_spec import SpecCheck

T = TypeVar("T")

DISCORD_EPOCH_MS = 1420070400000
API_PREFIX = "/api/v10"

# Opcodes (https://discord.com/developers/docs/topics/opcodes-and-status-codes)
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME = 0, 1, 2, 6
OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 9, 10, 11

ADMINISTRATOR = 1 << 3
EPHEMERAL = 1 << 6
COMPONENTS_V2 = 1 << 15  # a message flag: its text is in text displays, and it has no content
LAYOUT_CHARS = 4000  # the most text a Components V2 message's text displays hold in all
MESSAGE_CONTENT = 1 << 15  # the privileged gateway intent

# Interaction types and callback types (https://discord.com/developers/docs/interactions/receiving-and-responding)
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
CHANNEL_MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, AUTOCOMPLETE_RESULT, MODAL = 4, 5, 6, 7, 8, 9


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _rate_headers(limit: int, left: int, reset_after: float, bucket: str) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(0, left)),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": bucket,
    }


def _too_many(retry_after: float, limit: int, bucket: str) -> web.Response:
    """Discord's 429: `retry_after` in the body, Retry-After (whole seconds) and the bucket's headers."""
    return _json(
        {"message": "You are being rate limited.", "retry_after": retry_after, "global": False},
        status=429,
        headers={
            "Via": "1.1 google",  # discord.py treats a 429 without Via as a Cloudflare ban
            "Retry-After": str(max(1, math.ceil(retry_after))),
            **_rate_headers(limit, 0, retry_after, bucket),
            "X-RateLimit-Scope": "user",
        },
    )


def _layout_refused(flags: int, content: str, components: list[dict[str, Any]]) -> str:
    """Why Discord refuses a Components V2 message ('' if it does not): it carries no content, and its
    text displays hold at most LAYOUT_CHARS characters in all; a plain message holds no layout."""
    if not flags & COMPONENTS_V2:
        return "Components V2 items need the IS_COMPONENTS_V2 flag" if text_displays(components) else ""
    if content:
        return "A message with IS_COMPONENTS_V2 cannot have content"
    if sum(len(t) for t in text_displays(components)) > LAYOUT_CHARS:
        return f"Text displays hold at most {LAYOUT_CHARS} characters in all"
    return ""


def text_displays(components: list[dict[str, Any]]) -> list[str]:
    """The text of every text display (type 10) in a message's components, nested ones included, in order."""
    found: list[str] = []
    for component in components:
        if component.get("type") == 10:
            found.append(str(component.get("content", "")))
        found.extend(text_displays(component.get("components") or []))
    return found


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Bytes body so aiohttp does not append "; charset=utf-8": discord.py wants the exact type.
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


@dataclass
class Call:
    """One REST request the bot made, as the emulator saw it."""

    method: str
    path: str  # without the /api/v10 prefix, percent-decoded
    query: dict[str, str]
    body: Any
    status: int = 0
    at: float = field(default_factory=time.monotonic)


@dataclass
class _RateLimit:
    method: str
    pattern: re.Pattern[str]
    remaining: int
    retry_after: float


@dataclass
class _RouteLimit:
    """`limit` calls per `window_s` for each value of the pattern's first group (the route's major
    parameter, e.g. the channel id), as Discord's per-route buckets count."""

    method: str
    pattern: re.Pattern[str]
    limit: int
    window_s: float
    bucket: str
    announce: bool  # send X-RateLimit headers on every answer (False: as if another replica spent it too)
    windows: dict[str, tuple[float, int]] = field(default_factory=dict)  # key -> (window start, used)


@dataclass
class _Session:
    session_id: str
    intents: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)  # every dispatch, in seq order
    ws: web.WebSocketResponse | None = None  # the live connection, None while disconnected
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def seq(self) -> int:
        return len(self.log)


_PATH = web.RequestKey("path", str)  # the API path, set by the middleware for the handlers
_BODY = web.RequestKey("body", object)


class DiscordEmulator:
    """A fake Discord with one bot, one guild (a text channel and a thread), and DMs."""

    def __init__(
        self,
        token: str = "emulator-token",
        heartbeat_interval_ms: int = 41250,
        bind: str = "127.0.0.1",
        advertised_host: str = "127.0.0.1",
    ) -> None:
        # `bind`/`advertised_host`: where it listens and the name a client uses (a bot in a container
        # reaches the host as host.containers.internal).
        self.bind, self.advertised_host = bind, advertised_host
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._ids = itertools.count(1)
        self.app_id = self.snowflake()
        self.bot_user = self.make_user("assistant", bot=True, user_id=self.app_id)
        self.guild_id = self.snowflake()
        self.channel_id = self.snowflake()
        self.thread_id = self.snowflake()
        self.admin_role_id = self.snowflake()
        self.users: dict[str, dict[str, Any]] = {self.bot_user["id"]: self.bot_user}
        self.member_roles: dict[str, list[str]] = {self.bot_user["id"]: []}
        self.channels: dict[str, dict[str, Any]] = {
            str(self.channel_id): {
                "id": str(self.channel_id),
                "type": 0,
                "guild_id": str(self.guild_id),
                "name": "general",
                "position": 0,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
                "topic": None,
                "last_message_id": None,
                "rate_limit_per_user": 0,
            },
            str(self.thread_id): {
                "id": str(self.thread_id),
                "type": 11,
                "guild_id": str(self.guild_id),
                "parent_id": str(self.channel_id),
                "owner_id": self.bot_user["id"],
                "name": "a thread",
                "message_count": 0,
                "member_count": 1,
                "rate_limit_per_user": 0,
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": _now_iso(),
                    "locked": False,
                },
            },
        }
        # A private thread: only its members (invited) can read it.
        self.private_thread_id = self.snowflake()
        self.channels[str(self.private_thread_id)] = {
            **self.channels[str(self.thread_id)],
            "id": str(self.private_thread_id),
            "type": 12,
            "name": "private",
        }
        # A channel @everyone cannot view (a mods-only channel), and a public thread inside it.
        self.private_channel_id = self.snowflake()
        hidden = {"id": str(self.guild_id), "type": 0, "allow": "0", "deny": str(1 << 10)}  # VIEW_CHANNEL
        shown = {"id": str(self.admin_role_id), "type": 0, "allow": str(1 << 10), "deny": "0"}
        self.channels[str(self.private_channel_id)] = {
            **self.channels[str(self.channel_id)],
            "id": str(self.private_channel_id),
            "name": "mods",
            "position": 1,
            "permission_overwrites": [hidden, shown],
        }
        self.private_channel_thread_id = self.snowflake()
        self.channels[str(self.private_channel_thread_id)] = {
            **self.channels[str(self.thread_id)],
            "id": str(self.private_channel_thread_id),
            "parent_id": str(self.private_channel_id),
            "name": "a thread in mods",
        }
        self.messages: dict[str, dict[str, Any]] = {}
        self.left_guilds: list[str] = []  # servers the bot left (DELETE /users/@me/guilds/{id})
        self.spec = SpecCheck()  # every JSON request body against Discord's OpenAPI description
        self.commands: dict[str | None, list[dict[str, Any]]] = {}  # guild id (None: global) -> commands
        self.calls: list[Call] = []
        self.gateway_ops: list[dict[str, Any]] = []  # every payload the bot sent on the gateway
        self.replayed: list[dict[str, Any]] = []  # dispatches re-sent on RESUME
        self.connections = 0
        self.replay_from: int | None = None  # on RESUME, replay from this seq (events the bot had)
        self._rate_limits: list[_RateLimit] = []
        self._route_limits: list[_RouteLimit] = []
        self.refuse_message_content = False  # the app lacks the privileged intent: IDENTIFY with it gets 4014
        self.interactions: dict[str, dict[str, Any]] = {}  # id -> the INTERACTION_CREATE payload
        self.callbacks: dict[str, dict[str, Any]] = {}  # interaction id -> the bot's callback body
        self._sessions: dict[str, _Session] = {}
        self._current: _Session | None = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="discord-emulator", daemon=True)
        self._runner: web.AppRunner | None = None
        self._resume_gate: asyncio.Event | None = None
        self.port = 0

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> DiscordEmulator:
        self._thread.start()
        self._run(self._start())
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.advertised_host}:{self.port}"

    @property
    def api_url(self) -> str:
        """What discord.http.Route.BASE should be (DISCORD_API_URL)."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """What DiscordWebSocket.DEFAULT_GATEWAY should be (DISCORD_GATEWAY_URL)."""
        return f"ws://{self.advertised_host}:{self.port}/gateway"

    async def _start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        for session in self._sessions.values():
            if session.ws is not None:
                await session.ws.close()
        assert self._runner is not None
        await self._runner.cleanup()

    def _run(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the emulator's loop from the test thread."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # ----------------------------------------------------------------- ids and payloads

    def snowflake(self) -> str:
        # Real-looking snowflakes keep discord.py's created_at sane; the counter keeps them unique.
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (next(self._ids) & 0xFFF))

    def make_user(self, name: str, *, bot: bool = False, user_id: str | None = None) -> dict[str, Any]:
        return {
            "id": user_id or self.snowflake(),
            "username": name,
            "global_name": name,
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
            "flags": 0,
            "public_flags": 0,
        }

    def add_user(
        self, name: str, *, user_id: str | None = None, admin_role: bool = False, member: bool = True
    ) -> dict[str, Any]:
        """A guild member who can talk to the bot (`member=False`: someone from elsewhere, who can DM it)."""
        user = self.make_user(name, user_id=user_id)
        with self._lock:
            self.users[user["id"]] = user
            if member:
                self.member_roles[user["id"]] = [str(self.admin_role_id)] if admin_role else []
        return user

    def _member(self, user_id: str, with_user: bool = False) -> dict[str, Any]:
        member: dict[str, Any] = {
            "roles": self.member_roles.get(user_id, []),
            "joined_at": _now_iso(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "avatar": None,
            "pending": False,
        }
        if with_user:
            member["user"] = self.users[user_id]
        return member

    def dm_channel_id(self, user: dict[str, Any]) -> str:
        """The DM channel between the bot and `user` (created on first use)."""
        for cid, ch in self.channels.items():
            if ch["type"] == 1 and ch["recipients"][0]["id"] == user["id"]:
                return cid
        cid = self.snowflake()
        self.channels[cid] = {"id": cid, "type": 1, "recipients": [user], "last_message_id": None}
        return cid

    def _guild_id_of(self, channel_id: str) -> str | None:
        return self.channels.get(channel_id, {}).get("guild_id")

    def _message_payload(
        self,
        *,
        channel_id: str,
        author: dict[str, Any],
        content: str,
        reply_to: str | None = None,
        ping: bool = True,
        msg_type: int | None = None,
        flags: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        mentions = [self.users[uid] for uid in re.findall(r"<@!?(\d+)>", content) if uid in self.users]
        msg: dict[str, Any] = {
            "id": self.snowflake(),
            "channel_id": channel_id,
            "author": author,
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions,
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "reactions": [],
            "pinned": False,
            "flags": flags,
            "components": [],
            "type": msg_type if msg_type is not None else (19 if reply_to else 0),
        }
        guild_id = self._guild_id_of(channel_id)
        if guild_id:
            msg["guild_id"] = guild_id
            msg["member"] = self._member(author["id"])
        if reply_to is not None:
            ref = self.messages[reply_to]
            msg["message_reference"] = {
                "type": 0,
                "message_id": reply_to,
                "channel_id": ref["channel_id"],
                "guild_id": guild_id,
            }
            # A reply pings the replied-to author unless turned off; pinged users are mentions.
            if ping and all(m["id"] != ref["author"]["id"] for m in mentions):
                mentions.append(ref["author"])
        msg.update(extra or {})
        with self._lock:  # the test thread reads messages while the loop adds them
            self.messages[msg["id"]] = msg
        return msg

    def _forward(self, message_id: str) -> dict[str, Any]:
        original = self.messages[message_id]
        kept = ("content", "timestamp", "edited_timestamp", "type", "flags", "mentions", "mention_roles",
                "attachments", "embeds", "components")  # fmt: skip
        snapshot = {k: original[k] for k in kept}
        reference = {"type": 1, "message_id": message_id, "channel_id": original["channel_id"]}
        if original.get("guild_id"):
            reference["guild_id"] = original["guild_id"]
        return {"message_reference": reference, "message_snapshots": [{"message": snapshot}], "flags": 1 << 14}

    def _with_reference(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A message as Discord serves it: a reply carries the message it replies to (one level)."""
        out = dict(msg)
        ref = msg.get("message_reference")
        if ref is not None and ref["type"] == 0:  # a forward carries its snapshot instead
            parent = self.messages.get(ref["message_id"])
            out["referenced_message"] = {k: v for k, v in parent.items()} if parent else None
        return out

    # ----------------------------------------------------------------- test-side actions

    def send_message(
        self,
        author: dict[str, Any],
        content: str,
        *,
        channel_id: str | None = None,
        reply_to: str | None = None,
        ping: bool = True,
        msg_type: int | None = None,
        forward_of: str | None = None,
    ) -> dict[str, Any]:
        """A user posts a message: it is stored and dispatched as MESSAGE_CREATE.

        `reply_to` makes it a reply; `ping=False` is a reply with the mention toggled off.
        `msg_type` other than 0/19 makes a system message (7: a member joined). `forward_of` forwards
        that message here: a reference of type 1 (FORWARD) and a snapshot of it, no content.
        """
        cid = channel_id or str(self.channel_id)

        async def go() -> dict[str, Any]:
            extra = None if forward_of is None else self._forward(forward_of)
            msg = self._message_payload(
                channel_id=cid, author=author, content=content, reply_to=reply_to, ping=ping, msg_type=msg_type,
                extra=extra,
            )  # fmt: skip
            await self._dispatch("MESSAGE_CREATE", self._with_reference(msg))
            return msg

        return self._run(go())

    def mention(self) -> str:
        return f"<@{self.bot_user['id']}>"

    def react(self, message_id: str, user: dict[str, Any], emoji: str, *, add: bool = True) -> None:
        """A user adds or removes a unicode reaction (MESSAGE_REACTION_ADD / _REMOVE)."""

        async def go() -> None:
            await self._dispatch(*self._reaction_event(message_id, user["id"], emoji, add))

        self._run(go())

    def _reaction_event(self, message_id: str, user_id: str, emoji: str, add: bool) -> tuple[str, dict[str, Any]]:
        msg = self.messages[message_id]
        data: dict[str, Any] = {
            "user_id": user_id,
            "channel_id": msg["channel_id"],
            "message_id": message_id,
            "emoji": {"id": None, "name": emoji},
            "burst": False,
            "type": 0,
        }
        guild_id = self._guild_id_of(msg["channel_id"])
        if guild_id:
            data["guild_id"] = guild_id
            if add:
                data["member"] = self._member(user_id, with_user=True)
                data["message_author_id"] = msg["author"]["id"]
        return ("MESSAGE_REACTION_ADD" if add else "MESSAGE_REACTION_REMOVE"), data

    def _interaction(
        self,
        user: dict[str, Any],
        kind: int,
        channel_id: str,
        data: dict[str, Any],
        message: dict[str, Any] | None = None,
        permissions: int = 0,
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE payload of `kind` from `user` in `channel_id`, dispatched; `message`
        is the one whose component was used (a click, or a modal that a click opened)."""
        guild_id = self._guild_id_of(channel_id)
        channel = {k: v for k, v in self.channels[channel_id].items() if k != "recipients"}
        interaction: dict[str, Any] = {
            "id": self.snowflake(),
            "application_id": self.app_id,
            "type": kind,
            "token": "itoken-" + uuid.uuid4().hex,
            "version": 1,
            "channel_id": channel_id,
            "channel": channel,
            "locale": "en-US",
            "app_permissions": str(ADMINISTRATOR),
            "attachment_size_limit": 8 << 20,
            "entitlements": [],
            "authorizing_integration_owners": {"0": guild_id or user["id"]},
            "context": 0 if guild_id else 1,
            "data": data,
        }
        if message is not None:
            interaction["message"] = self._with_reference(message)
        if guild_id:
            interaction["guild_id"] = guild_id
            interaction["guild_locale"] = "en-US"
            interaction["member"] = {**self._member(user["id"], with_user=True), "permissions": str(permissions)}
        else:
            interaction["user"] = user
        self.interactions[interaction["id"]] = interaction

        async def go() -> None:
            await self._dispatch("INTERACTION_CREATE", interaction)

        self._run(go())
        return interaction

    def synced_command(self, name: str, guild_id: str | None) -> dict[str, Any]:
        """The command a user in `guild_id` (None: a DM) sees as /name: the guild's, else the global one."""
        registered = [*(self.commands.get(guild_id) or [] if guild_id else []), *self.commands.get(None, [])]
        command = next((c for c in registered if c["name"] == name), None)
        if command is None:
            raise AssertionError(f"/{name} was never synced where {guild_id or 'a DM'} could see it: {self.commands}")
        return command

    def invoke_command(
        self,
        user: dict[str, Any],
        name: str,
        options: list[dict[str, Any]] | None = None,
        *,
        channel_id: str | None = None,
        permissions: int = 0,
        kind: int = APPLICATION_COMMAND,
    ) -> dict[str, Any]:
        """A user runs a slash command: INTERACTION_CREATE (type 2). Returns the interaction.

        `kind=AUTOCOMPLETE` (4) is the same payload while the user types: one option (nested in
        its subcommand) carries `"focused": true` and the partial value."""
        cid = channel_id or str(self.channel_id)
        command = self.synced_command(name, self._guild_id_of(cid))
        data = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": options or [],
            **({"guild_id": command["guild_id"]} if command.get("guild_id") else {}),
        }
        return self._interaction(user, kind, cid, data, permissions=permissions)

    def autocomplete(
        self, user: dict[str, Any], name: str, subcommand: str | None, option: str, typed: str = ""
    ) -> dict[str, Any]:
        """A user types `typed` into `option` of /name [subcommand] (an AUTOCOMPLETE interaction)."""
        focused = [{"type": 3, "name": option, "value": typed, "focused": True}]
        options = [{"type": 1, "name": subcommand, "options": focused}] if subcommand else focused
        return self.invoke_command(user, name, options, kind=AUTOCOMPLETE)

    def click(self, user: dict[str, Any], message_id: str, custom_id: str) -> dict[str, Any]:
        """A user clicks the button `custom_id` on a message (a MESSAGE_COMPONENT interaction)."""
        msg = self.messages[message_id]
        buttons = [c for row in msg["components"] if row.get("type") == 1 for c in row.get("components", [])]
        if not any(b.get("custom_id") == custom_id for b in buttons):
            raise AssertionError(f"message {message_id} has no button {custom_id!r}: {msg['components']}")
        data = {"custom_id": custom_id, "component_type": 2}
        return self._interaction(user, MESSAGE_COMPONENT, msg["channel_id"], data, msg)

    def submit_modal(
        self, user: dict[str, Any], opened_by: dict[str, Any], *values: str, choice: str = "wrong"
    ) -> dict[str, Any]:
        """`user` submits the modal the bot opened in answer to `opened_by`: its text inputs get
        `values` in order ("" leaves one empty), its radio groups the option valued `choice`."""
        modal = wait_until(lambda: self.modal_of(opened_by), what="the modal")
        given = iter(values)

        def submitted(component: dict[str, Any]) -> dict[str, Any]:
            if component["type"] == 1:  # an action row (the older layout)
                return {"type": 1, "components": [submitted(c) for c in component["components"]]}
            if component["type"] == 18:  # a label around its input
                return {"type": 18, "id": component.get("id", 0), "component": submitted(component["component"])}
            if component["type"] == 21:  # a radio group: one of its options
                if choice not in [o["value"] for o in component["options"]]:
                    raise AssertionError(f"the modal offers no option {choice!r}")
                return {"type": 21, "id": component.get("id", 0), "custom_id": component["custom_id"], "value": choice}
            value = next(given)
            if not value and component.get("required", True):
                raise AssertionError("Discord does not send a modal whose required text input is empty")
            return {"type": component["type"], "id": component.get("id", 0), "custom_id": component["custom_id"],
                    "value": value}  # fmt: skip

        data = {"custom_id": modal["custom_id"], "components": [submitted(c) for c in modal["components"]]}
        message = self.messages.get(opened_by["message"]["id"]) if "message" in opened_by else None
        return self._interaction(user, MODAL_SUBMIT, opened_by["channel_id"], data, message)

    def modal_of(self, interaction: dict[str, Any]) -> dict[str, Any] | None:
        """The modal the bot opened in answer to `interaction`, if it did."""
        callback = self.callbacks.get(interaction["id"])
        return callback["data"] if callback is not None and callback["type"] == MODAL else None

    def callback_of(self, interaction: dict[str, Any]) -> dict[str, Any]:
        """The bot's answer to `interaction` (waited for): its callback body, `type` and `data`."""
        return wait_until(lambda: self.callbacks.get(interaction["id"]), what=f"the answer to {interaction['id']}")

    def rate_limit(self, method: str, path_regex: str, times: int = 1, retry_after: float = 0.3) -> None:
        """Answer the next `times` calls matching METHOD and the path regex with 429."""
        with self._lock:
            self._rate_limits.append(_RateLimit(method.upper(), re.compile(path_regex), times, retry_after))

    def limit_route(
        self, method: str, path_regex: str, limit: int = 5, window_s: float = 5.0, *, announce: bool = True
    ) -> None:
        """Hold a route to `limit` calls per `window_s` for each value of the regex's first group (the
        channel id: Discord's edits are about 5 per 5 s per channel), answering 429 beyond it.

        Discord announces what is left of a bucket on every answer, and discord.py waits for it;
        `announce=False` leaves the headers out of successful answers, as when other processes
        spend the same bucket and this one cannot know: it meets the 429s instead."""
        with self._lock:
            bucket = f"route-{len(self._route_limits)}"  # distinct buckets: discord.py keys its limiters on them
            pattern = re.compile(path_regex)
            self._route_limits.append(_RouteLimit(method.upper(), pattern, limit, window_s, bucket, announce))

    def _route_budget(self, method: str, path: str) -> tuple[_RouteLimit, int, float] | None:
        """Spend one call of the route's window: (its limit, calls left, seconds to reset); None if free.
        Left below zero: this call is over the limit. Called under `_lock`."""
        for limit in self._route_limits:
            match = limit.pattern.fullmatch(path) if limit.method == method else None
            if match is None:
                continue
            key, now = (match.group(1) if match.groups() else ""), time.monotonic()
            start, used = limit.windows.get(key, (now, 0))
            if now - start >= limit.window_s:
                start, used = now, 0
            limit.windows[key] = (start, used + 1)
            return limit, limit.limit - used - 1, start + limit.window_s - now
        return None

    def drop_gateway(self, *, hold_resume: bool = False, code: int = 4000) -> None:
        """Close the bot's gateway connection with a resumable code (as Discord does at times).

        With `hold_resume`, a RESUME waits until `release_resume()` so that the test can
        dispatch events while the bot is provably disconnected: they must be replayed.
        """

        async def go() -> None:
            session = self._current
            assert session is not None and session.ws is not None, "no live gateway connection"
            ws, session.ws = session.ws, None
            self._resume_gate = asyncio.Event() if hold_resume else None
            await ws.close(code=code, message=b"emulator dropped the connection")

        self._run(go())

    def release_resume(self) -> None:
        def go() -> None:
            if self._resume_gate is not None:
                self._resume_gate.set()

        self._loop.call_soon_threadsafe(go)

    # ----------------------------------------------------------------- inspection

    def calls_to(self, method: str, path_regex: str, status: int | None = None) -> list[Call]:
        """Answered calls only: a call still in its handler (status 0) may already have changed
        state that a test sees, but its status is not known yet."""
        pattern = re.compile(path_regex)
        with self._lock:
            return [
                c
                for c in self.calls
                if c.status
                and c.method == method.upper()
                and pattern.fullmatch(c.path)
                and (status is None or c.status == status)
            ]

    def bot_messages(self, channel_id: str | None = None) -> list[dict[str, Any]]:
        """Messages the bot posted (in `channel_id` when given), oldest first."""
        with self._lock:
            msgs = list(self.messages.values())
        return [
            m
            for m in msgs
            if m["author"]["id"] == self.bot_user["id"] and (channel_id is None or m["channel_id"] == channel_id)
        ]

    def replies_to(self, message_id: str) -> list[dict[str, Any]]:
        return [m for m in self.bot_messages() if m.get("message_reference", {}).get("message_id") == message_id]

    def seq_of(self, event: str, predicate: Callable[[dict[str, Any]], bool]) -> int:
        """The sequence number of the first `event` dispatch whose data matches."""
        assert self._current is not None
        return next(p["s"] for p in list(self._current.log) if p["t"] == event and predicate(p["d"]))

    def is_connected(self) -> bool:
        return self._current is not None and self._current.ws is not None

    # ----------------------------------------------------------------- gateway

    async def _dispatch(self, event: str, data: dict[str, Any], session: _Session | None = None) -> None:
        """Log an event in the session (for replay) and send it if the bot is connected."""
        session = session or self._current
        if session is None:
            raise AssertionError("the bot has not identified on the gateway yet")
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE") and not session.intents & MESSAGE_CONTENT:
            data = self._as_seen_without_content(data)
        payload = {"op": OP_DISPATCH, "t": event, "s": session.seq + 1, "d": data}
        session.log.append(payload)
        if session.ws is not None:
            await self._send(session, session.ws, payload)

    def _as_seen_without_content(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A message as an app without the Message Content intent gets it: in a server, unless it
        mentions the bot or is the bot's own, its content, embeds, attachments and components are empty."""
        mentioned = any(m["id"] == self.bot_user["id"] for m in msg.get("mentions", []))
        if "guild_id" not in msg or mentioned or msg["author"]["id"] == self.bot_user["id"]:
            return msg
        return {**msg, "content": "", "embeds": [], "attachments": [], "components": []}

    async def _send(self, session: _Session, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        async with session.lock:
            if not ws.closed:
                await ws.send_str(json.dumps(payload))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        session: _Session | None = None
        await ws.send_str(json.dumps({"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}))
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            payload = json.loads(msg.data)
            self.gateway_ops.append(payload)
            op, data = payload.get("op"), payload.get("d")
            if op == OP_HEARTBEAT:
                await ws.send_str(json.dumps({"op": OP_HEARTBEAT_ACK}))
            elif op == OP_IDENTIFY:
                if data.get("token") != self.token:
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                intents = int(data.get("intents") or 0)
                if self.refuse_message_content and intents & MESSAGE_CONTENT:
                    await ws.close(code=4014, message=b"Disallowed intent(s).")
                    break
                session = await self._identify(ws, intents)
            elif op == OP_RESUME:
                session = await self._resume(ws, data)
                if session is None:
                    await ws.send_str(json.dumps({"op": OP_INVALID_SESSION, "d": False}))
        if session is not None and session.ws is ws:
            session.ws = None
        return ws

    async def _identify(self, ws: web.WebSocketResponse, intents: int) -> _Session:
        session = _Session(session_id=uuid.uuid4().hex, intents=intents)
        self._sessions[session.session_id] = session
        self._current = session
        session.ws = ws
        ready = {
            "v": 10,
            "user": {**self.bot_user, "verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(self.guild_id), "unavailable": True}],
            "session_id": session.session_id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": self.app_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        await self._dispatch("READY", ready, session)
        await self._dispatch("GUILD_CREATE", self._guild_payload(), session)
        return session

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> _Session | None:
        session = self._sessions.get(data.get("session_id", ""))
        if session is None or data.get("token") != self.token:
            return None
        if self._resume_gate is not None:
            # Bounded so that a test that forgets to release cannot hang the emulator.
            await asyncio.wait_for(self._resume_gate.wait(), timeout=30)
            self._resume_gate = None
        # Discord replays what the bot missed; `replay_from` also re-sends what it already had,
        # as an at-least-once delivery may, to prove the bot does not act twice.
        seq = int(data.get("seq") or 0)
        index = min(seq, self.replay_from - 1) if self.replay_from else seq
        while index < len(session.log):  # events may arrive while we replay: loop to the end
            self.replayed.append(session.log[index])
            await self._send(session, ws, session.log[index])
            index += 1
        session.ws = ws  # no await since the loop's last check: nothing slips between the two
        self._current = session
        await self._send(session, ws, {"op": OP_DISPATCH, "t": "RESUMED", "s": session.seq, "d": {}})
        return session

    def _guild_payload(self) -> dict[str, Any]:
        channels = [
            {k: v for k, v in ch.items() if k != "guild_id"} for ch in self.channels.values() if ch["type"] == 0
        ]
        threads = [ch for ch in self.channels.values() if ch["type"] in (11, 12)]
        return {
            "id": str(self.guild_id),
            "name": "Emulated Guild",
            "unavailable": False,
            "large": False,
            "member_count": len(self.users),
            "owner_id": self.snowflake(),
            "joined_at": _now_iso(),
            "roles": [
                {"id": str(self.guild_id), "name": "@everyone", "permissions": "104324673", "position": 0},
                {"id": str(self.admin_role_id), "name": "bot-admin", "permissions": "0", "position": 1},
            ],
            "channels": channels,
            "threads": threads,
            "members": [self._member(self.bot_user["id"], with_user=True)],
            "emojis": [],
            "stickers": [],
            "features": [],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_tier": 0,
            "verification_level": 0,
            "explicit_content_filter": 0,
            "default_message_notifications": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "preferred_locale": "en-US",
            "system_channel_flags": 0,
        }

    # ----------------------------------------------------------------- REST

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        if request.path == "/gateway":
            return await handler(request)
        path = unquote(request.path.removeprefix(API_PREFIX))
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        call = Call(request.method, path, dict(request.query), body)
        if isinstance(body, (dict, list)):  # what the bot sends, checked against Discord's description
            self.spec.check(request.method, path, body)
        with self._lock:
            self.calls.append(call)
            forced = next(
                (
                    r
                    for r in self._rate_limits
                    if r.remaining > 0 and r.method == request.method and r.pattern.fullmatch(path)
                ),
                None,
            )
            if forced is not None:
                forced.remaining -= 1
            budget = self._route_budget(request.method, path) if forced is None else None
        if forced is not None:
            call.status = 429
            return _too_many(forced.retry_after, 5, "emulated-bucket")
        if budget is not None and budget[1] < 0:
            call.status = 429
            return _too_many(budget[2], budget[0].limit, budget[0].bucket)
        request[_PATH] = path
        request[_BODY] = body
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:  # aiohttp's error responses are raised, not returned
            call.status = exc.status
            raise
        call.status = response.status
        if budget is not None and budget[0].announce:  # Discord says what is left of the bucket on every answer
            route, left, reset_after = budget
            response.headers.update(_rate_headers(route.limit, left, reset_after, route.bucket))
        return response

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {self.token}"

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = request[_PATH]
        body = request[_BODY]
        method = request.method
        if not path.startswith(("/interactions/", "/webhooks/")) and not self._authorized(request):
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        for route_method, pattern, handler in self._routes:
            if route_method == method and (m := re.fullmatch(pattern, path)):
                return await handler(self, request, body, **m.groupdict())
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    async def _get_me(self, request: web.Request, body: Any) -> web.Response:
        return _json({**self.bot_user, "verified": True, "mfa_enabled": False})

    async def _get_application(self, request: web.Request, body: Any) -> web.Response:
        return _json(
            {
                "id": self.app_id,
                "name": "assistant",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": 0,
                "owner": self.make_user("owner"),
                "team": None,
                "interactions_endpoint_url": None,
                "bot": self.bot_user,
            }
        )

    async def _get_gateway(self, request: web.Request, body: Any) -> web.Response:
        return _json({"url": self.gateway_url})

    async def _get_gateway_bot(self, request: web.Request, body: Any) -> web.Response:
        return _json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
            }
        )

    async def _get_channel(self, request: web.Request, body: Any, channel_id: str) -> web.Response:
        channel = self.channels.get(channel_id)
        if channel is None:
            return _json({"message": "Unknown Channel", "code": 10003}, status=404)
        return _json(channel)

    async def _get_member(self, request: web.Request, body: Any, guild_id: str, user_id: str) -> web.Response:
        if guild_id != str(self.guild_id) or user_id not in self.member_roles:
            return _json({"message": "Unknown Member", "code": 10007}, status=404)
        return _json(self._member(user_id, with_user=True))

    async def _leave_guild(self, request: web.Request, body: Any, guild_id: str) -> web.Response:
        self.left_guilds.append(guild_id)
        return web.Response(status=204)

    async def _typing(self, request: web.Request, body: Any, channel_id: str) -> web.Response:
        return web.Response(status=204)

    async def _create_message(self, request: web.Request, body: Any, channel_id: str) -> web.Response:
        if channel_id not in self.channels:
            return _json({"message": "Unknown Channel", "code": 10003}, status=404)
        content = body.get("content") or ""
        flags = int(body.get("flags") or 0)
        if refused := _layout_refused(flags, content, body.get("components") or []):
            return _json({"message": refused, "code": 50035}, status=400)
        if len(content) > 2000:
            return _json(self._too_long(), status=400)
        ref = (body.get("message_reference") or {}).get("message_id")
        msg = self._message_payload(
            channel_id=channel_id,
            author=self.bot_user,
            content=content,
            reply_to=str(ref) if ref else None,
            flags=flags,
            extra={"components": body.get("components") or []},  # action rows of buttons, or a layout
        )
        out = self._with_reference(msg)
        await self._dispatch("MESSAGE_CREATE", out)  # Discord echoes the bot's own messages
        return _json(out)

    async def _get_message(self, request: web.Request, body: Any, channel_id: str, message_id: str) -> web.Response:
        msg = self.messages.get(message_id)
        if msg is None or msg["channel_id"] != channel_id:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        return _json(self._with_reference(msg))

    async def _edit_message(self, request: web.Request, body: Any, channel_id: str, message_id: str) -> web.Response:
        msg = self.messages.get(message_id)
        if msg is None or msg["channel_id"] != channel_id:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        if msg["author"]["id"] != self.bot_user["id"]:
            return _json({"message": "Cannot edit a message authored by another user", "code": 50005}, status=403)
        flags = int(body["flags"]) if body.get("flags") is not None else msg["flags"]
        if msg["flags"] & COMPONENTS_V2 and not flags & COMPONENTS_V2:
            return _json({"message": "A Components V2 message cannot become a plain one", "code": 50035}, status=400)
        content = body["content"] if "content" in body else msg["content"]
        components = body["components"] if "components" in body else msg["components"]
        if refused := _layout_refused(flags, content or "", components or []):
            return _json({"message": refused, "code": 50035}, status=400)
        if "content" in body:
            if len(body["content"] or "") > 2000:
                return _json(self._too_long(), status=400)
            msg["content"] = body["content"] or ""
        if "components" in body:
            msg["components"] = body["components"] or []
        msg["flags"] = flags
        msg["edited_timestamp"] = _now_iso()
        return _json(self._with_reference(msg))

    async def _delete_message(self, request: web.Request, body: Any, channel_id: str, message_id: str) -> web.Response:
        with self._lock:
            msg = self.messages.pop(message_id, None)
        if msg is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        await self._dispatch(
            "MESSAGE_DELETE",
            {
                "id": message_id,
                "channel_id": channel_id,
                **({"guild_id": msg["guild_id"]} if "guild_id" in msg else {}),
            },
        )
        return web.Response(status=204)

    async def _put_reaction(
        self, request: web.Request, body: Any, channel_id: str, message_id: str, emoji: str
    ) -> web.Response:
        msg = self.messages.get(message_id)
        if msg is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        msg["reactions"].append({"emoji": {"id": None, "name": emoji}, "count": 1, "me": True})
        await self._dispatch(*self._reaction_event(message_id, self.bot_user["id"], emoji, True))
        return web.Response(status=204)

    async def _delete_reaction(
        self, request: web.Request, body: Any, channel_id: str, message_id: str, emoji: str
    ) -> web.Response:
        msg = self.messages.get(message_id)
        if msg is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        msg["reactions"] = [r for r in msg["reactions"] if r["emoji"]["name"] != emoji]
        await self._dispatch(*self._reaction_event(message_id, self.bot_user["id"], emoji, False))
        return web.Response(status=204)

    async def _put_commands(
        self, request: web.Request, body: Any, app_id: str, guild_id: str | None = None
    ) -> web.Response:
        if app_id != self.app_id:
            return _json({"message": "Unknown Application", "code": 10002}, status=404)
        synced = []
        for cmd in body:
            synced.append(
                {
                    **cmd,
                    "id": self.snowflake(),
                    "application_id": self.app_id,
                    "version": self.snowflake(),
                    "type": cmd.get("type", 1),
                    "options": cmd.get("options", []),
                    **({"guild_id": guild_id} if guild_id else {}),
                }
            )
        self.commands[guild_id] = synced
        return _json(synced)

    async def _get_commands(
        self, request: web.Request, body: Any, app_id: str, guild_id: str | None = None
    ) -> web.Response:
        return _json(self.commands.get(guild_id, []))

    async def _interaction_callback(
        self, request: web.Request, body: Any, interaction_id: str, token: str
    ) -> web.Response:
        kind = body.get("type")
        data = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        interaction = self.interactions.get(interaction_id, {})
        if interaction_id in self.callbacks:
            return _json({"message": "Interaction has already been acknowledged.", "code": 40060}, status=400)
        self.callbacks[interaction_id] = body
        resource: dict[str, Any] = {"type": kind}
        message_id = None
        if kind == CHANNEL_MESSAGE:  # an immediate message
            msg = self._message_payload(
                channel_id=interaction.get("channel_id", str(self.channel_id)),
                author=self.bot_user,
                content=data.get("content") or "",
                msg_type=20,
                flags=flags,
                extra={"interaction_token": token, "components": data.get("components") or []},
            )
            message_id = msg["id"]
            resource["message"] = msg
        elif kind == UPDATE_MESSAGE and "message" in interaction:  # a click edits the message it is on
            msg = self.messages[interaction["message"]["id"]]
            msg.update({k: data[k] for k in ("content", "components") if k in data})
            message_id = msg["id"]
            resource["message"] = msg
        return _json(
            {
                "interaction": {
                    "id": interaction_id,
                    "type": interaction.get("type", APPLICATION_COMMAND),
                    "response_message_id": message_id,
                    "response_message_loading": kind == DEFERRED_MESSAGE,
                    "response_message_ephemeral": bool(flags & EPHEMERAL),
                },
                "resource": resource,
            }
        )

    async def _webhook_execute(self, request: web.Request, body: Any, app_id: str, token: str) -> web.Response:
        content = body.get("content") or ""
        if len(content) > 2000:
            return _json(self._too_long(), status=400)
        channel_id = self._interaction_channel(token)
        msg = self._message_payload(
            channel_id=channel_id,
            author=self.bot_user,
            content=content,
            msg_type=20,
            flags=int(body.get("flags") or 0),
            extra={"interaction_token": token, "webhook_id": app_id},
        )
        return _json(msg)

    async def _webhook_edit_original(self, request: web.Request, body: Any, app_id: str, token: str) -> web.Response:
        msg = self._message_payload(
            channel_id=self._interaction_channel(token),
            author=self.bot_user,
            content=body.get("content") or "",
            msg_type=20,
            extra={"interaction_token": token, "webhook_id": app_id},
        )
        return _json(msg)

    def _interaction_channel(self, token: str) -> str:
        logged = [p for s in self._sessions.values() for p in s.log if p["t"] == "INTERACTION_CREATE"]
        for payload in logged:
            if payload["d"]["token"] == token:
                return payload["d"]["channel_id"]
        return str(self.channel_id)

    @staticmethod
    def _too_long() -> dict[str, Any]:
        return {
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {
                "content": {
                    "_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]
                }
            },
        }

    _routes: ClassVar[list[tuple[str, str, Callable[..., Any]]]] = [
        ("GET", r"/users/@me", _get_me),
        ("GET", r"/oauth2/applications/@me", _get_application),
        ("GET", r"/applications/@me", _get_application),
        ("GET", r"/gateway", _get_gateway),
        ("GET", r"/gateway/bot", _get_gateway_bot),
        ("GET", r"/channels/(?P<channel_id>\d+)", _get_channel),
        ("GET", r"/guilds/(?P<guild_id>\d+)/members/(?P<user_id>\d+)", _get_member),
        ("DELETE", r"/users/@me/guilds/(?P<guild_id>\d+)", _leave_guild),
        ("POST", r"/channels/(?P<channel_id>\d+)/typing", _typing),
        ("POST", r"/channels/(?P<channel_id>\d+)/messages", _create_message),
        ("GET", r"/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)", _get_message),
        ("PATCH", r"/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)", _edit_message),
        ("DELETE", r"/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)", _delete_message),
        (
            "PUT",
            r"/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)/reactions/(?P<emoji>[^/]+)/@me",
            _put_reaction,
        ),
        (
            "DELETE",
            r"/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)/reactions/(?P<emoji>[^/]+)/@me",
            _delete_reaction,
        ),
        ("PUT", r"/applications/(?P<app_id>\d+)/commands", _put_commands),
        ("GET", r"/applications/(?P<app_id>\d+)/commands", _get_commands),
        ("PUT", r"/applications/(?P<app_id>\d+)/guilds/(?P<guild_id>\d+)/commands", _put_commands),
        ("GET", r"/applications/(?P<app_id>\d+)/guilds/(?P<guild_id>\d+)/commands", _get_commands),
        ("POST", r"/interactions/(?P<interaction_id>\d+)/(?P<token>[^/]+)/callback", _interaction_callback),
        ("POST", r"/webhooks/(?P<app_id>\d+)/(?P<token>[^/]+)", _webhook_execute),
        ("PATCH", r"/webhooks/(?P<app_id>\d+)/(?P<token>[^/]+)/messages/@original", _webhook_edit_original),
    ]
