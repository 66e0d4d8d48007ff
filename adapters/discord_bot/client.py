"""Discord adapter: discord.py over the gateway, with application (slash) commands.

Convert Discord events into the core's values (`Incoming`, `Reaction`), hand them to
`core.handle`, show what comes back. Whether to answer, corrections, votes, admin rights, dedup
and history are the core's; streaming is adapters/streaming.py's; the slash commands come from
bot/commands.py. The core is synchronous and blocks while it generates, so every call into it
leaves the event loop (answers on their own thread pool, so that a queue of waiting answers never
starves the quick calls: reactions, clicks, commands). Which conversation a message belongs to
is conversations.py's; the feedback buttons and their modal are feedback.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import discord
from discord import app_commands

from adapters.command_output import command_failed, followup_text
from adapters.discord_bot import PLATFORM
from adapters.discord_bot.caller import private_to, role_ids, server_id
from adapters.discord_bot.commands import add_commands
from adapters.discord_bot.conversations import Conversations, of_interaction
from adapters.discord_bot.feedback import VoteButton, seed_reactions
from adapters.discord_bot.gateway import WITHOUT_CONTENT, ContentFallbackClient, configure_endpoints, intents
from adapters.discord_bot.invited import NOT_A_MEMBER, Invitations
from adapters.discord_bot.screen import LAYOUT_CHARS, DiscordScreen, keep_typing, small_footer, split_message
from adapters.discord_bot.suggestions import suggest
from adapters.edit_budget import EditBudget
from adapters.streaming import ReplyOnScreen, show_answer
from bot.ops.health import Readiness
from bot.types import Answering, CommandResult, Incoming, Reaction

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.core import Core

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://discord.com/api/v10"

T = TypeVar("T")


# ----------------------------------------------------------------------------- pure helpers


def plain_text(message: discord.Message, me_id: int) -> str:
    """The message's text for the model: our own mention removed, other mentions as @names."""
    text = re.sub(rf"<@!?{me_id}>", "", message.content)
    for user in message.mentions:
        # A function, not a string: a name like `\o/` would be read as a group reference.
        name = "@" + user.display_name
        text = re.sub(rf"<@!?{user.id}>", lambda _match, name=name: name, text)
    return text.strip()


# ----------------------------------------------------------------------------- the client


class DiscordBot(ContentFallbackClient):
    """A discord.py client wired to the core."""

    def __init__(self, core: Core, settings: Settings, readiness: Readiness | None = None, **options: Any) -> None:
        options.setdefault("intents", intents(settings.discord.message_content))
        # Model output is data: it must never ping @everyone, roles or users.
        options.setdefault("allowed_mentions", discord.AllowedMentions.none())
        super().__init__(**options)
        self.core = core
        self.settings = settings
        self.readiness = readiness or Readiness()
        # Installed to a server only: a user install would carry the bot into servers and group DMs its
        # allow-list does not serve, where what it learns has no server to stay in (docs/discord.md).
        self.tree = app_commands.CommandTree(self, allowed_installs=app_commands.AppInstallationType(guild=True))
        self._answers = ThreadPoolExecutor(settings.answer_threads, thread_name_prefix="discord-answer")
        self._conversations = Conversations(self, core)
        self._invited = Invitations(self, settings)
        self._background: set[asyncio.Task[Any]] = set()
        section = settings.discord
        # Discord limits edits per channel, for every reply there together: one budget per channel.
        self._edits = EditBudget(settings.tuning.discord_edits_per_minute, settings.tuning.discord_edit_burst)
        guild = discord.Object(section.guild_id) if section.guild_id else None
        add_commands(self.tree, self.run_command, functools.partial(suggest, core), guild)
        if not self.intents.message_content:
            log.warning("%s (discord.message_content = false).", WITHOUT_CONTENT)

    async def setup_hook(self) -> None:
        """Sync the slash commands (the admin ones to DISCORD_GUILD_ID only, when set: instant there)."""
        self.add_dynamic_items(VoteButton)  # clicks on answers posted before a restart count too
        guild_id = self.settings.discord.guild_id
        try:
            synced = f"{len(await self.tree.sync())} globally"
            if guild_id:
                synced = f"{len(await self.tree.sync(guild=discord.Object(guild_id)))} to guild {guild_id}, {synced}"
            log.info("synced Discord commands: %s", synced)
        except discord.HTTPException as exc:
            # Chat still works without commands; the usual cause is a missing scope.
            log.error(
                "could not sync slash commands (%s); invite the bot with the applications.commands scope",
                exc,
            )

    async def on_ready(self) -> None:
        self.readiness.up(PLATFORM)
        await self._invited.leave_unlisted(self.guilds)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._invited.leave_unlisted([guild])

    async def on_resumed(self) -> None:
        self.readiness.up(PLATFORM)

    async def on_disconnect(self) -> None:
        self.readiness.down(PLATFORM)  # discord.py reconnects by itself; ready again on resume

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
        if message.guild is None and not await self._invited.may_dm(message.author.id):
            return  # a DM from someone in none of the servers the bot serves
        mentions_bot = any(user.id == me.id for user in message.mentions)
        if self.content_withheld(message, mentions_bot):
            return
        replied_bot_id = await self._conversations.replied_bot_message(message)
        conversation = await self._conversations.of(message, replied_bot_id)
        ref = message.reference  # a reply, or a forward (a copy of a message from anywhere: not a reply)
        replies_to = ref.message_id if ref is not None and ref.type is discord.MessageReferenceType.reply else None
        channel = message.channel
        incoming = Incoming(
            PLATFORM,
            conversation,
            str(message.author.id),
            plain_text(message, me.id),
            message.author.display_name,
            workspace=server_id(message.guild),
            roles=role_ids(message.author),
            is_dm=message.guild is None,
            mentions_bot=mentions_bot,
            private_to=private_to(channel),
            in_thread=isinstance(channel, discord.Thread),
            replies_to=str(replies_to) if replies_to is not None else None,
            replies_to_bot=replied_bot_id is not None,
            event_id=str(message.id),  # a MESSAGE_CREATE replayed after a gateway RESUME
        )
        outcome = await self._core(self.core.handle, incoming)
        if isinstance(outcome, Answering):
            self._conversations.remember(message.id, conversation)
            await self._answer(message, outcome)
        elif isinstance(outcome, CommandResult):  # a correction
            for part in split_message(outcome.text if outcome.ok else f"⚠️ {outcome.text}"):
                await message.reply(part, mention_author=False)

    async def _answer(self, message: discord.Message, answering: Answering) -> None:
        """Stream the answer on the answers pool, showing "typing…" until it is done; the final
        text comes with the feedback buttons."""
        loop = asyncio.get_running_loop()
        channel = str(message.channel.id)
        screen = DiscordScreen(loop, message.channel, message.to_reference(fail_if_not_exists=False))
        interval = self.settings.tuning.discord_stream_interval_s
        on_screen = ReplyOnScreen(screen, LAYOUT_CHARS, interval, self._edits, channel, footer=small_footer)
        typing = asyncio.create_task(keep_typing(message.channel))
        try:
            reply = await loop.run_in_executor(self._answers, show_answer, self.core, answering, [on_screen], PLATFORM)
        finally:
            typing.cancel()
        for ref in on_screen.refs:
            self._conversations.remember(int(ref), answering.message.conversation)
        if reply is not None and on_screen.refs and self.settings.discord.seed_reactions:
            section = self.settings.discord
            await seed_reactions(screen.messages[on_screen.refs[-1]], section.up_emoji[:1] + section.down_emoji[:1])

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
        reaction = Reaction(PLATFORM, str(payload.message_id), str(payload.user_id), payload.emoji.name or "", added,
                            workspace=str(payload.guild_id or ""))  # fmt: skip
        outcome = await self._core(self.core.handle, reaction)
        log.info("reaction on %s: %s", payload.message_id, outcome)

    # ------------------------------------------------------------------ slash commands

    async def run_command(self, interaction: discord.Interaction, name: str, options: dict[str, Any]) -> None:
        """Defer (Discord wants an answer within 3 s), ask the core, follow up ephemerally."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        if interaction.guild is None and not await self._invited.may_dm(interaction.user.id):
            await interaction.followup.send(NOT_A_MEMBER, ephemeral=True)
            return
        incoming = Incoming(
            PLATFORM,
            of_interaction(interaction),
            str(interaction.user.id),
            roles=role_ids(interaction.user),
            workspace=server_id(interaction.guild),
            event_id=f"interaction:{interaction.id}",
            command=name,
            command_args=options,
        )
        try:
            result = await self._core(self.core.handle, incoming)
        except Exception:
            result = command_failed(PLATFORM, name)
        if not isinstance(result, CommandResult):  # ignored: say so, or "thinking…" would never end
            reason = getattr(result, "reason", "not a command here")
            await interaction.followup.send(f"Not done: {reason}.", ephemeral=True)
            return
        for part in split_message(result.text):
            await interaction.followup.send(part, ephemeral=True)
        if result.followup is not None and interaction.channel_id is not None:
            self._spawn(self._report_later(interaction.channel_id, result.followup))

    async def _report_later(self, channel_id: int, followup: Future[str]) -> None:
        """Post a long-running command's result (a retrain) in the channel it was asked in."""
        with contextlib.suppress(Exception):  # followup_text says how it failed
            await asyncio.wrap_future(followup)
        channel = self.get_partial_messageable(channel_id)
        for part in split_message(followup_text(followup)):
            await channel.send(part)


# ----------------------------------------------------------------------------- entry points


def build_client(
    core: Core, settings: Settings | None = None, readiness: Readiness | None = None, **options: Any
) -> DiscordBot:
    """A client ready for `await client.start(token)`; `options` go to discord.Client."""
    settings = settings or core.settings
    configure_endpoints(settings.discord)
    return DiscordBot(core, settings, readiness, **options)


def run(core: Core, settings: Settings, readiness: Readiness | None = None) -> None:
    """Connect to Discord and serve until interrupted (used by `bot run`, maybe in a thread).

    Fatal set-up problems are logged with what to do, not raised as SystemExit, which a
    thread would swallow without a word.
    """
    if not settings.discord.token:
        log.error("DISCORD_TOKEN is not set; see docs/discord.md")
        return
    if not settings.discord.allowed_guilds:
        log.warning("answering in every Discord server the bot is invited to: DISCORD_ALLOWED_GUILDS limits it")
    client = build_client(core, settings, readiness)
    try:
        client.run(settings.discord.token, log_handler=None)  # the CLI configures logging
    except discord.PrivilegedIntentsRequired:
        log.error(  # only Message Content is privileged here, and without it the client retries
            "Discord refused a privileged intent: enable Message Content in the developer portal "
            "(Bot -> Privileged Gateway Intents) or set DISCORD_MESSAGE_CONTENT=false; see docs/discord.md"
        )
    except discord.LoginFailure:
        log.error("Discord rejected DISCORD_TOKEN; reset and copy the bot token again (docs/discord.md)")
