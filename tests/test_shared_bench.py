"""botctl.bench.redis on a real redis-server, at a tiny size: the figures are there and the counts
hold (upstream calls = distinct keys across two processes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _redis import RedisServer, running_redis

from botctl.bench.redis import burst_calls, flights_cpu, ops_per_message

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


async def test_bench_functions_at_a_tiny_size(redis_server: RedisServer) -> None:
    cpu = await flights_cpu(redis_server.url, requests=20, rounds=1, concurrency=10)
    assert set(cpu["client_cpu_us_per_request"]) == {
        "local",
        "shared_leader",
        "shared_pair",
        "shared_window",
        "follower",
    }
    assert cpu["client_cpu_us_per_request"]["shared_leader"] > 0
    ops = await ops_per_message(redis_server.url, messages=10, concurrency=5)
    known = ops["leader_known_conversation"]
    # cooldown SET, claim SET, the publisher's XADD + EVAL, the history's RPUSH/LTRIM/EXPIRE
    assert known["by_command"]["xadd"] == 1.0 and known["by_command"]["rpush"] == 1.0
    assert "lrange" not in known["by_command"]  # a conversation this process has: no load
    assert ops["window_replay"]["by_command"]["xread"] == 1.0
    burst = await burst_calls(redis_server.url, requests=60)
    assert burst["upstream_calls_two_processes"] == burst["distinct_keys"]
    assert burst["upstream_calls_one_process"] == burst["distinct_keys"]
