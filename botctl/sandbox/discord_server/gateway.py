"""The gateway at ``/gateway``: websocket sessions, HELLO/IDENTIFY/READY/RESUME, heartbeats, dispatches.

Frames are JSON *text* frames: discord.py only inflates binary frames, so its
``compress=zlib-stream`` needs nothing from us. IDENTIFY -> READY and one GUILD_CREATE per guild of
the session's shard (``member_count == len(members)`` so the client never asks for member chunks).
A session identifies with ``shard: [id, count]`` and receives only the events of the guilds with
``(guild_id >> 22) % count == id``; DMs go to shard 0, as on Discord. RESUME replays what the client
missed, then RESUMED. Each event is encoded once, whatever the number of sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from botctl.sandbox.discord_server.common import API_VERSION, JSON, shard_of
from botctl.sandbox.discord_server.world import World

__all__ = ["Gateway"]

HEARTBEAT_INTERVAL_MS = 41_250
REPLAY_LIMIT = 50_000  # dispatches kept per session for RESUME
RESUME_TTL = 120.0  # seconds a detached session stays resumable

_HELLO = orjson.dumps(
    {"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}, "s": None, "t": None}
)
_HEARTBEAT_ACK = b'{"op":11}'
_INVALID_SESSION = b'{"op":9,"d":false,"s":null,"t":null}'


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
    __slots__ = (
        "buffer",
        "conn",
        "detached_at",
        "every",
        "guilds",
        "id",
        "intents",
        "seq",
        "shard",
        "token",
    )

    def __init__(
        self, session_id: str, token: str, shard: list[int], intents: int, guilds: frozenset[str]
    ) -> None:
        self.id = session_id
        self.token = token
        self.shard = shard
        self.intents = intents
        self.guilds = guilds  # the guilds whose events this session receives
        self.every = shard[1] == 1  # one shard: every event
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


class Gateway:
    """Websocket sessions of the bot, each on one shard; ``dispatch`` sends an event to the right ones."""

    def __init__(self, world: World, url: Callable[[], str]) -> None:
        self.world = world
        self._url = url  # the gateway URL (READY's resume_gateway_url), known once listening
        self.sessions: dict[str, _Session] = {}
        self.conns: set[_Conn] = set()
        self.ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connections = 0
        self.identifies = 0
        self.resumes = 0
        self.dispatches = 0

    # ------------------------------------------------------------------ dispatch

    def dispatch(self, event: bytes, data: bytes, guild_id: str | None) -> None:
        """Send ``event`` to the sessions of ``guild_id``'s shard (no guild: shard 0)."""
        self.dispatches += 1
        for session in self.sessions.values():
            if session.every or (
                guild_id in session.guilds if guild_id is not None else session.shard[0] == 0
            ):
                session.send(event, data)

    async def flush(self, timeout: float) -> None:
        """Until every dispatch queued so far has been written to the websockets."""
        waits = [c.idle.wait() for c in self.conns if c.session is not None and not c.dropped]
        if waits:
            await asyncio.wait_for(asyncio.gather(*waits), timeout)

    def stats(self) -> dict[str, int]:
        return {
            "gateway_connections": self.connections,
            "identifies": self.identifies,
            "resumes": self.resumes,
            "dispatches": self.dispatches,
            "sessions": len(self.sessions),
        }

    # ------------------------------------------------------------------ lifecycle

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Close every websocket (code 1001)."""
        for conn in list(self.conns):
            if conn.writer is not None:
                conn.writer.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=1001, message=b"sandbox stopping"), 2.0)
        for task in list(self._tasks):
            task.cancel()

    def drop(self, code: int = 4000, *, resumable: bool = True) -> int:
        """Cut the websockets; returns how many were cut (see ``DiscordServer.drop_gateway``)."""
        dropped = 0
        if not resumable:
            self.sessions.clear()
        for conn in list(self.conns):
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

    # ------------------------------------------------------------------ the websocket

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, decode_text=False, compress=False)
        await ws.prepare(request)
        self.connections += 1
        conn = _Conn(ws, request)
        self.conns.add(conn)
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
        for sid, session in list(self.sessions.items()):
            if session.conn is None and now - session.detached_at > RESUME_TTL:
                del self.sessions[sid]

    def _identify(self, conn: _Conn, data: JSON) -> None:
        if conn.session is not None:
            self._spawn(self._close_ws(conn.ws, 4005))  # Discord's "already authenticated"
            return
        shard = data.get("shard") or [0, 1]
        try:
            shard_id, count = int(shard[0]), int(shard[1])
        except (TypeError, ValueError, IndexError):
            shard_id, count = -1, 0
        if not 0 <= shard_id < count:
            self._spawn(self._close_ws(conn.ws, 4010))  # Discord's "invalid shard"
            return
        self._prune_sessions()
        self.identifies += 1
        world = self.world
        guilds = frozenset(g for g in world.guild_ids if shard_of(g, count) == shard_id)
        session = _Session(
            secrets.token_hex(16),
            str(data.get("token", "")),
            [shard_id, count],
            int(data.get("intents") or 0),
            guilds,
        )
        session.conn = conn
        conn.session = session
        ready = {
            "v": API_VERSION,
            "user": world.bot_user,
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self._url(),
            "guilds": [{"id": g, "unavailable": True} for g in world.guild_ids if g in guilds],
            "application": {"id": world.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "shard": session.shard,
            "_trace": ["sandbox"],
        }
        session.send(b"READY", orjson.dumps(ready))
        for gid in world.guild_ids:
            if gid in guilds:
                session.send(b"GUILD_CREATE", orjson.dumps(world.guild_payload(gid)))
        # Registered after READY/GUILD_CREATE so that no dispatch slips in before them.
        self.sessions[session.id] = session
        covered: set[str] = set()
        for s in self.sessions.values():
            covered |= s.guilds
        if len(covered) == len(world.guild_ids):
            self.ready.set()

    def _resume(self, conn: _Conn, data: JSON) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        seq = data.get("seq")
        if session is None or not isinstance(seq, int):
            conn.push(_INVALID_SESSION)
            return
        if session.buffer and session.buffer[0][0] > seq + 1:
            # The client missed more than the replay buffer holds: it must identify afresh.
            del self.sessions[session.id]
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
        self.resumes += 1

    def _member_chunk(self, conn: _Conn, data: JSON) -> None:
        session = conn.session
        gid = str(data.get("guild_id"))
        if session is None or gid not in self.world.guilds:
            return
        chunk = {
            "guild_id": gid,
            "members": self.world.members(gid),
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
            "nonce": data.get("nonce"),
        }
        session.send(b"GUILD_MEMBERS_CHUNK", orjson.dumps(chunk))

    def _detach(self, conn: _Conn, *, clean: bool) -> None:
        self.conns.discard(conn)
        if conn.writer is not None:
            conn.writer.cancel()
        session = conn.session
        if session is not None and session.conn is conn:
            session.conn = None
            session.detached_at = time.monotonic()
            if clean:
                # A 1000 close ends the session, as on Discord.
                self.sessions.pop(session.id, None)
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
