"""Messages and attachments: every message's payload (the users' and the bot's), per-channel history,
and the files the users attach, served back over HTTP as Discord's CDN would.

Stores stay bounded: the oldest messages go beyond ``max_records`` (pruned every 1024 posts), the
oldest attachments beyond ``ATTACHMENT_BYTES``.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from botctl.sandbox.discord_server.common import (
    JSON,
    MESSAGE_TYPE_DEFAULT,
    MESSAGE_TYPE_REPLY,
    MESSAGE_TYPE_THREAD_STARTER,
    iso_now,
)
from botctl.sandbox.discord_server.world import World

__all__ = ["ATTACHMENT_BYTES", "Attachment", "NewAttachment", "Store"]

ATTACHMENT_BYTES = 64 * 1024 * 1024  # bytes of attachments kept, oldest dropped first
_WITH_REFERENCED = (MESSAGE_TYPE_REPLY, MESSAGE_TYPE_THREAD_STARTER)


@dataclass(frozen=True, slots=True)
class NewAttachment:
    """A file a simulated user attaches. ``fault`` serves it badly: ``"404"`` or ``"hang"``."""

    filename: str
    data: bytes
    content_type: str = "application/octet-stream"
    fault: str | None = None


@dataclass(slots=True)
class Attachment:
    id: str
    filename: str
    data: bytes
    content_type: str
    fault: str | None


class Store:
    """Message payloads by id, each channel's message ids in order, and attachment bytes."""

    def __init__(self, world: World, max_records: int, base_url: str = "") -> None:
        self.world = world
        self.max_records = max_records
        self.base_url = base_url  # set once the server listens
        self.messages: dict[str, JSON] = {}
        self.history: dict[str, list[str]] = {}
        self.attachments: OrderedDict[str, Attachment] = OrderedDict()
        self._attachment_bytes = 0

    # ------------------------------------------------------------------ messages

    def add(self, message: JSON, channel: JSON | None = None) -> None:
        """Store a message (flat: without ``referenced_message``, or a chain would nest).

        ``channel``: the message's guild channel or thread, when the caller has it at hand.
        """
        if "referenced_message" in message:
            message = {k: v for k, v in message.items() if k != "referenced_message"}
        mid = message["id"]
        cid = message["channel_id"]
        self.messages[mid] = message
        ids = self.history.get(cid)
        if ids is None:
            self.history[cid] = [mid]
        else:
            ids.append(mid)
        if channel is None:
            channel = self.world.channels.get(cid)
        if channel is not None:
            channel["last_message_id"] = mid
            if "message_count" in channel:  # a thread
                channel["message_count"] += 1
                channel["total_message_sent"] += 1

    def get(self, cid: str, mid: str) -> JSON | None:
        """The stored message (flat: change it in place to edit it)."""
        message = self.messages.get(mid)
        if message is None or message.get("channel_id") != cid:
            return None
        return message

    def view(self, message: JSON) -> JSON:
        """A message as a fetch returns it: a reply with its ``referenced_message`` (or null)."""
        ref = message.get("message_reference")
        if ref is None or message.get("type") not in _WITH_REFERENCED:
            return message
        return {**message, "referenced_message": self.messages.get(str(ref.get("message_id")))}

    def remove(self, mid: str) -> JSON | None:
        return self.messages.pop(mid, None)

    def forget_channel(self, cid: str) -> None:
        self.history.pop(cid, None)

    def page(self, cid: str, limit: int, before: str | None, after: str | None) -> list[JSON]:
        """``GET /channels/{id}/messages``: newest first, as Discord returns them."""
        candidates = [m for m in self.history.get(cid, ()) if m in self.messages]
        if before is not None:
            candidates = [m for m in candidates if int(m) < int(before)]
        if after is not None:
            # Discord returns the oldest ``limit`` after ``after``, newest first.
            candidates = [m for m in candidates if int(m) > int(after)][:limit]
            return [self.view(self.messages[m]) for m in reversed(candidates)]
        return [self.view(self.messages[m]) for m in reversed(candidates[-limit:])]

    def reference(self, cid: str, mid: str) -> JSON:
        channel = self.world.channels.get(cid)
        ref: JSON = {"type": 0, "message_id": mid, "channel_id": cid}
        if channel is not None:
            ref["guild_id"] = channel["guild_id"]
        return ref

    def user_message(
        self,
        cid: str,
        channel: JSON | None,
        user: JSON,
        content: str,
        *,
        mid: str,
        mention_bot: bool,
        reply_to: str | None = None,
        attachments: Sequence[NewAttachment] = (),
    ) -> JSON:
        """A user's message in a guild channel or thread (``channel``) or a DM (``None``), as
        MESSAGE_CREATE carries it.

        ``mention_bot`` starts the content with ``<@BOTID> `` and puts the bot in ``mentions``. A
        reply carries ``message_reference`` and ``referenced_message`` (``null`` when the message
        replied to is gone), and pings the replied-to author as Discord's client does by default.
        """
        world = self.world
        mentions: list[JSON] = []
        if mention_bot:
            content = f"<@{world.bot_user_id}> {content}"
            mentions.append(world.bot_mention)
        payload: JSON = {
            "id": mid,
            "channel_id": cid,
            "author": user,
            "content": content,
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions,
            "mention_roles": [],
            "attachments": [self.add_attachment(a) for a in attachments] if attachments else [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": MESSAGE_TYPE_DEFAULT,
            "flags": 0,
            "nonce": mid,
        }
        if channel is not None:
            gid = channel["guild_id"]
            payload["guild_id"] = gid
            payload["member"] = world.member_stub(gid, str(user["id"]))
        else:
            payload["channel_type"] = 1
        if reply_to is not None:
            referenced = self.messages.get(reply_to)
            ref_channel = referenced["channel_id"] if referenced is not None else cid
            payload["type"] = MESSAGE_TYPE_REPLY
            payload["message_reference"] = self.reference(ref_channel, reply_to)
            payload["referenced_message"] = referenced
            if referenced is not None and not mention_bot:
                author = referenced.get("author") or {}
                if author.get("id") == world.bot_user_id:
                    mentions.append(world.bot_mention)
        return payload

    def thread_starter(self, thread: JSON, starter: JSON) -> JSON:
        """The system message a thread made from a message begins with (type 21)."""
        tid = thread["id"]
        return {
            "id": self.world.ids(),
            "channel_id": tid,
            "guild_id": thread["guild_id"],
            "author": starter.get("author"),
            "content": "",
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": MESSAGE_TYPE_THREAD_STARTER,
            "flags": 0,
            "message_reference": self.reference(thread["parent_id"], starter["id"]),
            "referenced_message": starter,
        }

    def prune(self) -> None:
        """Forget the oldest messages beyond ``max_records`` (counters elsewhere stay exact)."""
        keep = self.max_records
        excess = len(self.messages) - keep
        if excess > 0:
            for key in list(itertools.islice(self.messages, excess)):
                del self.messages[key]
        for cid, ids in self.history.items():
            if len(ids) > keep:
                self.history[cid] = ids[-keep:]

    # ------------------------------------------------------------------ attachments

    def url(self, aid: str, filename: str) -> str:
        return f"{self.base_url}/attachments/{aid}/{filename}"

    def add_attachment(self, new: NewAttachment) -> JSON:
        """Keep the file's bytes and return its attachment object (``url`` served by the sandbox)."""
        aid = self.world.ids()
        filename = new.filename.replace("/", "_") or "file"
        self.attachments[aid] = Attachment(aid, filename, new.data, new.content_type, new.fault)
        self._attachment_bytes += len(new.data)
        while self._attachment_bytes > ATTACHMENT_BYTES and len(self.attachments) > 1:
            _, old = self.attachments.popitem(last=False)
            self._attachment_bytes -= len(old.data)
        url = self.url(aid, filename)
        return {
            "id": aid,
            "filename": filename,
            "size": len(new.data),
            "url": url,
            "proxy_url": url,
            "content_type": new.content_type,
        }

    def attachment(self, aid: str, filename: str) -> Attachment | None:
        found = self.attachments.get(aid)
        if found is None or found.filename != filename:
            return None
        return found
