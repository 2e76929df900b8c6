from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

from bot.delivery import EMPTY_ANSWER, deliver


class ListSink:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.calls: list[tuple[str, float]] = []
        self.typing_calls = 0

    async def send(self, content: str) -> int:
        self.messages.append(content)
        self.calls.append(("send", asyncio.get_running_loop().time()))
        return len(self.messages) - 1

    async def edit(self, handle: Any, content: str) -> None:
        self.messages[handle] = content
        self.calls.append(("edit", asyncio.get_running_loop().time()))

    async def typing(self) -> None:
        self.typing_calls += 1


async def chunks(parts: list[str], *, first: float = 0.0, gap: float = 0.0) -> AsyncIterator[str]:
    await asyncio.sleep(first)
    for part in parts:
        yield part
        await asyncio.sleep(gap)


async def failing(after: list[str]) -> AsyncIterator[str]:
    for part in after:
        yield part
    raise RuntimeError("boom")


FAST = {"first_window": 0.3, "edit_interval": 0.3, "typing_after": 0.15}


async def test_fast_answer_is_one_message_no_edit_no_typing() -> None:
    sink = ListSink()
    result = await deliver(chunks(["Hello", ", ", "world"]), sink, **FAST)
    assert sink.messages == ["Hello, world"]
    assert [c[0] for c in sink.calls] == ["send"]
    assert sink.typing_calls == 0
    assert result.parts == 1 and result.edits == 0 and not result.streamed


async def test_slow_first_token_shows_typing() -> None:
    sink = ListSink()
    await deliver(chunks(["late"], first=0.25), sink, **FAST)
    assert sink.typing_calls == 1
    assert sink.messages == ["late"]


async def test_long_answer_is_posted_then_edited_at_most_once_per_interval() -> None:
    sink = ListSink()
    words = [f"w{i} " for i in range(40)]
    result = await deliver(chunks(words, gap=0.03), sink, **FAST)  # ~1.2 s of streaming
    assert result.streamed
    assert sink.messages == ["".join(words)]
    kinds = [c[0] for c in sink.calls]
    assert kinds[0] == "send" and kinds.count("send") == 1 and kinds.count("edit") >= 2
    times = [t for _, t in sink.calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Every edit, the final one included, waits out the interval.
    assert all(g >= 0.3 * 0.9 for g in gaps)


async def test_streamed_answer_over_the_limit_becomes_several_messages() -> None:
    sink = ListSink()
    lines = [f"line {i:04d} " + "y" * 60 + "\n" for i in range(80)]  # ~5.6k chars
    await deliver(chunks(lines, gap=0.01), sink, **FAST)
    assert len(sink.messages) == 3
    assert all(len(m) <= 2000 for m in sink.messages)
    assert "\n".join(sink.messages) == "".join(lines)


async def test_error_is_returned_with_the_partial_text() -> None:
    sink = ListSink()
    result = await deliver(failing(["partial "]), sink, **FAST)
    assert isinstance(result.error, RuntimeError)
    assert sink.messages == ["partial "]


async def test_error_before_any_text_sends_nothing() -> None:
    sink = ListSink()
    result = await deliver(failing([]), sink, **FAST)
    assert isinstance(result.error, RuntimeError)
    assert sink.messages == []


async def test_empty_answer_says_so() -> None:
    sink = ListSink()
    await deliver(chunks([]), sink, **FAST)
    assert sink.messages == [EMPTY_ANSWER]


async def test_cancel_stops_the_stream() -> None:
    sink = ListSink()
    task = asyncio.create_task(deliver(chunks(["a"] * 100, gap=0.05), sink, **FAST))
    await asyncio.sleep(0.2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
