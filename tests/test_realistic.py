"""Issue 14: the bot under Discord's rate limits with streamed answers, and scraped by Prometheus."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _conversations import sandbox, serving
from prometheus_client.parser import text_string_to_metric_families

from botctl.analyze.web import free_port

pytestmark = pytest.mark.integration


async def test_a_burst_in_one_channel_is_answered_without_a_single_429(tmp_path: Path) -> None:
    """30 questions at once in one channel, answers streamed over ~1.5 s each: the bot paces its
    sends and edits on Discord's headers and its own budget, and never meets a 429."""
    llm = {"latency": 0.05, "tokens_per_second": 50.0, "answer_chars": 300}
    async with (
        sandbox(llm=llm, rate_limits=True) as (server, model),
        serving(server, model, tmp_path / "m.jsonl") as bot,
    ):
        channel = bot.channel
        asked = [bot.say(f"question number {i}", channel=channel) for i in range(30)]
        async with asyncio.timeout(120):
            replies = [await bot.server.wait_for_settled_reply(m, 120, settle=2.0) for m in asked]
        stats = server.stats()
    assert all(replies) and len(replies) == 30
    for mid, parts in zip(asked, replies, strict=True):
        question = bot.server.message(mid)
        assert question is not None and parts[-1].content  # every answer arrived whole
    assert stats["rate_limited_total"] == 0, stats["rate_limited"]
    # Discord's rule held: the sends of one channel never exceeded 5 in any 5 s window.
    sends = sorted(m.at for parts in replies for m in parts)
    worst = max(sum(1 for t in sends if s <= t < s + 5.0) for s in sends)
    assert worst <= 5


def test_prometheus_counters_move_while_the_bot_runs(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "OLLAMA_", "BOT_"))}
    args = [sys.executable, "-m", "botctl", "run", "--metrics-port", str(port), "--duration", "12"]
    args += ["--rate", "8", "--no-rate-limits", "--metrics-file", str(tmp_path / "m.jsonl")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        first = _scrape_when_up(port, limit=30.0)
        time.sleep(3.0)
        second = _scrape(port)
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert second["botctl_messages_total"] > first["botctl_messages_total"] > 0
    assert second["botctl_replies_total"] >= first.get("botctl_replies_total", 0)
    assert second["botctl_llm_calls_total"] > 0
    assert "botctl_reply_latency_seconds_count" in second
    assert 0.0 <= second["botctl_history_hit_ratio"] <= 1.0
    assert re.search(rb"Summary of run", out)
    assert f"scrape  : http://127.0.0.1:{port}/metrics (Prometheus)".encode() in out


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def _scrape_when_up(port: int, limit: float) -> dict[str, float]:
    deadline = time.monotonic() + limit
    while True:
        try:
            found = _scrape(port)
        except OSError:
            found = {}
        if found.get("botctl_messages_total", 0) > 0:
            return found
        assert time.monotonic() < deadline, "no messages counted at /metrics in time"
        time.sleep(0.3)
