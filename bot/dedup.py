"""Request deduplication: one flight per key for the requests in flight, plus a short reuse window.

Identical requests (same key) in flight at the same time make ONE upstream call: the first caller
(the *leader*) starts the source in a task of its own and every caller (leader and *followers*)
reads the chunks it produces, each at its own pace, from a shared list, so a follower that joins
late still gets every chunk from the first. Everyone gets the same chunks and the same error. A
caller that leaves (cancelled, gave up) does not stop the flight for the others; the flight is
cancelled only when its last caller leaves before the end. A finished flight's chunks are then
replayed for ``window`` seconds (``0``: in flight only); errors never are.

:meth:`RequestDeduplicator.deduplicate` is the same mechanism for a plain awaitable: its result is
a flight of one chunk.

Memory stays bounded whatever the traffic: flights leave the map when they end, and window
entries are evicted by expiry (oldest first: they share one lifetime), by count and by bytes.
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
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

import orjson

__all__ = ["FlightCancelledError", "RequestDeduplicator", "Role", "Subscription"]

Role = Literal["leader", "follower", "window"]

T = TypeVar("T")
C = TypeVar("C")


class FlightCancelledError(RuntimeError):
    """The shared flight was cancelled from outside while this caller still waited.

    Raised instead of :class:`asyncio.CancelledError` so that a caller that was not itself cancelled
    never sees a cancellation that is not its own (it would otherwise tear down its task).
    """


def _approx_size(obj: object, depth: int = 0) -> int:
    """A cheap, bounded estimate of an object's memory, for the window's byte cap."""
    if isinstance(obj, str | bytes | bytearray):
        return 49 + len(obj)
    if depth >= 8:
        return 64  # deep structures are unusual for LLM answers; a flat guess keeps this bounded
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
    chunks: list[Any]
    size: int


@dataclass(slots=True, eq=False)
class _Flight:
    """One shared iteration (or a window replay, born ``done``)."""

    key: str
    chunks: list[Any] = field(default_factory=list)
    done: bool = False
    error: BaseException | None = None
    error_tb: TracebackType | None = None
    cancelled: bool = False
    subscribers: int = 0
    task: asyncio.Task[None] | None = None
    # set() then clear() wakes every current waiter without a per-chunk allocation.
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


class Subscription(Generic[C]):
    """One caller's view of a flight: every chunk from the first, then the flight's end.

    ``role`` is known at once. Leaving (``aclose()``, the end, an error, or a cancellation while
    waiting) unsubscribes; the flight is cancelled when its last subscriber leaves early.
    """

    __slots__ = ("_closed", "_flight", "_index", "_owner", "role")

    def __init__(self, owner: RequestDeduplicator | None, flight: _Flight, role: Role) -> None:
        self.role: Role = role
        self._owner = owner
        self._flight = flight
        self._index = 0
        self._closed = False
        flight.subscribers += 1

    def __aiter__(self) -> Subscription[C]:
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
                    raise FlightCancelledError("the shared request was cancelled")
                if flight.error is not None:
                    # One exception object raised in many tasks: reset its traceback each time so
                    # it does not grow with every subscriber (as asyncio.Future does).
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
            self._owner._abandon(flight)

    def __del__(self) -> None:
        # `async for ... break` never calls aclose(): dropping the subscription still leaves.
        if not self._closed:
            with contextlib.suppress(RuntimeError):  # the loop is already closed: nothing to stop
                self._release()


class RequestDeduplicator:
    """Singleflight plus a bounded reuse window. Chunks are shared between callers: read-only."""

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
        self._flights: dict[str, _Flight] = {}
        # Ordered by insertion; every entry lives `window` seconds, so this is also expiry order.
        self._entries: OrderedDict[str, _WindowEntry] = OrderedDict()
        self._entries_bytes = 0
        self._requests = 0
        self._leaders = 0
        self._followers = 0
        self._window_hits = 0
        self._errors = 0

    @staticmethod
    def make_key(request: Mapping[str, Any]) -> str:
        """SHA-256 hex of the canonical JSON of what changes an answer (missing fields -> null)."""
        get = request.get
        subset = {
            "model": get("model"),
            "messages": get("messages"),
            "options": get("options"),
            "format": get("format"),
            "tools": get("tools"),
        }
        return hashlib.sha256(orjson.dumps(subset, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def join(self, key: str, source: Callable[[], AsyncIterator[C]]) -> Subscription[C]:
        """Subscribe to the one iteration of ``source()`` shared by identical requests.

        Needs a running loop: a leader's iteration starts at once in its own task.
        """
        self._requests += 1
        if self._window > 0 and self._entries:
            self._expire(self._clock())
            entry = self._entries.get(key)
            if entry is not None:
                self._window_hits += 1
                return Subscription(None, _Flight(key, chunks=entry.chunks, done=True), "window")
        flight = self._flights.get(key)
        if flight is not None:
            self._followers += 1
            return Subscription(self, flight, "follower")
        loop = asyncio.get_running_loop()  # before any state changes: no loop, no flight
        self._leaders += 1
        flight = _Flight(key)
        self._flights[key] = flight
        subscription: Subscription[C] = Subscription(self, flight, "leader")
        flight.task = loop.create_task(self._fly(flight, source))
        return subscription

    async def deduplicate(
        self, key: str | Mapping[str, Any], call: Callable[[], Awaitable[T]]
    ) -> T:
        """``call()``'s result, one upstream call shared by identical requests (a flight of one)."""

        async def source() -> AsyncIterator[T]:
            yield await call()

        k = key if isinstance(key, str) else self.make_key(key)
        subscription: Subscription[T] = self.join(k, source)
        results = [chunk async for chunk in subscription]
        return results[0]

    async def _fly(self, flight: _Flight, source: Callable[[], AsyncIterator[Any]]) -> None:
        iterator: AsyncIterator[Any] | None = None
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
            flight.finish(exc)  # KeyboardInterrupt/SystemExit: tell the subscribers, then go on
            raise
        else:
            flight.finish()
            if self._window > 0:
                self._remember(flight)
        finally:
            self._forget(flight)
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:  # lets a source release what it holds (an HTTP response)
                with contextlib.suppress(Exception):
                    await aclose()

    def _forget(self, flight: _Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    def _abandon(self, flight: _Flight) -> None:
        self._forget(flight)
        task = flight.task
        if task is not None and not task.done():
            task.cancel()

    # -- the window ----------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            first = next(iter(entries.values()))
            if first.expires > now:
                break
            _, entry = entries.popitem(last=False)
            self._entries_bytes -= entry.size

    def _remember(self, flight: _Flight) -> None:
        size = 56 + 8 * len(flight.chunks)
        for chunk in flight.chunks:
            size += _approx_size(chunk)
            if size > self._max_bytes:
                return
        if self._max_entries == 0:
            return
        now = self._clock()
        self._expire(now)
        entries = self._entries
        old = entries.pop(flight.key, None)
        if old is not None:
            self._entries_bytes -= old.size
        # The list is frozen from now on (done), so replays share it without a copy.
        entries[flight.key] = _WindowEntry(now + self._window, flight.chunks, size)
        self._entries_bytes += size
        while len(entries) > self._max_entries or self._entries_bytes > self._max_bytes:
            _, evicted = entries.popitem(last=False)
            self._entries_bytes -= evicted.size

    # -- figures -------------------------------------------------------------------------------

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
            "pending_requests": len(self._flights),
            "window_entries": len(self._entries),
            "window_bytes": self._entries_bytes,
            "window": self._window,
            "dedup_ratio": saved / self._requests if self._requests else 0.0,
        }

    def clear(self) -> None:
        """Forget every reusable answer. Flights in progress finish for the callers they have."""
        self._entries.clear()
        self._entries_bytes = 0
