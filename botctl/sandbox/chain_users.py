"""Simulated users who hold conversations in reply chains: every question replies to the bot.

:class:`ReplyChainTraffic` first *builds* ``conversations`` reply chains, one exchange at a time:
a user mentions the bot, then replies to its answer, and so on until the chain holds ``depth``
messages (questions and answers alike) ending with the bot's answer, its *tip*. Then, at ``rate``
messages per second (Poisson arrivals, reproducible from ``seed``), users reply to the tip of a
random conversation: every measured question has the same ``depth`` messages of chain before it,
which the bot already holds in memory (it took the questions and sent the answers itself).

Questions carry a serial number: two replies to one tip with the same text would be one LLM
request, which dedup merges, and the bench compares what a reply costs, not what dedup saves.

Built for the bench (``SandboxConfig.reply_depth``): a run stays under the server's
``MAX_RECORDS`` messages, past which the oldest (the tips) would be pruned and replies to them
would arrive with no ``referenced_message``, as replies to deleted messages do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from botctl.sandbox.discord_server.recorder import RecordedEdit, RecordedMessage
from botctl.sandbox.users import (
    _COMPACT_EVERY,
    ASK_HORIZON,
    TrafficGenerator,
    TrafficTarget,
    _Ask,
)

__all__ = ["ChainTarget", "ReplyChainTraffic"]

log = logging.getLogger("botctl.sandbox.chain_users")

BUILD_TIMEOUT = 30.0  # for one answer while building; a chain that waits longer is dropped
# After the bot's answer is recorded, before replying to it: the bot remembers its answer once its
# send has returned, a moment after the server recorded it.
SETTLE = 0.05


class ChainTarget(TrafficTarget, Protocol):
    def post_message(
        self,
        channel_id: str | int,
        user_id: str | int,
        content: str,
        *,
        reply_to: str | int | None = None,
    ) -> str: ...


class ReplyChainTraffic(TrafficGenerator):
    """Users replying to the tips of ``conversations`` reply chains ``depth`` messages deep."""

    def __init__(
        self,
        server: ChainTarget,
        *,
        depth: int,
        conversations: int | None = None,
        rate: float = 5.0,
        seed: int = 0,
        questions: Sequence[str] | None = None,
        max_messages: int | None = None,
    ) -> None:
        if depth < 2:
            raise ValueError("depth must be at least 2 (a question and the bot's answer)")
        super().__init__(
            server,
            rate=rate,
            duplicate_ratio=0.0,
            seed=seed,
            questions=questions,
            max_messages=max_messages,
        )
        self.target = server
        self.depth = depth
        self.conversations = conversations or 2 * len(self._channels)
        self.preparing = False
        self._tips: list[tuple[str, str]] = []  # (channel, the bot's answer ending the chain)
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self._serial = 0

    def configured(
        self,
        *,
        rate: float | None = None,
        duplicate_ratio: float | None = None,
        seed: int | None = None,
        questions: Sequence[str] | None = None,
        max_messages: int | None = None,
    ) -> ReplyChainTraffic:
        # duplicate_ratio is accepted for the control API's sake: chains never repeat a request.
        return ReplyChainTraffic(
            self.target,
            depth=self.depth,
            conversations=self.conversations,
            rate=self.rate if rate is None else float(rate),
            seed=self.seed if seed is None else int(seed),
            questions=[str(q) for q in questions] if questions else self.questions,
            max_messages=None if max_messages is None else int(max_messages),
        )

    async def _run(self) -> None:
        self.preparing = True
        try:
            await self._build()
        finally:
            self.preparing = False
        if not self._tips:
            log.error("no reply chain could be built: the bot never answered")
            self.stopped_at = time.monotonic()
            return
        self.started_at = time.monotonic()  # the rate, and the figures, count from here
        await super()._run()

    async def _build(self) -> None:
        exchanges = self.depth // 2
        loop = asyncio.get_running_loop()

        async def one(index: int) -> None:
            channel = self._channels[index % len(self._channels)]
            parent: str | None = None
            for turn in range(exchanges):
                question = self.questions[(index + turn) % len(self.questions)]
                text = f"{question} (conversation {index}, turn {turn + 1})"
                user = self._next_user(set())
                mid = self.target.post_message(channel, user, text, reply_to=parent)
                answered: asyncio.Future[str] = loop.create_future()
                self._waiting[mid] = answered
                try:
                    parent = await asyncio.wait_for(answered, BUILD_TIMEOUT)
                except TimeoutError:
                    self._waiting.pop(mid, None)
                    return
                await asyncio.sleep(SETTLE)
            assert parent is not None
            self._tips.append((channel, parent))

        await asyncio.gather(*(one(i) for i in range(self.conversations)))

    def _post(self, question: str, size: int) -> None:
        """One reply to a random conversation's tip (``size`` is always 1: no duplicates)."""
        channel, tip = self._pick.choice(self._tips)
        self._serial += 1
        now = time.monotonic()
        user = self._next_user(set())
        mid = self.target.post_message(channel, user, f"{question} (#{self._serial})", reply_to=tip)
        self._asks[mid] = _Ask(now)
        self.messages_sent += 1
        if self.messages_sent % _COMPACT_EVERY == 0:
            self._compact(now - ASK_HORIZON)

    def _on_bot_message(self, message: RecordedMessage, edit: RecordedEdit | None) -> None:
        if edit is None and message.reply_to is not None:
            waiting = self._waiting.pop(message.reply_to, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(message.id)
                return
        super()._on_bot_message(message, edit)

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        stats.update(
            preparing=self.preparing,
            reply_depth=self.depth,
            conversations=len(self._tips),
        )
        if self.preparing:
            stats["elapsed_s"] = 0.0  # the clock starts with the measured replies
        return stats
