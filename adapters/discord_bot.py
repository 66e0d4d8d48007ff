"""Discord adapter: discord.py over the gateway, with application (slash) commands.

Convert Discord events into the core's values, call the core, send the result back. Votes,
corrections, admin rights, dedup and history live in the core; this file only speaks Discord.
The core is synchronous and blocks while it generates, so every call into it leaves the event
loop (answers on their own thread pool, so that a queue of waiting answers never starves the
quick calls: reactions, commands, dedup).

Conversations: a DM channel is one conversation; a thread is one conversation; in a channel,
a reply chain is one, keyed by the id of the user message that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import discord
import yarl
from discord import app_commands

from adapters.text import split_text
from bot.admin import parse_command
from bot.types import (
    CommandResult,
    ConversationKey,
    Done,
    Message,
    Queued,
    Reply,
    Token,
    UserError,
    dm_scope,
    workspace_scope,
)

if TYPE_CHECKING:
    from bot.config import DiscordSettings, Settings
    from bot.core import Core

log = logging.getLogger(__name__)

PLATFORM = "discord"
MAX_CHARS = 2000  # Discord's limit for a message's content
DEFAULT_API_URL = "https://discord.com/api/v10"
MAX_CHAIN = 50  # reply-chain hops followed to find where a conversation started
# Skin tones and the emoji presentation selector: 👍🏽 is still 👍.
_EMOJI_MODIFIERS = re.compile("[\U0001f3fb-\U0001f3ff\ufe0f]")
# Admin commands are hidden from members without Manage Server until a server admin changes it.
ADMIN_PERMISSIONS = discord.Permissions(manage_guild=True)

T = TypeVar("T")


# ----------------------------------------------------------------------------- pure helpers


def split_message(text: str) -> list[str]:
    return split_text(text, MAX_CHARS)


def api_base(url: str) -> str:
    """DISCORD_API_URL as discord.py's Route.BASE wants it: with /api/v10 (added if missing)."""
    url = url.rstrip("/")
    if re.search(r"/v\d+$", url):
        return url
    return url + ("/v10" if url.endswith("/api") else "/api/v10")


def configure_endpoints(settings: DiscordSettings) -> None:
    """Point discord.py at a REST proxy / gateway proxy (or the emulator in tests).

    Both are class attributes in discord.py, so this applies to every client in the process.
    """
    if settings.api_url:
        discord.http.Route.BASE = api_base(settings.api_url)
    if settings.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


def vote_emoji(emoji: discord.PartialEmoji) -> str:
    """The name the core's up/down lists use: the unicode emoji without modifiers, or a custom
    emoji's name."""
    return _EMOJI_MODIFIERS.sub("", emoji.name or "")


def plain_text(message: discord.Message, me_id: int) -> str:
    """The message's text for the model: our own mention removed, other mentions as @names."""
    text = re.sub(rf"<@!?{me_id}>", "", message.content)
    for user in message.mentions:
        # A function, not a string: a name like `\o/` would be read as a group reference.
        name = "@" + user.display_name
        text = re.sub(rf"<@!?{user.id}>", lambda _match, name=name: name, text)
    return text.strip()


def intents() -> discord.Intents:
    wanted = discord.Intents.none()
    wanted.guilds = True  # channels, threads and roles (for DISCORD_ADMIN_ROLE)
    wanted.guild_messages = True
    wanted.dm_messages = True
    wanted.message_content = True  # privileged: enable it in the developer portal
    wanted.guild_reactions = True
    wanted.dm_reactions = True
    return wanted


class _LRU(OrderedDict[int, ConversationKey]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def remember(self, key: int, value: ConversationKey) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


# ----------------------------------------------------------------------------- the reply on screen


class _ReplyMessages:
    """The Discord messages that show one reply: posted on the first show, edited after."""

    def __init__(self, channel: discord.abc.Messageable, reference: discord.MessageReference | None) -> None:
        self.channel = channel
        self.reference = reference
        self.messages: list[discord.Message] = []
        self._shown: list[str] = []

    async def show(self, parts: list[str]) -> list[discord.Message]:
        """Make the messages read `parts`, touching only what changed; returns new messages."""
        posted: list[discord.Message] = []
        for i, part in enumerate(parts):
            if i < len(self.messages):
                if self._shown[i] != part:
                    await self.messages[i].edit(content=part)
                    self._shown[i] = part
            else:
                # Every part replies to the user's message, so a reply to any part continues
                # the same chain (see DiscordBot._conversation).
                sent = await self.channel.send(part, reference=self.reference, mention_author=False)
                self.messages.append(sent)
                self._shown.append(part)
                posted.append(sent)
        while len(self.messages) > len(parts):  # the final text can be shorter than the stream
            await self.messages.pop().delete()
            self._shown.pop()
        return posted


# ----------------------------------------------------------------------------- the client


class DiscordBot(discord.Client):
    """A discord.py client wired to the core."""

    def __init__(self, core: Core, settings: Settings, **options: Any) -> None:
        options.setdefault("intents", intents())
        # Model output is data: it must never ping @everyone, roles or users.
        options.setdefault("allowed_mentions", discord.AllowedMentions.none())
        super().__init__(**options)
        self.core = core
        self.settings = settings
        self.tree = app_commands.CommandTree(self)
        self._answers = ThreadPoolExecutor(settings.answer_threads, thread_name_prefix="discord-answer")
        self._conversations = _LRU(10_000)  # bot/user message id -> its conversation
        self._background: set[asyncio.Task[Any]] = set()
        _add_commands(self)

    # ------------------------------------------------------------------ lifecycle

    async def setup_hook(self) -> None:
        """Sync the slash commands: to one guild (instant, for iteration) or globally."""
        guild_id = self.settings.discord.guild_id
        try:
            if guild_id:
                guild = discord.Object(guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
            else:
                synced = await self.tree.sync()
            log.info("synced %d Discord commands %s", len(synced), f"to guild {guild_id}" if guild_id else "globally")
        except discord.HTTPException as exc:
            # Chat still works without commands; the usual cause is a missing scope.
            log.error(
                "could not sync slash commands (%s); invite the bot with the applications.commands scope",
                exc,
            )

    async def close(self) -> None:
        await super().close()
        self._answers.shutdown(wait=False, cancel_futures=True)

    async def _core(self, func: Callable[..., T], *args: Any) -> T:
        """Call the (synchronous) core off the event loop, for quick calls only.

        They run on the loop's default executor, which no answer ever enters (answers use
        `_answers`), so a flood of questions cannot delay a vote, a command or a dedup lookup.
        """
        return await asyncio.to_thread(func, *args)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)  # keep a reference until it finishes
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ messages

    async def on_message(self, message: discord.Message) -> None:
        me = self.user
        if me is None or message.author.bot or message.author.id == me.id or message.is_system():
            return
        if message.webhook_id is not None:
            return
        text = plain_text(message, me.id)
        replied_bot_id = await self._replied_bot_message(message)
        conversation = await self._conversation(message, replied_bot_id)
        addressed = (
            message.guild is None
            or replied_bot_id is not None
            or any(user.id == me.id for user in message.mentions)
            or (
                isinstance(message.channel, discord.Thread)
                and await self._core(self.core.knows_conversation, conversation)
            )
        )
        if not addressed:
            return
        # Durable dedup: a MESSAGE_CREATE replayed after a gateway RESUME is answered once.
        if not await self._core(self.core.claim_event, PLATFORM, str(message.id)):
            return
        self._conversations.remember(message.id, conversation)
        prefix = self.settings.correction_prefix
        if replied_bot_id is not None and text.lower().startswith(prefix.lower()):
            await self._correct(message, replied_bot_id, text)
            return
        user_message = Message(conversation, str(message.author.id), text, message.author.display_name, _scope(message))
        await self._answer(message, user_message)

    async def _replied_bot_message(self, message: discord.Message) -> int | None:
        """The id of the bot message that `message` replies to, if it replies to one."""
        ref = message.reference
        if ref is None or ref.message_id is None or ref.type is not discord.MessageReferenceType.reply:
            return None
        if isinstance(ref.resolved, discord.Message):
            return ref.message_id if self.user and ref.resolved.author.id == self.user.id else None
        # Discord left the replied-to message out (too old, deleted): the core knows our replies.
        exchange = await self._core(self.core.exchange_for_message, PLATFORM, str(ref.message_id))
        return ref.message_id if exchange else None

    async def _conversation(self, message: discord.Message, replied_bot_id: int | None) -> ConversationKey:
        channel = message.channel
        if isinstance(channel, discord.Thread):
            return ConversationKey(PLATFORM, str(channel.parent_id), str(channel.id))
        if message.guild is None:
            return ConversationKey(PLATFORM, str(channel.id))
        if replied_bot_id is None:
            return ConversationKey(PLATFORM, str(channel.id), str(message.id))
        return await self._chain_conversation(channel, replied_bot_id)

    async def _chain_conversation(self, channel: Any, bot_message_id: int) -> ConversationKey:
        """The conversation of a reply chain, keyed by the user message that started it.

        Usually remembered from when we posted; after a restart, walk the chain up: each bot
        message replies to the user message that asked, which may reply to an earlier answer.
        """
        current = bot_message_id
        for _ in range(MAX_CHAIN):
            known = self._conversations.get(current)
            if known is not None:
                return known
            found = await self._fetch(channel, current)
            parent = found.reference if found is not None else None
            if found is None or parent is None or parent.message_id is None:
                break
            # A user message continues the chain only if it replies to one of our answers.
            if (
                self.user is not None
                and found.author.id != self.user.id
                and not await self._core(self.core.exchange_for_message, PLATFORM, str(parent.message_id))
            ):
                break
            current = parent.message_id
        return ConversationKey(PLATFORM, str(channel.id), str(current))

    async def _fetch(self, channel: Any, message_id: int) -> discord.Message | None:
        cached = discord.utils.get(self.cached_messages, id=message_id)
        if cached is not None:
            return cached
        try:
            return await channel.fetch_message(message_id)
        except discord.HTTPException:
            return None

    async def _answer(self, message: discord.Message, user_message: Message) -> None:
        reference = message.to_reference(fail_if_not_exists=False)
        screen = _ReplyMessages(message.channel, reference)
        typing = asyncio.create_task(_keep_typing(message.channel))
        reply: Reply | None = None
        try:
            reply = await self._stream(user_message, screen)
        except UserError as exc:
            await screen.show([f"⚠️ {exc}"])
        except Exception:
            log.exception("answering Discord message %s failed", message.id)
            await screen.show(["Sorry, something went wrong while answering. Please try again."])
        finally:
            typing.cancel()
        if reply is None:
            return
        for sent in screen.messages:
            self._conversations.remember(sent.id, user_message.conversation)
        if self.settings.discord.seed_reactions and screen.messages:
            await self._seed_reactions(screen.messages[-1])

    async def _stream(self, user_message: Message, screen: _ReplyMessages) -> Reply:
        """Show the reply as it is generated, editing at most every stream_interval_s."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()
        abandoned = threading.Event()

        def pump() -> None:
            # Runs on the answers pool: the core blocks while it waits and generates.
            def put(item: Any) -> None:
                loop.call_soon_threadsafe(events.put_nowait, item)

            try:
                for event in self.core.answer_stream(user_message):
                    if abandoned.is_set():
                        return
                    put(event)
                put(None)
            except BaseException as exc:  # handed to the loop, raised there
                with contextlib.suppress(RuntimeError):  # the loop is gone: the client closed
                    put(exc)

        loop.run_in_executor(self._answers, pump)
        interval = self.settings.discord.stream_interval_s
        text, dirty, next_show = "", False, 0.0
        try:
            while True:
                if dirty and loop.time() >= next_show:
                    await screen.show(split_message(text))
                    dirty, next_show = False, loop.time() + interval
                try:
                    event = await asyncio.wait_for(events.get(), next_show - loop.time() if dirty else None)
                except TimeoutError:
                    continue  # time for the next edit
                if isinstance(event, BaseException):
                    raise event
                if event is None:
                    raise RuntimeError("the answer ended without a reply")
                if isinstance(event, Queued) and not text:
                    await screen.show([f"⏳ Waiting in line: {event.position} ahead of you."])
                elif isinstance(event, Token):
                    text += event.text
                    dirty = bool(text.strip())
                elif isinstance(event, Done):
                    return await self._finish(event.reply, screen)
        finally:
            abandoned.set()

    async def _finish(self, reply: Reply, screen: _ReplyMessages) -> Reply:
        parts = split_message(reply.text or "(no answer)")
        # Link before the final edit: a vote cast the moment the reply reads complete counts.
        await self._link(reply, screen.messages[: len(parts)])
        posted = await screen.show(parts)
        await self._link(reply, posted)
        return reply

    async def _link(self, reply: Reply, messages: Iterable[discord.Message]) -> None:
        refs = [str(m.id) for m in messages]
        if refs:
            await self._core(lambda: [self.core.link_message(reply.exchange_id, PLATFORM, r) for r in refs])

    async def _seed_reactions(self, message: discord.Message) -> None:
        section = self.settings.discord
        for emoji in section.up_emoji[:1] + section.down_emoji[:1]:
            try:
                await message.add_reaction(emoji)
            except discord.HTTPException as exc:  # e.g. no Add Reactions permission here
                log.warning("could not add %s to message %s: %s", emoji, message.id, exc)
                return

    async def _correct(self, message: discord.Message, bot_message_id: int, text: str) -> None:
        exchange_id = await self._core(self.core.exchange_for_message, PLATFORM, str(bot_message_id))
        if exchange_id is None:
            answer = "I can't find the answer you are correcting; reply to one of my answers."
        else:
            try:
                result = await self._core(
                    self.core.correct,
                    PLATFORM,
                    str(message.author.id),
                    exchange_id,
                    text,
                    _roles(message.author),
                    _server(message.guild),
                )
                answer = result.text
            except UserError as exc:
                answer = f"⚠️ {exc}"
        for part in split_message(answer):
            await message.reply(part, mention_author=False)

    # ------------------------------------------------------------------ reactions

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self._reaction(payload, added=True)

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        await self._reaction(payload, added=False)

    async def _reaction(self, payload: discord.RawReactionActionEvent, added: bool) -> None:
        # Raw events arrive for every message, cached or not, so old replies still get votes.
        if self.user is not None and payload.user_id == self.user.id:
            return  # our own seeded 👍/👎
        if payload.member is not None and payload.member.bot:
            return
        try:
            result = await self._core(
                self.core.react,
                PLATFORM,
                str(payload.message_id),
                str(payload.user_id),
                vote_emoji(payload.emoji),
                added,
            )
        except UserError as exc:
            log.info("reaction on %s ignored: %s", payload.message_id, exc)
            return
        if result is not None:
            log.info("vote on exchange %s: score %d", result.exchange_id, result.score)

    # ------------------------------------------------------------------ slash commands

    async def run_command(self, interaction: discord.Interaction, text: str) -> None:
        """Defer (Discord wants an answer within 3 s), ask the core, follow up ephemerally."""
        if not await self._core(self.core.claim_event, PLATFORM, f"interaction:{interaction.id}"):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        # The core's command table says what is admin-only; refuse here before any work.
        if parse_command(text).admin_only and not self._may_admin(interaction):
            name = text.split()[0]
            await interaction.followup.send(f"Sorry, `/{name}` is for admins only.", ephemeral=True)
            return
        try:
            result = await self._core(
                self.core.command,
                PLATFORM,
                str(interaction.user.id),
                text,
                _command_conversation(interaction),
                _roles(interaction.user),
                _server(interaction.guild),
            )
        except Exception:
            log.exception("Discord command %r failed", text)
            result = CommandResult("Sorry, that command failed; the logs say why.", ok=False)
        for part in split_message(result.text):
            await interaction.followup.send(part, ephemeral=True)
        if result.followup is not None and interaction.channel_id is not None:
            self._spawn(self._report_later(interaction.channel_id, result.followup))

    def _may_admin(self, interaction: discord.Interaction) -> bool:
        """default_permissions is only a default server admins can change: check here too."""
        return self.core.is_admin(
            PLATFORM, str(interaction.user.id), _roles(interaction.user), _server(interaction.guild)
        )

    async def _report_later(self, channel_id: int, followup: Future[str]) -> None:
        """Post a long-running command's result (a retrain) in the channel it was asked in."""
        try:
            text = await asyncio.wrap_future(followup)
        except Exception as exc:
            text = f"⚠️ {exc}"
        channel = self.get_partial_messageable(channel_id)
        for part in split_message(text):
            await channel.send(part)


def _roles(user: discord.User | discord.Member) -> tuple[str, ...]:
    """Role ids only: a name can be copied by anyone in a server of their own."""
    if not isinstance(user, discord.Member):
        return ()
    return tuple(str(r.id) for r in user.roles)


def _server(guild: discord.Guild | None) -> str:
    """The server a request came from ('' in a DM); the core honours admin roles only in its own."""
    return str(guild.id) if guild is not None else ""


def _scope(message: discord.Message) -> str:
    """What a message teaches is seen in its server, or only in its DM."""
    if message.guild is None:
        return dm_scope(PLATFORM, str(message.channel.id))
    return workspace_scope(PLATFORM, str(message.guild.id))


async def _keep_typing(channel: discord.abc.Messageable) -> None:
    """Show "typing…" until cancelled (Discord shows it for about 10 s per trigger)."""
    while True:
        try:
            await channel.typing()
        except discord.HTTPException as exc:
            log.debug("typing indicator failed: %s", exc)
        await asyncio.sleep(8)


def _command_conversation(interaction: discord.Interaction) -> ConversationKey:
    channel = interaction.channel
    if isinstance(channel, discord.Thread):
        return ConversationKey(PLATFORM, str(channel.parent_id), str(channel.id))
    return ConversationKey(PLATFORM, str(interaction.channel_id or ""))


def _add_commands(bot: DiscordBot) -> None:
    """/help and /reset for everyone; the core's admin set, hidden by default_permissions."""
    tree = bot.tree

    @tree.command(name="help", description="What I can do")
    async def help_(interaction: discord.Interaction) -> None:
        await bot.run_command(interaction, "help")

    @tree.command(name="reset", description="Forget this conversation's history")
    async def reset(interaction: discord.Interaction) -> None:
        await bot.run_command(interaction, "reset")

    @tree.command(name="status", description="Model, LoRA, examples, feedback and training status")
    @app_commands.default_permissions(manage_guild=True)
    async def status(interaction: discord.Interaction) -> None:
        await bot.run_command(interaction, "status")

    @tree.command(name="retrain", description="Train a new LoRA on the feedback (reports here when done)")
    @app_commands.default_permissions(manage_guild=True)
    async def retrain(interaction: discord.Interaction) -> None:
        await bot.run_command(interaction, "retrain")

    @tree.command(name="teach", description="Add a verified answer at once")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.describe(question="The question", answer="The answer to give")
    async def teach(interaction: discord.Interaction, question: str, answer: str) -> None:
        await bot.run_command(interaction, f"teach {question} => {answer}")

    lora = app_commands.Group(name="lora", description="LoRA versions", default_permissions=ADMIN_PERMISSIONS)

    @lora.command(name="list", description="List LoRA versions")
    async def lora_list(interaction: discord.Interaction) -> None:
        await bot.run_command(interaction, "lora list")

    @lora.command(name="use", description="Serve a LoRA version")
    @app_commands.describe(version="A version from /lora list, e.g. v3")
    async def lora_use(interaction: discord.Interaction, version: str) -> None:
        await bot.run_command(interaction, f"lora use {version}")

    @lora.command(name="rollback", description="Go back to the previous LoRA")
    async def lora_rollback(interaction: discord.Interaction) -> None:
        await bot.run_command(interaction, "lora rollback")

    feedback = app_commands.Group(
        name="feedback", description="Review and export feedback", default_permissions=ADMIN_PERMISSIONS
    )

    @feedback.command(name="review", description="List corrections waiting for review")
    async def feedback_review(interaction: discord.Interaction) -> None:
        await bot.run_command(interaction, "feedback review")

    @feedback.command(name="accept", description="Accept a pending correction")
    @app_commands.describe(correction_id="The id shown by /feedback review")
    async def feedback_accept(interaction: discord.Interaction, correction_id: str) -> None:
        await bot.run_command(interaction, f"feedback accept {correction_id}")

    @feedback.command(name="reject", description="Reject a pending correction")
    @app_commands.describe(correction_id="The id shown by /feedback review")
    async def feedback_reject(interaction: discord.Interaction, correction_id: str) -> None:
        await bot.run_command(interaction, f"feedback reject {correction_id}")

    @feedback.command(name="export", description="Write feedback as JSONL to a new file in the bot's exports folder")
    @app_commands.describe(path="A file name under the bot's exports folder, e.g. feedback.jsonl")
    async def feedback_export(interaction: discord.Interaction, path: str) -> None:
        await bot.run_command(interaction, f"feedback export {path}")

    tree.add_command(lora)
    tree.add_command(feedback)


# ----------------------------------------------------------------------------- entry points


def build_client(core: Core, settings: Settings | None = None, **options: Any) -> DiscordBot:
    """A client ready for `await client.start(token)`; `options` go to discord.Client."""
    settings = settings or core.settings
    configure_endpoints(settings.discord)
    return DiscordBot(core, settings, **options)


def run(core: Core, settings: Settings) -> None:
    """Connect to Discord and serve until interrupted (used by `bot run`, maybe in a thread).

    Fatal set-up problems are logged with what to do, not raised as SystemExit, which a
    thread would swallow without a word.
    """
    if not settings.discord.token:
        log.error("DISCORD_TOKEN is not set; see docs/discord.md")
        return
    client = build_client(core, settings)
    try:
        client.run(settings.discord.token, log_handler=None)  # the CLI configures logging
    except discord.PrivilegedIntentsRequired:
        log.error(
            "Discord refused the Message Content intent: enable it in the developer portal "
            "(Bot -> Privileged Gateway Intents -> Message Content Intent); see docs/discord.md"
        )
    except discord.LoginFailure:
        log.error("Discord rejected DISCORD_TOKEN; reset and copy the bot token again (docs/discord.md)")
