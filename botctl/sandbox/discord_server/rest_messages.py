"""REST routes for messages and threads: send, edit, fetch, delete, history, typing, start a thread.

What the bot sends is validated as Discord validates it (2000 characters, not empty) and recorded
(:class:`~botctl.sandbox.discord_server.recorder.Recorder`) against the user message its
``message_reference`` points at.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from botctl.sandbox.discord_server.common import (
    FLAG_LOADING,
    JSON,
    JSON_HEADERS,
    MAX_CONTENT,
    MESSAGE_TYPE_DEFAULT,
    MESSAGE_TYPE_REPLY,
    empty,
    error,
    iso_now,
    json_response,
    read_json,
)
from botctl.sandbox.discord_server.gateway import Gateway
from botctl.sandbox.discord_server.messages import NewAttachment, Store
from botctl.sandbox.discord_server.recorder import RecordedEdit, RecordedMessage, Recorder
from botctl.sandbox.discord_server.world import World

__all__ = ["Messages"]

Route = tuple[str, str, Any, str | None]  # method, path under /api/v10, handler, bucket name


def _unknown_channel() -> web.Response:
    return error(404, "Unknown Channel", 10003)


def _unknown_message() -> web.Response:
    return error(404, "Unknown Message", 10008)


class Messages:
    """The bot's side of messages (REST); the users' side is in ``people.py``."""

    def __init__(self, world: World, store: Store, recorder: Recorder, gateway: Gateway) -> None:
        self.world = world
        self.store = store
        self.recorder = recorder
        self.gateway = gateway

    def routes(self) -> list[Route]:
        cm = "/channels/{channel_id}/messages"
        return [
            ("POST", cm, self.create, "messages.create"),
            ("GET", cm, self.history, "messages.read"),
            ("GET", cm + "/{message_id}", self.get, "messages.read"),
            ("PATCH", cm + "/{message_id}", self.edit, "messages.edit"),
            ("DELETE", cm + "/{message_id}", self.delete, "messages.delete"),
            ("POST", cm + "/{message_id}/threads", self.thread_from_message, "threads.create"),
            ("POST", "/channels/{channel_id}/threads", self.thread, "threads.create"),
            ("POST", "/channels/{channel_id}/typing", self.typing, "typing"),
            ("GET", "/channels/{channel_id}", self.channel, "channels"),
        ]

    # ------------------------------------------------------------------ bodies

    async def read_body(self, request: web.Request) -> tuple[JSON, list[JSON]]:
        """The JSON payload of a send/edit, and the files of a multipart one (kept and served)."""
        if not request.content_type.startswith("multipart/"):
            return await read_json(request), []
        payload: JSON = {}
        files: list[JSON] = []
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue
            raw = await part.read()
            if part.name == "payload_json":
                loaded = orjson.loads(raw)
                payload = loaded if isinstance(loaded, dict) else {}
            else:
                ctype = part.headers.get("Content-Type", "application/octet-stream")
                new = NewAttachment(part.filename or "file", bytes(raw), ctype)
                files.append(self.store.add_attachment(new))
        return payload, files

    @staticmethod
    def invalid_content(payload: JSON, files: list[JSON]) -> web.Response | None:
        content = payload.get("content")
        if content is not None and not isinstance(content, str):
            return error(400, "Invalid Form Body", 50035)
        if content and len(content) > MAX_CONTENT:
            too_long = {
                "code": "BASE_TYPE_MAX_LENGTH",
                "message": f"Must be {MAX_CONTENT} or fewer in length.",
            }
            body = {
                "message": "Invalid Form Body",
                "code": 50035,
                "errors": {"content": {"_errors": [too_long]}},
            }
            return json_response(body, 400)
        if not (
            content
            or payload.get("embeds")
            or files
            or payload.get("sticker_ids")
            or payload.get("components")
            or payload.get("poll")
        ):
            return error(400, "Cannot send an empty message", 50006)
        return None

    def bot_message(
        self,
        cid: str,
        payload: JSON,
        files: list[JSON],
        *,
        reference: JSON | None,
        message_type: int,
        flags: int = 0,
    ) -> JSON:
        """A message the bot sends, as Discord answers it (stored by the caller)."""
        message: JSON = {
            "id": self.world.ids(),
            "channel_id": cid,
            "author": self.world.bot_user,
            "content": payload.get("content") or "",
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "tts": bool(payload.get("tts", False)),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": files,
            "embeds": payload.get("embeds") or [],
            "components": payload.get("components") or [],
            "pinned": False,
            "type": message_type,
            "flags": flags,
        }
        if "nonce" in payload:
            message["nonce"] = payload["nonce"]
        if reference is not None:
            message["message_reference"] = {
                "type": 0,
                "message_id": reference.get("message_id"),
                "channel_id": reference.get("channel_id") or cid,
                "guild_id": reference.get("guild_id"),
            }
            referenced = self.store.messages.get(str(reference.get("message_id")))
            if referenced is not None:
                message["referenced_message"] = referenced
        return message

    def apply_edit(
        self, message: JSON, payload: JSON, files: list[JSON], rec: RecordedMessage | None
    ) -> JSON:
        if "content" in payload:
            message["content"] = payload["content"] or ""
        if "embeds" in payload:
            message["embeds"] = payload["embeds"] or []
        if "components" in payload:
            message["components"] = payload["components"] or []
        if "flags" in payload and payload["flags"] is not None:
            message["flags"] = int(payload["flags"]) & ~FLAG_LOADING
        else:
            message["flags"] = int(message.get("flags") or 0) & ~FLAG_LOADING
        if files or "attachments" in payload:
            keep = {str(a.get("id")) for a in payload.get("attachments") or []}
            message["attachments"] = [
                a for a in message.get("attachments", []) if a["id"] in keep
            ] + files
        message["edited_timestamp"] = iso_now()
        if rec is not None:
            edit = RecordedEdit(
                message_id=message["id"],
                channel_id=message["channel_id"],
                content=message["content"],
                allowed_mentions=payload.get("allowed_mentions"),
                at=time.monotonic(),
                payload=payload,
            )
            self.recorder.edit(rec, edit)
        return message

    def remove(self, cid: str, mid: str) -> bool:
        """Delete a message (anyone's) and tell the bot with MESSAGE_DELETE."""
        if self.store.get(cid, mid) is None:
            return False
        self.store.remove(mid)
        self.recorder.deleted(mid)
        gid = self.world.guild_of(cid)
        payload: JSON = {"id": mid, "channel_id": cid}
        if gid is not None:
            payload["guild_id"] = gid
        self.gateway.dispatch(b"MESSAGE_DELETE", orjson.dumps(payload), gid)
        return True

    # ------------------------------------------------------------------ handlers

    async def create(self, request: web.Request) -> web.Response:
        cid = request.match_info["channel_id"]
        if cid not in self.world.channels and cid not in self.world.dm_channels:
            return _unknown_channel()
        payload, files = await self.read_body(request)
        invalid = self.invalid_content(payload, files)
        if invalid is not None:
            return invalid
        reference = payload.get("message_reference")
        reply_to: str | None = None
        if isinstance(reference, dict) and reference.get("message_id") is not None:
            reply_to = str(reference["message_id"])
            if reply_to not in self.store.messages and reference.get("fail_if_not_exists", True):
                return error(400, "Invalid Form Body", 50035)
        else:
            reference = None
        message = self.bot_message(
            cid,
            payload,
            files,
            reference=reference,
            message_type=MESSAGE_TYPE_REPLY if reference is not None else MESSAGE_TYPE_DEFAULT,
            flags=int(payload.get("flags") or 0),
        )
        self.store.add(message)
        self.recorder.send(
            RecordedMessage(
                id=message["id"],
                channel_id=cid,
                content=message["content"],
                reply_to=reply_to,
                message_reference=reference,
                allowed_mentions=payload.get("allowed_mentions"),
                at=time.monotonic(),
                payload=payload,
                flags=message["flags"],
            )
        )
        return web.Response(body=orjson.dumps(message), headers=JSON_HEADERS)

    async def edit(self, request: web.Request) -> web.Response:
        message = self.store.get(request.match_info["channel_id"], request.match_info["message_id"])
        if message is None:
            return _unknown_message()
        rec = self.recorder.bot_messages.get(message["id"])
        if rec is None:
            return error(403, "Cannot edit a message authored by another user", 50005)
        payload, files = await self.read_body(request)
        if "content" in payload:
            invalid = self.invalid_content({**message, **payload}, files)
            if invalid is not None:
                return invalid
        return json_response(self.apply_edit(message, payload, files, rec))

    async def get(self, request: web.Request) -> web.Response:
        message = self.store.get(request.match_info["channel_id"], request.match_info["message_id"])
        return (
            json_response(self.store.view(message)) if message is not None else _unknown_message()
        )

    async def delete(self, request: web.Request) -> web.Response:
        if self.remove(request.match_info["channel_id"], request.match_info["message_id"]):
            return empty()
        return _unknown_message()

    async def history(self, request: web.Request) -> web.Response:
        cid = request.match_info["channel_id"]
        if self.world.channel_payload(cid) is None:
            return _unknown_channel()
        try:
            limit = max(1, min(100, int(request.query.get("limit", "50"))))
        except ValueError:
            limit = 50
        before = request.query.get("before")
        after = request.query.get("after")
        return json_response(self.store.page(cid, limit, before, after))

    async def typing(self, request: web.Request) -> web.Response:
        cid = request.match_info["channel_id"]
        if self.world.channel_payload(cid) is None:
            return _unknown_channel()
        self.recorder.typing(cid)
        return empty()

    async def channel(self, request: web.Request) -> web.Response:
        channel = self.world.channel_payload(request.match_info["channel_id"])
        return json_response(channel) if channel is not None else _unknown_channel()

    async def thread_from_message(self, request: web.Request) -> web.Response:
        """``POST /channels/{id}/messages/{id}/threads``: the bot starts a thread from a message."""
        cid = request.match_info["channel_id"]
        starter = self.store.get(cid, request.match_info["message_id"])
        if starter is None:
            return _unknown_message()
        body = await read_json(request)
        try:
            thread = self.open_thread(cid, starter, str(body.get("name") or ""), by_bot=True)
        except ValueError:
            return error(400, "A thread has already been created for this message", 160004)
        return json_response(thread, 201)

    async def thread(self, request: web.Request) -> web.Response:
        """``POST /channels/{id}/threads``: a thread without a starter message."""
        cid = request.match_info["channel_id"]
        if cid not in self.world.channel_ids:
            return _unknown_channel()
        body = await read_json(request)
        thread = self.world.add_thread(
            cid, self.world.bot_user_id, str(body.get("name") or ""), None
        )
        self._announce(thread, by_bot=True)
        return json_response(thread, 201)

    def open_thread(self, cid: str, starter: JSON, name: str, *, by_bot: bool) -> JSON:
        """A public thread from ``starter`` (its id is the message's, as on Discord)."""
        owner = self.world.bot_user_id if by_bot else str(starter["author"]["id"])
        if not by_bot and not name:
            name = (starter.get("content") or "thread").split(">", 1)[-1].strip()[:40] or "thread"
        thread = self.world.add_thread(cid, owner, name or "thread", starter["id"])
        self.store.add(self.store.thread_starter(thread, starter))
        self._announce(thread, by_bot=by_bot)
        return thread

    def _announce(self, thread: JSON, *, by_bot: bool) -> None:
        data: JSON = {**thread, "newly_created": True}
        if by_bot:
            data["member"] = {
                "id": thread["id"],
                "user_id": self.world.bot_user_id,
                "join_timestamp": iso_now(),
                "flags": 0,
            }
        self.gateway.dispatch(b"THREAD_CREATE", orjson.dumps(data), thread["guild_id"])
