"""RequestDeduplicator: singleflight, streamed fan-out with replay, the window, bounds, keys."""

from __future__ import annotations

import asyncio
import gc
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from bot.dedup import FlightCancelledError, RequestDeduplicator, Role
from bot.llm.types import ChatRequest

KEY_FIELDS = ("model", "messages", "options", "format", "tools")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def settle(rounds: int = 5) -> None:
    """Let every ready task run a few steps (no wall-clock wait)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def request(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello"},
        ],
        "options": {"temperature": 0.2, "num_ctx": 4096},
    }
    base.update(overrides)
    return base


async def run(dedup: RequestDeduplicator, key: str, call: Any) -> tuple[Any, Role]:
    """``deduplicate()`` that also says how this caller was served (a flight of one chunk)."""

    async def source() -> AsyncIterator[Any]:
        yield await call()

    subscription = dedup.join(key, source)
    values = [value async for value in subscription]
    return values[0], subscription.role


# -- singleflight ------------------------------------------------------------------------------


async def test_concurrent_identical_calls_make_one_upstream_call() -> None:
    dedup = RequestDeduplicator(window=0)
    calls = 0
    gate = asyncio.Event()

    async def upstream() -> dict[str, str]:
        nonlocal calls
        calls += 1
        await gate.wait()
        return {"answer": "42"}

    tasks = [asyncio.create_task(run(dedup, "k", upstream)) for _ in range(20)]
    await settle()
    assert dedup.get_stats()["pending_requests"] == 1
    gate.set()
    results = await asyncio.gather(*tasks)

    assert calls == 1
    assert [value for value, _ in results] == [{"answer": "42"}] * 20
    roles = [role for _, role in results]
    assert roles.count("leader") == 1 and roles.count("follower") == 19
    stats = dedup.get_stats()
    assert stats["pending_requests"] == 0
    assert (stats["requests"], stats["leaders"], stats["followers"]) == (20, 1, 19)
    assert stats["saved_calls"] == 19
    assert stats["dedup_ratio"] == pytest.approx(19 / 20)


async def test_deduplicate_accepts_a_request_mapping_as_key() -> None:
    dedup = RequestDeduplicator(window=0)
    calls = 0

    async def upstream() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return "ok"

    req = request()
    reordered = dict(reversed(list(req.items())))
    results = await asyncio.gather(
        dedup.deduplicate(req, upstream),
        dedup.deduplicate(reordered, upstream),
        dedup.deduplicate(RequestDeduplicator.make_key(req), upstream),
    )
    assert results == ["ok"] * 3
    assert calls == 1


async def test_different_keys_do_not_share() -> None:
    dedup = RequestDeduplicator(window=0)
    seen: list[str] = []

    def upstream_for(name: str) -> Any:
        async def upstream() -> str:
            seen.append(name)
            await asyncio.sleep(0)
            return name

        return upstream

    results = await asyncio.gather(
        dedup.deduplicate("a", upstream_for("a")), dedup.deduplicate("b", upstream_for("b"))
    )
    assert results == ["a", "b"]
    assert sorted(seen) == ["a", "b"]


async def test_error_is_shared_by_the_flight_and_never_reused() -> None:
    dedup = RequestDeduplicator(window=60)
    calls = 0
    gate = asyncio.Event()

    async def failing() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise ValueError(f"boom {calls}")

    tasks = [asyncio.create_task(dedup.deduplicate("k", failing)) for _ in range(5)]
    await settle()
    gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == 1
    assert all(isinstance(o, ValueError) and str(o) == "boom 1" for o in outcomes)
    assert dedup.get_stats()["errors"] == 1
    assert dedup.get_stats()["window_entries"] == 0

    # A failed flight is not cached: the next caller goes upstream again.
    with pytest.raises(ValueError, match="boom 2"):
        await dedup.deduplicate("k", failing)
    assert calls == 2
    assert dedup.get_stats()["pending_requests"] == 0


async def test_cancelled_waiter_does_not_cancel_the_flight_for_the_others() -> None:
    dedup = RequestDeduplicator(window=0)
    gate = asyncio.Event()
    upstream_cancelled = False
    calls = 0

    async def upstream() -> str:
        nonlocal upstream_cancelled, calls
        calls += 1
        try:
            await gate.wait()
        except asyncio.CancelledError:
            upstream_cancelled = True
            raise
        return "answer"

    leader = asyncio.create_task(dedup.deduplicate("k", upstream))
    await settle()
    followers = [asyncio.create_task(dedup.deduplicate("k", upstream)) for _ in range(3)]
    await settle()
    # The first caller (the one that started the flight) goes away.
    leader.cancel()
    await settle()
    assert dedup.get_stats()["pending_requests"] == 1
    gate.set()
    assert await asyncio.gather(*followers) == ["answer"] * 3
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert not upstream_cancelled
    assert calls == 1


async def test_all_callers_cancelled_cancels_the_flight() -> None:
    dedup = RequestDeduplicator(window=5)
    started = asyncio.Event()
    upstream_cancelled = asyncio.Event()

    async def upstream() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            upstream_cancelled.set()
            raise
        return "never"

    tasks = [asyncio.create_task(dedup.deduplicate("k", upstream)) for _ in range(3)]
    await asyncio.wait_for(started.wait(), 1)
    for task in tasks:
        task.cancel()
    await asyncio.wait_for(upstream_cancelled.wait(), 1)
    for task in tasks:
        with pytest.raises(asyncio.CancelledError):
            await task
    assert dedup.get_stats()["pending_requests"] == 0

    async def fresh() -> str:
        return "fresh"

    # Nothing of the cancelled flight lingers: the next call is a new leader.
    assert await run(dedup, "k", fresh) == ("fresh", "leader")


async def test_flight_cancelled_from_inside_is_not_a_cancellation_of_the_callers() -> None:
    dedup = RequestDeduplicator(window=0)

    async def upstream() -> str:
        await asyncio.sleep(0)
        raise asyncio.CancelledError

    tasks = [asyncio.create_task(dedup.deduplicate("k", upstream)) for _ in range(2)]
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, FlightCancelledError) for o in outcomes)
    assert dedup.get_stats()["pending_requests"] == 0


# -- the window --------------------------------------------------------------------------------


async def test_window_reuses_a_result_until_it_expires() -> None:
    clock = FakeClock()
    dedup = RequestDeduplicator(window=5.0, clock=clock)
    calls = 0

    async def upstream() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await run(dedup, "k", upstream) == (1, "leader")
    clock.now += 4.9
    assert await run(dedup, "k", upstream) == (1, "window")
    assert calls == 1
    clock.now += 0.2
    assert await run(dedup, "k", upstream) == (2, "leader")
    assert calls == 2
    stats = dedup.get_stats()
    assert stats["window_hits"] == 1 and stats["saved_calls"] == 1
    clock.now += 10
    assert dedup.get_stats()["window_entries"] == 0


async def test_window_zero_means_in_flight_only() -> None:
    dedup = RequestDeduplicator(window=0)
    calls = 0

    async def upstream() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await dedup.deduplicate("k", upstream) == 1
    assert await dedup.deduplicate("k", upstream) == 2
    assert dedup.get_stats()["window_entries"] == 0


async def test_clear_forgets_reusable_results() -> None:
    dedup = RequestDeduplicator(window=60)
    calls = 0

    async def upstream() -> int:
        nonlocal calls
        calls += 1
        return calls

    await dedup.deduplicate("k", upstream)
    dedup.clear()
    assert dedup.get_stats()["window_entries"] == 0
    assert await dedup.deduplicate("k", upstream) == 2


async def test_maps_stay_bounded_under_many_distinct_keys() -> None:
    dedup = RequestDeduplicator(window=60, max_window_entries=100, max_window_bytes=1 << 30)

    async def upstream() -> str:
        return "x"

    for i in range(10_000):
        await dedup.deduplicate(f"key-{i}", upstream)
    stats = dedup.get_stats()
    assert stats["window_entries"] == 100
    assert stats["pending_requests"] == 0
    assert stats["leaders"] == 10_000
    # The newest entries are the ones kept.
    assert await run(dedup, "key-9999", upstream) == ("x", "window")
    assert (await run(dedup, "key-0", upstream))[1] == "leader"


async def test_window_byte_cap_evicts_and_skips_oversized_results() -> None:
    dedup = RequestDeduplicator(window=60, max_window_entries=10_000, max_window_bytes=20_000)

    def payload(size: int) -> Any:
        async def upstream() -> str:
            return "x" * size

        return upstream

    for i in range(200):
        await dedup.deduplicate(f"k{i}", payload(1000))
    stats = dedup.get_stats()
    assert 0 < stats["window_entries"] <= 20
    assert stats["window_bytes"] <= 20_000
    await dedup.deduplicate("huge", payload(50_000))
    assert (await run(dedup, "huge", payload(50_000)))[1] == "leader"


# -- streaming ---------------------------------------------------------------------------------


async def consume(stream: AsyncIterator[Any]) -> list[Any]:
    return [chunk async for chunk in stream]


async def test_stream_fan_out_replays_to_late_subscribers() -> None:
    dedup = RequestDeduplicator(window=5)
    iterations = 0
    release = asyncio.Event()

    async def source() -> AsyncIterator[dict[str, int]]:
        nonlocal iterations
        iterations += 1
        for i in range(3):
            yield {"i": i}
        await release.wait()
        for i in range(3, 6):
            yield {"i": i}

    early = [dedup.join("k", source) for _ in range(10)]
    assert [s.role for s in early].count("leader") == 1
    early_tasks = [asyncio.create_task(consume(s)) for s in early]
    await settle(10)
    assert dedup.get_stats()["pending_requests"] == 1

    late = [dedup.join("k", source) for _ in range(10)]
    assert {s.role for s in late} == {"follower"}
    late_tasks = [asyncio.create_task(consume(s)) for s in late]
    release.set()
    results = await asyncio.wait_for(asyncio.gather(*early_tasks, *late_tasks), 2)

    expected = [{"i": i} for i in range(6)]
    assert all(result == expected for result in results)
    assert iterations == 1

    # A window hit replays the stored chunks at once.
    hit = dedup.join("k", source)
    assert hit.role == "window"
    assert await consume(hit) == expected
    assert iterations == 1
    stats = dedup.get_stats()
    assert stats["pending_requests"] == 0
    assert (stats["leaders"], stats["followers"], stats["window_hits"]) == (1, 19, 1)


async def test_stream_error_reaches_every_subscriber_after_the_chunks_before_it() -> None:
    dedup = RequestDeduplicator(window=60)
    iterations = 0

    async def source() -> AsyncIterator[str]:
        nonlocal iterations
        iterations += 1
        yield "a"
        yield "b"
        await asyncio.sleep(0)
        raise ConnectionError("stream broke")

    async def collect(stream: AsyncIterator[str]) -> tuple[list[str], BaseException | None]:
        got: list[str] = []
        try:
            async for chunk in stream:
                got.append(chunk)
        except ConnectionError as exc:
            return got, exc
        return got, None

    subs = [dedup.join("k", source) for _ in range(4)]
    results = await asyncio.wait_for(asyncio.gather(*(collect(s) for s in subs)), 2)
    assert iterations == 1
    for got, exc in results:
        assert got == ["a", "b"]
        assert isinstance(exc, ConnectionError)
    assert dedup.get_stats()["errors"] == 1

    # Errors are never reused: a new stream iterates the source again.
    again = dedup.join("k", source)
    assert again.role == "leader"
    got, exc = await collect(again)
    assert got == ["a", "b"] and exc is not None
    assert iterations == 2


async def test_stream_cancelled_when_every_subscriber_leaves() -> None:
    dedup = RequestDeduplicator(window=5)
    source_closed = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        try:
            yield 1
            await asyncio.Event().wait()
            yield 2
        finally:
            source_closed.set()

    a = dedup.join("k", source)
    b = dedup.join("k", source)
    assert await a.__anext__() == 1
    await a.aclose()
    await settle()
    assert not source_closed.is_set()  # b still listens
    assert await b.__anext__() == 1
    await b.aclose()
    await asyncio.wait_for(source_closed.wait(), 1)
    await settle()
    stats = dedup.get_stats()
    assert stats["pending_requests"] == 0
    assert stats["window_entries"] == 0  # an unfinished stream is never reused


async def test_stream_abandoned_by_break_is_cancelled() -> None:
    dedup = RequestDeduplicator(window=0)
    source_closed = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        try:
            for i in range(1000):
                yield i
                await asyncio.sleep(0)
        finally:
            source_closed.set()

    async for chunk in dedup.join("k", source):
        if chunk == 2:
            break
    gc.collect()
    await asyncio.wait_for(source_closed.wait(), 1)
    await settle()
    assert dedup.get_stats()["pending_requests"] == 0


async def test_stream_subscriber_cancelled_while_waiting_leaves_others_served() -> None:
    dedup = RequestDeduplicator(window=0)
    release = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        yield "first"
        await release.wait()
        yield "second"

    a = dedup.join("k", source)
    b = dedup.join("k", source)
    task_a = asyncio.create_task(consume(a))
    task_b = asyncio.create_task(consume(b))
    await settle()
    task_a.cancel()
    await settle()
    release.set()
    assert await asyncio.wait_for(task_b, 1) == ["first", "second"]
    with pytest.raises(asyncio.CancelledError):
        await task_a


# -- keys --------------------------------------------------------------------------------------


def test_key_ignores_dict_order_and_fields_that_do_not_change_the_answer() -> None:
    a = request()
    b = {
        "options": {"num_ctx": 4096, "temperature": 0.2},
        "stream": True,
        "keep_alive": "5m",
        "messages": [
            {"content": "be brief", "role": "system"},
            {"content": "hello", "role": "user"},
        ],
        "model": "llama3.2",
    }
    key = RequestDeduplicator.make_key(a)
    assert key == RequestDeduplicator.make_key(b)
    assert len(key) == 64 and int(key, 16) >= 0
    # A missing field is the same as an explicit null.
    assert key == RequestDeduplicator.make_key({**a, "format": None, "tools": None})


@pytest.mark.parametrize(
    "change",
    [
        {"model": "llama3.1"},
        {"options": {"temperature": 0.3, "num_ctx": 4096}},
        {"format": "json"},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"messages": [{"role": "user", "content": "hello"}]},
    ],
)
def test_key_differs_when_the_answer_can_differ(change: dict[str, Any]) -> None:
    assert RequestDeduplicator.make_key(request()) != RequestDeduplicator.make_key(
        request(**change)
    )


def test_key_is_sha256_of_the_canonical_subset() -> None:
    req = request(stream=False, tools=[{"type": "function"}])
    subset = {name: req.get(name) for name in KEY_FIELDS}
    expected = hashlib.sha256(orjson.dumps(subset, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert RequestDeduplicator.make_key(req) == expected


def test_stats_start_at_zero() -> None:
    stats = RequestDeduplicator(window=2.5).get_stats()
    assert stats["requests"] == 0 and stats["pending_requests"] == 0
    assert stats["dedup_ratio"] == 0.0
    assert stats["window"] == 2.5
    for name in ("leaders", "followers", "window_hits", "saved_calls", "errors", "window_entries"):
        assert stats[name] == 0


def test_negative_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="window"):
        RequestDeduplicator(window=-1)


def test_the_request_key_covers_protocol_server_model_and_body() -> None:
    from bot.llm import transport_for

    messages = [{"role": "user", "content": "hello"}]

    def key(api: str, url: str, request: ChatRequest) -> str:
        transport = transport_for(api, url)
        return transport.key(transport.payload(request))

    base = key("ollama", "http://a:1", ChatRequest("m", messages))
    assert base == key("ollama", "http://a:1", ChatRequest("m", [dict(m) for m in messages]))
    assert base != key("openai", "http://a:1", ChatRequest("m", messages))
    assert base != key("ollama", "http://b:1", ChatRequest("m", messages))
    assert base != key("ollama", "http://a:1", ChatRequest("m2", messages))
    assert base != key("ollama", "http://a:1", ChatRequest("m", messages, {"temperature": 0}))
