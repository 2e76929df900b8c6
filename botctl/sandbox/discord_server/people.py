"""What the people in the sandbox do: post messages (mentions, replies, attachments, DMs), start
threads, delete their messages, run slash commands, get roles; and channels coming and going.

Each action changes the world and dispatches the event Discord would send the bot. The hot path is
:meth:`People.post_message`: one payload, encoded once by orjson, handed to the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from botctl.sandbox.discord_server.gateway import Gateway
from botctl.sandbox.discord_server.messages import NewAttachment, Store
from botctl.sandbox.discord_server.recorder import Recorder
from botctl.sandbox.discord_server.rest_interactions import Interactions
from botctl.sandbox.discord_server.rest_messages import Messages
from botctl.sandbox.discord_server.world import World

__all__ = ["People"]

_PRUNE_EVERY = 1024


class People:
    def __init__(
        self,
        world: World,
        store: Store,
        recorder: Recorder,
        gateway: Gateway,
        messages: Messages,
        interactions: Interactions,
    ) -> None:
        self.world = world
        self.store = store
        self.recorder = recorder
        self.gateway = gateway
        self.messages = messages
        self.interactions = interactions
        self.posted = 0

    def post_message(
        self,
        channel_id: str | int,
        user_id: str | int,
        content: str,
        *,
        mention_bot: bool = True,
        reply_to: str | int | None = None,
        attachments: Sequence[NewAttachment] = (),
    ) -> str:
        cid = str(channel_id)
        channel = self.world.channels.get(cid)
        if channel is None:
            raise KeyError(f"unknown channel {cid}")
        return self._post(
            cid,
            channel,
            self.world.user(user_id),
            content,
            mention_bot=mention_bot,
            reply_to=reply_to,
            attachments=attachments,
        )

    def post_dm(
        self,
        user_id: str | int,
        content: str,
        *,
        reply_to: str | int | None = None,
        attachments: Sequence[NewAttachment] = (),
    ) -> str:
        user = self.world.user(user_id)
        cid = self.world.dm_channel_for(str(user["id"]))
        return self._post(
            cid,
            None,
            user,
            content,
            mention_bot=False,
            reply_to=reply_to,
            attachments=attachments,
        )

    def _post(
        self,
        cid: str,
        channel: dict[str, Any] | None,
        user: dict[str, Any],
        content: str,
        *,
        mention_bot: bool,
        reply_to: str | int | None,
        attachments: Sequence[NewAttachment],
    ) -> str:
        mid = self.world.ids()
        payload = self.store.user_message(
            cid,
            channel,
            user,
            content,
            mid=mid,
            mention_bot=mention_bot,
            reply_to=None if reply_to is None else str(reply_to),
            attachments=attachments,
        )
        self.store.add(payload, channel)
        self.recorder.posted(mid)
        self.posted += 1
        if (
            self.posted % _PRUNE_EVERY == 0
            and len(self.recorder.posted_at) > self.store.max_records
        ):
            self.store.prune()
            self.recorder.prune()
        guild_id = channel["guild_id"] if channel is not None else None
        self.gateway.dispatch(b"MESSAGE_CREATE", orjson.dumps(payload), guild_id)
        return mid

    def delete_message(self, message_id: str | int) -> bool:
        """A user (or a moderator) deletes a message: MESSAGE_DELETE; False if there is none."""
        message = self.store.messages.get(str(message_id))
        if message is None:
            return False
        return self.messages.remove(message["channel_id"], str(message_id))

    def start_thread(self, message_id: str | int, name: str | None = None) -> str:
        """The message's author starts a public thread from it (THREAD_CREATE); the thread's id."""
        starter = self.store.messages.get(str(message_id))
        if starter is None:
            raise KeyError(f"unknown message {message_id}")
        cid = starter["channel_id"]
        if cid not in self.world.channel_ids:
            raise ValueError("threads start from a message in a guild text channel")
        thread = self.messages.open_thread(cid, starter, name or "", by_bot=False)
        return str(thread["id"])

    def set_roles(self, user_id: str | int, roles: Sequence[str], guild_id: str | None) -> None:
        """Give a member exactly ``roles`` (names or ids) in a guild: GUILD_MEMBER_UPDATE."""
        gid = guild_id or self.world.guild_id
        if gid not in self.world.guilds:
            raise KeyError(f"unknown guild {gid}")
        member = self.world.set_roles(gid, str(user_id), list(roles))
        self.gateway.dispatch(
            b"GUILD_MEMBER_UPDATE", orjson.dumps({**member, "guild_id": gid}), gid
        )

    def create_channel(self, name: str | None = None, guild_id: str | None = None) -> str:
        channel = self.world.add_channel(name or f"chat-{len(self.world.channels) + 1}", guild_id)
        self.gateway.dispatch(b"CHANNEL_CREATE", orjson.dumps(channel), channel["guild_id"])
        return str(channel["id"])

    def delete_channel(self, channel_id: str | int) -> bool:
        channel = self.world.remove_channel(str(channel_id))
        if channel is None:
            return False
        self.store.forget_channel(str(channel_id))
        self.gateway.dispatch(b"CHANNEL_DELETE", orjson.dumps(channel), channel["guild_id"])
        return True

    def send_interaction(
        self,
        channel_id: str | int,
        user_id: str | int,
        command_name: str,
        options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        iid, payload = self.interactions.send(channel_id, user_id, command_name, options)
        self.recorder.posted(iid)
        self.gateway.dispatch(b"INTERACTION_CREATE", orjson.dumps(payload), payload.get("guild_id"))
        return iid
