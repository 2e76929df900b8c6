"""Slash commands: the application command registry (REST), interactions a user runs (dispatched as
INTERACTION_CREATE), their callbacks, and the interaction webhooks (follow-ups, ``@original`` edits).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from botctl.sandbox.discord_server.common import (
    ATTACHMENT_SIZE_LIMIT,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    JSON,
    MESSAGE_TYPE_CHAT_INPUT,
    empty,
    error,
    json_response,
    read_json,
)
from botctl.sandbox.discord_server.recorder import RecordedInteractionResponse, RecordedMessage
from botctl.sandbox.discord_server.rest_messages import Messages, Route

__all__ = ["Interactions"]

_OPTION_TYPES: tuple[tuple[type, int], ...] = ((bool, 5), (int, 4), (float, 10))


@dataclass(slots=True)
class _Interaction:
    id: str
    token: str
    channel_id: str
    user_id: str
    command: str
    response_type: int | None = None
    original_id: str | None = None


class Interactions:
    def __init__(self, messages: Messages) -> None:
        self.messages = messages
        self.world = messages.world
        self.commands: dict[str | None, dict[str, JSON]] = {}  # guild id (None: global) -> by name
        self._by_token: dict[str, _Interaction] = {}
        self._by_id: dict[str, _Interaction] = {}
        self.count = 0

    def routes(self) -> list[Route]:
        cb = "/interactions/{interaction_id}/{token}/callback"
        wh = "/webhooks/{application_id}/{token}"
        routes: list[Route] = [
            ("POST", cb, self.callback, "interactions"),
            ("POST", wh, self.followup, "webhooks"),
        ]
        routes += [(m, wh + "/messages/{message_id}", self.webhook_message, "webhooks") for m in ("GET", "PATCH", "DELETE")]  # fmt: skip
        for base in ("/applications/{application_id}", "/applications/{application_id}/guilds/{guild_id}"):  # fmt: skip
            routes += [(m, base + "/commands", self.command_list, "commands") for m in ("GET", "PUT", "POST")]  # fmt: skip
            routes += [(m, base + "/commands/{command_id}", self.command, "commands") for m in ("GET", "PATCH", "DELETE")]  # fmt: skip
        return routes

    # ------------------------------------------------------------------ the user's side

    def send(
        self,
        channel_id: str | int,
        user_id: str | int,
        command_name: str,
        options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> tuple[str, JSON]:
        """An interaction for ``/command_name`` run by a user: (its id, INTERACTION_CREATE's data)."""
        world = self.world
        cid = str(channel_id)
        user = world.user(user_id)
        in_dm = cid in world.dm_channels
        gid = world.guild_of(cid)
        if not in_dm and gid is None:
            raise KeyError(f"unknown channel {cid}")
        guild_cmd = self.commands.get(gid, {}).get(command_name) if gid else None
        global_cmd = self.commands.get(None, {}).get(command_name)
        command = guild_cmd if guild_cmd is not None and not in_dm else global_cmd
        iid = world.ids()
        token = "sandbox-interaction-" + secrets.token_urlsafe(24)
        data: JSON = {
            "id": command["id"] if command else world.ids(),
            "name": command_name,
            "type": 1,
            "options": self._options(options, command),
        }
        if command is not None and command is guild_cmd:
            data["guild_id"] = gid
        payload: JSON = {
            "id": iid,
            "application_id": world.application_id,
            "type": 2,
            "data": data,
            "token": token,
            "version": 1,
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
            "channel_id": cid,
        }
        if gid is None:
            payload["app_permissions"] = str(world.permissions(world.guild_id, ""))
            payload["channel"] = world.dm_payload(cid)
            payload["user"] = user
            payload["context"] = 1
            payload["authorizing_integration_owners"] = {"1": str(user["id"])}
        else:
            permissions = str(world.permissions(gid, str(user["id"])))
            payload["app_permissions"] = str(world.permissions(gid, world.bot_user_id))
            payload["guild_id"] = gid
            payload["guild"] = {"id": gid, "locale": "en-US", "features": []}
            payload["guild_locale"] = "en-US"
            payload["channel"] = {**world.channels[cid], "permissions": permissions}
            payload["member"] = {**world.member(gid, user), "permissions": permissions}
            payload["context"] = 0
            payload["authorizing_integration_owners"] = {"0": gid}
        interaction = _Interaction(iid, token, cid, str(user["id"]), command_name)
        self._by_token[token] = interaction
        self._by_id[iid] = interaction
        self.count += 1
        return iid, payload

    @staticmethod
    def _options(
        options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None, command: JSON | None
    ) -> list[JSON]:
        if not options:
            return []
        if not isinstance(options, Mapping):
            return [dict(o) for o in options]
        declared = {o.get("name"): o.get("type") for o in (command or {}).get("options", [])}
        result: list[JSON] = []
        for name, value in options.items():
            kind = declared.get(name)
            if kind is None:
                kind = next((k for t, k in _OPTION_TYPES if isinstance(value, t)), 3)
            result.append({"name": name, "type": kind, "value": value})
        return result

    # ------------------------------------------------------------------ responses

    def _record(self, interaction: _Interaction, message: JSON, payload: JSON) -> None:
        self.messages.recorder.send(
            RecordedMessage(
                id=message["id"],
                channel_id=message["channel_id"],
                content=message["content"],
                reply_to=interaction.id,
                message_reference=None,
                allowed_mentions=payload.get("allowed_mentions"),
                at=time.monotonic(),
                payload=payload,
                interaction_id=interaction.id,
                flags=int(message.get("flags") or 0),
            )
        )

    def _message(
        self, interaction: _Interaction, body: JSON, files: list[JSON], flags: int
    ) -> JSON:
        message = self.messages.bot_message(
            interaction.channel_id,
            body,
            files,
            reference=None,
            message_type=MESSAGE_TYPE_CHAT_INPUT,
            flags=flags,
        )
        message["application_id"] = self.world.application_id
        message["webhook_id"] = self.world.application_id
        self.messages.store.add(message)
        return message

    async def callback(self, request: web.Request) -> web.Response:
        iid = request.match_info["interaction_id"]
        interaction = self._by_token.get(request.match_info["token"])
        if interaction is None or interaction.id != iid:
            return error(404, "Unknown interaction", 10062)
        if interaction.response_type is not None:
            return error(400, "Interaction has already been acknowledged.", 40060)
        payload, files = await self.messages.read_body(request)
        rtype = int(payload.get("type") or 0)
        data = payload.get("data")
        data = data if isinstance(data, dict) else None
        interaction.response_type = rtype
        response = RecordedInteractionResponse(iid, rtype, data, time.monotonic())
        self.messages.recorder.interaction_response(response)
        message: JSON | None = None
        if rtype in (4, 5):
            body = data or {}
            flags = int(body.get("flags") or 0)
            if rtype == 5:
                body = {"content": ""}
                flags |= FLAG_LOADING
            elif (invalid := self.messages.invalid_content(body, files)) is not None:
                interaction.response_type = None
                return invalid
            message = self._message(interaction, body, files, flags)
            interaction.original_id = message["id"]
            if rtype == 4:
                self._record(interaction, message, body)
        if request.query.get("with_response") not in ("1", "true", "True"):
            return empty()
        answer: JSON = {
            "interaction": {
                "id": iid,
                "type": 2,
                "response_message_id": message["id"] if message else None,
                "response_message_loading": rtype == 5,
                "response_message_ephemeral": bool(message and message["flags"] & FLAG_EPHEMERAL),
            },
            "resource": {"type": rtype},
        }
        if message is not None:
            answer["resource"]["message"] = message
        return json_response(answer)

    def _webhook(self, request: web.Request) -> _Interaction | None:
        interaction = self._by_token.get(request.match_info["token"])
        if interaction is None or request.match_info["application_id"] != self.world.application_id:
            return None
        return interaction

    async def followup(self, request: web.Request) -> web.Response:
        interaction = self._webhook(request)
        if interaction is None or interaction.response_type is None:
            return error(404, "Unknown Webhook", 10015)
        payload, files = await self.messages.read_body(request)
        invalid = self.messages.invalid_content(payload, files)
        if invalid is not None:
            return invalid
        message = self._message(interaction, payload, files, int(payload.get("flags") or 0))
        self._record(interaction, message, payload)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(message)
        return empty()

    async def webhook_message(self, request: web.Request) -> web.Response:
        """``/webhooks/{app}/{token}/messages/{id|@original}``: GET, PATCH, DELETE."""
        interaction = self._webhook(request)
        if interaction is None:
            return error(404, "Unknown Webhook", 10015)
        asked = request.match_info["message_id"]
        mid = interaction.original_id if asked == "@original" else asked
        message = self.messages.store.messages.get(mid) if mid is not None else None
        if message is None or mid is None:
            return error(404, "Unknown Message", 10008)
        if request.method == "GET":
            return json_response(message)
        if request.method == "DELETE":
            self.messages.remove(message["channel_id"], mid)
            return empty()
        payload, files = await self.messages.read_body(request)
        rec = self.messages.recorder.bot_messages.get(mid)
        if rec is None:
            # The first edit of a deferred response is what the user sees: a send.
            self.messages.apply_edit(message, payload, files, None)
            self._record(interaction, message, payload)
            return json_response(message)
        return json_response(self.messages.apply_edit(message, payload, files, rec))

    # ------------------------------------------------------------------ the command registry

    def _registry(self, request: web.Request) -> dict[str, JSON] | web.Response:
        if request.match_info["application_id"] != self.world.application_id:
            return error(404, "Unknown Application", 10002)
        guild_id = request.match_info.get("guild_id")
        if guild_id is not None and guild_id not in self.world.guilds:
            return error(404, "Unknown Guild", 10004)
        return self.commands.setdefault(guild_id, {})

    async def command_list(self, request: web.Request) -> web.Response:
        registry = self._registry(request)
        if isinstance(registry, web.Response):
            return registry
        guild_id = request.match_info.get("guild_id")
        if request.method == "GET":
            return json_response(list(registry.values()))
        if request.method == "PUT":
            body = orjson.loads(await request.read() or b"[]")
            if not isinstance(body, list):
                return error(400, "Invalid Form Body", 50035)
            fresh = {c["name"]: self._command(c, guild_id, registry.get(c["name"])) for c in body}
            self.commands[guild_id] = fresh
            return json_response(list(fresh.values()))
        body = await read_json(request)
        command = self._command(body, guild_id, registry.get(body.get("name", "")))
        registry[command["name"]] = command
        return json_response(command, 201)

    async def command(self, request: web.Request) -> web.Response:
        registry = self._registry(request)
        if isinstance(registry, web.Response):
            return registry
        cmd_id = request.match_info["command_id"]
        found = next((c for c in registry.values() if c["id"] == cmd_id), None)
        if found is None:
            return error(404, "Unknown application command", 10063)
        if request.method == "GET":
            return json_response(found)
        del registry[found["name"]]
        if request.method == "DELETE":
            return empty()
        body = await read_json(request)
        command = self._command({**found, **body}, request.match_info.get("guild_id"), found)
        registry[command["name"]] = command
        return json_response(command)

    def _command(self, body: JSON, guild_id: str | None, old: JSON | None) -> JSON:
        command: JSON = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "dm_permission": True,
            "nsfw": False,
            **body,
            "id": old["id"] if old else self.world.ids(),
            "application_id": self.world.application_id,
            "version": self.world.ids(),
        }
        if guild_id is not None:
            command["guild_id"] = guild_id
        return command
