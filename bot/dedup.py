"""Request deduplication: a singleflight over in-flight LLM requests plus a short reuse window.

Identical requests (same :meth:`RequestDeduplicator.make_key`) that are in flight at the same time
make ONE upstream call; every caller gets the same result or the same exception. The upstream call
runs in its own task, so a caller that is cancelled (a user gone, a reply timed out) does not cancel
it for the others; only when every caller has gone is the flight cancelled. A successful result is
then reused for ``window`` seconds; errors never are.

Streaming (:meth:`RequestDeduplicator.stream`) is a fan-out with replay: the source is iterated
once into a shared chunk list, and each subscriber reads that list at its own pace, so a follower
that joins late still receives every chunk from the first one.

Memory is bounded whatever the traffic: flights leave their map when they end, and window entries
are evicted by expiry (oldest first, since they share one lifetime) and by entry-count and byte
caps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

import orjson

__all__ = ["KEY_FIELDS", "DedupStream", "FlightCancelledError", "RequestDeduplicator", "Role"]

Role = Literal["leader", "follower", "window"]

T = TypeVar("T")
C = TypeVar("C")

# Everything that changes the answer; anything else (stream, keep_alive...) must not split callers.
# make_key spells these out literally for speed; keep the two in step.
KEY_FIELDS = ("model", "messages", "options", "format", "tools")


class KeyRequest(dict[str, Any]):
    """A request holding exactly the fields of the key (``KEY_FIELDS``), as OllamaService builds
    it: :meth:`RequestDeduplicator.make_key` hashes it as it is, without building a subset."""


_Kind = Literal["call", "stream"]


class FlightCancelledError(RuntimeError):
    """The shared upstream flight was cancelled from outside while this caller still waited.

    Raised instead of :class:`asyncio.CancelledError` so that a caller that was not itself cancelled
    never sees a cancellation that is not its own (it would otherwise tear down its task).
    """


def _approx_size(obj: object, depth: int = 0) -> int:
    """A cheap, bounded estimate of an object's memory, for the window's byte cap."""
    if isinstance(obj, str | bytes | bytearray):
        return 49 + len(obj)
    if depth >= 8:
        # Deep structures are unusual for LLM replies; a flat guess keeps this bounded.
        return 64
    if isinstance(obj, dict):
        return 64 + sum(
            _approx_size(k, depth + 1) + _approx_size(v, depth + 1) for k, v in obj.items()
        )
    if isinstance(obj, list | tuple):
        return 56 + 8 * len(obj) + sum(_approx_size(v, depth + 1) for v in obj)
    return sys.getsizeof(obj)


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@dataclass(slots=True)
class _WindowEntry:
    expires: float
    value: Any
    size: int


@dataclass(slots=True, eq=False)
class _CallFlight:
    key: str
    task: asyncio.Task[Any] | None = None
    waiters: int = 0


@dataclass(slots=True, eq=False)
class _StreamFlight:
    """The shared state of one streamed flight (or of a window replay, born ``done``)."""

    key: str
    chunks: list[Any] = field(default_factory=list)
    done: bool = False
    error: BaseException | None = None
    error_tb: TracebackType | None = None
    cancelled: bool = False
    subscribers: int = 0
    task: asyncio.Task[None] | None = None
    # Event.set() then clear() wakes every current waiter without a per-chunk allocation.
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, chunk: Any) -> None:
        self.chunks.append(chunk)
        self.changed.set()
        self.changed.clear()

    def finish(self, error: BaseException | None = None, *, cancelled: bool = False) -> None:
        self.done = True
        self.error = error
        self.error_tb = error.__traceback__ if error is not None else None
        self.cancelled = cancelled
        self.changed.set()


class DedupStream(Generic[C]):
    """One subscriber's view of a streamed flight: an async iterator over every chunk.

    ``role`` is known as soon as :meth:`RequestDeduplicator.stream` returns. Closing the stream
    (``aclose()``, exhaustion, an error, or a cancellation while waiting) unsubscribes it; the
    flight is cancelled when its last subscriber leaves before the end.
    """

    __slots__ = ("_closed", "_flight", "_index", "_owner", "role")

    def __init__(
        self, owner: RequestDeduplicator | None, flight: _StreamFlight, role: Role
    ) -> None:
        self.role: Role = role
        self._owner = owner
        self._flight = flight
        self._index = 0
        self._closed = False
        flight.subscribers += 1

    def __aiter__(self) -> DedupStream[C]:
        return self

    async def __anext__(self) -> C:
        flight = self._flight
        while True:
            if self._closed:
                raise StopAsyncIteration
            index = self._index
            if index < len(flight.chunks):
                self._index = index + 1
                chunk: C = flight.chunks[index]
                return chunk
            if flight.done:
                self._release()
                if flight.cancelled:
                    if _current_task_cancelling():
                        raise asyncio.CancelledError
                    raise FlightCancelledError("the shared stream was cancelled")
                if flight.error is not None:
                    # One exception object is raised in many tasks: reset its traceback each time
                    # so it does not grow with every subscriber (as asyncio.Future does).
                    raise flight.error.with_traceback(flight.error_tb)
                raise StopAsyncIteration
            try:
                await flight.changed.wait()
            except asyncio.CancelledError:
                self._release()
                raise

    async def aclose(self) -> None:
        self._release()

    def _release(self) -> None:
        if self._closed:
            return
        self._closed = True
        flight = self._flight
        flight.subscribers -= 1
        if flight.subscribers <= 0 and not flight.done and self._owner is not None:
            self._owner._abandon_stream(flight)

    def __del__(self) -> None:
        # `async for ... break` never calls aclose(); dropping the iterator must still unsubscribe,
        # or an abandoned flight would run to its end for nobody.
        if not self._closed:
            # RuntimeError: the loop is already closed, so there is nothing left to cancel.
            with contextlib.suppress(RuntimeError):
                self._release()


class RequestDeduplicator:
    """Singleflight plus a bounded reuse window over LLM requests.

    Results are shared between callers as the same object: treat them as read-only.
    """

    def __init__(
        self,
        window: float = 5.0,
        *,
        max_window_entries: int = 1024,
        max_window_bytes: int = 32 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window < 0:
            raise ValueError(f"window must be >= 0 seconds, got {window!r}")
        if max_window_entries < 0 or max_window_bytes < 0:
            raise ValueError("max_window_entries and max_window_bytes must be >= 0")
        self._window = float(window)
        self._max_entries = max_window_entries
        self._max_bytes = max_window_bytes
        self._clock = clock
        self._flights: dict[str, _CallFlight] = {}
        self._stream_flights: dict[str, _StreamFlight] = {}
        # Ordered by insertion; every entry lives `window` seconds, so this is also expiry order.
        self._entries: OrderedDict[tuple[_Kind, str], _WindowEntry] = OrderedDict()
        self._entries_bytes = 0
        self._requests = 0
        self._leaders = 0
        self._followers = 0
        self._window_hits = 0
        self._errors = 0

    @staticmethod
    def make_key(request: Mapping[str, Any]) -> str:
        """SHA-256 hex of the canonical JSON of what changes the answer (missing fields -> null)."""
        if type(request) is KeyRequest:  # a type check: cheaper than comparing key sets
            return hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()
        get = request.get
        # A literal, not a loop over KEY_FIELDS: measured ~0.5 us cheaper, against a ~15 us total.
        subset = {
            "model": get("model"),
            "messages": get("messages"),
            "options": get("options"),
            "format": get("format"),
            "tools": get("tools"),
        }
        return hashlib.sha256(orjson.dumps(subset, option=orjson.OPT_SORT_KEYS)).hexdigest()

    # -- request/response --------------------------------------------------------------------

    async def deduplicate(
        self, key: str | Mapping[str, Any], call: Callable[[], Awaitable[T]]
    ) -> T:
        """Return ``call()``'s result, sharing one upstream call between identical requests."""
        result, _role = await self.run(key, call)
        return result

    async def run(
        self, key: str | Mapping[str, Any], call: Callable[[], Awaitable[T]]
    ) -> tuple[T, Role]:
        """Like :meth:`deduplicate`, also saying if this caller led, followed or hit the window."""
        k = key if isinstance(key, str) else self.make_key(key)
        self._requests += 1
        if self._window > 0:
            entry = self._window_get("call", k)
            if entry is not None:
                self._window_hits += 1
                value: T = entry.value
                return value, "window"
        flight = self._flights.get(k)
        role: Role
        if flight is None:
            role = "leader"
            self._leaders += 1
            flight = _CallFlight(k)
            self._flights[k] = flight
            new_task = asyncio.get_running_loop().create_task(self._fly(flight, call))
            flight.task = new_task
            new_task.add_done_callback(partial(self._call_flight_done, flight))
        else:
            role = "follower"
            self._followers += 1
        task = flight.task
        assert task is not None
        flight.waiters += 1
        try:
            result: T = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and not _current_task_cancelling():
                raise FlightCancelledError("the shared upstream call was cancelled") from None
            raise
        finally:
            flight.waiters -= 1
            if flight.waiters <= 0 and not task.done():
                # Every caller has gone: nobody wants the answer any more.
                self._forget_call(flight)
                task.cancel()
        return result, role

    async def _fly(self, flight: _CallFlight, call: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await call()
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._errors += 1
            raise
        finally:
            # Leave the map at once (not in a later callback) so that a caller arriving before the
            # callback starts afresh or hits the window instead of joining a finished flight.
            self._forget_call(flight)
        if self._window > 0:
            self._window_put("call", flight.key, result, _approx_size(result))
        return result

    def _forget_call(self, flight: _CallFlight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    def _call_flight_done(self, flight: _CallFlight, task: asyncio.Task[Any]) -> None:
        if not task.cancelled():
            task.exception()  # mark retrieved: a flight whose callers all left may still fail
        # A task cancelled before its first step never runs _fly's finally.
        self._forget_call(flight)

    # -- streaming ---------------------------------------------------------------------------

    def stream(
        self, key: str | Mapping[str, Any], source: Callable[[], AsyncIterator[C]]
    ) -> DedupStream[C]:
        """Subscribe to the one iteration of ``source()`` shared by identical requests.

        Must be called with a running loop (the leader's iteration starts in its own task).
        """
        k = key if isinstance(key, str) else self.make_key(key)
        self._requests += 1
        if self._window > 0:
            entry = self._window_get("stream", k)
            if entry is not None:
                self._window_hits += 1
                replay = _StreamFlight(k, chunks=entry.value, done=True)
                hit: DedupStream[C] = DedupStream(None, replay, "window")
                return hit
        flight = self._stream_flights.get(k)
        if flight is not None:
            self._followers += 1
            follower: DedupStream[C] = DedupStream(self, flight, "follower")
            return follower
        loop = asyncio.get_running_loop()  # before any state changes: no loop, no flight
        self._leaders += 1
        flight = _StreamFlight(k)
        self._stream_flights[k] = flight
        sub: DedupStream[C] = DedupStream(self, flight, "leader")
        flight.task = loop.create_task(self._pump(flight, source))
        return sub

    async def _pump(self, flight: _StreamFlight, source: Callable[[], AsyncIterator[C]]) -> None:
        iterator: AsyncIterator[C] | None = None
        try:
            iterator = source()
            async for chunk in iterator:
                flight.push(chunk)
        except asyncio.CancelledError:
            flight.finish(cancelled=True)
            raise
        except Exception as exc:
            self._errors += 1
            flight.finish(exc)
        except BaseException as exc:
            # KeyboardInterrupt/SystemExit: tell the subscribers, but do not swallow it.
            flight.finish(exc)
            raise
        else:
            flight.finish()
            if self._window > 0:
                size = 56 + 8 * len(flight.chunks)
                for chunk in flight.chunks:
                    size += _approx_size(chunk)
                    if size > self._max_bytes:
                        break
                # The list is frozen from now on (done), so replays can share it without a copy.
                self._window_put("stream", flight.key, flight.chunks, size)
        finally:
            self._forget_stream(flight)
            # Lets a hand-written iterator (say, over an HTTP response) release what it holds.
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _forget_stream(self, flight: _StreamFlight) -> None:
        if self._stream_flights.get(flight.key) is flight:
            del self._stream_flights[flight.key]

    def _abandon_stream(self, flight: _StreamFlight) -> None:
        self._forget_stream(flight)
        task = flight.task
        if task is not None and not task.done():
            task.cancel()

    # -- the window --------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            first = next(iter(entries.values()))
            if first.expires > now:
                break
            _, entry = entries.popitem(last=False)
            self._entries_bytes -= entry.size

    def _window_get(self, kind: _Kind, key: str) -> _WindowEntry | None:
        if not self._entries:
            return None
        self._expire(self._clock())
        return self._entries.get((kind, key))

    def _window_put(self, kind: _Kind, key: str, value: Any, size: int) -> None:
        if size > self._max_bytes or self._max_entries == 0:
            return
        now = self._clock()
        self._expire(now)
        entries = self._entries
        old = entries.pop((kind, key), None)
        if old is not None:
            self._entries_bytes -= old.size
        entries[(kind, key)] = _WindowEntry(now + self._window, value, size)
        self._entries_bytes += size
        while len(entries) > self._max_entries or self._entries_bytes > self._max_bytes:
            _, evicted = entries.popitem(last=False)
            self._entries_bytes -= evicted.size

    # -- stats -------------------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """Counters since creation; ``saved_calls`` are the upstream calls avoided."""
        if self._entries:
            self._expire(self._clock())
        saved = self._followers + self._window_hits
        return {
            "requests": self._requests,
            "leaders": self._leaders,
            "followers": self._followers,
            "window_hits": self._window_hits,
            "saved_calls": saved,
            "errors": self._errors,
            "pending_requests": len(self._flights) + len(self._stream_flights),
            "window_entries": len(self._entries),
            "window_bytes": self._entries_bytes,
            "window": self._window,
            "dedup_ratio": saved / self._requests if self._requests else 0.0,
        }

    def clear(self) -> None:
        """Forget every reusable result. Flights in progress finish for the callers they have."""
        self._entries.clear()
        self._entries_bytes = 0
