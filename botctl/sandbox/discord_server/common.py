"""What every part of the sandbox's Discord shares: JSON answers as discord.py reads them, ids, constants.

Every REST answer carries exactly ``Content-Type: application/json``: discord.py decodes JSON only
when the header is that string, so aiohttp's ``json_response`` (which appends a charset) would hand
it a ``str``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

JSON = dict[str, Any]

API_VERSION = 10
DISCORD_EPOCH_MS = 1_420_070_400_000
MAX_CONTENT = 2000
ATTACHMENT_SIZE_LIMIT = 25 * 1024 * 1024

MESSAGE_TYPE_DEFAULT = 0
MESSAGE_TYPE_REPLY = 19
MESSAGE_TYPE_CHAT_INPUT = 20
MESSAGE_TYPE_THREAD_STARTER = 21
CHANNEL_TYPE_TEXT = 0
CHANNEL_TYPE_DM = 1
CHANNEL_TYPE_PUBLIC_THREAD = 11
FLAG_EPHEMERAL = 64
FLAG_LOADING = 128

# view channel, send messages, embed links, attach files, read history, add reactions, external
# emojis, use application commands, create public threads, send in threads.
EVERYONE_PERMISSIONS = sum(1 << bit for bit in (6, 10, 11, 14, 15, 16, 18, 31, 35, 38))
MANAGE_GUILD = 1 << 5

JSON_HEADERS = {"Content-Type": "application/json"}


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, headers=JSON_HEADERS)


def error(status: int, message: str, code: int = 0) -> web.Response:
    """Discord's error body: ``{"message", "code"}``."""
    return json_response({"message": message, "code": code}, status)


def empty() -> web.Response:
    return web.Response(status=204)


def iso_now() -> str:
    return datetime.now(UTC).isoformat()


async def read_json(request: web.Request) -> JSON:
    """The request's JSON object; ``{}`` for an empty body, a ValueError for a body that is not JSON."""
    body = await request.read()
    if not body:
        return {}
    value = orjson.loads(body)
    return value if isinstance(value, dict) else {}


class Snowflakes:
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

    def consecutive(self, count: int) -> list[str]:
        """``count`` ids whose timestamps are consecutive milliseconds, older than any id to come.

        Guild ids are made this way: ``(guild_id >> 22) % shards`` then cycles through every shard,
        whatever the shard count, so guilds spread evenly over shards as they would on Discord.
        """
        start = int(time.time() * 1000) - DISCORD_EPOCH_MS - count - 1
        start = max(start, self._last + 1)
        ids = [str(((start + i) << 22) | (1 << 17)) for i in range(count)]
        self._last = start + count - 1
        self._inc = 0
        return ids


def shard_of(guild_id: str | int, shard_count: int) -> int:
    """The shard that receives a guild's events, as Discord computes it."""
    return (int(guild_id) >> 22) % shard_count
