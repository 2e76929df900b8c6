"""How a streamed answer reaches a chat: the timing policy, free of any chat transport.

Each REST call costs throughput (FIELD-NOTES: a typing call or a placeholder-then-edit on a fast answer
costs about a fifth of it), so:

- an answer complete within ``first_window`` (1 s) of its first token goes out as plain messages, with
  no placeholder, no edit and no typing call;
- a longer one is posted once its first second of text exists, then the last message is edited at most
  once per ``edit_interval`` (1 s) as text arrives; a part that fills up is left as it is and the next
  part is sent as a new message (the split is prefix-stable, see :mod:`bot.splitter`);
- the typing indicator is sent only when the first token is slower than ``typing_after`` (0.5 s), and
  renewed every 8 s while the wait goes on (Discord shows it for about 10 s).

The transport is a :class:`ReplySink`; the Discord front end implements it for messages and for
slash-command interactions, and tests implement it with a list.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.splitter import DISCORD_LIMIT, split_message

TYPING_RENEW = 8.0
EMPTY_ANSWER = "(the model returned an empty answer)"


class ReplySink(Protocol):
    """Where a reply's messages go."""

    async def send(self, content: str) -> Any:
        """Post a new message; returns a handle that :meth:`edit` accepts."""

    async def edit(self, handle: Any, content: str) -> None:
        """Replace the content of a message posted by :meth:`send`."""

    async def typing(self) -> None:
        """Show the typing indicator (once; it fades by itself)."""


@dataclass(slots=True)
class Delivery:
    """What a delivery did: the text sent, how many messages and edits, and the error if any."""

    text: str = ""
    parts: int = 0
    edits: int = 0
    typing_calls: int = 0
    error: BaseException | None = None
    streamed: bool = False
    first_token_s: float | None = None
    sent: list[tuple[Any, str]] = field(default_factory=list)

    @property
    def chars(self) -> int:
        return len(self.text)


class _Pump:
    """Reads the answer in its own task, so waiting for it can time out without cancelling it."""

    def __init__(self, deltas: AsyncIterator[str], clock: Callable[[], float]) -> None:
        self.chunks: list[str] = []
        self.done = False
        self.error: BaseException | None = None
        self.first_token_at: float | None = None
        self.changed = asyncio.Event()
        self._clock = clock
        self._task = asyncio.create_task(self._run(deltas))

    async def _run(self, deltas: AsyncIterator[str]) -> None:
        try:
            async for delta in deltas:
                if not delta:
                    continue
                if self.first_token_at is None:
                    self.first_token_at = self._clock()
                self.chunks.append(delta)
                self.changed.set()
        except Exception as exc:  # handed to the caller, who turns it into a reply
            self.error = exc
        finally:
            self.done = True
            self.changed.set()

    @property
    def text(self) -> str:
        if len(self.chunks) > 1:
            self.chunks[:] = ["".join(self.chunks)]
        return self.chunks[0] if self.chunks else ""

    async def wait(self, deadline: float | None) -> None:
        """Wait for the next change, or until ``deadline`` (clock time) passes."""
        self.changed.clear()
        if self.done:
            return
        timeout = None if deadline is None else max(0.0, deadline - self._clock())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)

    async def cancel(self) -> None:
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def deliver(
    deltas: AsyncIterator[str],
    sink: ReplySink,
    *,
    first_window: float = 1.0,
    edit_interval: float = 1.0,
    typing_after: float = 0.5,
    limit: int = DISCORD_LIMIT,
    clock: Callable[[], float] = time.monotonic,
) -> Delivery:
    """Stream ``deltas`` into ``sink`` under the policy above. Errors come back in ``.error``."""
    result = Delivery()
    started = clock()
    pump = _Pump(deltas, clock)
    try:
        # Until the first token: typing only if it is slow to come.
        next_typing = started + typing_after
        while pump.first_token_at is None and not pump.done:
            await pump.wait(next_typing)
            if pump.first_token_at is None and not pump.done and clock() >= next_typing:
                # A hint only: a refused typing call (a 5xx, a 429 given up) must not cost the answer.
                with contextlib.suppress(Exception):
                    await sink.typing()
                    result.typing_calls += 1
                next_typing = clock() + TYPING_RENEW
        if pump.first_token_at is not None:
            result.first_token_s = pump.first_token_at - started
            # The first second of text: if the answer ends within it, it goes out whole.
            deadline = pump.first_token_at + first_window
            while not pump.done and clock() < deadline:
                await pump.wait(deadline)
        if not pump.done:
            result.streamed = True
            await _sync(sink, pump.text, result, limit)
            last_sync = clock()
            while not pump.done:
                await pump.wait(last_sync + edit_interval)
                if not pump.done and clock() - last_sync >= edit_interval:
                    await _sync(sink, pump.text, result, limit)
                    last_sync = clock()
            # The final edit keeps the pace too: edits stay at most one per interval.
            await asyncio.sleep(max(0.0, last_sync + edit_interval - clock()))
        result.error = pump.error
        text = pump.text
        if not text.strip() and pump.error is None:
            text = EMPTY_ANSWER
        await _sync(sink, text, result, limit)
    finally:
        await pump.cancel()
    return result


async def _sync(sink: ReplySink, text: str, result: Delivery, limit: int) -> None:
    """Make the messages sent so far show ``text``: edit what changed, send what is new."""
    parts = split_message(text, limit)
    for index, part in enumerate(parts):
        if index < len(result.sent):
            handle, shown = result.sent[index]
            if shown != part:
                await sink.edit(handle, part)
                result.sent[index] = (handle, part)
                result.edits += 1
        else:
            handle = await sink.send(part)
            result.sent.append((handle, part))
            result.parts += 1
    result.text = text
