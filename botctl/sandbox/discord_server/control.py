"""The control API under ``/_sandbox/``: the in-process API over HTTP, for a bot in another process.

``botctl/sandbox/client.py`` (``SandboxProcess``) and the tests drive the sandbox through it: post
as a user (mentions, replies, attachments, DMs, slash commands), start threads, delete messages, give
roles, wait for the bot's reply, inject faults, start and stop the simulated users, read the counters.
Every answer is JSON; a bad request gets 400 with ``{"error": "..."}``, an unknown id 404.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web

from botctl.sandbox.discord_server.common import JSON, json_response, read_json
from botctl.sandbox.discord_server.faults import Faults
from botctl.sandbox.discord_server.messages import NewAttachment, Store
from botctl.sandbox.discord_server.people import People
from botctl.sandbox.discord_server.recorder import Recorder
from botctl.sandbox.discord_server.world import World

__all__ = ["CONTROL_PREFIX", "Control", "HasStats", "Traffic"]

CONTROL_PREFIX = "/_sandbox"


class HasStats(Protocol):
    def stats(self) -> Mapping[str, Any]: ...


class Traffic(HasStats, Protocol):
    """The simulated users as the control API sees them (``botctl.sandbox.users.TrafficGenerator``)."""

    @property
    def running(self) -> bool: ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def configured(
        self,
        *,
        rate: float | None = ...,
        duplicate_ratio: float | None = ...,
        seed: int | None = ...,
        questions: Sequence[str] | None = ...,
        max_messages: int | None = ...,
    ) -> Traffic:
        """A new generator for the same server with these parameters, the others as they were."""
        ...


def _bad(message: str, status: int = 400) -> web.Response:
    return json_response({"error": message}, status)


def _attachments(raw: Any) -> list[NewAttachment]:
    """``[{"filename", "content_type", "data_base64" | "text", "fault"}]`` as attachments."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("attachments must be a list of objects")
    out: list[NewAttachment] = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("filename"), str):
            raise ValueError("each attachment needs a filename")
        if isinstance(item.get("text"), str):
            data = item["text"].encode()
        else:
            try:
                data = base64.b64decode(str(item.get("data_base64") or ""), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("data_base64 must be base64") from None
        fault = item.get("fault")
        if fault not in (None, "404", "hang"):
            raise ValueError("fault must be 404 or hang")
        ctype = str(item.get("content_type") or "application/octet-stream")
        out.append(NewAttachment(item["filename"], data, ctype, fault))
    return out


class Control:
    def __init__(
        self,
        world: World,
        store: Store,
        people: People,
        recorder: Recorder,
        faults: Faults,
        stats: Callable[[], JSON],
    ) -> None:
        self.world = world
        self.store = store
        self.people = people
        self.recorder = recorder
        self.faults = faults
        self._stats = stats
        self.traffic: Traffic | None = None
        self.llm: HasStats | None = None

    def register(self, app: web.Application) -> None:
        add_get, add_post, p = app.router.add_get, app.router.add_post, CONTROL_PREFIX
        add_get(p + "/stats", self.stats)
        add_get(p + "/world", self.world_ids)
        add_get(p + "/message", self.message)
        add_get(p + "/wait_reply", self.wait_reply)
        add_get(p + "/traffic", self.traffic_stats)
        add_get(p + "/llm", self.llm_stats)
        add_post(p + "/fault", self.fault)
        add_post(p + "/say", self.say)
        add_post(p + "/dm", self.dm)
        add_post(p + "/interaction", self.interaction)
        add_post(p + "/thread", self.thread)
        add_post(p + "/delete", self.delete)
        add_post(p + "/roles", self.roles)
        add_post(p + "/traffic/start", self.traffic_start)
        add_post(p + "/traffic/stop", self.traffic_stop)

    # ------------------------------------------------------------------ reading

    async def stats(self, request: web.Request) -> web.Response:
        return json_response(self._stats())

    async def world_ids(self, request: web.Request) -> web.Response:
        return json_response(self.world.describe())

    async def message(self, request: web.Request) -> web.Response:
        found = self.store.messages.get(request.query.get("id", ""))
        if found is None:
            return _bad("no such message", 404)
        return json_response(self.store.view(found))

    async def wait_reply(self, request: web.Request) -> web.Response:
        mid = request.query.get("message_id")
        if not mid:
            return _bad("message_id is required")
        try:
            timeout = min(max(float(request.query.get("timeout", "30")), 0.0), 600.0)
        except ValueError:
            return _bad("timeout must be a number of seconds")
        try:
            # settle=0 peeks: what the reply says now (the --chat terminal streams that way).
            settle = float(request.query["settle"]) if "settle" in request.query else None
        except ValueError:
            return _bad("settle must be a number of seconds")
        parts = await self.recorder.wait_for_settled_reply(mid, timeout, settle=settle)
        if not parts:
            body = {"error": f"no reply to {mid} within {timeout:g} s", "message_id": mid}
            return json_response(body, 504)
        return json_response(self.recorder.reply_summary(mid, parts))

    async def llm_stats(self, request: web.Request) -> web.Response:
        return json_response(dict(self.llm.stats()) if self.llm is not None else None)

    # ------------------------------------------------------------------ acting

    async def fault(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        kind = body.get("kind")
        try:
            if kind == "rest_429":
                self.faults.inject_rest_429(
                    int(body.get("count", 1)),
                    float(body.get("retry_after", 0.1)),
                    body.get("route_prefix"),
                )
                return json_response({"ok": True, "kind": kind})
            if kind == "rest_5xx":
                self.faults.inject_rest_5xx(
                    int(body.get("count", 1)),
                    int(body.get("status", 500)),
                    body.get("route_prefix"),
                )
                return json_response({"ok": True, "kind": kind})
            if kind == "drop_gateway":
                dropped = self.faults.drop_gateway(
                    int(body.get("code", 4000)), resumable=bool(body.get("resumable", True))
                )
                return json_response({"ok": True, "kind": kind, "dropped": dropped})
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
        return _bad("kind must be rest_429, rest_5xx or drop_gateway")

    async def say(self, request: web.Request) -> web.Response:
        """``{"content", "channel"?, "user"?, "mention_bot"?, "reply_to"?, "attachments"?}``."""
        body = await read_json(request)
        content = body.get("content")
        try:
            attachments = _attachments(body.get("attachments"))
        except ValueError as exc:
            return _bad(str(exc))
        if not isinstance(content, str) or not (content or attachments):
            return _bad("content (a string, non-empty unless there are attachments) is required")
        try:
            mid = self.people.post_message(
                body.get("channel") or self.world.channel_ids[0],
                body.get("user") or self.world.user_ids[0],
                content,
                mention_bot=bool(body.get("mention_bot", True)),
                reply_to=body.get("reply_to"),
                attachments=attachments,
            )
        except KeyError as exc:
            return _bad(str(exc.args[0]), 404)
        return json_response({"message_id": mid})

    async def dm(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        content = body.get("content")
        try:
            attachments = _attachments(body.get("attachments"))
        except ValueError as exc:
            return _bad(str(exc))
        if not isinstance(content, str) or not (content or attachments):
            return _bad("content (a string, non-empty unless there are attachments) is required")
        try:
            mid = self.people.post_dm(
                body.get("user") or self.world.user_ids[0],
                content,
                reply_to=body.get("reply_to"),
                attachments=attachments,
            )
        except KeyError as exc:
            return _bad(str(exc.args[0]), 404)
        return json_response({"message_id": mid})

    async def interaction(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        command = body.get("command")
        if not isinstance(command, str) or not command:
            return _bad("command (a name such as ask) is required")
        try:
            iid = self.people.send_interaction(
                body.get("channel") or self.world.channel_ids[0],
                body.get("user") or self.world.user_ids[0],
                command,
                body.get("options"),
            )
        except KeyError as exc:
            return _bad(str(exc.args[0]), 404)
        return json_response({"interaction_id": iid})

    async def thread(self, request: web.Request) -> web.Response:
        """``{"message_id", "name"?}``: the message's author starts a thread from it."""
        body = await read_json(request)
        try:
            tid = self.people.start_thread(str(body.get("message_id")), body.get("name"))
        except KeyError as exc:
            return _bad(str(exc.args[0]), 404)
        except ValueError as exc:
            return _bad(str(exc))
        return json_response({"thread_id": tid})

    async def delete(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        deleted = self.people.delete_message(str(body.get("message_id")))
        return json_response({"deleted": deleted}, 200 if deleted else 404)

    async def roles(self, request: web.Request) -> web.Response:
        """``{"user", "roles": [name or id, ...], "guild"?}``: the member's roles become exactly these."""
        body = await read_json(request)
        roles = body.get("roles")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            return _bad("roles must be a list of role names or ids")
        try:
            self.people.set_roles(str(body.get("user")), roles, body.get("guild"))
        except KeyError as exc:
            return _bad(str(exc.args[0]), 404)
        return json_response({"ok": True})

    # ------------------------------------------------------------------ the simulated users

    async def traffic_start(self, request: web.Request) -> web.Response:
        """Start the attached generator, or (given parameters) a new one in its place."""
        if self.traffic is None:
            return _bad("no simulated users are attached to this sandbox", 409)
        if self.traffic.running:
            return _bad("traffic is already running; stop it first", 409)
        params = {k: v for k, v in (await read_json(request)).items() if v is not None}
        if params:
            try:
                self.traffic = self.traffic.configured(**params)
            except (TypeError, ValueError) as exc:
                return _bad(str(exc))
        self.traffic.start()
        return json_response({"ok": True, **self.traffic.stats()})

    async def traffic_stop(self, request: web.Request) -> web.Response:
        if self.traffic is None:
            return _bad("no traffic was started", 404)
        await self.traffic.stop()
        return json_response(dict(self.traffic.stats()))

    async def traffic_stats(self, request: web.Request) -> web.Response:
        if self.traffic is None:
            return json_response({"running": False, "messages_sent": 0})
        return json_response(dict(self.traffic.stats()))
