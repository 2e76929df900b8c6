"""``DiscordServer``: the sandbox's Discord on 127.0.0.1, composed of its parts.

The bot connects to it unmodified: ``bot.frontend.endpoints.configure_endpoints(server.api_base,
server.gateway_url)`` sets discord.py's REST base and gateway, and everything else (READY's
``resume_gateway_url``, ``GET /gateway/bot`` for ``AutoShardedClient``) points back here.

The parts, one job each: ``world`` (guilds, channels, threads, users, roles), ``messages`` (message
and attachment store), ``gateway`` (websocket sessions and dispatch, per shard), ``rest`` (the REST
API on aiohttp's router, with ``rest_messages`` and ``rest_interactions``), ``ratelimit`` (Discord's
limits and headers), ``recorder`` (what the bot sent, and waits for it), ``faults`` (injected 429s,
5xx and gateway cuts), ``people`` (what users do) and ``control`` (all of it over HTTP under
``/_sandbox``). This class keeps the in-process API that tests and ``process.py`` use.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from botctl.sandbox.discord_server.common import JSON
from botctl.sandbox.discord_server.control import CONTROL_PREFIX, Control, HasStats, Traffic
from botctl.sandbox.discord_server.faults import Faults
from botctl.sandbox.discord_server.gateway import Gateway
from botctl.sandbox.discord_server.messages import NewAttachment, Store
from botctl.sandbox.discord_server.people import People
from botctl.sandbox.discord_server.ratelimit import RateLimiter, RateLimits
from botctl.sandbox.discord_server.recorder import Listener, RecordedMessage, Recorder
from botctl.sandbox.discord_server.rest import API_PREFIX, Rest
from botctl.sandbox.discord_server.rest_interactions import Interactions
from botctl.sandbox.discord_server.rest_messages import Messages
from botctl.sandbox.discord_server.world import World

__all__ = ["MAX_RECORDS", "SETTLE_SECONDS", "DiscordServer"]

SETTLE_SECONDS = 1.2
# Messages (and records) kept: about 5 KB each, so a long run at a high rate stays bounded.
MAX_RECORDS = 20_000


class DiscordServer:
    """A loopback Discord: ``guilds`` guilds sharing ``channels`` text channels, ``users`` people, the bot.

    ``rate_limits`` applies Discord's REST limits (``True``: Discord's figures; a
    :class:`RateLimits` for others; ``False``: none, and no rate-limit headers). ``shards`` is what
    ``GET /gateway/bot`` recommends. All methods run on the event loop the server was started on.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        channels: int = 10,
        users: int = 20,
        guild_name: str = "sandbox",
        *,
        guilds: int = 1,
        shards: int = 1,
        rate_limits: bool | RateLimits = True,
        token: str | None = None,
        settle_seconds: float = SETTLE_SECONDS,
        max_records: int = MAX_RECORDS,
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        if shards < 1:
            raise ValueError("shards must be at least 1")
        self.host = host
        self._requested_port = port
        self.port = 0
        self.shards = shards
        self.world = World(channels=channels, users=users, guilds=guilds, guild_name=guild_name)
        self.store = Store(self.world, max_records)
        self.recorder = Recorder(max_records, settle_seconds)
        self.gateway = Gateway(self.world, lambda: self.gateway_url)
        self.faults = Faults(self.gateway)
        self.messages = Messages(self.world, self.store, self.recorder, self.gateway)
        self.interactions = Interactions(self.messages)
        self.people = People(
            self.world, self.store, self.recorder, self.gateway, self.messages, self.interactions
        )
        if rate_limits is True:
            rate_limits = RateLimits()
        self.limiter = RateLimiter(rate_limits) if rate_limits else None
        self.rest = Rest(
            self.world,
            self.store,
            self.messages,
            self.interactions,
            self.faults,
            self.limiter,
            token=token,
            gateway_url=lambda: self.gateway_url,
            shards=shards,
        )
        self.control = Control(
            self.world, self.store, self.people, self.recorder, self.faults, self.stats
        )
        self._runner: web.AppRunner | None = None

        world = self.world
        self.guild_id, self.guild_ids, self.guild_name = world.guild_id, world.guild_ids, guild_name
        self.bot_user_id, self.application_id = world.bot_user_id, world.application_id
        self.owner_id, self.moderator_id = world.owner_id, world.moderator_id
        self.user_ids, self.channel_ids = world.user_ids, world.channel_ids
        self.guild_channel_ids = world.guild_channel_ids
        recorder = self.recorder
        self.all_sends, self.all_edits = recorder.all_sends, recorder.all_edits
        self.typing_calls, self.posted_at = recorder.typing_calls, recorder.posted_at
        self.interaction_responses = recorder.interaction_responses
        self.max_records = max_records

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """The REST base with its version, for ``configure_endpoints``."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def control_url(self) -> str:
        """The base of the HTTP control routes (``{control_url}/stats``, ``/say``, ...)."""
        return self.base_url + CONTROL_PREFIX

    @property
    def settle_seconds(self) -> float:
        return self.recorder.settle_seconds

    @property
    def traffic(self) -> Traffic | None:
        return self.control.traffic

    def attach_traffic(self, traffic: Traffic) -> None:
        """The simulated users that ``POST /_sandbox/traffic/start`` starts."""
        self.control.traffic = traffic

    def attach_llm(self, llm: HasStats) -> None:
        """An LLM server (anything with ``stats()``) whose figures ``GET /_sandbox/llm`` returns."""
        self.control.llm = llm

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.rest.register(app)
        app.router.add_get("/gateway", self.gateway.handle)
        self.control.register(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self.store.base_url = self.base_url

    async def stop(self) -> None:
        """Stop traffic, close every websocket (code 1001) and the HTTP server."""
        if self.traffic is not None:
            with contextlib.suppress(Exception):
                await self.traffic.stop()
        await self.gateway.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for_bot(self, timeout: float) -> None:
        """Until the bot's sessions have identified, every guild covered by a shard."""
        await asyncio.wait_for(self.gateway.ready.wait(), timeout)

    async def flush(self, timeout: float = 5.0) -> None:
        """Until every dispatch queued so far has been written to the bots' websockets."""
        await self.gateway.flush(timeout)

    def stats(self) -> JSON:
        stats: JSON = {
            "messages_posted": self.people.posted,
            "bot_messages": self.recorder.sends,
            "bot_edits": self.recorder.edits,
            "bot_deletes": self.recorder.deletes,
            "typing_calls": len(self.recorder.typing_calls),
            "interactions": self.interactions.count,
            "interaction_responses": len(self.recorder.interaction_responses),
            "rest_calls": self.rest.calls,
            "rest_faults_injected": self.faults.injected,
            **self.gateway.stats(),
            "guilds": len(self.world.guild_ids),
            "shards": self.shards,
            "channels": len(self.world.channel_ids),
        }
        if self.limiter is not None:
            stats.update(self.limiter.stats())
        else:
            stats.update(rate_limits=False, rate_limited={}, rate_limited_total=0)
        return stats

    # ------------------------------------------------------------------ what people do

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
        """Post ``content`` as a user in a guild channel or thread; returns the new message's id.

        With ``mention_bot`` the content starts with ``<@BOTID> `` and ``mentions`` holds the bot,
        as Discord sends a mention. ``reply_to`` makes it a reply (``message_reference`` and
        ``referenced_message``); a reply to the bot pings it, as Discord's client does by default.
        """
        return self.people.post_message(
            channel_id,
            user_id,
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
        """Post ``content`` in the user's DM channel with the bot (no guild); returns the message id."""
        return self.people.post_dm(user_id, content, reply_to=reply_to, attachments=attachments)

    def send_interaction(
        self,
        channel_id: str | int,
        user_id: str | int,
        command_name: str,
        options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """Run slash command ``/command_name`` as a user; returns the interaction id.

        ``options`` is ``{name: value}`` (types come from the registered command, else from the
        Python value) or a list of raw option objects. A command registered for the guild is
        sent with ``data.guild_id``, which is how discord.py tells guild commands from global ones.
        """
        return self.people.send_interaction(channel_id, user_id, command_name, options)

    def start_thread(self, message_id: str | int, name: str | None = None) -> str:
        """The message's author starts a public thread from it; returns the thread's id."""
        return self.people.start_thread(message_id, name)

    def delete_message(self, message_id: str | int) -> bool:
        """Delete any message (MESSAGE_DELETE to the bot); False if there is no such message."""
        return self.people.delete_message(message_id)

    def set_roles(
        self, user_id: str | int, roles: Sequence[str], guild_id: str | None = None
    ) -> None:
        """Make a member's roles exactly ``roles`` (names such as ``moderator``, or ids)."""
        self.people.set_roles(user_id, roles, guild_id)

    def create_channel(self, name: str | None = None, guild_id: str | None = None) -> str:
        """A new text channel, announced with CHANNEL_CREATE before anything is posted in it.

        A fresh channel has no history, so the same question asked in several fresh channels at once
        makes identical LLM requests (what request deduplication merges). Guilds take turns.
        """
        return self.people.create_channel(name, guild_id)

    def delete_channel(self, channel_id: str | int) -> bool:
        """Delete a channel made by :meth:`create_channel`, announced with CHANNEL_DELETE (the bot's
        client then forgets it, as on Discord); ``False`` if there is no such channel."""
        return self.people.delete_channel(channel_id)

    # ------------------------------------------------------------------ what the bot did

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(message, edit)`` on every bot send (``edit`` None) and edit, synchronously."""
        self.recorder.add_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        self.recorder.remove_listener(listener)

    def replies_to(self, message_id: str | int) -> list[RecordedMessage]:
        """The bot's messages answering ``message_id`` (a user message or an interaction), in order."""
        return self.recorder.replies_to(message_id)

    def message(self, message_id: str | int) -> JSON | None:
        """The stored payload of any message (a user's or the bot's), or None."""
        return self.store.messages.get(str(message_id))

    def reply_text(self, message_id: str | int) -> str:
        """All parts of the reply, each at its latest content, joined with newlines."""
        return "\n".join(m.content for m in self.replies_to(message_id) if not m.deleted)

    async def wait_for_reply(self, message_id: str | int, timeout: float) -> RecordedMessage:
        """The first message answering ``message_id``; ``TimeoutError`` if none within ``timeout``."""
        return await self.recorder.wait_for_reply(message_id, timeout)

    async def wait_for_settled_reply(
        self, message_id: str | int, timeout: float, *, settle: float | None = None
    ) -> list[RecordedMessage]:
        """The reply's parts once no send or edit for it arrived for ``settle`` seconds.

        Returns what there is when ``timeout`` runs out (maybe nothing). Waiting is driven by the
        sends and edits themselves, not by polling.
        """
        return await self.recorder.wait_for_settled_reply(message_id, timeout, settle=settle)

    # ------------------------------------------------------------------ faults

    def inject_rest_429(
        self, count: int, retry_after: float = 0.1, route_prefix: str | None = None
    ) -> None:
        """Answer the next ``count`` REST calls (under ``route_prefix`` such as ``/channels``) with 429."""
        self.faults.inject_rest_429(count, retry_after, route_prefix)

    def inject_rest_5xx(
        self, count: int, status: int = 500, route_prefix: str | None = None
    ) -> None:
        """Answer the next ``count`` REST calls with ``status`` (discord.py retries 500/502/504)."""
        self.faults.inject_rest_5xx(count, status, route_prefix)

    def drop_gateway(self, code: int = 4000, *, resumable: bool = True) -> int:
        """Cut the bots' websockets with a resumable close code; returns how many were cut.

        Dispatches from now on are kept for the session and replayed when the client RESUMEs.
        ``code=1006`` aborts the TCP connection without a close frame. With ``resumable=False``
        the sessions are forgotten: the RESUME gets INVALID_SESSION, the client identifies afresh
        (READY, GUILD_CREATE again) and what was posted in between is lost, as on Discord.
        """
        return self.faults.drop_gateway(code, resumable=resumable)
