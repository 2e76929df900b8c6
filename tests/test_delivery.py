from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

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
    # The intermediate edits wait out the interval; the final one goes when the answer ends.
    assert all(g >= 0.3 * 0.9 for g in gaps[:-1])


class StepClock:
    """A clock the answer moves forward itself: timing decisions without wall-clock waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_final_text_is_written_as_soon_as_the_answer_ends() -> None:
    clock = StepClock()
    sink = ListSink()
    stamps: list[tuple[str, float]] = []
    sink.send = _stamped(sink.send, "send", clock, stamps)  # type: ignore[method-assign]
    sink.edit = _stamped(sink.edit, "edit", clock, stamps)  # type: ignore[method-assign]

    async def answer() -> AsyncIterator[str]:
        for at, text in [
            (0.0, "a "),
            (0.6, "b "),
            (1.1, "c "),
            (1.4, "d "),
            (2.2, "e "),
            (2.3, "f "),
        ]:
            clock.now = at
            yield text
            await asyncio.sleep(0)
        clock.now = 2.4  # the answer ends 0.2 s after the edit at 2.2

    result = await deliver(answer(), sink, first_window=1.0, edit_interval=1.0, clock=clock)
    assert sink.messages == ["a b c d e f "]
    # Posted at 1.1 (its first second of text), edited at 2.2 (a second later), and the final
    # text at 2.4: when the answer ended, not a pacing interval after the last edit.
    assert stamps == [("send", 1.1), ("edit", 2.2), ("edit", 2.4)]
    assert result.edits == 2 and result.streamed


def _stamped(call: Any, kind: str, clock: StepClock, stamps: list[tuple[str, float]]) -> Any:
    async def wrapped(*args: Any) -> Any:
        stamps.append((kind, clock.now))
        return await call(*args)

    return wrapped


async def test_a_refused_send_is_the_callers_not_an_answer_error() -> None:
    class Refusing(ListSink):
        async def edit(self, handle: Any, content: str) -> None:
            raise OSError("refused")

    sink = Refusing()
    words = [f"w{i} " for i in range(30)]
    try:
        await deliver(chunks(words, gap=0.03), sink, **FAST)
    except OSError as exc:
        assert str(exc) == "refused"
    else:
        raise AssertionError("the sink's failure was swallowed")


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


async def test_intermediate_edits_stand_aside_when_the_channel_has_no_spare_writes() -> None:
    class Crowded(ListSink):
        def spare(self) -> bool:
            return False

    sink = Crowded()
    words = [f"w{i} " for i in range(40)]
    result = await deliver(chunks(words, gap=0.03), sink, **FAST)  # ~1.2 s of streaming
    # Posted once its first window of text existed, no edit in between, the final text at the end.
    assert [c[0] for c in sink.calls] == ["send", "edit"]
    assert sink.messages == ["".join(words)] and result.edits == 1


def test_the_write_budget_keeps_room_for_the_final_text() -> None:
    from bot.frontend.sinks import WriteBudget

    now = [0.0]
    budget = WriteBudget(clock=lambda: now[0])
    for _ in range(2):
        budget.record(7, "edit")
    assert budget.spare(7)  # 2 of 5 used: an intermediate edit may go
    budget.record(7, "edit")
    assert not budget.spare(7)  # 3 used: the last 2 are kept for the final text and the next post
    assert budget.spare(8)  # another channel has its own bucket
    budget.record(7, "send")
    now[0] = 5.1  # the window has passed
    assert budget.spare(7)


async def test_paced_writes_wait_for_the_channel_window_and_the_global_rate(
    monkeypatch: Any,
) -> None:
    from bot.frontend import sinks

    now = [0.0]
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:  # time moves only when the budget waits
        waits.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(sinks.asyncio, "sleep", fake_sleep)
    budget = sinks.WriteBudget(clock=lambda: now[0])

    async def write(channel: int) -> None:
        await budget.acquire(channel, "send")
        budget.release(channel, "send")  # Discord answered at once

    for _ in range(5):
        await write(7)
    # Five posts in one channel go at the global rate only: 45 a second.
    assert now[0] < 0.1 and len(waits) == 4
    await write(7)  # the sixth waits for the first to leave the 5 s window
    assert now[0] >= 5.0
    before = now[0]
    await write(8)  # another channel is not held by channel 7's window
    assert now[0] - before < 0.1
    unpaced = sinks.WriteBudget(clock=lambda: now[0], pacing=False)
    waits.clear()
    for _ in range(20):
        await unpaced.acquire(7, "send")
        unpaced.release(7, "send")
    assert waits == [] and not unpaced.spare(7, "send")  # counted, never held


async def test_a_write_counts_from_when_discord_answered_it(monkeypatch: Any) -> None:
    # discord.py may hold a request back after the budget let it go: counted from its answer,
    # a slow write still fills the window, and writes in flight count as used.
    from bot.frontend import sinks

    now = [0.0]
    budget = sinks.WriteBudget(clock=lambda: now[0])
    released: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds
        if not released and now[0] >= 3.0:  # the first write is answered at t=3
            budget.release(7, "send")
            released.append(now[0])

    monkeypatch.setattr(sinks.asyncio, "sleep", fake_sleep)
    for _ in range(5):
        await budget.acquire(7, "send")  # five in flight, none answered yet
    assert not budget.spare(7, "send")
    started = now[0]
    await budget.acquire(7, "send")  # waits for an answer, then for the window from it
    assert released and now[0] >= released[0] > started  # not before the first answer
    for _ in range(5):
        budget.release(7, "send")
    now[0] += 5.1
    assert budget.spare(7, "send")  # every write answered and aged out: none left in flight


async def test_a_process_of_a_multi_process_bot_paces_its_share_of_the_global_rate(
    monkeypatch: Any,
) -> None:
    # Discord's 50 requests a second are the bot's, whatever runs it: two processes of four
    # shards each take half, so together they stay under the limit.
    from bot.frontend import sinks

    assert sinks.process_share(None, ()) == 1.0
    assert sinks.process_share(4, ()) == 1.0  # all four shards in this process
    assert sinks.process_share(4, (0, 1)) == 0.5
    assert sinks.process_share(3, (2,)) == pytest.approx(1 / 3)

    now = [0.0]

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(sinks.asyncio, "sleep", fake_sleep)

    async def duration(budget: Any) -> float:
        start = now[0]
        for channel in range(46):  # one post in each of 46 channels: the global rate only
            await budget.acquire(channel, "send")
            budget.release(channel, "send")
        return now[0] - start

    whole = await duration(sinks.WriteBudget(clock=lambda: now[0]))
    half = await duration(sinks.WriteBudget(clock=lambda: now[0], share=0.5))
    assert whole == pytest.approx(45 / sinks.WriteBudget.GLOBAL_RATE)
    assert half == pytest.approx(2 * whole)
