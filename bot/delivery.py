"""How a streamed answer reaches a chat: the timing policy, free of any chat transport.

Each REST call costs throughput (measured with discord.py against the sandbox: a typing call or a
placeholder-then-edit on a fast answer costs about a fifth of it), so:

- an answer complete within ``first_window`` (1 s) of its first token goes out as plain messages, with
  no placeholder, no edit and no typing call;
- a longer one is posted once its first second of text exists, then the last message is edited at most
  once per ``edit_interval`` (1 s) as text arrives, and the final text is written as soon as the
  answer ends (not a pacing interval later); a part that fills up is left as it is and the next part
  is sent as a new message (the split is prefix-stable, see :mod:`bot.splitter`);
- the typing indicator is sent only when the first token is slower than ``typing_after`` (0.5 s), and
  renewed every 8 s while the wait goes on (Discord shows it for about 10 s);
- an intermediate edit is skipped (never queued) when the sink says the channel has no spare
  writes: Discord allows 5 message writes per channel per 5 s, and an edit waiting for its turn
  would make the final text late behind stale ones.

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

    # Optional: ``spare() -> bool``, whether an intermediate edit can go now without crowding the
    # channel's rate limit (the first post and the final text always go).


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


async def _keep_typing(sink: ReplySink, result: Delivery) -> None:
    """The typing indicator now and every ``TYPING_RENEW`` s until cancelled (the first token)."""
    while True:
        # A hint only: a refused typing call (a 5xx, a 429 given up) must not cost the answer.
        with contextlib.suppress(Exception):
            await sink.typing()
            result.typing_calls += 1
        await asyncio.sleep(TYPING_RENEW)


async def deliver(
    deltas: AsyncIterator[str],
    sink: ReplySink,
    *,
    first_window: float = 1.0,
    edit_interval: float = 1.0,
    typing_after: float = 0.5,
    limit: int = DISCORD_LIMIT,
    clock: Callable[[], float] = time.monotonic,
    into: Delivery | None = None,
) -> Delivery:
    """Stream ``deltas`` into ``sink`` under the policy above. Errors come back in ``.error``.

    The deltas are read here, in the caller's task: the decisions to post and to edit are taken as
    text arrives, and the final text is written as soon as the deltas end. The typing indicator is a
    timer that starts a task only when the first token is late.

    ``into`` is filled as the delivery goes, for a caller that must know what went out even when
    the delivery is cancelled midway.
    """
    result = into if into is not None else Delivery()
    started = clock()
    loop = asyncio.get_running_loop()
    typing: list[asyncio.Task[None]] = []
    timer = loop.call_later(
        typing_after, lambda: typing.append(loop.create_task(_keep_typing(sink, result)))
    )
    parts: list[str] = []
    first_at: float | None = None
    last_sync: float | None = None  # None: nothing posted yet
    refused: Exception | None = None  # the sink's own failure: the caller's to handle, not a reply
    try:
        async for delta in deltas:
            if not delta:
                continue
            parts.append(delta)
            now = clock()
            if first_at is None:
                first_at = now
                result.first_token_s = now - started
                _stop_typing(timer, typing)
            if last_sync is None:
                if now - first_at < first_window:
                    continue
                result.streamed = True  # the answer outlasts its first second: post, then edit
            elif now - last_sync < edit_interval or not _spare(sink):
                # Skipped, not queued: when the channel's budget of writes is low, a stale edit
                # waiting its turn would only delay the final text behind it.
                continue
            try:
                await _sync(sink, "".join(parts), result, limit)
            except Exception as exc:
                refused = exc
                break
            last_sync = clock()
    except Exception as exc:  # the answer failed: handed to the caller, who turns it into a reply
        result.error = exc
    finally:
        _stop_typing(timer, typing)
        aclose = getattr(deltas, "aclose", None)
        if aclose is not None:
            await aclose()
    if refused is not None:
        raise refused
    text = "".join(parts)
    if not text.strip() and result.error is None:
        text = EMPTY_ANSWER
    await _sync(sink, text, result, limit)
    return result


def _spare(sink: ReplySink) -> bool:
    spare = getattr(sink, "spare", None)
    return True if spare is None else bool(spare())


def _stop_typing(timer: asyncio.TimerHandle, typing: list[asyncio.Task[None]]) -> None:
    timer.cancel()
    for task in typing:
        task.cancel()
    typing.clear()


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
