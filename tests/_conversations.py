"""The harness of the issue 12 tests: the real bot (``bot.frontend.app.serve``, discord.py) against an
in-process sandbox Discord (no rate limits: no test of these is about them) and sandbox LLM (no
latency, every token at once); what the model was sent is read from the LLM's recorded requests.

:func:`sandbox` starts the two servers; :func:`serving` runs a bot against them (two bots one after
the other against the same Discord are a restart); :func:`running_bot` does both. Every wait is
bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bot.components import Components
from bot.config import load_settings
from bot.frontend.app import ServeResult, serve
from bot.frontend.endpoints import reset_endpoints
from botctl.sandbox.discord_server import DiscordServer, NewAttachment, RecordedMessage
from botctl.sandbox.llm_server import LLMServer
from botctl.sandbox.llm_server.messages import RecordedRequest

START_TIMEOUT = 15.0
STOP_TIMEOUT = 20.0
REPLY_TIMEOUT = 10.0
SETTLE = 0.3


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@dataclass
class Bot:
    """The bot running against ``server`` and ``llm``, and what a test does with it."""

    server: DiscordServer
    llm: LLMServer
    components: Components
    metrics_file: Path
    stop: asyncio.Event
    task: asyncio.Task[ServeResult]

    @property
    def channel(self) -> str:
        return self.server.channel_ids[0]

    @property
    def user(self) -> str:
        return self.server.user_ids[0]

    def say(
        self,
        text: str,
        *,
        channel: str | None = None,
        user: str | None = None,
        reply_to: str | None = None,
        attachments: Sequence[NewAttachment] = (),
        mention: bool = True,
    ) -> str:
        """Post as a user (mentioning the bot unless told not to); the message's id."""
        return self.server.post_message(
            channel or self.channel,
            user or self.user,
            text,
            mention_bot=mention,
            reply_to=reply_to,
            attachments=attachments,
        )

    async def reply_to(self, mid: str, timeout: float = REPLY_TIMEOUT) -> list[RecordedMessage]:
        """The bot's reply to ``mid`` once settled (``[]`` if none came)."""
        return await self.server.wait_for_settled_reply(mid, timeout, settle=SETTLE)

    async def ask(self, text: str, **where: Any) -> tuple[str, RecordedMessage]:
        """Post ``text`` and wait for the answer (one message): the question's id and the answer."""
        mid = self.say(text, **where)
        parts = await self.reply_to(mid)
        assert len(parts) == 1, f"{len(parts)} parts answer {text[:40]!r}"
        return mid, parts[0]

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.llm.requests if r.kind == "chat"]

    def last_chat(self) -> list[dict[str, Any]]:
        found = self.llm.last_request(kind="chat")
        assert found is not None, "no chat request reached the LLM"
        return found.messages

    async def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        await asyncio.wait_for(self.components.metrics.flush(), 5.0)
        return [e for e in read_events(self.metrics_file) if kind is None or e["type"] == kind]

    async def interaction(
        self, command: str, options: dict[str, Any] | None = None, **where: Any
    ) -> str:
        """Run ``/command`` and return the text of its response."""
        iid = self.server.send_interaction(
            where.get("channel") or self.channel, where.get("user") or self.user, command, options
        )
        async with asyncio.timeout(REPLY_TIMEOUT):
            while True:  # the recorder offers no wait for interaction responses
                found = [r for r in self.server.interaction_responses if r.interaction_id == iid]
                if found:
                    return str((found[0].data or {}).get("content", ""))
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def sandbox(
    *, llm: dict[str, Any] | None = None, **discord: Any
) -> AsyncIterator[tuple[DiscordServer, LLMServer]]:
    server = DiscordServer(**{"channels": 3, "users": 5, "rate_limits": False, **discord})
    model = LLMServer(
        **{"latency": 0.0, "tokens_per_second": 0.0, "record_limit": 1000, **(llm or {})}
    )
    await server.start()
    try:
        await model.start()
        try:
            yield server, model
        finally:
            await model.stop()
    finally:
        await asyncio.wait_for(server.stop(), STOP_TIMEOUT)


@contextlib.asynccontextmanager
async def serving(
    server: DiscordServer, llm: LLMServer, metrics_file: Path, **settings: Any
) -> AsyncIterator[Bot]:
    """The bot against ``server`` and ``llm`` until the block ends (then stopped, flushed)."""
    assert llm.url is not None
    values: dict[str, Any] = {
        "discord_api": server.api_base,
        "discord_gateway": server.gateway_url,
        "llm_url": llm.url,
        "llm_api": "ollama",
        "metrics_file": metrics_file,
        "llm_timeout": 5.0,
        "cooldown": 0.0,
        "write_pacing": server.limiter is not None,  # a server without limits answers at once
        **settings,
    }
    config = load_settings(None, values)
    ready: asyncio.Future[Components] = asyncio.get_running_loop().create_future()

    async def on_ready(components: Components) -> None:
        ready.set_result(components)

    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(
            config,
            "sandbox-token",
            stop,
            on_ready=on_ready,
            drain_timeout=5.0,
            client_options={"guild_ready_timeout": 0.1},
        )
    )
    try:
        waiters: set[asyncio.Future[Any]] = {task, ready}
        done, _ = await asyncio.wait(
            waiters, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if not ready.done():
            raise AssertionError(
                f"the bot stopped at start-up: {task.result().error}"
                if task in done
                else f"the bot was not ready within {START_TIMEOUT} s"
            )
        yield Bot(server, llm, ready.result(), metrics_file, stop, task)
    finally:
        stop.set()
        result = await asyncio.wait_for(task, STOP_TIMEOUT)
        reset_endpoints()
        assert result.error is None, result.error


@contextlib.asynccontextmanager
async def running_bot(
    tmp_path: Path, *, llm: dict[str, Any] | None = None, **settings: Any
) -> AsyncIterator[Bot]:
    async with (
        sandbox(llm=llm) as (server, model),
        serving(server, model, tmp_path / "metrics.jsonl", **settings) as bot,
    ):
        yield bot


def turns(messages: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(role, content) of each message but the system ones."""
    return [(m["role"], m["content"]) for m in messages if m["role"] != "system"]


async def no_reply(bot: Bot, mid: str, wait: float = 1.0) -> bool:
    """Whether the bot left ``mid`` unanswered for ``wait`` seconds."""
    return await bot.server.wait_for_settled_reply(mid, wait, settle=wait / 2) == []


def dm_channel(server: DiscordServer, message_id: str) -> str:
    """The channel of a message (a DM's, for a DM)."""
    message = server.message(message_id)
    assert message is not None
    return str(message["channel_id"])


def rest_calls(server: DiscordServer) -> int:
    """REST calls the sandbox's Discord has answered so far (the bot's sends, fetches, ...)."""
    return int(server.stats()["rest_calls"])


async def sends_in(
    server: DiscordServer, channel_id: str, count: int = 1, timeout: float = 5.0
) -> list[RecordedMessage]:
    """The bot's messages in a channel, once there are ``count`` of them (replies or not)."""
    async with asyncio.timeout(timeout):
        while len(found := [m for m in server.all_sends if m.channel_id == channel_id]) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return found
