"""History, summaries, cooldown and channel choices in Redis (real redis-server); SharedState's
start error. Several SharedState instances stand for several processes; a fresh one for a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from _redis import RedisServer, free_port, running_redis
from _shared import close_all, eventually, prefix, states

from bot.shared import (
    SharedChoices,
    SharedCooldown,
    SharedHistory,
    SharedState,
    SharedStateError,
    SharedSummaries,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
async def procs(redis_server: RedisServer) -> AsyncIterator[list[SharedState]]:
    items = await states(redis_server.url, 2, key_prefix=prefix())
    yield items
    await close_all(items)


def history(state: SharedState, limit: int = 6) -> SharedHistory:
    return SharedHistory(state, 100, limit, summaries=SharedSummaries(state, 100))


# -- start ---------------------------------------------------------------------------------------


async def test_unreachable_at_start_is_one_line_without_password() -> None:
    port = free_port()
    with pytest.raises(SharedStateError) as caught:
        await SharedState.connect(f"redis://:s3cret-pw@127.0.0.1:{port}/0", timeout=1.0)
    message = str(caught.value)
    assert "\n" not in message
    assert f"127.0.0.1:{port}" in message and "check that the server runs" in message
    assert "s3cret-pw" not in message


async def test_a_bad_url_is_one_line() -> None:
    with pytest.raises(SharedStateError) as caught:
        await SharedState.connect("http://:pw@127.0.0.1:1/0")
    assert "\n" not in str(caught.value) and "pw@" not in str(caught.value)


# -- history and summaries -----------------------------------------------------------------------


async def test_history_written_by_one_process_is_loaded_after_a_restart(
    redis_server: RedisServer, procs: list[SharedState]
) -> None:
    first = history(procs[0])
    for i in range(4):
        first.add_message("conv", "user", f"q{i}")
        first.add_message("conv", "assistant", f"a{i}")
    assert first.summaries is not None
    first.summaries.set("conv", "they talked")
    await first.close()  # a graceful stop writes what is pending
    # A restarted process (a fresh pool, nothing local) continues the conversation.
    (restarted,) = await states(redis_server.url, 1, key_prefix=procs[0].prefix)
    try:
        again = history(restarted)
        assert "conv" not in again
        await again.load("conv")
        got = again.get_history("conv")
        assert [m["content"] for m in got] == ["q1", "a1", "q2", "a2", "q3", "a3"]  # limit 6
        assert again.summaries is not None and again.summaries.get("conv") == "they talked"
        assert again.get_stats()["shared_loaded"] == 1
    finally:
        await close_all([restarted])


async def test_writes_reach_redis_behind_the_hot_path(procs: list[SharedState]) -> None:
    a, b = history(procs[0]), history(procs[1])
    a.add_message("c1", "user", "hello")
    a.add_message("c1", "assistant", "hi")
    assert await a.writer.flush(5)
    await b.load("c1")
    assert b.get_history("c1") == a.get_history("c1")
    # A trim (a fold into the summary) rewrites the list; a clear deletes it.
    assert a.trim("c1", 1, a.get_history("c1")[0])
    assert await a.writer.flush(5)
    c = history(procs[1])
    await c.load("c1")
    assert [m["content"] for m in c.get_history("c1")] == ["hi"]
    a.clear("c1")
    assert await a.writer.flush(5)
    d = history(procs[1])
    await d.load("c1")
    assert "c1" not in d
    for h in (a, b, c, d):
        await h.close()


async def test_summaries_alone_load_and_clear(procs: list[SharedState]) -> None:
    a, b = SharedSummaries(procs[0]), SharedSummaries(procs[1])
    a.set("s", "summary one")
    assert await a.writer.flush(5)
    await b.load("s")
    assert b.get("s") == "summary one"
    a.clear("s")
    assert await a.writer.flush(5)
    c = SharedSummaries(procs[1])
    await c.load("s")
    assert c.get("s") is None
    for s in (a, b, c):
        await s.close()


async def test_history_ttl_and_bounds_in_redis(procs: list[SharedState]) -> None:
    a = SharedHistory(procs[0], 10, 4, ttl=3600)
    for i in range(10):
        a.add_message("b", "user", f"m{i}")
    assert await a.writer.flush(5)
    key = procs[0].key("h", "b")
    assert await procs[0].client.llen(key) == 4
    assert 0 < await procs[0].client.ttl(key) <= 3600
    await a.close()


# -- cooldown ------------------------------------------------------------------------------------


async def test_cooldown_holds_across_processes(procs: list[SharedState]) -> None:
    a, b = SharedCooldown(procs[0], 1.0), SharedCooldown(procs[1], 1.0)
    assert await a.check(42, 0.0) == 0.0
    left = await b.check(42, 0.0)  # another shard, another process: still cooling down
    assert 0.5 < left <= 1.0
    assert await b.check(43, 0.0) == 0.0  # another user is free
    await asyncio.sleep(1.1)
    assert await b.check(42, 0.0) == 0.0


# -- channel choices -----------------------------------------------------------------------------


async def test_choices_reach_the_other_process_at_once_and_after_a_restart(
    redis_server: RedisServer, procs: list[SharedState]
) -> None:
    a, b = SharedChoices(procs[0]), SharedChoices(procs[1])
    await a.start()
    await b.start()
    a.set("model", 7, "big")
    a.set("persona", 7, "pirate")
    await eventually(lambda: b.get("model", 7) == "big" and b.get("persona", 7) == "pirate", 5)
    a.set("persona", 7, None)
    await eventually(lambda: b.get("persona", 7) is None, 5)
    assert b.applied >= 3
    await a.close()
    await b.close()
    (restarted,) = await states(redis_server.url, 1, key_prefix=procs[0].prefix)
    try:
        c = SharedChoices(restarted)
        await c.start()
        assert (c.get("model", 7), c.get("persona", 7)) == ("big", None)
        await c.close()
    finally:
        await close_all([restarted])
