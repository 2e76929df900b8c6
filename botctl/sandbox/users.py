"""Simulated users: people who mention the bot, sometimes asking the same thing at the same moment.

:class:`TrafficGenerator` posts mentions of the bot at ``rate`` messages per second (Poisson
arrivals, reproducible from ``seed``) in the sandbox guild's channels, from users taken in a shuffled
round so each one speaks as rarely as the rate allows (the bot has a per-user cooldown).

A share ``duplicate_ratio`` of the messages repeat a question another user is asking at that very
moment: a *burst* of 2-4 identical questions from different users, all posted at once. The bot's LLM
request is keyed on the system prompt, the channel's history and the text, so identical questions
only make identical requests when their channels' histories are identical too: each message of a
burst goes to a *fresh* channel (announced to the bot with CHANNEL_CREATE first), where the history
is empty, and deleted (CHANNEL_DELETE) two minutes later, so a long run keeps a bounded number of
channels. Single questions go to the guild's regular channels, whose histories grow.

The users read the bot's replies (the server's records of its sends and edits) and measure, per
question, the time to the first part of the reply and to the last send or edit of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from array import array
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

from bot.percentile import percentile
from botctl.sandbox.discord_server.recorder import Listener, RecordedEdit, RecordedMessage
from botctl.sandbox.plan import (
    DEFAULT_QUESTIONS,
    MAX_DUPLICATE_RATIO,
    Burst,
    burst_shape,
    plan_counts,
    plan_traffic,
)

__all__ = [  # the plan's names too: users.py was their home before plan.py
    "DEFAULT_QUESTIONS",
    "MAX_DUPLICATE_RATIO",
    "Burst",
    "TrafficGenerator",
    "TrafficTarget",
    "burst_shape",
    "plan_counts",
    "plan_traffic",
]

# Questions older than this are settled into latency arrays, so a long run keeps little per message.
ASK_HORIZON = 120.0
# A burst's fresh channels are deleted this long after the burst: answered by then, and a long run
# then keeps a bounded number of channels (on both sides: the bot's client caches every channel).
FRESH_CHANNEL_TTL = ASK_HORIZON
_COMPACT_EVERY = 1024


class TrafficTarget(Protocol):
    """What the simulated users need of the server (``DiscordServer`` is one)."""

    @property
    def user_ids(self) -> Sequence[str]: ...

    @property
    def guild_channel_ids(self) -> Sequence[str]: ...

    def post_message(self, channel_id: str | int, user_id: str | int, content: str) -> str: ...

    def create_channel(self) -> str: ...

    def delete_channel(self, channel_id: str | int) -> bool: ...

    def add_listener(self, listener: Listener) -> None: ...

    def remove_listener(self, listener: Listener) -> None: ...

    async def flush(self, timeout: float = ...) -> None: ...


class _Ask:
    __slots__ = ("first", "last", "posted")

    def __init__(self, posted: float) -> None:
        self.posted = posted
        self.first: float | None = None
        self.last: float | None = None


class TrafficGenerator:
    """Simulated users posting mentions of the bot through ``server`` (same event loop)."""

    def __init__(
        self,
        server: TrafficTarget,
        *,
        rate: float = 5.0,
        duplicate_ratio: float = 0.3,
        seed: int = 0,
        questions: Sequence[str] | None = None,
        max_messages: int | None = None,
    ) -> None:
        self.server = server
        self.rate = float(rate)
        self.duplicate_ratio = float(duplicate_ratio)
        self.seed = seed
        self.questions: tuple[str, ...] = tuple(questions) if questions else DEFAULT_QUESTIONS
        if max_messages is not None and max_messages < 0:
            raise ValueError("max_messages must not be negative")
        self.max_messages = max_messages
        # Validates rate and ratio now rather than in the task.
        self._plan = plan_traffic(
            seed=seed,
            rate=self.rate,
            duplicate_ratio=self.duplicate_ratio,
            questions=self.questions,
        )
        # Who speaks where comes from its own stream, so the plan does not depend on the guild.
        self._pick = random.Random(seed * 1_000_003 + 7)
        self._channels = list(server.guild_channel_ids)
        self._round: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._asks: dict[str, _Ask] = {}
        self._fresh: deque[tuple[float, list[str]]] = deque()  # (posted, channels) per burst
        self._first_ms: array[float] = array("d")
        self._last_ms: array[float] = array("d")
        self.messages_sent = 0
        self.duplicates_sent = 0
        self.bursts = 0
        self.fresh_channels = 0
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._listening = False

    def configured(
        self,
        *,
        rate: float | None = None,
        duplicate_ratio: float | None = None,
        seed: int | None = None,
        questions: Sequence[str] | None = None,
        max_messages: int | None = None,
    ) -> TrafficGenerator:
        """A new generator on the same server: these parameters, this one's for those not given."""
        return TrafficGenerator(
            self.server,
            rate=self.rate if rate is None else float(rate),
            duplicate_ratio=self.duplicate_ratio
            if duplicate_ratio is None
            else float(duplicate_ratio),
            seed=self.seed if seed is None else int(seed),
            questions=[str(q) for q in questions] if questions else self.questions,
            max_messages=None if max_messages is None else int(max_messages),
        )

    # ------------------------------------------------------------------ control

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start posting (on the running loop). Starting a running generator does nothing."""
        if self.running:
            return
        if not self._listening:
            self.server.add_listener(self._on_bot_message)
            self._listening = True
        self.started_at = time.monotonic()
        self.stopped_at = None
        self._task = asyncio.create_task(self._run(), name="sandbox-traffic")

    async def stop(self) -> None:
        """Stop posting; return once everything posted has been written to the bot's websocket.

        Replies that arrive later are still read and counted.
        """
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await self.server.flush(timeout=10.0)

    async def wait_finished(self, timeout: float) -> None:
        """Until ``max_messages`` have been posted (``TimeoutError`` after ``timeout``)."""
        task = self._task
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), timeout)

    def close(self) -> None:
        """Stop reading replies (call after :meth:`stop`)."""
        if self._listening:
            self.server.remove_listener(self._on_bot_message)
            self._listening = False

    # ------------------------------------------------------------------ posting

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        limit = self.max_messages
        try:
            for burst in self._plan:
                if limit is not None and self.messages_sent >= limit:
                    break
                next_at += burst.delay
                wait = next_at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                size = burst.size if limit is None else min(burst.size, limit - self.messages_sent)
                self._post(burst.question, size)
        finally:
            self.stopped_at = time.monotonic()

    def _next_user(self, taken: set[str]) -> str:
        users = self.server.user_ids
        for _ in range(2 * len(users) + 1):
            if not self._round:
                self._round = list(users)
                self._pick.shuffle(self._round)
            user = self._round.pop()
            if user not in taken or len(taken) >= len(users):
                return user
            self._round.insert(0, user)
        return users[0]

    def _post(self, question: str, size: int) -> None:
        server = self.server
        now = time.monotonic()
        if size <= 1:
            user = self._next_user(set())
            channel = self._pick.choice(self._channels)
            self._asks[server.post_message(channel, user, question)] = _Ask(now)
            size = 1
        else:
            self.bursts += 1
            taken: set[str] = set()
            while self._fresh and self._fresh[0][0] <= now - FRESH_CHANNEL_TTL:
                for old in self._fresh.popleft()[1]:
                    server.delete_channel(old)
            # All channels first, so every CHANNEL_CREATE reaches the bot before the questions.
            channels = [server.create_channel() for _ in range(size)]
            self._fresh.append((now, channels))
            self.fresh_channels += size
            for channel in channels:
                user = self._next_user(taken)
                taken.add(user)
                self._asks[server.post_message(channel, user, question)] = _Ask(now)
            self.duplicates_sent += size - 1
        self.messages_sent += size
        if self.messages_sent % _COMPACT_EVERY < size:
            self._compact(now - ASK_HORIZON)

    def _compact(self, horizon: float) -> None:
        """Move questions posted before ``horizon`` out of the dict, keeping only their latencies."""
        asks = self._asks
        while asks:
            mid = next(iter(asks))
            ask = asks[mid]
            if ask.posted > horizon:
                break
            del asks[mid]
            if ask.first is not None and ask.last is not None:
                self._first_ms.append((ask.first - ask.posted) * 1000.0)
                self._last_ms.append((ask.last - ask.posted) * 1000.0)

    # ------------------------------------------------------------------ reading replies

    def _on_bot_message(self, message: RecordedMessage, edit: RecordedEdit | None) -> None:
        reply_to = message.reply_to
        if reply_to is None:
            return
        ask = self._asks.get(reply_to)
        if ask is None:
            return
        at = message.at if edit is None else edit.at
        if ask.first is None:
            ask.first = at
        if ask.last is None or at > ask.last:
            ask.last = at

    def stats(self) -> dict[str, Any]:
        """Counts and the users' view of reply latency (ms, nearest-rank percentiles)."""
        first: list[float] = self._first_ms.tolist()
        last: list[float] = self._last_ms.tolist()
        for ask in self._asks.values():
            if ask.first is not None and ask.last is not None:
                first.append((ask.first - ask.posted) * 1000.0)
                last.append((ask.last - ask.posted) * 1000.0)
        first.sort()
        last.sort()
        end = self.stopped_at if self.stopped_at is not None else time.monotonic()
        elapsed = end - self.started_at if self.started_at is not None else 0.0
        return {
            "running": self.running,
            "rate": self.rate,
            "duplicate_ratio": self.duplicate_ratio,
            "seed": self.seed,
            "messages_sent": self.messages_sent,
            "duplicates_sent": self.duplicates_sent,
            "bursts": self.bursts,
            "fresh_channels": self.fresh_channels,
            "replies_received": len(first),
            "unanswered": self.messages_sent - len(first),
            "elapsed_s": round(elapsed, 3),
            "first_reply_p50_ms": percentile(first, 50),
            "first_reply_p95_ms": percentile(first, 95),
            "first_reply_p99_ms": percentile(first, 99),
            "last_reply_p50_ms": percentile(last, 50),
            "last_reply_p95_ms": percentile(last, 95),
            "last_reply_p99_ms": percentile(last, 99),
        }
