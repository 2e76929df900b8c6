"""A flight's answer on a Redis stream: how chunks and errors are written, read and published.

One stream per flight (``<prefix>s:<nonce>``). Each entry carries its sequence number ``n`` (a reader
that finds a gap knows the stream was trimmed under it), a batch of chunks ``d`` (JSON: a ``str``
delta, or ``{"done": ...}``), and possibly one terminal field: ``e`` the end, ``x`` an error (the
:class:`~bot.llm.errors.LLMError` to raise again, its class and fields), ``a`` abandoned (the leader
gave up, not an error of the request: a follower runs it again).

The leader never waits for Redis: :class:`Publisher` keeps the chunks in a list that one task writes
out, all that came since its last write in one ``XADD``. The first chunk goes out at once (the
followers' time to first token); then the task pauses between writes, ``interval`` seconds doubling
up to ``max_interval``, so a streamed answer costs a handful of entries rather than one per token;
the end goes out at once. The same task renews the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

import orjson

from bot.llm.errors import (
    LLMError,
    LLMHTTPError,
    LLMResponseError,
    LLMStreamError,
    LLMTimeoutError,
    LLMUnreachableError,
)
from bot.llm.types import Done
from bot.shared.state import SharedState, SharedUnavailable

__all__ = ["Publisher", "decode_chunks", "decode_error", "encode_chunks", "encode_error"]

# Lease kept only by its holder: renewed, handed to the window, or released. KEYS: flight, stream.
# Sent with EVAL, not EVALSHA: a restarted server has forgotten every loaded script, and redis-py
# checks SCRIPT EXISTS before each pipeline holding a registered script (a round trip more).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return 1
end
return 0
"""
_FINISH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if tonumber(ARGV[3]) > 0 then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  else
    redis.call('DEL', KEYS[1])
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""


_DONE_FIELDS = tuple(name for name in Done.__dataclass_fields__ if name not in ("text", "done"))


def encode_chunks(chunks: list[Any]) -> bytes:
    """JSON of ``str``/:class:`Done` chunks; :class:`TypeError` for anything else (not shareable)."""
    items: list[Any] = []
    for chunk in chunks:
        if type(chunk) is str:
            items.append(chunk)
        elif isinstance(chunk, Done):
            # Done.to_dict (dataclasses.asdict) deep-copies: ten times the cost of this.
            items.append({"done": {name: getattr(chunk, name) for name in _DONE_FIELDS}})
        else:
            raise TypeError(f"{type(chunk).__name__} chunks cannot be shared through Redis")
    return orjson.dumps(items)


def decode_chunks(data: bytes) -> list[str | Done]:
    return [
        item if isinstance(item, str) else Done.from_dict(item["done"])
        for item in orjson.loads(data)
    ]


_KNOWN = (
    LLMTimeoutError,
    LLMHTTPError,
    LLMStreamError,
    LLMUnreachableError,
    LLMResponseError,
    LLMError,
)


def encode_error(exc: BaseException) -> bytes:
    """What it takes to raise the same kind of error elsewhere (never a traceback or a secret:
    ``url`` is already redacted by :class:`LLMError`)."""
    if not isinstance(exc, LLMError):
        return orjson.dumps(
            {"type": "LLMError", "message": f"the request failed ({type(exc).__name__})"}
        )
    kind = next(k for k in _KNOWN if isinstance(exc, k))
    data: dict[str, Any] = {"type": kind.__name__, "message": exc.message, "url": exc.url}
    if isinstance(exc, LLMTimeoutError):
        data |= {"phase": exc.phase, "seconds": exc.seconds}
    elif isinstance(exc, LLMHTTPError):
        data |= {"status": exc.status, "error": exc.error}
    elif isinstance(exc, LLMStreamError):
        data["error"] = exc.error
    return orjson.dumps(data)


def decode_error(data: bytes) -> LLMError:
    fields: Mapping[str, Any] = orjson.loads(data)
    kind, url = fields.get("type"), fields.get("url") or None
    message = str(fields.get("message") or "the shared request failed")
    try:
        if kind == "LLMTimeoutError":
            return LLMTimeoutError(fields["phase"], float(fields["seconds"]), url=url)
        if kind == "LLMHTTPError":
            return LLMHTTPError(int(fields["status"]), str(fields.get("error") or ""), url=url)
        if kind == "LLMStreamError":
            return LLMStreamError(str(fields.get("error") or ""), url=url)
        if kind == "LLMUnreachableError":
            return LLMUnreachableError(message, url=url)
        if kind == "LLMResponseError":
            return LLMResponseError(message, url=url)
    except (KeyError, TypeError, ValueError):
        pass  # a record from another version of the bot: the base class still says what failed
    return LLMError(message, url=url)


class Publisher:
    """Writes one leader's chunks to its stream and keeps its lease, in one background task.

    ``add``, ``end``, ``fail`` and ``abandon`` are synchronous and never wait for Redis. Redis lost
    mid-way: the rest is dropped (followers notice and run the request themselves).
    """

    def __init__(
        self,
        state: SharedState,
        flight_key: str,
        stream_key: str,
        nonce: str,
        *,
        lease_ms: int,
        window_ms: int,
        interval: float,
        max_interval: float,
        maxlen: int,
    ) -> None:
        self._state = state
        self._flight_key = flight_key
        self._stream_key = stream_key
        self._lease_value = f"L:{nonce}"
        self._window_value = f"W:{nonce}"
        self._lease_ms = lease_ms
        self._window_ms = window_ms
        self._interval = interval
        self._max_interval = max(interval, max_interval)
        self._maxlen = maxlen
        # A stream outlives its lease so late readers of a finished one still replay it.
        self._stream_ttl = 2 * lease_ms
        self._pending: list[Any] = []
        self._terminal: tuple[str, bytes] | None = None
        self._wake = asyncio.Event()
        self._ended = asyncio.Event()
        self._seq = 0
        self.task = state.spawn(self._run(), name=f"redis-publish-{nonce}")

    def add(self, chunk: Any) -> None:
        if self._terminal is None:
            self._pending.append(chunk)
            self._wake.set()

    def end(self) -> None:
        self._close("e", b"1")

    def fail(self, exc: BaseException) -> None:
        self._close("x", encode_error(exc))

    def abandon(self) -> None:
        self._close("a", b"1")

    def _close(self, field: str, value: bytes) -> None:
        if self._terminal is None:
            self._terminal = (field, value)
            self._wake.set()
            self._ended.set()

    async def _run(self) -> None:
        renew_every = self._lease_ms / 3000
        renewed = time.monotonic()
        interval = self._interval
        while True:
            # asyncio.timeout, not wait_for: no task per wait
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, renewed + renew_every - time.monotonic())):
                    await self._wake.wait()
            self._wake.clear()
            renew = time.monotonic() - renewed >= renew_every
            terminal = self._terminal
            chunks, self._pending = self._pending, []
            try:
                await self._state.run(
                    partial(self._write, chunks=chunks, terminal=terminal, renew=renew)
                )
            except SharedUnavailable:
                return
            except TypeError:  # a chunk that is not str/Done: followers run the request themselves
                self._terminal = ("a", b"1")
                await self._write_quietly(self._terminal)
                return
            if renew:
                renewed = time.monotonic()
            if terminal is not None:
                return
            if chunks:
                # Let the next chunks gather into one entry, a little longer each time (followers'
                # replies are edited about once a second anyway); the end goes out at once, and
                # the lease is renewed in time.
                pause = min(interval, max(0.0, renewed + renew_every - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await self._ended.wait()
                interval = min(interval * 2, self._max_interval)

    async def _write(
        self, client: Any, chunks: list[Any], terminal: tuple[str, bytes] | None, renew: bool
    ) -> None:
        pipe = client.pipeline(transaction=False)
        first = self._seq == 0
        if chunks or terminal is not None:
            fields: dict[str, Any] = {"n": self._seq}
            if chunks:
                fields["d"] = encode_chunks(chunks)
            if terminal is not None:
                fields[terminal[0]] = terminal[1]
            pipe.xadd(self._stream_key, fields, maxlen=self._maxlen, approximate=True)
            self._seq += 1
        keys = [self._flight_key, self._stream_key]
        if terminal is None:
            if first or renew:
                pipe.eval(_RENEW, 2, *keys, self._lease_value, self._lease_ms, self._stream_ttl)
        elif terminal[0] == "e":
            # The window: the flight key now names the finished stream for `window` more seconds.
            ttl = self._window_ms + self._stream_ttl
            pipe.eval(
                _FINISH, 2, *keys, self._lease_value, self._window_value, self._window_ms, ttl
            )
        else:  # an error or a leader giving up: never reused, the next request starts afresh
            pipe.eval(_FINISH, 2, *keys, self._lease_value, "", 0, self._stream_ttl)
        await pipe.execute()

    async def _write_quietly(self, terminal: tuple[str, bytes]) -> None:
        with contextlib.suppress(SharedUnavailable):
            await self._state.run(partial(self._write, chunks=[], terminal=terminal, renew=False))
