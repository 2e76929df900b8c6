"""Starting, driving and stopping the sandbox process from the bot's side (``botctl run``, tests).

The sandbox runs as a child process (``python -m botctl.sandbox.process``); this module spawns it,
reads its one ready line, talks to its control routes over HTTP and stops it, always within bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from botctl.sandbox.config import SandboxConfig

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


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

    async def _call(self, method: str, path: str, payload: Any = None) -> Any:
        if self._session is None or self.endpoints is None:
            raise SandboxError("the sandbox is not running")
        url = self.endpoints.control_url + path
        try:
            async with self._session.request(method, url, json=payload) as resp:
                body = await resp.read()
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

    async def say(self, content: str, channel: str | None = None, user: str | None = None) -> str:
        data = await self._call(
            "POST", "/say", {"content": content, "channel": channel, "user": user}
        )
        return str(data["message_id"])

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
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
