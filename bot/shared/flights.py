"""Request deduplication across processes: one upstream call per key for the whole bot.

:class:`SharedFlights` is a :class:`~bot.dedup.RequestDeduplicator` (same ``join``, same
``get_stats()`` keys), so callers in one process still share one local flight at no Redis cost.
What changes is the local flight's source: before calling the LLM, the process claims the key in
Redis with one ``SET <prefix>f:<key> L:<nonce> NX PX <lease> GET``:

- nothing there: this process *leads*. It runs the source and a :class:`~bot.shared.stream.Publisher`
  copies the chunks to the stream ``<prefix>s:<nonce>`` (batched ``XADD``, ``MAXLEN ~``, expiring),
  renewing the lease while it streams. At the end the key becomes ``W:<nonce>`` for ``window``
  seconds (the reuse window, in Redis); an error is written to the stream and the key deleted, so
  it is shared with the followers already there and never reused.
- ``L:<nonce>``: another process leads; this one *follows* (role ``follower``): it replays that
  stream from its first entry and follows it (``XREAD BLOCK``, bounded) to the end or the error.
- ``W:<nonce>``: a finished answer in the window (role ``window``): one read of the whole stream.

A leader that dies (kill -9) stops renewing: within a lease its key is gone, the follower sees it
(idle reads check the key) and *runs the request again itself*, claiming the key so the other
followers follow it, not the upstream. Its users get a whole answer: text they were already given
is matched against the new answer and skipped. A model that answers differently the second time
(sampling) cannot continue a half-given answer: that case ends with a clear
:class:`~bot.llm.errors.LLMStreamError`. A leader whose own callers all left writes an *abandoned*
record, and its followers run the request at once rather than after a lease.

Redis down: a new request is a plain local flight; a follower that loses Redis runs the request
itself (the same rerun). Bounded in Redis: every key expires (lease, window, stream TTL) and streams
are trimmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from bot.dedup import RequestDeduplicator, Role, Subscription
from bot.llm.errors import LLMStreamError
from bot.llm.types import Done
from bot.shared.state import SharedState, SharedUnavailable
from bot.shared.stream import Publisher, decode_chunks, decode_error

__all__ = ["RerunDivergedError", "SharedFlights"]


class _Restart(Exception):
    """The flight followed ended without its end (leader gone or gave up, Redis lost)."""


class _Resume:
    """The text already given to this process's callers, so that a rerun continues it."""

    __slots__ = ("done", "given", "pos", "text")

    def __init__(self) -> None:
        self.given: list[str] = []
        self.text = ""
        self.pos = 0
        self.done = False

    def rerun(self) -> None:
        self.text = "".join(self.given)
        self.pos = 0

    def filter(self, chunk: Any) -> Any:
        """The part of ``chunk`` not given yet, or ``None``; raises if the rerun diverges."""
        if type(chunk) is str:
            text, pos = self.text, self.pos
            if pos >= len(text):
                self.given.append(chunk)
                return chunk
            overlap = text[pos : pos + len(chunk)]
            if not chunk.startswith(overlap):
                raise _diverged()
            self.pos = pos + len(overlap)
            rest = chunk[len(overlap) :]
            if rest:
                self.given.append(rest)
                return rest
            return None
        if isinstance(chunk, Done):
            if self.pos < len(self.text):
                raise _diverged()  # the rerun is shorter than what was already given
            if self.done:
                return None
            self.done = True
        return chunk


class RerunDivergedError(LLMStreamError):
    """A rerun after a leader's death answered differently from the text already given."""

    def __init__(self) -> None:
        super().__init__(
            "the process answering this stopped mid-answer and the new try answered differently"
        )


def _diverged() -> RerunDivergedError:
    return RerunDivergedError()


class _Slot:
    """The local leader's subscription, whose role is only known once Redis answered."""

    __slots__ = ("role", "subscription")

    def __init__(self) -> None:
        self.subscription: Subscription[Any] | None = None
        self.role: Role = "leader"


class SharedFlights(RequestDeduplicator):
    """One upstream call per key across every process sharing ``state``'s Redis."""

    def __init__(
        self,
        state: SharedState,
        window: float = 5.0,
        *,
        lease: float = 5.0,
        publish_interval: float = 0.25,
        max_publish_interval: float = 1.0,
        max_stream_entries: int = 4096,
        max_reruns: int = 2,
        max_window_entries: int = 1024,
        max_window_bytes: int = 32 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The local window replays answers to this process's callers without a round trip.
        super().__init__(
            window,
            max_window_entries=max_window_entries,
            max_window_bytes=max_window_bytes,
            clock=clock,
        )
        if lease <= 0:
            raise ValueError(f"lease must be > 0 seconds, got {lease!r}")
        self.state = state
        self._lease_ms = max(1, int(lease * 1000))
        self._window_ms = int(window * 1000)
        # Idle reads wait at most half a lease, so a dead leader is seen about a lease after its
        # last renewal; below the socket timeout, so a blocked read is never taken for a failure.
        self._block_ms = max(1, min(self._lease_ms // 2, 1000, int(state.timeout * 500)))
        self._interval = publish_interval
        self._max_interval = max_publish_interval
        self._maxlen = max_stream_entries
        self._max_reruns = max_reruns
        self._ids = itertools.count(1)
        self._as_follower = 0
        self._as_window = 0
        self._reruns = 0
        self._diverged = 0
        self._publishing: set[asyncio.Task[Any]] = set()

    def join(self, key: str, source: Callable[[], AsyncIterator[Any]]) -> Subscription[Any]:
        """As :meth:`RequestDeduplicator.join`; a local leader's ``role`` is settled (``leader``,
        ``follower`` or ``window``) once Redis answers, before its first chunk."""
        if not self.state.is_up:
            return super().join(key, source)
        slot = _Slot()
        subscription: Subscription[Any] = super().join(
            key, lambda: self._distributed(key, source, slot)
        )
        if subscription.role == "leader":
            slot.subscription = subscription
        return subscription

    # -- one local flight, decided in Redis -----------------------------------------------------

    async def _distributed(
        self, key: str, source: Callable[[], AsyncIterator[Any]], slot: _Slot
    ) -> AsyncIterator[Any]:
        resume = _Resume()
        flight_key = self.state.key("f", key)
        try:
            for attempt in range(self._max_reruns + 1):
                if attempt:
                    self._reruns += 1
                    resume.rerun()
                role, nonce = "local", ""
                if attempt < self._max_reruns:  # the last try never depends on Redis
                    with contextlib.suppress(SharedUnavailable):
                        role, nonce = await self._claim(flight_key)
                self._settle(slot, role)
                # The leader's chunks come straight from the source (no generator in between:
                # this loop runs once per token) and go to the publisher as they pass.
                publisher = self._publisher(flight_key, nonce) if role == "leader" else None
                if role in ("leader", "local"):
                    chunks = source()
                else:
                    chunks = self._follow(flight_key, nonce, role)
                try:
                    async for chunk in chunks:
                        if publisher is not None:
                            publisher.add(chunk)
                        out = resume.filter(chunk)
                        if out is not None:
                            yield out
                    if publisher is not None:
                        publisher.end()
                    return
                except _Restart:
                    continue
                except RerunDivergedError:
                    # Our callers cannot use this answer; the other processes' followers
                    # could, but would have to wait for it: they are told to run it themselves.
                    self._diverged += 1
                    if publisher is not None:
                        publisher.abandon()
                    raise
                except Exception as exc:
                    if publisher is not None:
                        publisher.fail(exc)
                    raise
                except BaseException:  # cancelled, closed early: not an error of the request
                    if publisher is not None:
                        publisher.abandon()
                    raise
                finally:
                    await _aclose(chunks)
        finally:
            slot.subscription = None

    async def _claim(self, flight_key: str) -> tuple[str, str]:
        nonce = f"{self.state.process_id}.{next(self._ids)}"
        old = await self.state.run(
            lambda r: r.set(flight_key, f"L:{nonce}", nx=True, px=self._lease_ms, get=True)
        )
        if old is None:
            return "leader", nonce
        text = old.decode("utf-8", "replace") if isinstance(old, bytes) else str(old)
        kind, _, theirs = text.partition(":")
        if kind == "L" and theirs:
            return "follower", theirs
        if kind == "W" and theirs:
            return "window", theirs
        return "local", ""  # not a value this bot writes: leave it alone, answer locally

    def _settle(self, slot: _Slot, role: str) -> None:
        new: Role = "follower" if role == "follower" else "window" if role == "window" else "leader"
        old, slot.role = slot.role, new
        self._as_follower += (new == "follower") - (old == "follower")
        self._as_window += (new == "window") - (old == "window")
        if slot.subscription is not None:
            slot.subscription.role = new

    def _publisher(self, flight_key: str, nonce: str) -> Publisher:
        publisher = Publisher(
            self.state,
            flight_key,
            self.state.key("s", nonce),
            nonce,
            lease_ms=self._lease_ms,
            window_ms=self._window_ms,
            interval=self._interval,
            max_interval=self._max_interval,
            maxlen=self._maxlen,
        )
        self._publishing.add(publisher.task)
        publisher.task.add_done_callback(self._publishing.discard)
        return publisher

    async def _follow(self, flight_key: str, nonce: str, role: str) -> AsyncIterator[Any]:
        stream = self.state.key("s", nonce)
        alive = {f"L:{nonce}".encode(), f"W:{nonce}".encode()}
        last: Any = b"0-0"
        expect = 0
        # A window's stream is complete: one read without BLOCK. A live one is followed.
        block: int | None = None if role == "window" else self._block_ms
        while True:
            reply = await self._read(stream, last, block)
            if reply:
                for entry_id, fields in reply[0][1]:
                    last = entry_id
                    if int(fields.get(b"n", -1)) != expect:
                        raise _Restart  # trimmed under us: the stream cannot be replayed
                    expect += 1
                    data = fields.get(b"d")
                    if data:
                        for chunk in decode_chunks(data):
                            yield chunk
                    if b"e" in fields:
                        return
                    if b"x" in fields:
                        raise decode_error(fields[b"x"])
                    if b"a" in fields:
                        raise _Restart
                continue
            if block is None:
                raise _Restart  # the last look found no end: the leader is gone
            try:
                value = await self.state.run(lambda r: r.get(flight_key))
            except SharedUnavailable:
                raise _Restart from None
            if value not in alive:
                block = None  # one last read, for an end written just before the key changed

    async def _read(self, stream: str, last: Any, block: int | None) -> Any:
        try:
            return await self.state.run(lambda r: r.xread({stream: last}, block=block))
        except SharedUnavailable:
            raise _Restart from None

    async def close(self, timeout: float = 2.0) -> None:
        """Give the publishers up to ``timeout`` s to write their last entries (the end, the
        window) before the pool closes; call it after the LLM transports are closed."""
        if self._publishing:
            await asyncio.wait(list(self._publishing), timeout=timeout)

    # -- figures -------------------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """:meth:`RequestDeduplicator.get_stats`, counting callers that followed another process
        or its window as followers and window hits, plus the shared figures."""
        stats = super().get_stats()
        stats["leaders"] -= self._as_follower + self._as_window
        stats["followers"] += self._as_follower
        stats["window_hits"] += self._as_window
        saved = stats["followers"] + stats["window_hits"]
        stats["saved_calls"] = saved
        stats["dedup_ratio"] = saved / stats["requests"] if stats["requests"] else 0.0
        stats["shared"] = self.state.is_up
        stats["remote_followers"] = self._as_follower
        stats["remote_window_hits"] = self._as_window
        stats["reruns"] = self._reruns
        stats["reruns_diverged"] = self._diverged
        return stats


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
