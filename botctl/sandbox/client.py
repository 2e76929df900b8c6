"""Starting, driving and stopping the sandbox process from the bot's side (``botctl run``, tests).

The sandbox runs as a child process (``python -m botctl.sandbox.process``); this module spawns it,
reads its one ready line, talks to its control routes over HTTP and stops it, always within bounds.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from botctl.child import stop_child
from botctl.sandbox.config import SandboxConfig

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


# A file a simulated user attaches: (filename, content, content type).
Attachment = tuple[str, bytes, str]


def _attachments(one: Attachment | None, many: Sequence[Attachment]) -> list[dict[str, str]]:
    files = ([one] if one is not None else []) + list(many)
    return [
        {"filename": name, "content_type": ctype, "data_base64": base64.b64encode(data).decode()}
        for name, data, ctype in files
    ]


class SandboxError(RuntimeError):
    """The sandbox did not start or answer; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class SandboxEndpoints:
    api_base: str
    gateway_url: str
    control_url: str
    llm_url: str | None


class SandboxProcess:
    """``async with SandboxProcess(config) as sandbox:`` — a running sandbox, stopped on exit."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None
        self.endpoints: SandboxEndpoints | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SandboxProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> SandboxEndpoints:
        env = dict(os.environ)
        env.pop("DISCORD_TOKEN", None)  # the sandbox never needs it; keep it out of that process
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "botctl.sandbox.process",
            self.config.to_json(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the bot, which stops us in order
        )
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), READY_TIMEOUT)
        except TimeoutError:
            await self.stop()
            raise SandboxError(f"the sandbox did not start within {READY_TIMEOUT:.0f} s") from None
        if not line:
            code = await self.proc.wait()
            raise SandboxError(f"the sandbox exited at start-up (exit code {code})")
        data = orjson.loads(line)
        self.endpoints = SandboxEndpoints(
            api_base=data["api_base"],
            gateway_url=data["gateway_url"],
            control_url=data["control_url"],
            llm_url=data.get("llm_url"),
        )
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self.endpoints

    async def _call(
        self, method: str, path: str, payload: Any = None, *, missing_ok: bool = False
    ) -> Any:
        """The control route's JSON answer; ``None`` for a 404 when ``missing_ok``."""
        if self._session is None or self.endpoints is None:
            raise SandboxError("the sandbox is not running")
        url = self.endpoints.control_url + path
        try:
            async with self._session.request(method, url, json=payload) as resp:
                body = await resp.read()
                if resp.status == 404 and missing_ok:
                    return None
                if resp.status >= 400:
                    raise SandboxError(f"sandbox {path} answered HTTP {resp.status}")
                return orjson.loads(body) if body else None
        except aiohttp.ClientError as exc:
            raise SandboxError(f"sandbox {path} did not answer ({type(exc).__name__})") from None

    async def start_traffic(self) -> None:
        await self._call("POST", "/traffic/start")

    async def stop_traffic(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", "/traffic/stop") or {}
        return result

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/stats")
        return result

    async def traffic_stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/traffic")
        return result

    async def llm_stats(self) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self._call("GET", "/llm")
        return result

    async def say(
        self,
        content: str,
        channel: str | None = None,
        user: str | None = None,
        *,
        reply_to: str | None = None,
        attachment: Attachment | None = None,
        attachments: Sequence[Attachment] = (),
        mention_bot: bool = True,
    ) -> str:
        """Post as a user (in a channel or a thread); the message's id.

        ``reply_to`` makes it a reply to that message (a reply to the bot pings it, as Discord's
        client does by default). ``attachment`` is ``(filename, bytes, content_type)``.
        """
        payload: dict[str, Any] = {
            "content": content,
            "channel": channel,
            "user": user,
            "mention_bot": mention_bot,
            "reply_to": reply_to,
            "attachments": _attachments(attachment, attachments),
        }
        data = await self._call("POST", "/say", payload)
        return str(data["message_id"])

    async def dm(
        self,
        content: str,
        user: str | None = None,
        *,
        reply_to: str | None = None,
        attachment: Attachment | None = None,
    ) -> str:
        """Post in the user's DM channel with the bot; the message's id."""
        payload = {
            "content": content,
            "user": user,
            "reply_to": reply_to,
            "attachments": _attachments(attachment, ()),
        }
        data = await self._call("POST", "/dm", payload)
        return str(data["message_id"])

    async def interaction(
        self,
        command: str,
        channel: str | None = None,
        user: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> str:
        """Run ``/command`` as a user; the interaction's id (``wait_reply`` takes it too)."""
        payload = {"command": command, "channel": channel, "user": user, "options": options}
        data = await self._call("POST", "/interaction", payload)
        return str(data["interaction_id"])

    async def start_thread(self, message_id: str, name: str | None = None) -> str:
        """The message's author starts a public thread from it; the thread's id (a channel id)."""
        data = await self._call("POST", "/thread", {"message_id": message_id, "name": name})
        return str(data["thread_id"])

    async def delete_message(self, message_id: str) -> bool:
        """Delete a message (the bot gets MESSAGE_DELETE); False if there was no such message."""
        data = await self._call("POST", "/delete", {"message_id": message_id}, missing_ok=True)
        return data is not None

    async def set_roles(self, user: str, roles: Sequence[str], guild: str | None = None) -> None:
        """Make a member's roles exactly ``roles`` (names such as ``moderator``, or ids)."""
        await self._call("POST", "/roles", {"user": user, "roles": list(roles), "guild": guild})

    async def world(self) -> dict[str, Any]:
        """The ids: ``bot_user_id``, ``owner_id``, ``moderator_id``, ``user_ids`` and ``guilds``
        (each with ``id``, ``name``, ``channel_ids``, ``thread_ids`` and ``roles``)."""
        result: dict[str, Any] = await self._call("GET", "/world")
        return result

    async def message(self, message_id: str) -> dict[str, Any] | None:
        """A message's payload as Discord would send it, or None if there is none."""
        result: dict[str, Any] | None = await self._call(
            "GET", f"/message?id={message_id}", missing_ok=True
        )
        return result

    async def wait_reply(
        self, message_id: str, timeout: float = 130.0, settle: float | None = None
    ) -> dict[str, Any]:
        query = f"/wait_reply?message_id={message_id}&timeout={timeout}"
        if settle is not None:
            query += f"&settle={settle}"
        result: dict[str, Any] = await self._call("GET", query)
        return result

    async def fault(self, payload: dict[str, Any]) -> None:
        await self._call("POST", "/fault", payload)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        await stop_child(proc, STOP_TIMEOUT)
        if proc.stdin is not None:
            proc.stdin.close()
