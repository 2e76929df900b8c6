"""A Discord-compatible REST API and gateway on 127.0.0.1, for the real discord.py client.

The bot connects to it unmodified: ``bot.frontend.endpoints.configure_endpoints(server.api_base,
server.gateway_url)`` sets discord.py's REST base and gateway, and everything else (READY's
``resume_gateway_url``, ``GET /gateway/bot`` for ``AutoShardedClient``) points back here.

What it serves:

- REST under ``/api/v10``: the routes a chat bot uses (login, application info, gateway discovery,
  send/edit/delete/fetch messages, typing, DM channels, application commands, interaction callbacks
  and their webhooks). Every answer has exactly ``Content-Type: application/json``: discord.py only
  decodes JSON when the header is that string, so aiohttp's ``json_response`` (which appends a
  charset) would hand it a ``str``.
- A gateway at ``/gateway``: HELLO, IDENTIFY -> READY + GUILD_CREATE (one guild, ``member_count ==
  len(members)`` so the client never asks for member chunks), heartbeats, dispatches with sequence
  numbers, RESUME (replays what the client missed, then RESUMED). Frames are JSON *text* frames:
  the client only inflates binary frames, so its ``compress=zlib-stream`` needs nothing from us.
- An in-process API (:class:`DiscordServer`) to post messages as simulated users, run slash
  commands, read what the bot sent (with ``allowed_mentions`` and ``message_reference``), wait for
  replies without polling, and inject faults (429, 5xx, a dropped gateway).
- The same over HTTP under ``/_sandbox/`` for a bot running in another process.

The bot is measured through this server, so the hot paths (message dispatch, message create/edit)
do no logging, encode with orjson once per event, and route REST calls by splitting the path rather
than through a regex per route. It deliberately sends no ``X-RateLimit-*`` headers on success: the
client then never pre-emptively sleeps, and a rate limit is only what a test injects.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from aiohttp import BodyPartReader, WSMsgType, web

if TYPE_CHECKING:
    from botctl.sandbox.users import TrafficGenerator

__all__ = [
    "DiscordServer",
    "RecordedEdit",
    "RecordedInteractionResponse",
    "RecordedMessage",
    "RecordedTyping",
]

log = logging.getLogger("botctl.sandbox.discord")

JSON = dict[str, Any]
Listener = Callable[["RecordedMessage", "RecordedEdit | None"], None]

API_VERSION = 10
DISCORD_EPOCH_MS = 1_420_070_400_000
HEARTBEAT_INTERVAL_MS = 41_250
SETTLE_SECONDS = 1.2
REPLAY_LIMIT = 50_000  # dispatches kept per session for RESUME
RESUME_TTL = 120.0  # seconds a detached session stays resumable
# Messages (and records) kept: about 5 KB each, so a long run at a high rate stays bounded.
MAX_RECORDS = 20_000
_PRUNE_EVERY = 1024
MAX_CONTENT = 2000
ATTACHMENT_SIZE_LIMIT = 25 * 1024 * 1024

# view channel, send messages, embed links, attach files, read history, add reactions, external
# emojis, use application commands, create public threads, send in threads.
_EVERYONE_PERMISSIONS = sum(1 << bit for bit in (6, 10, 11, 14, 15, 16, 18, 31, 35, 38))

_JSON_HEADERS = {"Content-Type": "application/json"}
_HELLO = orjson.dumps(
    {"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}, "s": None, "t": None}
)
_HEARTBEAT_ACK = b'{"op":11}'
_INVALID_SESSION = b'{"op":9,"d":false,"s":null,"t":null}'

_MESSAGE_TYPE_DEFAULT = 0
_MESSAGE_TYPE_REPLY = 19
_MESSAGE_TYPE_CHAT_INPUT = 20
_FLAG_EPHEMERAL = 64
_FLAG_LOADING = 128


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, headers=_JSON_HEADERS)


def _error(status: int, message: str, code: int = 0) -> web.Response:
    return _json({"message": message, "code": code}, status)


_NO_CONTENT = 204


def _empty() -> web.Response:
    return web.Response(status=_NO_CONTENT)


def _iso_now() -> str:
    return datetime.now(UTC).isoformat()


# --------------------------------------------------------------------------- records


@dataclass(slots=True)
class RecordedEdit:
    """One edit of a bot message (REST PATCH, or the interaction webhook's PATCH)."""

    message_id: str
    channel_id: str
    content: str
    allowed_mentions: JSON | None
    at: float  # time.monotonic()
    payload: JSON


@dataclass(slots=True)
class RecordedMessage:
    """One message the bot sent; ``content`` is its latest content (after the last edit).

    ``reply_to`` is the user message its ``message_reference`` points at, or, for a slash-command
    response or follow-up, the interaction id.
    """

    id: str
    channel_id: str
    content: str
    reply_to: str | None
    message_reference: JSON | None
    allowed_mentions: JSON | None
    at: float  # time.monotonic() of the send
    payload: JSON
    interaction_id: str | None = None
    flags: int = 0
    edits: list[RecordedEdit] = field(default_factory=list)
    deleted: bool = False

    @property
    def original_content(self) -> str:
        """What the message said when it was sent."""
        content = self.payload.get("content")
        return content if isinstance(content, str) else ""

    @property
    def last_at(self) -> float:
        """Monotonic time of the last send or edit."""
        return self.edits[-1].at if self.edits else self.at


@dataclass(slots=True)
class RecordedTyping:
    channel_id: str
    at: float


@dataclass(slots=True)
class RecordedInteractionResponse:
    """One ``POST /interactions/{id}/{token}/callback`` (type 4 message, 5 deferred, ...)."""

    interaction_id: str
    type: int
    data: JSON | None
    at: float


class _Replies:
    """The bot's messages answering one user message or interaction, and who waits on them."""

    __slots__ = ("last_at", "parts", "waiters")

    def __init__(self) -> None:
        self.parts: list[RecordedMessage] = []
        self.last_at = 0.0
        self.waiters: list[asyncio.Future[None]] = []

    def touch(self, at: float) -> None:
        self.last_at = at
        if self.waiters:
            waiters, self.waiters = self.waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


@dataclass(slots=True)
class _Interaction:
    id: str
    token: str
    channel_id: str
    user_id: str
    command: str
    response_type: int | None = None
    original_id: str | None = None


@dataclass(slots=True)
class _Fault:
    kind: str  # "429" | "5xx"
    remaining: int
    status: int = 500
    retry_after: float = 0.1
    route_prefix: str | None = None


# --------------------------------------------------------------------------- gateway


class _Conn:
    """One websocket; frames go out in order through a single writer task."""

    __slots__ = ("dropped", "idle", "pending", "request", "session", "wake", "writer", "ws")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.request = request
        self.pending: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.session: _Session | None = None
        self.writer: asyncio.Task[None] | None = None
        self.dropped = False

    def push(self, frame: bytes) -> None:
        self.pending.append(frame)
        self.idle.clear()
        self.wake.set()


class _Session:
    __slots__ = ("buffer", "conn", "detached_at", "id", "intents", "seq", "shard", "token")

    def __init__(self, session_id: str, token: str, shard: list[int], intents: int) -> None:
        self.id = session_id
        self.token = token
        self.shard = shard
        self.intents = intents
        self.seq = 0
        self.buffer: deque[tuple[int, bytes]] = deque(maxlen=REPLAY_LIMIT)
        self.conn: _Conn | None = None
        self.detached_at = 0.0

    def send(self, event: bytes, data: bytes) -> None:
        self.seq += 1
        frame = b'{"op":0,"s":%d,"t":"%s","d":%s}' % (self.seq, event, data)
        self.buffer.append((self.seq, frame))
        if self.conn is not None:
            self.conn.push(frame)


class _HasStats(Protocol):
    def stats(self) -> Mapping[str, Any]: ...


class _Snowflakes:
    """Real-looking snowflakes (timestamp << 22 | increment), strictly increasing."""

    __slots__ = ("_inc", "_last")

    def __init__(self) -> None:
        self._last = 0
        self._inc = 0

    def __call__(self) -> str:
        now = int(time.time() * 1000) - DISCORD_EPOCH_MS
        if now > self._last:
            self._last = now
            self._inc = 0
        else:
            self._inc += 1
            if self._inc >= 4096:
                self._last += 1
                self._inc = 0
        return str((self._last << 22) | (1 << 17) | self._inc)


# --------------------------------------------------------------------------- the server


class DiscordServer:
    """A loopback Discord: one guild with ``channels`` text channels, ``users`` people and the bot.

    All methods run on the event loop the server was started on. Ids are snowflake strings.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        channels: int = 10,
        users: int = 20,
        guild_name: str = "sandbox",
        *,
        token: str | None = None,
        settle_seconds: float = SETTLE_SECONDS,
        max_records: int = MAX_RECORDS,
    ) -> None:
        if channels < 1 or users < 1:
            raise ValueError("the sandbox needs at least one channel and one user")
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.max_records = max_records
        self.host = host
        self._requested_port = port
        self.port = 0
        self._token = token
        self.settle_seconds = settle_seconds
        self._ids = _Snowflakes()
        self._started_wall = _iso_now()

        self.guild_id = self._ids()
        self.bot_user_id = self._ids()
        self.application_id = self.bot_user_id
        self.guild_name = guild_name
        self._bot_user: JSON = {
            "id": self.bot_user_id,
            "username": "sandbox-bot",
            "discriminator": "0",
            "global_name": "Sandbox Bot",
            "avatar": None,
            "bot": True,
            "public_flags": 0,
            "flags": 0,
            "verified": True,
            "mfa_enabled": False,
        }
        self._users: dict[str, JSON] = {}
        self.user_ids: list[str] = []
        for n in range(1, users + 1):
            uid = self._ids()
            self._users[uid] = {
                "id": uid,
                "username": f"user{n}",
                "discriminator": "0",
                "global_name": f"User {n}",
                "avatar": None,
                "bot": False,
                "public_flags": 0,
            }
            self.user_ids.append(uid)
        self._channels: dict[str, JSON] = {}
        self.channel_ids: list[str] = []
        for n in range(1, channels + 1):
            self._add_channel(f"chat-{n}")
        # The guild's own channels; channel_ids also lists those created later (create_channel).
        self.guild_channel_ids: tuple[str, ...] = tuple(self.channel_ids)
        self._dm_channels: dict[str, str] = {}  # DM channel id -> user id
        self._dm_by_user: dict[str, str] = {}
        self._joined_at = self._started_wall
        self._member_stub: JSON = {
            "roles": [],
            "joined_at": self._joined_at,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
        }
        # A mention as the gateway sends it: the user plus their member data.
        self._bot_mention: JSON = {**self._bot_user, "member": self._member_stub}
        self._bot_mention_bytes = orjson.dumps(self._bot_mention)

        self._messages: dict[str, JSON] = {}  # every message's payload, for fetches and replies
        self._bot_messages: dict[str, RecordedMessage] = {}
        self._channel_history: dict[str, list[str]] = {}
        self._replies: dict[str, _Replies] = {}
        self._listeners: list[Listener] = []

        self.all_sends: list[RecordedMessage] = []
        self.all_edits: list[RecordedEdit] = []
        self.typing_calls: list[RecordedTyping] = []
        self.interaction_responses: list[RecordedInteractionResponse] = []
        self.posted_at: dict[str, float] = {}  # user message id -> monotonic time it was dispatched

        self._commands: dict[str | None, dict[str, JSON]] = {}
        self._interactions: dict[str, _Interaction] = {}  # by token
        self._interactions_by_id: dict[str, _Interaction] = {}

        self._faults: list[_Fault] = []
        self._sessions: dict[str, _Session] = {}
        self._conns: set[_Conn] = set()
        self._bot_ready = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.traffic: TrafficGenerator | None = None
        self._llm: _HasStats | None = None

        self._n_posted = 0
        self._n_bot_messages = 0
        self._n_bot_edits = 0
        self._n_bot_deletes = 0
        self._n_interactions = 0
        self._n_rest = 0
        self._n_rest_errors_injected = 0
        self._n_gateway = 0
        self._n_identify = 0
        self._n_resumes = 0
        self._n_dispatches = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """The REST base with its version, for ``configure_endpoints``."""
        return f"http://{self.host}:{self.port}/api/v{API_VERSION}"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def control_url(self) -> str:
        """The base of the HTTP control routes (``{control_url}/stats``, ``/say``, ...)."""
        return f"http://{self.host}:{self.port}/_sandbox"

    def attach_traffic(self, traffic: TrafficGenerator) -> None:
        """The generator that ``POST /_sandbox/traffic/start`` (with no parameters) starts."""
        self.traffic = traffic

    def attach_llm(self, llm: _HasStats) -> None:
        """An LLM server (anything with ``stats()``) whose figures ``GET /_sandbox/llm`` returns."""
        self._llm = llm

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/v{version:\\d+}/{tail:.*}", self._rest)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/_sandbox/stats", self._ctl_stats)
        app.router.add_post("/_sandbox/fault", self._ctl_fault)
        app.router.add_post("/_sandbox/say", self._ctl_say)
        app.router.add_post("/_sandbox/dm", self._ctl_dm)
        app.router.add_post("/_sandbox/interaction", self._ctl_interaction)
        app.router.add_get("/_sandbox/wait_reply", self._ctl_wait_reply)
        app.router.add_post("/_sandbox/traffic/start", self._ctl_traffic_start)
        app.router.add_post("/_sandbox/traffic/stop", self._ctl_traffic_stop)
        app.router.add_get("/_sandbox/traffic", self._ctl_traffic)
        app.router.add_get("/_sandbox/llm", self._ctl_llm)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])

    async def stop(self) -> None:
        """Stop traffic, close every websocket (code 1001) and the HTTP server."""
        if self.traffic is not None:
            with contextlib.suppress(Exception):
                await self.traffic.stop()
        for conn in list(self._conns):
            if conn.writer is not None:
                conn.writer.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=1001, message=b"sandbox stopping"), 2.0)
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ guild model

    def _add_channel(self, name: str) -> JSON:
        cid = self._ids()
        channel: JSON = {
            "id": cid,
            "type": 0,
            "guild_id": self.guild_id,
            "name": name,
            "position": len(self._channels),
            "permission_overwrites": [],
            "nsfw": False,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }
        self._channels[cid] = channel
        self.channel_ids.append(cid)
        return channel

    def create_channel(self, name: str | None = None) -> str:
        """A new text channel, announced to the bot with CHANNEL_CREATE before anything is posted in it.

        A fresh channel has no history, so the same question asked in several fresh channels at once
        makes identical LLM requests (what request deduplication merges).
        """
        channel = self._add_channel(name or f"chat-{len(self._channels) + 1}")
        self._dispatch(b"CHANNEL_CREATE", orjson.dumps(channel))
        return str(channel["id"])

    def delete_channel(self, channel_id: str | int) -> bool:
        """Delete a channel made by :meth:`create_channel`, announced with CHANNEL_DELETE (the bot's
        client then forgets it, as on Discord); ``False`` if there is no such channel."""
        cid = str(channel_id)
        if cid in self.guild_channel_ids:
            raise ValueError("the guild's own channels stay")
        channel = self._channels.pop(cid, None)
        if channel is None:
            return False
        self.channel_ids.remove(cid)
        self._channel_history.pop(cid, None)
        self._dispatch(b"CHANNEL_DELETE", orjson.dumps(channel))
        return True

    def _member(self, user: JSON) -> JSON:
        return {**self._member_stub, "user": user}

    def _guild_payload(self) -> JSON:
        members = [self._member(self._bot_user)] + [self._member(u) for u in self._users.values()]
        return {
            "id": self.guild_id,
            "name": self.guild_name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": self.user_ids[0],
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "system_channel_id": self.channel_ids[0],
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "vanity_url_code": None,
            "features": [],
            "roles": [
                {
                    "id": self.guild_id,  # @everyone's id is the guild's
                    "name": "@everyone",
                    "permissions": str(_EVERYONE_PERMISSIONS),
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "stickers": [],
            "channels": [
                {k: v for k, v in c.items() if k != "guild_id"} for c in self._channels.values()
            ],
            "threads": [],
            "members": members,
            # Equal to len(members): the client then counts the guild as chunked and never waits
            # for GUILD_MEMBERS_CHUNK.
            "member_count": len(members),
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "large": False,
            "unavailable": False,
            "joined_at": self._joined_at,
            "lazy": True,
            "premium_progress_bar_enabled": False,
        }

    def _dm_channel_for(self, user_id: str) -> str:
        cid = self._dm_by_user.get(user_id)
        if cid is None:
            cid = self._ids()
            self._dm_by_user[user_id] = cid
            self._dm_channels[cid] = user_id
        return cid

    def _dm_payload(self, cid: str) -> JSON:
        return {
            "id": cid,
            "type": 1,
            "last_message_id": None,
            "flags": 0,
            "recipients": [self._users[self._dm_channels[cid]]],
        }

    def _channel_payload(self, cid: str) -> JSON | None:
        channel = self._channels.get(cid)
        if channel is not None:
            return channel
        if cid in self._dm_channels:
            return self._dm_payload(cid)
        return None

    def _user(self, user_id: str | int | None) -> JSON:
        uid = self.user_ids[0] if user_id is None else str(user_id)
        try:
            return self._users[uid]
        except KeyError:
            raise KeyError(f"unknown user {uid}") from None

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, event: bytes, data: bytes) -> None:
        self._n_dispatches += 1
        for session in self._sessions.values():
            session.send(event, data)

    def post_message(
        self,
        channel_id: str | int,
        user_id: str | int,
        content: str,
        *,
        mention_bot: bool = True,
    ) -> str:
        """Post ``content`` as a user in a guild channel; returns the new message's id.

        With ``mention_bot`` the content starts with ``<@BOTID> `` and ``mentions`` holds the bot,
        as Discord sends a mention.
        """
        cid = str(channel_id)
        channel = self._channels.get(cid)
        if channel is None:
            raise KeyError(f"unknown channel {cid}")
        user = self._user(user_id)
        mid = self._ids()
        now = _iso_now()
        if mention_bot:
            content = f"<@{self.bot_user_id}> {content}"
        payload: JSON = {
            "id": mid,
            "channel_id": cid,
            "guild_id": self.guild_id,
            "author": user,
            "member": self._member_stub,
            "content": content,
            "timestamp": now,
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [self._bot_mention] if mention_bot else [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": _MESSAGE_TYPE_DEFAULT,
            "flags": 0,
            "nonce": mid,
        }
        self._store_user_message(mid, cid, payload)
        channel["last_message_id"] = mid
        self._dispatch(b"MESSAGE_CREATE", orjson.dumps(payload))
        return mid

    def post_dm(self, user_id: str | int, content: str) -> str:
        """Post ``content`` in the user's DM channel with the bot (no guild); returns the message id."""
        user = self._user(user_id)
        cid = self._dm_channel_for(str(user["id"]))
        mid = self._ids()
        payload: JSON = {
            "id": mid,
            "channel_id": cid,
            "channel_type": 1,
            "author": user,
            "content": content,
            "timestamp": _iso_now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": _MESSAGE_TYPE_DEFAULT,
            "flags": 0,
            "nonce": mid,
        }
        self._store_user_message(mid, cid, payload)
        self._dispatch(b"MESSAGE_CREATE", orjson.dumps(payload))
        return mid

    def _store_user_message(self, mid: str, cid: str, payload: JSON) -> None:
        self._messages[mid] = payload
        self._channel_history.setdefault(cid, []).append(mid)
        self.posted_at[mid] = time.monotonic()
        self._n_posted += 1
        if self._n_posted % _PRUNE_EVERY == 0 and len(self.posted_at) > self.max_records:
            self._prune()

    def _prune(self) -> None:
        """Forget the oldest messages and records beyond ``max_records`` (counters stay exact)."""
        keep = self.max_records
        for store in (self._messages, self.posted_at, self._replies, self._bot_messages):
            excess = len(store) - keep
            if excess > 0:
                for key in list(itertools.islice(store, excess)):
                    del store[key]
        for records in (
            self.all_sends,
            self.all_edits,
            self.typing_calls,
            self.interaction_responses,
        ):
            if len(records) > keep:
                del records[: len(records) - keep]
        for cid, ids in self._channel_history.items():
            if len(ids) > keep:
                self._channel_history[cid] = ids[-keep:]

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
        cid = str(channel_id)
        user = self._user(user_id)
        in_dm = cid in self._dm_channels
        if not in_dm and cid not in self._channels:
            raise KeyError(f"unknown channel {cid}")
        guild_cmd = self._commands.get(self.guild_id, {}).get(command_name)
        global_cmd = self._commands.get(None, {}).get(command_name)
        command = guild_cmd if guild_cmd is not None and not in_dm else global_cmd
        iid = self._ids()
        token = "sandbox-interaction-" + secrets.token_urlsafe(24)
        data: JSON = {
            "id": command["id"] if command else self._ids(),
            "name": command_name,
            "type": 1,
            "options": self._interaction_options(options, command),
        }
        if command is not None and command is guild_cmd:
            data["guild_id"] = self.guild_id
        payload: JSON = {
            "id": iid,
            "application_id": self.application_id,
            "type": 2,
            "data": data,
            "token": token,
            "version": 1,
            "locale": "en-US",
            "app_permissions": str(_EVERYONE_PERMISSIONS),
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
            "channel_id": cid,
        }
        if in_dm:
            payload["channel"] = self._dm_payload(cid)
            payload["user"] = user
            payload["context"] = 1
            payload["authorizing_integration_owners"] = {"1": str(user["id"])}
        else:
            permissions = str(_EVERYONE_PERMISSIONS)
            payload["guild_id"] = self.guild_id
            payload["guild"] = {"id": self.guild_id, "locale": "en-US", "features": []}
            payload["guild_locale"] = "en-US"
            payload["channel"] = {**self._channels[cid], "permissions": permissions}
            payload["member"] = {**self._member(user), "permissions": permissions}
            payload["context"] = 0
            payload["authorizing_integration_owners"] = {"0": self.guild_id}
        interaction = _Interaction(iid, token, cid, str(user["id"]), command_name)
        self._interactions[token] = interaction
        self._interactions_by_id[iid] = interaction
        self._n_interactions += 1
        self.posted_at[iid] = time.monotonic()
        self._dispatch(b"INTERACTION_CREATE", orjson.dumps(payload))
        return iid

    @staticmethod
    def _interaction_options(
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
                if isinstance(value, bool):
                    kind = 5
                elif isinstance(value, int):
                    kind = 4
                elif isinstance(value, float):
                    kind = 10
                else:
                    kind = 3
            result.append({"name": name, "type": kind, "value": value})
        return result

    # ------------------------------------------------------------------ reading what the bot did

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(message, edit)`` on every bot send (``edit`` None) and edit, synchronously."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def replies_to(self, message_id: str | int) -> list[RecordedMessage]:
        """The bot's messages answering ``message_id`` (a user message or an interaction), in order."""
        replies = self._replies.get(str(message_id))
        return list(replies.parts) if replies is not None else []

    def message(self, message_id: str | int) -> JSON | None:
        """The stored payload of any message (a user's or the bot's), or None."""
        return self._messages.get(str(message_id))

    def reply_text(self, message_id: str | int) -> str:
        """All parts of the reply, each at its latest content, joined with newlines."""
        return "\n".join(m.content for m in self.replies_to(message_id) if not m.deleted)

    def _replies_for(self, key: str) -> _Replies:
        replies = self._replies.get(key)
        if replies is None:
            replies = self._replies[key] = _Replies()
        return replies

    async def wait_for_reply(self, message_id: str | int, timeout: float) -> RecordedMessage:
        """The first message answering ``message_id``; ``TimeoutError`` if none within ``timeout``."""
        key = str(message_id)
        replies = self._replies_for(key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not replies.parts:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no reply to {key} within {timeout:g} s")
            waiter: asyncio.Future[None] = loop.create_future()
            replies.waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, remaining)
        return replies.parts[0]

    async def wait_for_settled_reply(
        self, message_id: str | int, timeout: float, *, settle: float | None = None
    ) -> list[RecordedMessage]:
        """The reply's parts once no send or edit for it arrived for ``settle`` seconds.

        Returns what there is when ``timeout`` runs out (maybe nothing). Waiting is driven by the
        sends and edits themselves, not by polling.
        """
        quiet = self.settle_seconds if settle is None else settle
        key = str(message_id)
        replies = self._replies_for(key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            now = loop.time()
            remaining = deadline - now
            if remaining <= 0:
                break
            if replies.parts:
                # last_at is time.monotonic(); the loop clock is monotonic too, but may differ
                idle = time.monotonic() - replies.last_at
                if idle >= quiet:
                    break
                wait = min(quiet - idle, remaining)
            else:
                wait = remaining
            waiter: asyncio.Future[None] = loop.create_future()
            replies.waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, wait)
        return list(replies.parts)

    def _record_send(self, rec: RecordedMessage) -> None:
        self.all_sends.append(rec)
        self._bot_messages[rec.id] = rec
        self._n_bot_messages += 1
        if rec.reply_to is not None:
            replies = self._replies_for(rec.reply_to)
            replies.parts.append(rec)
            replies.touch(rec.at)
        for listener in self._listeners:
            self._call_listener(listener, rec, None)

    def _record_edit(self, rec: RecordedMessage, edit: RecordedEdit) -> None:
        rec.edits.append(edit)
        rec.content = edit.content
        self.all_edits.append(edit)
        self._n_bot_edits += 1
        if rec.reply_to is not None:
            self._replies_for(rec.reply_to).touch(edit.at)
        for listener in self._listeners:
            self._call_listener(listener, rec, edit)

    @staticmethod
    def _call_listener(listener: Listener, rec: RecordedMessage, edit: RecordedEdit | None) -> None:
        try:
            listener(rec, edit)
        except Exception:
            log.exception("sandbox listener %r failed", listener)

    def stats(self) -> dict[str, int]:
        return {
            "messages_posted": self._n_posted,
            "bot_messages": self._n_bot_messages,
            "bot_edits": self._n_bot_edits,
            "bot_deletes": self._n_bot_deletes,
            "typing_calls": len(self.typing_calls),
            "interactions": self._n_interactions,
            "interaction_responses": len(self.interaction_responses),
            "rest_calls": self._n_rest,
            "rest_faults_injected": self._n_rest_errors_injected,
            "gateway_connections": self._n_gateway,
            "identifies": self._n_identify,
            "resumes": self._n_resumes,
            "dispatches": self._n_dispatches,
            "channels": len(self._channels),
            "sessions": len(self._sessions),
        }

    async def wait_for_bot(self, timeout: float) -> None:
        """Until a client has identified and been sent READY and its guild."""
        await asyncio.wait_for(self._bot_ready.wait(), timeout)

    async def flush(self, timeout: float = 5.0) -> None:
        """Until every dispatch queued so far has been written to the bots' websockets."""
        waits = [c.idle.wait() for c in self._conns if c.session is not None and not c.dropped]
        if waits:
            await asyncio.wait_for(asyncio.gather(*waits), timeout)

    # ------------------------------------------------------------------ faults

    def inject_rest_429(
        self, count: int, retry_after: float = 0.1, route_prefix: str | None = None
    ) -> None:
        """Answer the next ``count`` REST calls (under ``route_prefix`` such as ``/channels``) with 429."""
        self._faults.append(
            _Fault("429", count, 429, retry_after, self._normalise_prefix(route_prefix))
        )

    def inject_rest_5xx(
        self, count: int, status: int = 500, route_prefix: str | None = None
    ) -> None:
        """Answer the next ``count`` REST calls with ``status`` (discord.py retries 500/502/504)."""
        if not 500 <= status <= 599:
            raise ValueError(f"status must be 5xx, not {status}")
        self._faults.append(_Fault("5xx", count, status, 0.0, self._normalise_prefix(route_prefix)))

    @staticmethod
    def _normalise_prefix(prefix: str | None) -> str | None:
        if not prefix:
            return None
        return prefix.strip("/")

    def drop_gateway(self, code: int = 4000, *, resumable: bool = True) -> int:
        """Cut the bots' websockets with a resumable close code; returns how many were cut.

        Dispatches from now on are kept for the session and replayed when the client RESUMEs.
        ``code=1006`` aborts the TCP connection without a close frame. With ``resumable=False``
        the sessions are forgotten: the RESUME gets INVALID_SESSION, the client identifies afresh
        (READY, GUILD_CREATE again) and what was posted in between is lost, as on Discord.
        """
        dropped = 0
        if not resumable:
            self._sessions.clear()
        for conn in list(self._conns):
            if conn.dropped:
                continue
            conn.dropped = True
            session = conn.session
            if session is not None and session.conn is conn:
                session.conn = None
                session.detached_at = time.monotonic()
            # Unsent frames stay in the session's buffer: the RESUME replays them.
            conn.pending.clear()
            conn.idle.set()
            if conn.writer is not None:
                conn.writer.cancel()
            if code == 1006:
                transport = conn.request.transport
                if transport is not None:
                    transport.abort()
            else:
                self._spawn(self._close_ws(conn.ws, code))
            dropped += 1
        return dropped

    @staticmethod
    async def _close_ws(ws: web.WebSocketResponse, code: int) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code=code, message=b"sandbox: closed"), 5.0)

    def _take_fault(self, tail: str) -> _Fault | None:
        for fault in self._faults:
            if fault.route_prefix is None or tail.startswith(fault.route_prefix):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _fault_response(self, fault: _Fault) -> web.Response:
        self._n_rest_errors_injected += 1
        if fault.kind == "429":
            retry_after = fault.retry_after
            headers = {
                "Content-Type": "application/json",
                # discord.py treats a 429 without Via as a Cloudflare ban and gives up.
                "Via": "1.1 google",
                "Retry-After": str(max(1, math.ceil(retry_after))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                "X-RateLimit-Scope": "user",
            }
            body = {
                "message": "You are being rate limited.",
                "retry_after": retry_after,
                "global": False,
            }
            return web.Response(body=orjson.dumps(body), status=429, headers=headers)
        return _error(fault.status, f"{fault.status}: sandbox fault")

    # ------------------------------------------------------------------ gateway

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, decode_text=False, compress=False)
        await ws.prepare(request)
        self._n_gateway += 1
        conn = _Conn(ws, request)
        self._conns.add(conn)
        conn.writer = asyncio.create_task(self._write_loop(conn))
        conn.push(_HELLO)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                    try:
                        payload = orjson.loads(msg.data)
                    except orjson.JSONDecodeError:
                        await ws.close(code=4002, message=b"Error while decoding payload.")
                        break
                    self._on_op(conn, payload)
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            self._detach(conn, clean=ws.close_code == 1000 and not conn.dropped)
        return ws

    def _on_op(self, conn: _Conn, payload: Any) -> None:
        if not isinstance(payload, dict):
            return
        op = payload.get("op")
        data = payload.get("d")
        if op == 1:
            conn.push(_HEARTBEAT_ACK)
        elif op == 2 and isinstance(data, dict):
            self._identify(conn, data)
        elif op == 6 and isinstance(data, dict):
            self._resume(conn, data)
        elif op == 8 and isinstance(data, dict):
            self._member_chunk(conn, data)

    def _prune_sessions(self) -> None:
        now = time.monotonic()
        for sid, session in list(self._sessions.items()):
            if session.conn is None and now - session.detached_at > RESUME_TTL:
                del self._sessions[sid]

    def _identify(self, conn: _Conn, data: JSON) -> None:
        if conn.session is not None:
            self._spawn(self._close_ws(conn.ws, 4005))  # Discord's "already authenticated"
            return
        self._prune_sessions()
        self._n_identify += 1
        shard = data.get("shard") or [0, 1]
        session = _Session(
            secrets.token_hex(16),
            str(data.get("token", "")),
            list(shard),
            int(data.get("intents") or 0),
        )
        session.conn = conn
        conn.session = session
        ready = {
            "v": API_VERSION,
            "user": self._bot_user,
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "guilds": [{"id": self.guild_id, "unavailable": True}],
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "shard": session.shard,
            "_trace": ["sandbox"],
        }
        session.send(b"READY", orjson.dumps(ready))
        session.send(b"GUILD_CREATE", orjson.dumps(self._guild_payload()))
        # Registered after READY/GUILD_CREATE so that no dispatch slips in before them.
        self._sessions[session.id] = session
        self._bot_ready.set()

    def _resume(self, conn: _Conn, data: JSON) -> None:
        session = self._sessions.get(str(data.get("session_id")))
        seq = data.get("seq")
        if session is None or not isinstance(seq, int):
            conn.push(_INVALID_SESSION)
            return
        if session.buffer and session.buffer[0][0] > seq + 1:
            # The client missed more than the replay buffer holds: it must identify afresh.
            del self._sessions[session.id]
            conn.push(_INVALID_SESSION)
            return
        old = session.conn
        if old is not None and old is not conn:
            # The client gave up on that socket before we noticed; it must not get frames twice.
            old.session = None
            old.dropped = True
            old.pending.clear()
            if old.writer is not None:
                old.writer.cancel()
            self._spawn(self._close_ws(old.ws, 4000))
        session.conn = conn
        conn.session = session
        for frame_seq, frame in session.buffer:
            if frame_seq > seq:
                conn.push(frame)
        session.send(b"RESUMED", b'{"_trace":["sandbox"]}')
        self._n_resumes += 1

    def _member_chunk(self, conn: _Conn, data: JSON) -> None:
        session = conn.session
        if session is None:
            return
        members = [self._member(self._bot_user)] + [self._member(u) for u in self._users.values()]
        chunk = {
            "guild_id": self.guild_id,
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
            "nonce": data.get("nonce"),
        }
        session.send(b"GUILD_MEMBERS_CHUNK", orjson.dumps(chunk))

    def _detach(self, conn: _Conn, *, clean: bool) -> None:
        self._conns.discard(conn)
        if conn.writer is not None:
            conn.writer.cancel()
        session = conn.session
        if session is not None and session.conn is conn:
            session.conn = None
            session.detached_at = time.monotonic()
            if clean:
                # A 1000 close ends the session, as on Discord.
                self._sessions.pop(session.id, None)
        conn.idle.set()

    @staticmethod
    async def _write_loop(conn: _Conn) -> None:
        ws = conn.ws
        pending = conn.pending
        try:
            while True:
                while pending:
                    await ws.send_frame(pending.popleft(), WSMsgType.TEXT)
                conn.idle.set()
                conn.wake.clear()
                await conn.wake.wait()
        except (ConnectionError, RuntimeError):
            conn.idle.set()

    # ------------------------------------------------------------------ REST

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        self._n_rest += 1
        tail: str = request.match_info["tail"]
        if self._faults:
            fault = self._take_fault(tail)
            if fault is not None:
                return self._fault_response(fault)
        try:
            return await self._route(request, tail)
        except (orjson.JSONDecodeError, ValueError, TypeError, KeyError):
            # Discord answers a body it cannot read with 400 "The request body contains invalid JSON".
            return _error(400, "The request body contains invalid JSON.", 50109)

    async def _route(self, request: web.Request, tail: str) -> web.StreamResponse:
        parts = tail.split("/")
        n = len(parts)
        method = request.method
        head = parts[0]
        if (
            self._token is not None
            and head not in ("webhooks", "interactions")
            and request.headers.get("Authorization") != f"Bot {self._token}"
        ):
            return _error(401, "401: Unauthorized")
        if head == "channels" and n >= 2:
            cid = parts[1]
            if n == 3 and parts[2] == "messages":
                if method == "POST":
                    return await self._create_message(request, cid)
                if method == "GET":
                    return self._history(request, cid)
            elif n == 4 and parts[2] == "messages":
                if method == "PATCH":
                    return await self._edit_message(request, cid, parts[3])
                if method == "GET":
                    return self._get_message(cid, parts[3])
                if method == "DELETE":
                    return self._delete_message(cid, parts[3])
            elif n == 3 and parts[2] == "typing" and method == "POST":
                if self._channel_payload(cid) is None:
                    return _error(404, "Unknown Channel", 10003)
                self.typing_calls.append(RecordedTyping(cid, time.monotonic()))
                return _empty()
            elif n == 2 and method == "GET":
                channel = self._channel_payload(cid)
                if channel is None:
                    return _error(404, "Unknown Channel", 10003)
                return _json(channel)
        elif head == "interactions" and n == 4 and parts[3] == "callback" and method == "POST":
            return await self._interaction_callback(request, parts[1], parts[2])
        elif head == "webhooks" and n >= 3:
            return await self._webhook(request, method, parts)
        elif head == "users" and n >= 2:
            if n == 2 and method == "GET":
                if parts[1] == "@me":
                    return _json(self._bot_user)
                user = self._users.get(parts[1])
                if user is None and parts[1] == self.bot_user_id:
                    user = self._bot_user
                return _json(user) if user is not None else _error(404, "Unknown User", 10013)
            if n == 3 and parts[1] == "@me" and parts[2] == "channels" and method == "POST":
                body = await self._read_json(request)
                uid = str(body.get("recipient_id"))
                if uid not in self._users:
                    return _error(404, "Unknown User", 10013)
                return _json(self._dm_payload(self._dm_channel_for(uid)))
        elif head == "applications" and n >= 3:
            return await self._app_commands(request, method, parts)
        elif head == "oauth2" and tail == "oauth2/applications/@me" and method == "GET":
            return _json(self._application_payload())
        elif head == "gateway" and method == "GET":
            if n == 1:
                return _json({"url": self.gateway_url})
            if n == 2 and parts[1] == "bot":
                return _json(
                    {
                        "url": self.gateway_url,
                        "shards": 1,
                        "session_start_limit": {
                            "total": 1000,
                            "remaining": 1000,
                            "reset_after": 0,
                            "max_concurrency": 1,
                        },
                    }
                )
        elif head == "guilds" and n >= 2 and parts[1] == self.guild_id and method == "GET":
            if n == 2:
                guild = self._guild_payload()
                for key in ("channels", "members", "presences", "voice_states", "threads"):
                    guild.pop(key, None)
                return _json(guild)
            if n == 3 and parts[2] == "channels":
                return _json(list(self._channels.values()))
            if n == 4 and parts[2] == "members":
                user = self._users.get(parts[3]) or (
                    self._bot_user if parts[3] == self.bot_user_id else None
                )
                return _json(self._member(user)) if user else _error(404, "Unknown Member", 10007)
        return _error(404, "404: Not Found")

    def _application_payload(self) -> JSON:
        return {
            "id": self.application_id,
            "name": "sandbox",
            "description": "the botctl sandbox",
            "icon": None,
            "summary": "",
            "rpc_origins": [],
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": self._users[self.user_ids[0]],
            "team": None,
            "flags": 0,
            "interactions_endpoint_url": None,
            "tags": [],
            "bot": self._bot_user,
        }

    @staticmethod
    async def _read_json(request: web.Request) -> JSON:
        body = await request.read()
        if not body:
            return {}
        value = orjson.loads(body)
        return value if isinstance(value, dict) else {}

    async def _read_message_body(self, request: web.Request) -> tuple[JSON, list[JSON]]:
        """The JSON payload of a send/edit, and the files of a multipart one."""
        if not request.content_type.startswith("multipart/"):
            return await self._read_json(request), []
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
                aid = self._ids()
                url = f"{self.base_url}/attachments/{aid}/{part.filename or 'file'}"
                files.append(
                    {
                        "id": aid,
                        "filename": part.filename or "file",
                        "size": len(raw),
                        "url": url,
                        "proxy_url": url,
                    }
                )
        return payload, files

    @staticmethod
    def _invalid_content(payload: JSON, files: list[JSON]) -> web.Response | None:
        content = payload.get("content")
        if content is not None and not isinstance(content, str):
            return _error(400, "Invalid Form Body", 50035)
        if content and len(content) > MAX_CONTENT:
            return _json(
                {
                    "message": "Invalid Form Body",
                    "code": 50035,
                    "errors": {
                        "content": {
                            "_errors": [
                                {
                                    "code": "BASE_TYPE_MAX_LENGTH",
                                    "message": f"Must be {MAX_CONTENT} or fewer in length.",
                                }
                            ]
                        }
                    },
                },
                400,
            )
        if not (
            content
            or payload.get("embeds")
            or files
            or payload.get("sticker_ids")
            or payload.get("components")
            or payload.get("poll")
        ):
            return _error(400, "Cannot send an empty message", 50006)
        return None

    def _bot_message_payload(
        self,
        mid: str,
        cid: str,
        payload: JSON,
        files: list[JSON],
        *,
        reference: JSON | None,
        message_type: int,
        flags: int = 0,
    ) -> JSON:
        message: JSON = {
            "id": mid,
            "channel_id": cid,
            "author": self._bot_user,
            "content": payload.get("content") or "",
            "timestamp": _iso_now(),
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
            referenced = self._messages.get(str(reference.get("message_id")))
            if referenced is not None:
                message["referenced_message"] = referenced
        return message

    async def _create_message(self, request: web.Request, cid: str) -> web.Response:
        if cid not in self._channels and cid not in self._dm_channels:
            return _error(404, "Unknown Channel", 10003)
        payload, files = await self._read_message_body(request)
        invalid = self._invalid_content(payload, files)
        if invalid is not None:
            return invalid
        reference = payload.get("message_reference")
        reply_to: str | None = None
        if isinstance(reference, dict) and reference.get("message_id") is not None:
            reply_to = str(reference["message_id"])
            if reply_to not in self._messages and reference.get("fail_if_not_exists", True):
                return _error(400, "Invalid Form Body", 50035)
        else:
            reference = None
        mid = self._ids()
        message = self._bot_message_payload(
            mid,
            cid,
            payload,
            files,
            reference=reference,
            message_type=_MESSAGE_TYPE_REPLY if reference is not None else _MESSAGE_TYPE_DEFAULT,
            flags=int(payload.get("flags") or 0),
        )
        self._store_bot_message(cid, message)
        rec = RecordedMessage(
            id=mid,
            channel_id=cid,
            content=message["content"],
            reply_to=reply_to,
            message_reference=reference,
            allowed_mentions=payload.get("allowed_mentions"),
            at=time.monotonic(),
            payload=payload,
            flags=message["flags"],
        )
        self._record_send(rec)
        body = orjson.dumps(message)
        if cid in self._channels:
            self._channels[cid]["last_message_id"] = mid
        return web.Response(body=body, headers=_JSON_HEADERS)

    def _store_bot_message(self, cid: str, message: JSON) -> None:
        stored = message
        if "referenced_message" in message:
            # Keep the stored copy flat, or a reply to a reply would nest every ancestor.
            stored = {k: v for k, v in message.items() if k != "referenced_message"}
        self._messages[message["id"]] = stored
        self._channel_history.setdefault(cid, []).append(message["id"])

    def _apply_edit(
        self, message: JSON, payload: JSON, files: list[JSON], rec: RecordedMessage | None
    ) -> JSON:
        if "content" in payload:
            message["content"] = payload["content"] or ""
        if "embeds" in payload:
            message["embeds"] = payload["embeds"] or []
        if "components" in payload:
            message["components"] = payload["components"] or []
        if "flags" in payload and payload["flags"] is not None:
            message["flags"] = int(payload["flags"]) & ~_FLAG_LOADING
        else:
            message["flags"] = int(message.get("flags") or 0) & ~_FLAG_LOADING
        if files or "attachments" in payload:
            keep = {str(a.get("id")) for a in payload.get("attachments") or []}
            message["attachments"] = [
                a for a in message.get("attachments", []) if a["id"] in keep
            ] + files
        message["edited_timestamp"] = _iso_now()
        if rec is not None:
            edit = RecordedEdit(
                message_id=message["id"],
                channel_id=message["channel_id"],
                content=message["content"],
                allowed_mentions=payload.get("allowed_mentions"),
                at=time.monotonic(),
                payload=payload,
            )
            self._record_edit(rec, edit)
        return message

    async def _edit_message(self, request: web.Request, cid: str, mid: str) -> web.Response:
        message = self._messages.get(mid)
        if message is None or message.get("channel_id") != cid:
            return _error(404, "Unknown Message", 10008)
        rec = self._bot_messages.get(mid)
        if rec is None:
            return _error(403, "Cannot edit a message authored by another user", 50005)
        payload, files = await self._read_message_body(request)
        if "content" in payload:
            invalid = self._invalid_content({**message, **payload}, files)
            if invalid is not None:
                return invalid
        return _json(self._apply_edit(message, payload, files, rec))

    def _get_message(self, cid: str, mid: str) -> web.Response:
        message = self._messages.get(mid)
        if message is None or message.get("channel_id") != cid:
            return _error(404, "Unknown Message", 10008)
        return _json(message)

    def _delete_message(self, cid: str, mid: str) -> web.Response:
        message = self._messages.get(mid)
        if message is None or message.get("channel_id") != cid:
            return _error(404, "Unknown Message", 10008)
        del self._messages[mid]
        rec = self._bot_messages.get(mid)
        if rec is not None:
            rec.deleted = True
            self._n_bot_deletes += 1
        payload: JSON = {"id": mid, "channel_id": cid}
        if cid in self._channels:
            payload["guild_id"] = self.guild_id
        self._dispatch(b"MESSAGE_DELETE", orjson.dumps(payload))
        return _empty()

    def _history(self, request: web.Request, cid: str) -> web.Response:
        if self._channel_payload(cid) is None:
            return _error(404, "Unknown Channel", 10003)
        try:
            limit = max(1, min(100, int(request.query.get("limit", "50"))))
        except ValueError:
            limit = 50
        ids = self._channel_history.get(cid, [])
        before = request.query.get("before")
        after = request.query.get("after")
        candidates = [m for m in ids if m in self._messages]
        if before is not None:
            candidates = [m for m in candidates if int(m) < int(before)]
        if after is not None:
            # Discord returns the oldest ``limit`` after ``after``, newest first.
            candidates = [m for m in candidates if int(m) > int(after)][:limit]
            return _json([self._messages[m] for m in reversed(candidates)])
        return _json([self._messages[m] for m in reversed(candidates[-limit:])])

    # ------------------------------------------------------------------ interactions

    async def _interaction_callback(
        self, request: web.Request, iid: str, token: str
    ) -> web.Response:
        interaction = self._interactions.get(token)
        if interaction is None or interaction.id != iid:
            return _error(404, "Unknown interaction", 10062)
        if interaction.response_type is not None:
            return _error(400, "Interaction has already been acknowledged.", 40060)
        payload, files = await self._read_message_body(request)
        rtype = int(payload.get("type") or 0)
        data = payload.get("data")
        data = data if isinstance(data, dict) else None
        interaction.response_type = rtype
        now = time.monotonic()
        self.interaction_responses.append(RecordedInteractionResponse(iid, rtype, data, now))
        message: JSON | None = None
        if rtype in (4, 5):
            body = data or {}
            flags = int(body.get("flags") or 0)
            if rtype == 5:
                body = {"content": ""}
                flags |= _FLAG_LOADING
            elif (invalid := self._invalid_content(body, files)) is not None:
                interaction.response_type = None
                return invalid
            mid = self._ids()
            message = self._bot_message_payload(
                mid,
                interaction.channel_id,
                body,
                files,
                reference=None,
                message_type=_MESSAGE_TYPE_CHAT_INPUT,
                flags=flags,
            )
            message["application_id"] = self.application_id
            message["webhook_id"] = self.application_id
            self._store_bot_message(interaction.channel_id, message)
            interaction.original_id = mid
            if rtype == 4:
                self._record_send(
                    RecordedMessage(
                        id=mid,
                        channel_id=interaction.channel_id,
                        content=message["content"],
                        reply_to=iid,
                        message_reference=None,
                        allowed_mentions=body.get("allowed_mentions"),
                        at=now,
                        payload=body,
                        interaction_id=iid,
                        flags=flags,
                    )
                )
        if request.query.get("with_response") not in ("1", "true", "True"):
            return _empty()
        response: JSON = {
            "interaction": {
                "id": iid,
                "type": 2,
                "response_message_id": message["id"] if message else None,
                "response_message_loading": rtype == 5,
                "response_message_ephemeral": bool(message and message["flags"] & _FLAG_EPHEMERAL),
            },
            "resource": {"type": rtype},
        }
        if message is not None:
            response["resource"]["message"] = message
        return _json(response)

    async def _webhook(self, request: web.Request, method: str, parts: list[str]) -> web.Response:
        # /webhooks/{application_id}/{token}[/messages/{id|@original}]
        interaction = self._interactions.get(parts[2])
        if interaction is None or parts[1] != self.application_id:
            return _error(404, "Unknown Webhook", 10015)
        n = len(parts)
        if n == 3 and method == "POST":
            return await self._followup(request, interaction)
        if n == 5 and parts[3] == "messages":
            mid = interaction.original_id if parts[4] == "@original" else parts[4]
            message = self._messages.get(mid) if mid is not None else None
            if message is None or mid is None:
                return _error(404, "Unknown Message", 10008)
            if method == "GET":
                return _json(message)
            if method == "DELETE":
                return self._delete_message(message["channel_id"], mid)
            if method == "PATCH":
                payload, files = await self._read_message_body(request)
                rec = self._bot_messages.get(mid)
                if rec is None:
                    # The first edit of a deferred response is what the user sees: a send.
                    self._apply_edit(message, payload, files, None)
                    self._record_send(
                        RecordedMessage(
                            id=mid,
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
                    return _json(message)
                return _json(self._apply_edit(message, payload, files, rec))
        return _error(404, "404: Not Found")

    async def _followup(self, request: web.Request, interaction: _Interaction) -> web.Response:
        if interaction.response_type is None:
            return _error(404, "Unknown Webhook", 10015)
        payload, files = await self._read_message_body(request)
        invalid = self._invalid_content(payload, files)
        if invalid is not None:
            return invalid
        mid = self._ids()
        cid = interaction.channel_id
        message = self._bot_message_payload(
            mid,
            cid,
            payload,
            files,
            reference=None,
            message_type=_MESSAGE_TYPE_CHAT_INPUT,
            flags=int(payload.get("flags") or 0),
        )
        message["application_id"] = self.application_id
        message["webhook_id"] = self.application_id
        self._store_bot_message(cid, message)
        self._record_send(
            RecordedMessage(
                id=mid,
                channel_id=cid,
                content=message["content"],
                reply_to=interaction.id,
                message_reference=None,
                allowed_mentions=payload.get("allowed_mentions"),
                at=time.monotonic(),
                payload=payload,
                interaction_id=interaction.id,
                flags=message["flags"],
            )
        )
        if request.query.get("wait") in ("1", "true", "True"):
            return _json(message)
        return _empty()

    async def _app_commands(
        self, request: web.Request, method: str, parts: list[str]
    ) -> web.Response:
        # /applications/{app}/commands[/{id}] and /applications/{app}/guilds/{g}/commands[/{id}]
        if parts[1] != self.application_id:
            return _error(404, "Unknown Application", 10002)
        n = len(parts)
        guild_id: str | None
        if parts[2] == "commands":
            guild_id, rest = None, parts[3:]
        elif n >= 5 and parts[2] == "guilds" and parts[4] == "commands":
            guild_id, rest = parts[3], parts[5:]
            if guild_id != self.guild_id:
                return _error(404, "Unknown Guild", 10004)
        else:
            return _error(404, "404: Not Found")
        registry = self._commands.setdefault(guild_id, {})
        if not rest:
            if method == "GET":
                return _json(list(registry.values()))
            if method == "PUT":
                body = orjson.loads(await request.read() or b"[]")
                if not isinstance(body, list):
                    return _error(400, "Invalid Form Body", 50035)
                old = registry
                fresh = {
                    c["name"]: self._command_payload(c, guild_id, old.get(c["name"])) for c in body
                }
                self._commands[guild_id] = fresh
                return _json(list(fresh.values()))
            if method == "POST":
                body = await self._read_json(request)
                command = self._command_payload(body, guild_id, registry.get(body.get("name", "")))
                registry[command["name"]] = command
                return _json(command, 201)
        elif len(rest) == 1:
            found = next((c for c in registry.values() if c["id"] == rest[0]), None)
            if found is None:
                return _error(404, "Unknown application command", 10063)
            if method == "GET":
                return _json(found)
            if method == "DELETE":
                del registry[found["name"]]
                return _empty()
            if method == "PATCH":
                body = await self._read_json(request)
                del registry[found["name"]]
                command = self._command_payload({**found, **body}, guild_id, found)
                registry[command["name"]] = command
                return _json(command)
        return _error(405, "405: Method Not Allowed")

    def _command_payload(self, body: JSON, guild_id: str | None, old: JSON | None) -> JSON:
        command: JSON = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "dm_permission": True,
            "nsfw": False,
            **body,
            "id": old["id"] if old else self._ids(),
            "application_id": self.application_id,
            "version": self._ids(),
        }
        if guild_id is not None:
            command["guild_id"] = guild_id
        return command

    # ------------------------------------------------------------------ HTTP control

    async def _ctl_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats())

    async def _ctl_fault(self, request: web.Request) -> web.Response:
        body = await self._read_json(request)
        kind = body.get("kind")
        try:
            if kind == "rest_429":
                self.inject_rest_429(
                    int(body.get("count", 1)),
                    float(body.get("retry_after", 0.1)),
                    body.get("route_prefix"),
                )
                return _json({"ok": True, "kind": kind})
            if kind == "rest_5xx":
                self.inject_rest_5xx(
                    int(body.get("count", 1)),
                    int(body.get("status", 500)),
                    body.get("route_prefix"),
                )
                return _json({"ok": True, "kind": kind})
            if kind == "drop_gateway":
                dropped = self.drop_gateway(
                    int(body.get("code", 4000)), resumable=bool(body.get("resumable", True))
                )
                return _json({"ok": True, "kind": kind, "dropped": dropped})
        except (TypeError, ValueError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"error": "kind must be rest_429, rest_5xx or drop_gateway"}, 400)

    async def _ctl_say(self, request: web.Request) -> web.Response:
        body = await self._read_json(request)
        content = body.get("content")
        if not isinstance(content, str) or not content:
            return _json({"error": "content (a non-empty string) is required"}, 400)
        try:
            mid = self.post_message(
                body.get("channel") or self.channel_ids[0],
                body.get("user") or self.user_ids[0],
                content,
                mention_bot=bool(body.get("mention_bot", True)),
            )
        except KeyError as exc:
            return _json({"error": str(exc.args[0])}, 404)
        return _json({"message_id": mid})

    async def _ctl_dm(self, request: web.Request) -> web.Response:
        body = await self._read_json(request)
        content = body.get("content")
        if not isinstance(content, str) or not content:
            return _json({"error": "content (a non-empty string) is required"}, 400)
        try:
            mid = self.post_dm(body.get("user") or self.user_ids[0], content)
        except KeyError as exc:
            return _json({"error": str(exc.args[0])}, 404)
        return _json({"message_id": mid})

    async def _ctl_interaction(self, request: web.Request) -> web.Response:
        body = await self._read_json(request)
        command = body.get("command")
        if not isinstance(command, str) or not command:
            return _json({"error": "command (a name such as ask) is required"}, 400)
        try:
            iid = self.send_interaction(
                body.get("channel") or self.channel_ids[0],
                body.get("user") or self.user_ids[0],
                command,
                body.get("options"),
            )
        except KeyError as exc:
            return _json({"error": str(exc.args[0])}, 404)
        return _json({"interaction_id": iid})

    async def _ctl_wait_reply(self, request: web.Request) -> web.Response:
        mid = request.query.get("message_id")
        if not mid:
            return _json({"error": "message_id is required"}, 400)
        try:
            timeout = float(request.query.get("timeout", "30"))
        except ValueError:
            return _json({"error": "timeout must be a number of seconds"}, 400)
        timeout = min(max(timeout, 0.0), 600.0)
        try:
            # settle=0 peeks: what the reply says now (the --chat terminal streams that way).
            settle = float(request.query["settle"]) if "settle" in request.query else None
        except ValueError:
            return _json({"error": "settle must be a number of seconds"}, 400)
        parts = await self.wait_for_settled_reply(mid, timeout, settle=settle)
        if not parts:
            return _json(
                {"error": f"no reply to {mid} within {timeout:g} s", "message_id": mid}, 504
            )
        posted = self.posted_at.get(mid)
        last = max(p.last_at for p in parts)
        settled = time.monotonic() - last >= self.settle_seconds
        return _json(
            {
                "message_id": mid,
                "content": "\n".join(p.content for p in parts if not p.deleted),
                "parts": len(parts),
                "edits": sum(len(p.edits) for p in parts),
                "settled": settled,
                "first_ms": (parts[0].at - posted) * 1000 if posted is not None else None,
                "last_ms": (last - posted) * 1000 if posted is not None else None,
            }
        )

    async def _ctl_traffic_start(self, request: web.Request) -> web.Response:
        """Start the attached generator, or (given parameters) a new one in its place."""
        from botctl.sandbox.users import TrafficGenerator

        if self.traffic is not None and self.traffic.running:
            return _json({"error": "traffic is already running; stop it first"}, 409)
        body = await self._read_json(request)
        params = {k: v for k, v in body.items() if v is not None}
        if params or self.traffic is None:
            try:
                questions = params.get("questions")
                max_messages = params.get("max_messages")
                self.traffic = TrafficGenerator(
                    self,
                    rate=float(params.get("rate", 5.0)),
                    duplicate_ratio=float(params.get("duplicate_ratio", 0.3)),
                    seed=int(params.get("seed", 0)),
                    questions=[str(q) for q in questions] if questions else None,
                    max_messages=int(max_messages) if max_messages is not None else None,
                )
            except (TypeError, ValueError) as exc:
                return _json({"error": str(exc)}, 400)
        self.traffic.start()
        return _json({"ok": True, **self.traffic.stats()})

    async def _ctl_traffic_stop(self, request: web.Request) -> web.Response:
        if self.traffic is None:
            return _json({"error": "no traffic was started"}, 404)
        await self.traffic.stop()
        return _json(self.traffic.stats())

    async def _ctl_traffic(self, request: web.Request) -> web.Response:
        if self.traffic is None:
            return _json({"running": False, "messages_sent": 0})
        return _json(self.traffic.stats())

    async def _ctl_llm(self, request: web.Request) -> web.Response:
        return _json(dict(self._llm.stats()) if self._llm is not None else None)
