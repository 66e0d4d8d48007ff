"""What the Slack adapter asks Slack about channels and people: whether a channel is a DM or private
(so that what it teaches stays there) and whether a user is a person (only people vote). Each
answer is remembered in a bounded LRU: a workspace's channels and people are many, and these only
save API calls."""

from __future__ import annotations

import logging

from cachetools import LRUCache
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

MAX_REMEMBERED = 4096  # channels, and people, remembered


class SlackDirectory:
    def __init__(self) -> None:
        self._channel_kinds: LRUCache[str, str] = LRUCache(MAX_REMEMBERED)  # channel id -> channel_type
        self._people: LRUCache[str, bool] = LRUCache(MAX_REMEMBERED)  # user id -> a person (not a bot or app)

    def channel_kind(self, client: WebClient, channel: str, kind: str | None = None) -> str:
        """The channel_type of `channel`. app_mention events lack it: then what a message event
        said, or else conversations.info (once a channel); if Slack won't say, private."""
        if kind is None:
            kind = self._channel_kinds.get(channel)
        if kind is None:
            try:
                info = client.conversations_info(channel=channel)["channel"]
                kind = "mpim" if info.get("is_mpim") else "group" if info.get("is_private") else "channel"
            except SlackApiError as exc:  # e.g. missing_scope: learn here only rather than leak
                log.warning("Slack: conversations.info(%s) failed (%s): treating it as private", channel, exc)
                kind = "group"
        self._channel_kinds[channel] = kind
        return kind

    def is_person(self, client: WebClient, user: str) -> bool:
        """Whether `user` is a person: not a bot user, an app's user, Slackbot or a deactivated
        account (users.info, once a user). If Slack won't say (users:read missing), not counted."""
        person = self._people.get(user)
        if person is None:
            try:
                info = client.users_info(user=user)["user"]
            except SlackApiError as exc:
                log.warning("Slack: users.info(%s) failed (%s): its reaction is not counted", user, exc)
                return False
            person = not (info.get("is_bot") or info.get("is_app_user") or info.get("deleted") or user == "USLACKBOT")
            self._people[user] = person
        return person
