"""One bot as two shard processes sharing a real Redis, against the sandbox (issue 15).

Two ``botctl run`` processes (shard 0 and 1 of 2, four guilds), a ``redis-server`` on a free port:
the same question asked at once in guilds on different shards makes one LLM call and both users get
the same answer; a restarted process continues a conversation; a user's cooldown holds across
shards. (Losing Redis mid-run and a leader killed mid-stream: ``tests/test_shared_*.py``.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from _faults import Sandbox, sandbox_process, stop_process
from _redis import running_redis

pytestmark = pytest.mark.integration

SHARDS = 2
READY = 60.0


def shard_of(guild_id: str) -> int:
    return (int(guild_id) >> 22) % SHARDS


@contextlib.contextmanager
def shard(sandbox: Sandbox, redis_url: str, i: int, tmp: Path, *extra: str) -> Iterator[Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "OLLAMA_", "BOT_"))}
    env["DISCORD_TOKEN"] = "sandbox-token"
    assert sandbox.llm_url is not None
    args = [sys.executable, "-m", "botctl", "run", "--discord-api", sandbox.api_base]
    args += ["--discord-gateway", sandbox.gateway_url, "--llm-url", sandbox.llm_url]
    args += ["--shard-count", str(SHARDS), "--shard-ids", str(i), "--redis", redis_url]
    args += ["--metrics-file", str(tmp / f"m{i}.jsonl"), "--no-write-pacing", *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        yield proc
    finally:
        stop_process(proc, signal.SIGTERM, 30.0)
        if proc.stderr is not None:
            proc.stderr.close()


def wait_identified(sandbox: Sandbox, count: int) -> None:
    """Until ``count`` IDENTIFYs in all (each shard process identifies once when it starts)."""
    deadline = time.monotonic() + READY
    while sandbox.call("GET", "/stats")["identifies"] < count:
        assert time.monotonic() < deadline, "the shard processes did not connect"
        time.sleep(0.2)
    time.sleep(0.5)  # guilds delivered, ready


def say(sandbox: Sandbox, text: str, channel: str, user: str) -> str:
    data = sandbox.call("POST", "/say", {"content": text, "channel": channel, "user": user})
    return str(data["message_id"])


def reply(sandbox: Sandbox, message_id: str, timeout: float = 30.0) -> str:
    path = f"/wait_reply?message_id={message_id}&timeout={timeout}&settle=0.8"
    return str(sandbox.call("GET", path, timeout=timeout + 10)["content"])


def llm_requests(sandbox: Sandbox) -> list[dict[str, Any]]:
    assert sandbox.llm_url is not None
    with urllib.request.urlopen(f"{sandbox.llm_url}/_sandbox/requests", timeout=10) as response:
        data = orjson.loads(response.read())
    return list(data["requests"] if isinstance(data, dict) else data)


def calls(sandbox: Sandbox) -> int:
    return int(sandbox.call("GET", "/llm")["calls_total"])


def test_two_shard_processes_share_answers_history_and_cooldowns(tmp_path: Path) -> None:
    with (
        running_redis() as redis,
        sandbox_process(
            guilds=4, gateway_shards=SHARDS, channels=8, users=4, llm_latency=0.6
        ) as sandbox,
    ):
        world = sandbox.call("GET", "/world")
        users = [str(u) for u in world["user_ids"]]
        by_shard: dict[int, list[str]] = {0: [], 1: []}
        for guild in world["guilds"]:
            by_shard[shard_of(str(guild["id"]))].extend(str(c) for c in guild["channel_ids"])
        assert by_shard[0] and by_shard[1]
        with shard(sandbox, redis.url, 0, tmp_path), shard(sandbox, redis.url, 1, tmp_path):
            wait_identified(sandbox, 2)
            # The same question at once on both shards (fresh channels): one LLM call.
            before = calls(sandbox)
            asked = [
                say(sandbox, "what is a shard?", by_shard[0][0], users[0]),
                say(sandbox, "what is a shard?", by_shard[1][0], users[1]),
            ]
            answers = [reply(sandbox, mid) for mid in asked]
            assert answers[0] == answers[1] and answers[0]
            assert calls(sandbox) - before == 1
        # Shard 0 restarted: the follow-up in its channel carries the earlier exchange.
        with shard(sandbox, redis.url, 0, tmp_path), shard(sandbox, redis.url, 1, tmp_path):
            wait_identified(sandbox, 4)  # the two restarted processes identified afresh
            follow = say(sandbox, "and why?", by_shard[0][0], users[0])
            assert reply(sandbox, follow)
            sent = [r for r in llm_requests(sandbox) if "and why?" in orjson.dumps(r).decode()]
            assert sent and "what is a shard?" in orjson.dumps(sent[-1]).decode()
    events = [
        orjson.loads(line)
        for i in range(SHARDS)
        for line in (tmp_path / f"m{i}.jsonl").read_bytes().splitlines()
    ]
    roles = sorted(e["dedup"] for e in events if e["type"] == "llm_call")
    assert "leader" in roles and "follower" in roles  # one led, the other followed across processes
    assert {tuple(e["shard"]) for e in events} == {(0,), (1,)}


def test_a_cooldown_holds_across_shards(tmp_path: Path) -> None:
    with (
        running_redis() as redis,
        sandbox_process(
            guilds=4, gateway_shards=SHARDS, channels=8, users=4, llm_latency=0.0
        ) as sandbox,
    ):
        world = sandbox.call("GET", "/world")
        user = str(world["user_ids"][0])
        by_shard: dict[int, list[str]] = {0: [], 1: []}
        for guild in world["guilds"]:
            by_shard[shard_of(str(guild["id"]))].extend(str(c) for c in guild["channel_ids"])
        cooldown = ("--cooldown", "60")
        with (
            shard(sandbox, redis.url, 0, tmp_path, *cooldown),
            shard(sandbox, redis.url, 1, tmp_path, *cooldown),
        ):
            wait_identified(sandbox, 2)
            first = reply(sandbox, say(sandbox, "!echo first", by_shard[0][0], user))
            second = reply(sandbox, say(sandbox, "!echo second", by_shard[1][0], user))
    assert first == "first"
    assert "Slow down" in second  # the other shard's process knew of the first question
