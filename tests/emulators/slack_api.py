"""A local Slack emulator for end-to-end tests of the real slack-bolt app, on loopback.

It speaks Slack's wire protocol, so the real slack_sdk/bolt code runs unchanged against it:

- the Web API (`POST/GET {api_url}{method}`), which records every call it receives;
- Socket Mode: `apps.connections.open` returns a `ws://` loopback URL; the emulator sends `hello`,
  then delivers envelopes that the app must ack with their `envelope_id` (acks are recorded with
  their latency);
- HTTP mode: signed requests (`v0` HMAC-SHA256, `X-Slack-Request-Timestamp`) posted to the app's
  endpoint, optionally as retries (`X-Slack-Retry-Num`, `X-Slack-Retry-Reason`);
- `response_url`s for slash commands, which record what `respond()` posts;
- channels of every kind for `conversations.info` (public unless `add_channel` says otherwise);
- messages with `blocks` (the `markdown` block, the `context_actions` block with `feedback_buttons`)
  and the interaction payloads a click on those buttons sends (`block_actions`), `views.open` and
  the `view_submission` of a modal, delivered as Socket Mode `interactive` envelopes or as signed
  `payload=` forms in HTTP mode;
- native streaming (`chat.startStream` / `appendStream` / `stopStream`; `streaming_error` makes a
  workspace refuse it; `task_update` chunks kept per message), the legacy AI app surface
  (`assistant_thread_started` events, `assistant.threads.setStatus` / `setSuggestedPrompts` /
  `setTitle`);
- the agent experience: `app_home_opened` (tab `messages`) and `app_context_changed` events,
  `agents.sessions.setStatus` / `rename` (sessions kept by thread, with their status history), and
  the Stop button (`click_stop`: only while a session is `processing`; it ends the thread's open
  streams and builds the `agent_session_stopped` event);
- a Socket Mode connection that can be dropped and refused (`drop_connections`) and accepted again.

`on_ack`, when set, is called on the emulator's thread the moment an ack arrives (a test can kill
the app right then).

It can answer the next N calls of a method with 429 + Retry-After, and, with `enforce_rate_limits`,
every call over Slack's published rates (`RATE_LIMITS`). The aiohttp server runs in a background
thread with its own event loop; every public method is safe to call from test threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import math
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, urlencode

from aiohttp import ClientSession, WSMsgType, web

T = TypeVar("T")

# Slack documents 4,000 characters as the most a message should hold (it truncates far later);
# the emulator is stricter than Slack so that a reply that is not split fails loudly.
MAX_TEXT = 4000
MAX_MARKDOWN = 12000  # the most markdown one payload may hold (markdown blocks, markdown_text)
TASK_STATUSES = ("pending", "in_progress", "complete", "error")  # of a task_update chunk

# Slack's published rates (api.slack.com/apis/rate-limits, each method's "Rate limits"): calls a
# minute, and what they are counted per (every limit is also per app). A bucket holds a minute's
# worth (Slack counts per-minute windows, "sporadic bursts are welcome"), except chat.postMessage:
# "1 per second per channel, short bursts allowed", modelled as bursts of POST_BURST.
RATE_LIMITS: dict[str, tuple[float, str]] = {
    "chat.update": (50, "team"),  # tier 3
    "chat.delete": (50, "team"),  # tier 3
    "chat.postMessage": (60, "channel"),  # special tier
    "chat.startStream": (20, "team"),  # tier 2
    "chat.appendStream": (100, "team"),  # tier 4
    "chat.stopStream": (20, "team"),  # tier 2
    "views.open": (100, "team"),  # tier 4
}
POST_BURST = 10


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's request signature: v0= + HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ApiCall:
    """One Web API call as the emulator received it."""

    method: str
    params: dict[str, Any]
    token: str | None
    at: float  # time.monotonic() when it arrived
    status: int  # the HTTP status the emulator answered with


@dataclass(frozen=True)
class Ack:
    """The app's answer to one Socket Mode envelope."""

    envelope_id: str
    payload: dict[str, Any] | None
    latency_s: float  # from sending the envelope to receiving its ack
    at: float  # time.monotonic() when the ack arrived


@dataclass(frozen=True)
class Responded:
    """One POST to a slash command's response_url (what bolt's `respond()` sent)."""

    body: dict[str, Any]
    at: float


@dataclass(frozen=True)
class Delivery:
    """The app's HTTP answer to one signed request (HTTP mode)."""

    status: int
    body: str
    latency_s: float


@dataclass
class _Posted:
    """A message in the emulated workspace (posted by a user or by the bot)."""

    channel: str
    ts: str
    text: str
    user: str
    thread_ts: str | None = None
    bot_id: str | None = None
    edits: list[str] = field(default_factory=list)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    streaming: bool = False  # started with chat.startStream and not stopped yet
    streamed: bool = False  # shown by a stream (its text is the markdown streamed)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task_update chunks by id, the latest of each

    def as_event(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "message", "user": self.user, "text": self.text, "ts": self.ts}
        if self.thread_ts:
            msg["thread_ts"] = self.thread_ts
        if self.bot_id:
            msg["bot_id"] = self.bot_id
        if self.blocks:
            msg["blocks"] = [dict(b) for b in self.blocks]
        if self.streamed:
            msg["streamed"] = True
        return msg

    def markdown(self) -> str:
        """What the message shows as Markdown: a stream's text, else its markdown blocks', else its text."""
        if self.streamed:
            return self.text
        shown = [b["text"] for b in self.blocks if b.get("type") == "markdown"]
        return "".join(shown) if shown else self.text

    def feedback_values(self) -> tuple[str, str] | None:
        """(👍 value, 👎 value) of the message's feedback buttons, if it has them."""
        for block in self.blocks:
            for element in block.get("elements", []) if block.get("type") == "context_actions" else []:
                if element.get("type") == "feedback_buttons":
                    return element["positive_button"]["value"], element["negative_button"]["value"]
        return None


class SlackEmulator:
    """Start with `with SlackEmulator() as slack:`; point the app at `slack.api_url`."""

    team_id = "T0TEST"
    app_id = "A0TEST"
    bot_user_id = "UBOT"
    bot_id = "BBOT"

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test-token",
        app_token: str = "xapp-test-token",
        signing_secret: str = "test-signing-secret",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.users: dict[str, dict[str, Any]] = {
            self.bot_user_id: {"id": self.bot_user_id, "name": "assistant", "is_bot": True},
        }
        self._cond = threading.Condition()
        self._calls: list[ApiCall] = []
        self._acks: dict[str, Ack] = {}
        self._sent_at: dict[str, float] = {}
        self._responses: list[Responded] = []
        self._messages: dict[tuple[str, str], _Posted] = {}
        self._channel_kinds: dict[str, str] = {}
        self.on_ack: Callable[[Ack], None] | None = None
        self._rate_limits: dict[str, tuple[int, int]] = {}
        self._enforcing = False
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # (method, key) -> (tokens, at)
        self.streaming_error = ""  # set: chat.startStream answers this error (the workspace can't stream)
        self.sessions: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, thread_ts) -> title, statuses
        self.prompts: dict[str, list[dict[str, str]]] = {}  # channel -> the suggested prompts set last
        self.agent_error = ""  # set: agents.sessions.* answer this error (the app is not an agent)
        self._views: dict[str, dict[str, Any]] = {}
        self._triggers: dict[str, float] = {}  # trigger_id -> when it was issued (valid 3 s)
        self._refusing = False
        self._sockets: list[web.WebSocketResponse] = []
        self._connections = 0
        self._ts = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="slack-emulator", daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        self._run(self._start())
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """What the app's WebClient takes as `base_url` (the trailing slash matters)."""
        return f"{self.base_url}/api/"

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link/", self._socket)
        app.router.add_post("/respond/{token}", self._respond)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # Bind first so that the port is known before anyone connects.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def _stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- what tests read -------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[ApiCall]:
        with self._cond:
            return [c for c in self._calls if method is None or c.method == method]

    def ok_calls(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls(method) if c.status == 200]

    def responses(self) -> list[Responded]:
        """What was posted to response_urls, in order."""
        with self._cond:
            return list(self._responses)

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The messages of a thread (root first), with their current text."""
        with self._cond:
            msgs = [
                m
                for m in self._messages.values()
                if m.channel == channel and (m.ts == thread_ts or m.thread_ts == thread_ts)
            ]
            return [_shown(m) for m in sorted(msgs, key=lambda m: m.ts)]

    def bot_messages(self, channel: str) -> list[dict[str, Any]]:
        with self._cond:
            msgs = [m for m in self._messages.values() if m.channel == channel and m.bot_id]
            return [_shown(m) for m in sorted(msgs, key=lambda m: m.ts)]

    def views(self) -> list[dict[str, Any]]:
        """The modals opened with views.open, in order (each with its `id`)."""
        with self._cond:
            return list(self._views.values())

    def wait_for(self, check: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
        """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            with self._cond:
                self._cond.wait(min(remaining, 0.05))

    def stays(self, check: Callable[[], bool], for_s: float = 0.5) -> bool:
        """True when `check` holds throughout `for_s` (for asserting that nothing more happens)."""
        deadline = time.monotonic() + for_s
        while time.monotonic() < deadline:
            if not check():
                return False
            with self._cond:
                self._cond.wait(0.02)
        return check()

    # -- what tests control ----------------------------------------------------------------

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` with 429 and `Retry-After: retry_after`."""
        with self._cond:
            self._rate_limits[method] = (times, retry_after)

    def enforce_rate_limits(self, on: bool = True) -> None:
        """Answer every call over RATE_LIMITS with 429 and the Retry-After until a call fits again."""
        with self._cond:
            self._enforcing, self._buckets = on, {}

    def _over_limit(self, method: str, params: dict[str, Any]) -> int:
        """Seconds to wait when this call is over its rate (0: it fits, and is counted); under _cond."""
        if not self._enforcing or method not in RATE_LIMITS:
            return 0
        per_minute, per = RATE_LIMITS[method]
        key = str(params.get("channel")) if per == "channel" else self.team_id
        capacity = POST_BURST if method == "chat.postMessage" else per_minute
        now, rate = time.monotonic(), per_minute / 60.0
        tokens, at = self._buckets.get((method, key), (capacity, now))
        tokens = min(capacity, tokens + (now - at) * rate)
        if tokens < 1:
            self._buckets[(method, key)] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / rate))
        self._buckets[(method, key)] = (tokens - 1, now)
        return 0

    def add_user(self, user_id: str, name: str) -> None:
        with self._cond:
            self.users[user_id] = {"id": user_id, "name": name, "real_name": name.title(), "is_bot": False}

    def add_channel(self, channel: str, kind: str) -> None:
        """Make `channel` a `group` (private channel), an `mpim` (group DM) or an `im`."""
        with self._cond:
            self._channel_kinds[channel] = kind

    def next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def user_message(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        channel_type: str = "channel",
        mention: bool = False,
    ) -> dict[str, Any]:
        """Post a user's message into the workspace and return its event (`message` or `app_mention`)."""
        ts = self.next_ts()
        with self._cond:
            self._messages[(channel, ts)] = _Posted(channel, ts, text, user, thread_ts)
        event = {
            "type": "app_mention" if mention else "message",
            "user": user,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "channel": channel,
            "team": self.team_id,
        }
        if not mention:
            event["channel_type"] = channel_type
        if thread_ts:
            event["thread_ts"] = thread_ts
        return event

    def reaction_event(self, channel: str, ts: str, user: str, emoji: str, *, added: bool = True) -> dict[str, Any]:
        return {
            "type": "reaction_added" if added else "reaction_removed",
            "user": user,
            "reaction": emoji,
            "item": {"type": "message", "channel": channel, "ts": ts},
            "item_user": self.bot_user_id,
            "event_ts": self.next_ts(),
        }

    def event_body(self, event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        """The Events API callback that wraps `event` (the same in both modes)."""
        return {
            "token": "legacy-verification-token",
            "team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:12].upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {"team_id": self.team_id, "user_id": self.bot_user_id, "is_bot": True, "is_enterprise_install": False}
            ],
        }

    def command_body(self, command: str, text: str, user: str, channel: str) -> dict[str, str]:
        """A slash command's form fields, with a response_url that points back here."""
        return {
            "token": "legacy-verification-token",
            "team_id": self.team_id,
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": self.users.get(user, {}).get("name", user),
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "response_url": f"{self.base_url}/respond/{uuid.uuid4().hex}",
            "trigger_id": uuid.uuid4().hex,
        }

    def assistant_thread_started(self, channel: str, user: str, context_channel: str = "") -> dict[str, Any]:
        """A user opened a new thread in the app's side panel: its `assistant_thread_started` event."""
        thread_ts = self.next_ts()
        context = {"channel_id": context_channel, "team_id": self.team_id, "enterprise_id": None}
        thread = {"user_id": user, "context": context if context_channel else {}, "channel_id": channel,
                  "thread_ts": thread_ts}  # fmt: skip
        return {"type": "assistant_thread_started", "assistant_thread": thread, "event_ts": self.next_ts()}

    def app_home_opened(self, user: str, channel: str, tab: str = "messages") -> dict[str, Any]:
        """A user opened the app's Messages (or Home) tab: under agent_view it replaces assistant_thread_started."""
        return {"type": "app_home_opened", "user": user, "channel": channel, "tab": tab, "event_ts": self.next_ts()}

    def app_context_changed(self, user: str, channel: str, viewing: str) -> dict[str, Any]:
        entity = {"type": "slack#/types/channel_id", "value": viewing, "team_id": self.team_id}
        return {"type": "app_context_changed", "user": user, "channel": channel, "event_ts": self.next_ts(),
                "context": {"entities": [entity]}}  # fmt: skip

    def session_status(self, channel: str, thread_ts: str) -> str:
        with self._cond:
            found = self.sessions.get((channel, thread_ts))
            return found["statuses"][-1] if found else ""

    def click_stop(self, channel: str, thread_ts: str, user: str) -> dict[str, Any]:
        """The user clicks Stop in a session: Slack ends its open streams and sends agent_session_stopped."""
        with self._cond:
            if self.session_status(channel, thread_ts) != "processing":
                raise AssertionError(f"no Stop button: the session of {channel}/{thread_ts} is not processing")
            stopped = [m for m in self._messages.values()
                       if m.channel == channel and m.thread_ts == thread_ts and m.streaming]  # fmt: skip
            for m in stopped:
                m.streaming = False
        return {"type": "agent_session_stopped", "channel": channel, "thread_ts": thread_ts, "user": user,
                "streaming_message_ts": [m.ts for m in stopped], "event_ts": self.next_ts()}  # fmt: skip

    def _user(self, user: str) -> dict[str, Any]:
        name = self.users.get(user, {}).get("name", user)
        return {"id": user, "username": name, "name": name, "team_id": self.team_id}

    def _trigger(self) -> str:
        trigger = f"{next(self._ts)}.{uuid.uuid4().hex[:12]}"
        with self._cond:
            self._triggers[trigger] = time.monotonic()
        return trigger

    def click_feedback(self, channel: str, ts: str, user: str, *, positive: bool = True) -> dict[str, Any]:
        """The `block_actions` payload of `user` clicking 👍 (or 👎) under the bot message `ts`;
        fails, as Slack would have nothing to click, when the message has no feedback buttons."""
        with self._cond:
            msg = self._messages.get((channel, ts))
            values = msg.feedback_values() if msg else None
            message = msg.as_event() if msg else {}
        if values is None:
            raise AssertionError(f"message {channel}:{ts} has no feedback buttons")
        container = {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False}
        if message.get("thread_ts"):
            container["thread_ts"] = message["thread_ts"]
        action = {"type": "feedback_buttons", "action_id": "feedback", "block_id": f"b{ts}",
                  "value": values[0 if positive else 1], "action_ts": self.next_ts()}  # fmt: skip
        return {
            "type": "block_actions", "user": self._user(user), "api_app_id": self.app_id,
            "token": "legacy-verification-token", "container": container, "trigger_id": self._trigger(),
            "team": {"id": self.team_id, "domain": "emulated"}, "enterprise": None, "is_enterprise_install": False,
            "channel": {"id": channel, "name": "general"}, "message": message, "state": {"values": {}},
            "response_url": f"{self.base_url}/respond/{uuid.uuid4().hex}", "actions": [action],
        }  # fmt: skip

    def view_submission(self, view_id: str, user: str, text: str, choice: str = "wrong") -> dict[str, Any]:
        """The `view_submission` payload of `user` writing `text` into the modal's text input (empty:
        left empty), picking the option valued `choice` of its radio buttons, and sending it."""
        with self._cond:
            view = dict(self._views[view_id])
        values: dict[str, Any] = {}
        for block in view.get("blocks", []):
            element = block.get("element", {}) if block.get("type") == "input" else {}
            if element.get("type") == "radio_buttons":
                picked = [o for o in element["options"] if o["value"] == choice]
                if not picked:
                    raise AssertionError(f"the modal offers no option {choice!r}")
                state: dict[str, Any] = {"type": "radio_buttons", "selected_option": picked[0]}
            elif element:
                if not text and not block.get("optional"):
                    raise AssertionError(f"Slack does not send a modal whose required {block['block_id']} is empty")
                state = {"type": element["type"], "value": text or None}
            else:
                continue
            values[block["block_id"]] = {element["action_id"]: state}
        view["state"] = {"values": values}
        return {
            "type": "view_submission", "team": {"id": self.team_id, "domain": "emulated"}, "user": self._user(user),
            "api_app_id": self.app_id, "token": "legacy-verification-token", "trigger_id": self._trigger(),
            "view": view, "response_urls": [], "is_enterprise_install": False, "enterprise": None,
        }  # fmt: skip

    # -- Socket Mode -----------------------------------------------------------------------

    def wait_connected(self, timeout: float = 15.0) -> None:
        self.wait_for(lambda: self._connections > 0 and self._sockets, timeout, "a Socket Mode connection")

    def send_envelope(
        self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0, retry_reason: str = ""
    ) -> str:
        """Deliver one envelope over the current Socket Mode connection; returns its envelope_id."""
        envelope_id = str(uuid.uuid4())
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
        }
        if kind == "events_api":
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason
        self.wait_connected()  # the client may be reconnecting
        with self._cond:
            ws = self._sockets[-1]
            self._sent_at[envelope_id] = time.monotonic()
        self._run(ws.send_str(json.dumps(envelope)))
        return envelope_id

    def send_event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_attempt: int = 0, retry_reason: str = ""
    ) -> str:
        body = self.event_body(event, event_id)
        return self.send_envelope("events_api", body, retry_attempt=retry_attempt, retry_reason=retry_reason)

    def send_command(self, command: str, text: str, user: str, channel: str) -> str:
        return self.send_envelope("slash_commands", self.command_body(command, text, user, channel))

    def send_interaction(self, payload: dict[str, Any]) -> str:
        """A `block_actions` or `view_submission` payload, as Socket Mode delivers it."""
        return self.send_envelope("interactive", payload)

    def drop_connections(self, *, refuse: bool = False) -> None:
        """Close every Socket Mode websocket (as Slack does when it moves a connection); with
        `refuse`, new ones are turned away (503) until `accept_connections`."""
        with self._cond:
            self._refusing = refuse
            sockets = list(self._sockets)
        for ws in sockets:
            self._run(ws.close())

    def accept_connections(self) -> None:
        with self._cond:
            self._refusing = False

    def connected(self) -> bool:
        with self._cond:
            return bool(self._sockets)

    def wait_ack(self, envelope_id: str, timeout: float = 10.0) -> Ack:
        return self.wait_for(lambda: self._acks.get(envelope_id), timeout, f"ack of envelope {envelope_id}")

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if self._refusing:
            return web.Response(status=503, text="unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {"host": "emulator", "approximate_connection_time": 3600},
                    "connection_info": {"app_id": self.app_id},
                }
            )
        )
        with self._cond:
            self._sockets.append(ws)
            self._connections += 1
            self._cond.notify_all()
        pinger = asyncio.create_task(self._ping(ws))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                envelope_id = data.get("envelope_id")
                with self._cond:
                    sent, now = self._sent_at.get(envelope_id), time.monotonic()
                    ack = None
                    if sent is not None and envelope_id not in self._acks:
                        ack = self._acks[envelope_id] = Ack(envelope_id, data.get("payload"), now - sent, now)
                        self._cond.notify_all()
                if ack is not None and self.on_ack is not None:
                    self.on_ack(ack)
        finally:
            pinger.cancel()
            with self._cond:
                self._sockets.remove(ws)
        return ws

    @staticmethod
    async def _ping(ws: web.WebSocketResponse) -> None:
        """Ping as Slack does. Frequent pings also wake the client's blocking recv so that it
        closes promptly at the end of a test; unlike aiohttp's heartbeat, a late pong (a busy
        CI machine) never drops the connection."""
        while not ws.closed:
            await asyncio.sleep(0.5)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.ping()

    # -- HTTP mode -------------------------------------------------------------------------

    def post_signed(
        self,
        url: str,
        body: bytes,
        content_type: str,
        *,
        timestamp: int | None = None,
        secret: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
    ) -> Delivery:
        """POST `body` to the app as Slack does, signed with `secret` (default: the right one)."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(secret or self.signing_secret, ts, body),
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"

        async def post() -> Delivery:
            start = time.monotonic()
            async with ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
                text = await resp.text()
                return Delivery(resp.status, text, time.monotonic() - start)

        return self._run(post())

    def post_event(self, url: str, event: dict[str, Any], *, event_id: str | None = None, **kw: Any) -> Delivery:
        body = json.dumps(self.event_body(event, event_id)).encode()
        return self.post_signed(url, body, "application/json", **kw)

    def post_command(self, url: str, command: str, text: str, user: str, channel: str, **kw: Any) -> Delivery:
        body = urlencode(self.command_body(command, text, user, channel)).encode()
        return self.post_signed(url, body, "application/x-www-form-urlencoded", **kw)

    def post_interaction(self, url: str, payload: dict[str, Any], **kw: Any) -> Delivery:
        """An interaction payload as HTTP mode delivers it: a signed form with one `payload` field."""
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.post_signed(url, body, "application/x-www-form-urlencoded", **kw)

    # -- the Web API -----------------------------------------------------------------------

    async def _respond(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._cond:
            self._responses.append(Responded(body, time.monotonic()))
            self._cond.notify_all()
        return web.Response(text="ok")

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            raw = await request.read()
            if request.content_type == "application/json":
                params.update(json.loads(raw or b"{}"))
            else:
                params.update(parse_qsl(raw.decode()))
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else params.get("token")

        with self._cond:
            times, retry_after = self._rate_limits.get(method, (0, 0))
            over = self._over_limit(method, params) if times <= 0 else 0
            if over:
                times, retry_after = 1, over
            elif times > 0:
                self._rate_limits[method] = (times - 1, retry_after)
            if times > 0:
                self._record(method, params, token, 429)
                return web.json_response(
                    {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(retry_after)}
                )
            expected = self.app_token if method == "apps.connections.open" else self.bot_token
            if token != expected:
                result: dict[str, Any] = {"ok": False, "error": "invalid_auth"}
            else:
                result = self._handle(method, params)
            self._record(method, params, token, 200)
        return web.json_response(result)

    def _record(self, method: str, params: dict[str, Any], token: str | None, status: int) -> None:
        self._calls.append(ApiCall(method, params, token, time.monotonic(), status))
        self._cond.notify_all()

    def _handle(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        """Answer one authorised call; runs under self._cond."""
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://emulated.slack.com/",
                "team": "Emulated",
                "user": "assistant",
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
                "is_enterprise_install": False,
            }
        if method == "apps.connections.open":
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/link/?ticket={uuid.uuid4().hex}"}
        blocks = _json_field(p.get("blocks")) or []
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            text = str(p.get("text") or "")
            if not p.get("channel"):
                return {"ok": False, "error": "channel_not_found"}
            if not text and not blocks:
                return {"ok": False, "error": "no_text"}
            if len(text) > MAX_TEXT:
                return {"ok": False, "error": "msg_too_long"}
            if invalid := _invalid_blocks(blocks):
                return {"ok": False, "error": "invalid_blocks", "errors": [invalid]}
        if method == "chat.postMessage":
            ts = self.next_ts()
            msg = _Posted(p["channel"], ts, str(p.get("text") or ""), self.bot_user_id, p.get("thread_ts"),
                          self.bot_id, blocks=blocks)  # fmt: skip
            self._messages[(msg.channel, ts)] = msg
            return {"ok": True, "channel": msg.channel, "ts": ts, "message": msg.as_event()}
        if method == "chat.update":
            found = self._messages.get((p["channel"], str(p.get("ts"))))
            if found is None or found.bot_id != self.bot_id:
                return {"ok": False, "error": "message_not_found" if found is None else "cant_update_message"}
            found.edits.append(found.text)
            found.text, found.blocks = str(p.get("text") or ""), blocks
            return {"ok": True, "channel": found.channel, "ts": found.ts, "text": found.text}
        if method.startswith("chat.") and method.endswith("Stream"):
            return self._stream(method, p, blocks)
        if method == "views.open":
            issued = self._triggers.pop(str(p.get("trigger_id")), None)
            if issued is None or time.monotonic() - issued > 3.0:
                return {"ok": False, "error": "invalid_trigger_id" if issued is None else "expired_trigger_id"}
            view = _json_field(p.get("view")) or {}
            if view.get("type") != "modal" or len(view.get("title", {}).get("text", "")) > 24:
                return {"ok": False, "error": "invalid_arguments"}
            view = view | {"id": f"V{next(self._ts):08d}", "team_id": self.team_id, "state": {"values": {}}}
            self._views[view["id"]] = view
            return {"ok": True, "view": view}
        if method == "assistant.threads.setSuggestedPrompts" and p.get("channel_id") and not p.get("thread_ts"):
            self.prompts[str(p["channel_id"])] = list(_json_field(p.get("prompts")) or [])  # the Messages tab's
            return {"ok": True}
        if method.startswith("assistant.threads."):
            if not p.get("channel_id") or not p.get("thread_ts"):
                return {"ok": False, "error": "invalid_arguments"}
            return {"ok": True}
        if method.startswith("agents.sessions."):
            return self._session(method, p)
        if method == "chat.delete":
            found = self._messages.get((str(p.get("channel")), str(p.get("ts"))))
            if found is None or found.bot_id != self.bot_id:
                return {"ok": False, "error": "message_not_found" if found is None else "cant_delete_message"}
            del self._messages[(found.channel, found.ts)]
            return {"ok": True, "channel": found.channel, "ts": found.ts}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self.next_ts()}
        if method == "reactions.add":
            return {"ok": True}
        if method == "conversations.info":
            channel = str(p.get("channel"))
            kind = self._channel_kinds.get(channel, "channel")
            return {
                "ok": True,
                "channel": {
                    "id": channel,
                    "is_channel": kind == "channel",
                    "is_group": kind == "group",
                    "is_im": kind == "im",
                    "is_mpim": kind == "mpim",
                    "is_private": kind != "channel",
                },
            }
        if method == "users.info":
            user = self.users.get(str(p.get("user")))
            return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}
        if method == "conversations.replies":
            root = str(p.get("ts"))
            msgs = [
                m.as_event()
                for m in sorted(self._messages.values(), key=lambda m: m.ts)
                if m.channel == p.get("channel") and (m.ts == root or m.thread_ts == root)
            ]
            if not msgs:
                return {"ok": False, "error": "thread_not_found"}
            return {"ok": True, "messages": msgs, "has_more": False}
        return {"ok": False, "error": "unknown_method"}

    def _session(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        """agents.sessions.setStatus (creates the session) and rename."""
        if self.agent_error:
            return {"ok": False, "error": self.agent_error}
        key = (str(p.get("channel_id") or ""), str(p.get("thread_ts") or ""))
        if not all(key):
            return {"ok": False, "error": "invalid_arguments"}
        if method == "agents.sessions.rename":
            if key not in self.sessions or not 1 <= len(str(p.get("title") or "")) <= 200:
                return {"ok": False, "error": "session_not_found" if key not in self.sessions else "invalid_title"}
            self.sessions[key]["title"] = str(p["title"])
            return {"ok": True, "title": p["title"]}
        status = str(p.get("status") or "")
        if method != "agents.sessions.setStatus" or status not in ("processing", "active", "suspended", "closed"):
            return {"ok": False, "error": "invalid_arguments" if method.endswith("setStatus") else "unknown_method"}
        if len(str(p.get("title") or "")) > 200:
            return {"ok": False, "error": "invalid_title"}
        session = self.sessions.setdefault(key, {"title": str(p.get("title") or ""), "statuses": []})
        session["statuses"].append(status)
        return {"ok": True, "status": status, "title": session["title"]}

    def _stream(self, method: str, p: dict[str, Any], blocks: list[dict[str, Any]]) -> dict[str, Any]:
        """chat.startStream / appendStream / stopStream: one message whose markdown grows."""
        channel = str(p.get("channel") or "")
        chunks = _json_field(p.get("chunks")) or []
        text = str(p.get("markdown_text") or "") + "".join(
            str(c.get("text", "")) for c in chunks if c.get("type") == "markdown_text"
        )
        tasks = [c for c in chunks if c.get("type") == "task_update"]
        if any(c.get("status") not in TASK_STATUSES or not c.get("id") or not c.get("title")
               or len(str(c.get("details", ""))) > 256 for c in tasks):  # fmt: skip
            return {"ok": False, "error": "invalid_chunks"}
        if len(text) > MAX_MARKDOWN:
            return {"ok": False, "error": "msg_too_long"}
        if method == "chat.startStream":
            if self.streaming_error:
                return {"ok": False, "error": self.streaming_error}
            in_channel = self._channel_kinds.get(channel, "im" if channel.startswith("D") else "channel") != "im"
            if not channel or not p.get("thread_ts"):
                return {"ok": False, "error": "invalid_arguments"}
            if in_channel and not (p.get("recipient_user_id") and p.get("recipient_team_id")):
                return {"ok": False, "error": "invalid_arguments"}  # required when streaming to channels
            ts = self.next_ts()
            msg = _Posted(channel, ts, text, self.bot_user_id, str(p["thread_ts"]), self.bot_id,
                          streaming=True, streamed=True, tasks={c["id"]: c for c in tasks})  # fmt: skip
            self._messages[(channel, ts)] = msg
            return {"ok": True, "channel": channel, "ts": ts}
        found = self._messages.get((channel, str(p.get("ts"))))
        if found is None:
            return {"ok": False, "error": "message_not_found"}
        if not found.streaming:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        if len(found.text) + len(text) > MAX_MARKDOWN:
            return {"ok": False, "error": "msg_too_long"}
        if text:
            found.edits.append(found.text)
            found.text += text
        found.tasks.update({c["id"]: c for c in tasks})
        if method == "chat.stopStream":
            found.streaming, found.blocks = False, blocks
        return {"ok": True, "channel": channel, "ts": found.ts}


def _shown(m: _Posted) -> dict[str, Any]:
    """A message as tests read it: its event, the texts it showed before, what it shows as Markdown,
    and a stream's steps."""
    return m.as_event() | {"edits": list(m.edits), "markdown": m.markdown(), "streaming": m.streaming,
                           "tasks": dict(m.tasks)}  # fmt: skip


def _json_field(value: Any) -> Any:
    """A structured argument: JSON bodies carry it as is, forms as a JSON string."""
    return json.loads(value) if isinstance(value, str) and value else value


def _invalid_blocks(blocks: list[dict[str, Any]]) -> str:
    """Why Slack would refuse these blocks ('' if it would not): the checks that matter here."""
    if sum(len(b.get("text", "")) for b in blocks if b.get("type") == "markdown") > MAX_MARKDOWN:
        return "markdown blocks over 12,000 characters"
    for block in blocks:
        if block.get("type") == "context_actions":
            for element in block.get("elements", []):
                buttons = (element.get("positive_button"), element.get("negative_button"))
                if element.get("type") != "feedback_buttons" or not all(b and b.get("value") for b in buttons):
                    return "a context_actions element without its two buttons' values"
    return ""
