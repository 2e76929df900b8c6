"""SharedFlights against a real redis-server: several SharedState instances in this process stand
for several processes of the bot (test_shared_kill.py kills a real second process)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Iterator

import pytest
from _redis import RedisServer, running_redis
from _shared import Upstream, close_all, collect, expected, prefix, states

from bot.dedup import RequestDeduplicator
from bot.llm.errors import LLMHTTPError, LLMTimeoutError
from bot.shared.flights import RerunDivergedError, SharedFlights
from bot.shared.state import SharedState

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[list[SharedState]]:
    items = await states(redis_server.url, 3, key_prefix=prefix())
    yield items
    await close_all(items)


def flights(state: SharedState, **kwargs: object) -> SharedFlights:
    options: dict[str, object] = {"window": 5.0, "lease": 1.0, "publish_interval": 0.01}
    options.update(kwargs)
    return SharedFlights(state, **options)  # type: ignore[arg-type]


async def test_same_key_at_once_in_two_processes_is_one_call(pair: list[SharedState]) -> None:
    a, b = flights(pair[0]), flights(pair[1])
    up = Upstream(delay=0.05)
    sub_a, sub_b = a.join("k1", up.source), b.join("k1", up.source)
    got_a, got_b = await asyncio.gather(collect(sub_a), collect(sub_b))
    assert up.calls == 1
    assert got_a == got_b == expected(up.chunks)
    assert sorted([sub_a.role, sub_b.role]) == ["follower", "leader"]
    stats = [a.get_stats(), b.get_stats()]
    assert sum(s["leaders"] for s in stats) == 1
    assert sum(s["followers"] for s in stats) == 1
    assert sum(s["saved_calls"] for s in stats) == 1
    assert set(stats[0]) >= set(RequestDeduplicator().get_stats())


async def test_late_joiner_replays_from_the_first_chunk_then_window(
    pair: list[SharedState],
) -> None:
    a, b, c = (flights(s) for s in pair)
    up = Upstream([f"w{i} " for i in range(8)], delay=0.05)
    sub_a = a.join("k2", up.source)
    first = await anext(sub_a)
    await asyncio.sleep(0.2)  # a few chunks are out before the late joiner comes
    sub_b = b.join("k2", up.source)
    got_b = await collect(sub_b)
    got_a = [first, *await collect(sub_a)]
    assert got_a == got_b == expected(up.chunks)
    assert (sub_a.role, sub_b.role) == ("leader", "follower")
    # Within the window, a third process replays the answer without a call.
    sub_c = c.join("k2", up.source)
    assert await collect(sub_c) == expected(up.chunks)
    assert sub_c.role == "window"
    assert up.calls == 1
    assert c.get_stats()["window_hits"] == 1


async def test_window_expires_in_redis(pair: list[SharedState]) -> None:
    a, b = flights(pair[0], window=0.3), flights(pair[1], window=0.3)
    up = Upstream()
    await collect(a.join("k3", up.source))
    await asyncio.sleep(0.5)
    sub = b.join("k3", up.source)
    await collect(sub)
    assert (sub.role, up.calls) == ("leader", 2)


async def test_no_window_is_in_flight_only(pair: list[SharedState]) -> None:
    a, b = flights(pair[0], window=0), flights(pair[1], window=0)
    up = Upstream()
    await collect(a.join("k4", up.source))
    sub = b.join("k4", up.source)
    await collect(sub)
    assert (sub.role, up.calls) == ("leader", 2)


async def test_an_error_is_shared_then_never_reused(pair: list[SharedState]) -> None:
    a, b = flights(pair[0]), flights(pair[1])
    failing = Upstream(
        ["par", "tial"], delay=0.05, error=LLMHTTPError(503, "busy", url="http://u:p@m/v1")
    )
    sub_a, sub_b = a.join("k5", failing.source), b.join("k5", failing.source)
    results = await asyncio.gather(collect(sub_a), collect(sub_b), return_exceptions=True)
    assert failing.calls == 1
    for result in results:
        assert isinstance(result, LLMHTTPError)
        assert (result.status, result.error, result.url) == (503, "busy", "http://m/v1")
    # The next identical request starts afresh, in either process.
    ok = Upstream()
    sub = b.join("k5", ok.source)
    assert await collect(sub) == expected(ok.chunks)
    assert (sub.role, ok.calls) == ("leader", 1)


async def test_timeout_error_keeps_its_fields(pair: list[SharedState]) -> None:
    a, b = flights(pair[0]), flights(pair[1])
    up = Upstream(["x"], delay=0.1, error=LLMTimeoutError("first_byte", 30.0))
    results = await asyncio.gather(
        collect(a.join("k6", up.source)), collect(b.join("k6", up.source)), return_exceptions=True
    )
    assert up.calls == 1
    for result in results:
        assert isinstance(result, LLMTimeoutError)
        assert (result.phase, result.seconds) == ("first_byte", 30.0)


async def test_in_process_followers_cost_no_redis_call(pair: list[SharedState]) -> None:
    a = flights(pair[0])
    up = Upstream(delay=0.02)
    subs = [a.join("k7", up.source) for _ in range(5)]
    got = await asyncio.gather(*(collect(s) for s in subs))
    assert up.calls == 1 and all(g == expected(up.chunks) for g in got)
    assert [s.role for s in subs] == ["leader"] + ["follower"] * 4


async def test_leader_that_gives_up_hands_the_request_to_its_follower(
    pair: list[SharedState],
) -> None:
    a, b = flights(pair[0]), flights(pair[1])
    up = Upstream([f"c{i}" for i in range(10)], delay=0.05)
    sub_a = a.join("k8", up.source)
    await anext(sub_a)
    sub_b = b.join("k8", up.source)
    await asyncio.sleep(0.1)
    await sub_a.aclose()  # the leader's only caller leaves: its flight is cancelled
    got = await collect(sub_b, timeout=5)
    assert got == expected(up.chunks)  # the follower ran it again and skipped what it had shown
    assert up.calls == 2
    assert b.get_stats()["reruns"] == 1


async def test_rerun_that_answers_differently_is_a_clear_error(pair: list[SharedState]) -> None:
    a, b = flights(pair[0]), flights(pair[1])
    first = Upstream([f"c{i}" for i in range(10)], delay=0.05)
    other = Upstream([f"d{i}" for i in range(10)], delay=0.01)
    sub_a = a.join("k9", first.source)
    await anext(sub_a)
    sub_b = b.join("k9", other.source)
    assert await anext(sub_b) == "c0"
    await sub_a.aclose()
    with pytest.raises(RerunDivergedError) as caught:
        await collect(sub_b, timeout=5)
    assert "stopped mid-answer" in caught.value.user_message
    assert b.get_stats()["reruns_diverged"] == 1


async def test_burst_with_30_percent_duplicates_across_two_processes(
    pair: list[SharedState],
) -> None:
    a, b = flights(pair[0]), flights(pair[1])
    rng = random.Random(7)
    distinct = [f"q{i}" for i in range(70)]
    keys = distinct + [rng.choice(distinct) for _ in range(30)]
    rng.shuffle(keys)
    ups = {k: Upstream([k, "!"], delay=0.05) for k in distinct}
    subs = [(a if i % 2 else b).join(k, ups[k].source) for i, k in enumerate(keys)]
    got = await asyncio.gather(*(collect(s) for s in subs))
    assert all(g == expected([k, "!"]) for g, k in zip(got, keys, strict=True))
    assert sum(u.calls for u in ups.values()) == len(set(keys)) == 70
    stats = [a.get_stats(), b.get_stats()]
    assert sum(s["leaders"] for s in stats) == 70
    assert sum(s["saved_calls"] for s in stats) == 30


async def test_redis_down_at_join_is_a_local_flight(
    redis_server: RedisServer, pair: list[SharedState], caplog: pytest.LogCaptureFixture
) -> None:
    a = flights(pair[0])
    redis_server.kill()
    up = Upstream()
    with caplog.at_level(logging.WARNING, logger="bot.shared"):
        assert await collect(a.join("k10", up.source)) == expected(up.chunks)
        assert await collect(a.join("k11", up.source)) == expected(up.chunks)
    assert not pair[0].is_up
    warnings = [
        r for r in caplog.records if r.name == "bot.shared" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    assert a.get_stats()["shared"] is False


async def test_follower_losing_redis_answers_by_itself(
    redis_server: RedisServer, pair: list[SharedState]
) -> None:
    a, b = flights(pair[0]), flights(pair[1])
    up = Upstream([f"c{i}" for i in range(10)], delay=0.05)
    sub_a = a.join("k12", up.source)
    await anext(sub_a)
    sub_b = b.join("k12", up.source)
    assert await anext(sub_b) == "c0"
    redis_server.kill()
    got_b = ["c0", *await collect(sub_b, timeout=5)]
    got_a = ["c0", *await collect(sub_a, timeout=5)]
    assert got_a == got_b == expected(up.chunks)
