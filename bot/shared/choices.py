"""Channel choices (``/model``, ``/persona``) kept in Redis and pushed to every process at once.

:class:`SharedChoices` is the in-process :class:`~bot.choices.ChannelChoices` (reads stay local and
synchronous). ``set`` also writes the hash ``<prefix>choices`` (field ``<kind>:<channel>``) and
publishes the change on the channel ``<prefix>choices-changed``, behind the hot path. A listener
task applies the other processes' changes as they come, and reads the whole hash each time it
(re)subscribes, so a process started late, or one that lost Redis for a while, catches up. Redis
down: local only; this process's changes are written when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import Any

import orjson
from redis.exceptions import RedisError

from bot.choices import ChannelChoices
from bot.shared.state import SharedState, SharedUnavailable
from bot.shared.writer import Flusher

__all__ = ["SharedChoices"]

log = logging.getLogger("bot.shared")

_Key = tuple[str, int]


class _ChoicesWriter(Flusher[list[tuple[_Key, str | None]]]):
    def __init__(self, choices: SharedChoices, state: SharedState) -> None:
        super().__init__(state)
        self.choices = choices
        self.pending: OrderedDict[_Key, str | None] = OrderedDict()

    def put(self, key: _Key, value: str | None) -> None:
        self.pending[key] = value
        self.pending.move_to_end(key)
        self.changed()

    def _has_pending(self) -> bool:
        return bool(self.pending)

    def _take(self, limit: int) -> list[tuple[_Key, str | None]] | None:
        if not self.pending:
            return None
        return [self.pending.popitem(last=False) for _ in range(min(limit, len(self.pending)))]

    def _write(self, pipe: Any, batch: list[tuple[_Key, str | None]]) -> None:
        origin = self.state.process_id
        for (kind, channel), value in batch:
            field = f"{kind}:{channel}"
            if value is None:
                pipe.hdel(self.choices.hash_key, field)
            else:
                pipe.hset(self.choices.hash_key, field, value)
            message = {"k": kind, "c": channel, "v": value, "o": origin}
            pipe.publish(self.choices.channel_key, orjson.dumps(message))

    def _restore(self, batch: list[tuple[_Key, str | None]]) -> None:
        for key, value in batch:
            if key not in self.pending:
                self.pending[key] = value
                self.pending.move_to_end(key, last=False)


class SharedChoices(ChannelChoices):
    """:class:`~bot.choices.ChannelChoices` shared by every process through Redis.

    :meth:`start` reads the hash and starts the listener; :meth:`close` writes what is pending and
    stops it.
    """

    def __init__(self, state: SharedState) -> None:
        super().__init__()
        self.state = state
        self.hash_key = state.key("choices")
        self.channel_key = state.key("choices-changed")
        self.writer = _ChoicesWriter(self, state)
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.applied = 0  # changes received from other processes

    def set(self, kind: str, channel: int, value: str | None) -> None:
        super().set(kind, channel, value)
        self.writer.put((kind, channel), value)

    async def load(self) -> None:
        """Replace the local choices by Redis's (this process's unwritten changes kept)."""
        try:
            stored = await self.state.run(lambda r: r.hgetall(self.hash_key))
        except SharedUnavailable:
            return
        values: dict[_Key, str] = {}
        for raw_field, raw_value in stored.items():
            kind, _, channel = _text(raw_field).rpartition(":")
            with contextlib.suppress(ValueError):
                values[(kind, int(channel))] = _text(raw_value)
        for key, value in self.writer.pending.items():
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
        self._values = values

    async def start(self, timeout: float = 5.0) -> None:
        """Load the choices and start listening (returns once subscribed, or after ``timeout``)."""
        await self.load()
        if self._listener is None:
            self._listener = self.state.spawn(self._listen(), name="redis-choices")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._subscribed.wait()

    async def _listen(self) -> None:
        while True:
            await self.state.wait_up()
            pubsub = self.state.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel_key)
                await self.load()  # what changed while this process was not listening
                self._subscribed.set()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._apply(message.get("data"))
            except (RedisError, OSError) as exc:
                self._subscribed.clear()
                self.state.failed(exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _apply(self, data: Any) -> None:
        try:
            change = orjson.loads(data)
            kind, channel, value = str(change["k"]), int(change["c"]), change["v"]
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
            log.debug("ignoring a malformed choice change")
            return
        if change.get("o") == self.state.process_id or (kind, channel) in self.writer.pending:
            return  # ours, or older than a change of ours not written yet
        ChannelChoices.set(self, kind, channel, value if isinstance(value, str) else None)
        self.applied += 1

    async def close(self) -> None:
        await self.writer.close()
        listener, self._listener = self._listener, None
        if listener is not None and not listener.done():
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
