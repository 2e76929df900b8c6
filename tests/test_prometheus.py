"""``bot.prometheus``: a real exporter on a free port, fed by a real ``MetricsService``, scraped
over HTTP and read back with prometheus_client's own text parser."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _llm import running_llm
from prometheus_client.parser import text_string_to_metric_families

from bot.dedup import RequestDeduplicator
from bot.engine import ChatEngine, Question
from bot.history import ChatHistoryManager
from bot.llm.ollama import OllamaTransport
from bot.metrics import MetricsService
from bot.models import ModelSet
from bot.prometheus import MAX_LABEL_VALUES, MetricsPortError, PrometheusExporter
from bot.routing import ModelSpec, RoutingSpec

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(exporter: PrometheusExporter) -> tuple[str, Samples, dict[str, str]]:
    """GET /metrics; its text, every sample by (name, labels), and each family's type."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(exporter.url, timeout=aiohttp.ClientTimeout(total=10)) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples, types


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


@pytest.fixture
async def exporter() -> AsyncIterator[PrometheusExporter]:
    served = PrometheusExporter(0)  # the OS picks a free port
    await served.start()
    yield served
    await served.stop()


@pytest.fixture
def service(tmp_path: Path, exporter: PrometheusExporter) -> MetricsService:
    """A metrics service (never flushed here) whose every event reaches the exporter."""
    svc = MetricsService(tmp_path / "m.jsonl", batch_size=10_000, batch_interval=3600)
    svc.add_observer(exporter.observe)
    return svc


def llm(model: str, dedup: str, latency_ms: float, **extra: Any) -> dict[str, Any]:
    """An ``llm_call`` event's data as ``bot.engine`` logs it."""
    data: dict[str, Any] = {
        "model": model,
        "route": "default",
        "api": "ollama",
        "latency_ms": latency_ms,
        "ttft_ms": 200.0,
        "tokens_in": 100,
        "tokens_out": 40,
        "dedup": dedup,
        "status": "ok",
        "error": None,
    }
    data.update(extra)
    return data


async def test_counters_and_histograms_follow_the_events(
    exporter: PrometheusExporter, service: MetricsService
) -> None:
    for n in range(3):
        service.log_event("message", {"channel": "c456", "user": "u123", "length": 10 + n})
    for latency, status in ((40.0, "ok"), (300.0, "ok"), (2500.0, "error")):
        service.log_event(
            "reply",
            {"channel": "c456", "latency_ms": latency, "parts": 1, "chars": 9, "edits": 0}
            | {"status": status},
        )
    service.log_event("llm_call", llm("fast", "leader", 800.0))
    service.log_event("llm_call", llm("fast", "follower", 790.0))  # shares the leader's tokens
    service.log_event("llm_call", llm("fast", "window", 1.0, ttft_ms=None))
    service.log_event(
        "llm_call",
        llm("coder", "off", 12_000.0, status="error", error="LLMError", tokens_in=None),
    )
    service.log_event("error", {"where": "llm", "error": "LLMError", "detail": "HTTP 500"})
    service.log_event("command", {"name": "ask", "channel": "c456", "user": "u123"})
    service.log_event("stats", {"dedup": {}, "history": {}, "batch": {}})

    text, samples, types = await scrape(exporter)

    assert value(samples, "botctl_messages_total") == 3
    assert types["botctl_messages"] == "counter"
    assert value(samples, "botctl_replies_total", status="ok") == 2
    assert value(samples, "botctl_replies_total", status="error") == 1
    calls = {
        ("fast", "leader", "ok"): 1,
        ("fast", "follower", "ok"): 1,
        ("fast", "window", "ok"): 1,
        ("coder", "off", "error"): 1,
    }
    for (model, dedup, status), count in calls.items():
        assert (
            value(samples, "botctl_llm_calls_total", model=model, dedup=dedup, status=status)
            == count
        )
    # Tokens: the leader's once (the follower and the window hit cost nothing), and the failed
    # call's output only (it reported no input count).
    assert value(samples, "botctl_llm_tokens_total", model="fast", direction="in") == 100
    assert value(samples, "botctl_llm_tokens_total", model="fast", direction="out") == 40
    assert value(samples, "botctl_llm_tokens_total", model="coder", direction="in") == 0
    assert value(samples, "botctl_llm_tokens_total", model="coder", direction="out") == 40
    assert value(samples, "botctl_errors_total", where="llm") == 1
    assert value(samples, "botctl_commands_total", name="ask") == 1

    # Reply latency: 0.04 s, 0.3 s and 2.5 s in cumulative `le` buckets, sum in seconds.
    assert types["botctl_reply_latency_seconds"] == "histogram"
    reply = "botctl_reply_latency_seconds"
    assert value(samples, f"{reply}_bucket", le="0.05") == 1
    assert value(samples, f"{reply}_bucket", le="0.25") == 1
    assert value(samples, f"{reply}_bucket", le="0.5") == 2
    assert value(samples, f"{reply}_bucket", le="2.0") == 2
    assert value(samples, f"{reply}_bucket", le="3.0") == 3
    assert value(samples, f"{reply}_bucket", le="+Inf") == 3
    assert value(samples, f"{reply}_count") == 3
    assert math.isclose(value(samples, f"{reply}_sum"), 2.84)

    llm_latency = "botctl_llm_latency_seconds"
    assert value(samples, f"{llm_latency}_count", model="fast") == 3
    assert value(samples, f"{llm_latency}_bucket", model="fast", le="0.05") == 1
    assert value(samples, f"{llm_latency}_bucket", model="fast", le="0.75") == 1
    assert value(samples, f"{llm_latency}_bucket", model="fast", le="1.0") == 3
    assert math.isclose(value(samples, f"{llm_latency}_sum", model="fast"), 1.591)
    assert value(samples, f"{llm_latency}_bucket", model="coder", le="10.0") == 0
    assert value(samples, f"{llm_latency}_bucket", model="coder", le="15.0") == 1
    ttft = "botctl_llm_time_to_first_token_seconds"
    assert value(samples, f"{ttft}_count", model="fast") == 2  # the window hit had no first token
    assert value(samples, f"{ttft}_bucket", model="fast", le="0.25") == 2
    assert value(samples, f"{ttft}_bucket", model="fast", le="0.1") == 0

    # The bot's own process figures come along under the standard names.
    assert value(samples, "process_resident_memory_bytes") > 0
    # Never a user or a channel id, nor any label but the bounded ones.
    assert "u123" not in text and "c456" not in text

    # Counters move with the next events.
    service.log_event("message", {"channel": "c", "user": "u", "length": 1})
    _, samples, _ = await scrape(exporter)
    assert value(samples, "botctl_messages_total") == 4


async def test_gauges_are_read_at_scrape_time(tmp_path: Path) -> None:
    live: dict[str, float] = {
        "answers_in_flight": 3,
        "history_hit_rate": 75.0,
        "metrics_pending_events": 12,
        "dedup_pending_requests": 2,
    }
    calls = 0

    def gauges() -> Mapping[str, float]:
        nonlocal calls
        calls += 1
        return live

    exporter = PrometheusExporter(0, gauges=gauges)
    await exporter.start()
    try:
        assert calls == 0  # nothing read before a scrape
        _, samples, types = await scrape(exporter)
        assert calls == 1
        assert types["botctl_answers_in_flight"] == "gauge"
        assert value(samples, "botctl_answers_in_flight") == 3
        assert value(samples, "botctl_history_hit_ratio") == 0.75  # a percent becomes a ratio
        assert value(samples, "botctl_metrics_buffer_events") == 12
        assert value(samples, "botctl_dedup_pending_requests") == 2

        live.update(answers_in_flight=0, history_hit_rate=100.0)
        del live["dedup_pending_requests"]
        _, samples, _ = await scrape(exporter)
        assert value(samples, "botctl_answers_in_flight") == 0
        assert value(samples, "botctl_history_hit_ratio") == 1.0
        assert ("botctl_dedup_pending_requests", frozenset()) not in samples  # no value, no lie
    finally:
        await exporter.stop()


async def test_a_failing_gauge_source_leaves_the_counters_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> Mapping[str, float]:
        raise RuntimeError("the bot is stopping")

    exporter = PrometheusExporter(0, gauges=broken)
    await exporter.start()
    try:
        exporter.observe({"type": "message", "ts": 1.0})
        _, samples, _ = await scrape(exporter)
        assert value(samples, "botctl_messages_total") == 1
        assert ("botctl_answers_in_flight", frozenset()) not in samples
        assert "reading the gauges for /metrics failed" in caplog.text
    finally:
        await exporter.stop()


async def test_odd_events_never_raise_and_labels_stay_bounded(
    exporter: PrometheusExporter,
) -> None:
    observe: Callable[[Mapping[str, Any]], None] = exporter.observe
    # Junk that a bug could log: unhashable labels, text latencies, NaN, negative, bools.
    observe({"type": "llm_call", "model": ["x"], "dedup": {}, "status": None, "latency_ms": "1"})
    observe({"type": "llm_call", "model": "m", "latency_ms": math.nan, "ttft_ms": -5})
    observe({"type": "reply", "status": {"x": 1}, "latency_ms": True})
    observe({"type": "error"})
    observe({"type": None})
    observe({})
    for n in range(MAX_LABEL_VALUES + 10):
        observe({"type": "llm_call", "model": f"model-{n}", "dedup": "leader", "status": "ok"})

    _, samples, _ = await scrape(exporter)
    models = {
        dict(labels)["model"]
        for (name, labels) in samples
        if name == "botctl_llm_calls_total" and dict(labels)["dedup"] == "leader"
    }
    assert len(models) <= MAX_LABEL_VALUES + 2  # the first ones, then `other` (and `unknown`)
    assert (
        value(samples, "botctl_llm_calls_total", model="other", dedup="leader", status="ok") >= 10
    )
    assert value(samples, "botctl_llm_calls_total", model="other", dedup="other", status="unknown")
    assert value(samples, "botctl_replies_total", status="other") == 1
    assert value(samples, "botctl_reply_latency_seconds_count") == 0  # True is not a latency
    assert value(samples, "botctl_llm_latency_seconds_count", model="m") == 0
    assert value(samples, "botctl_errors_total", where="unknown") == 1


async def test_a_port_in_use_is_a_one_line_error_and_stop_frees_the_port() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        blocked = PrometheusExporter(port)
        with pytest.raises(MetricsPortError) as caught:
            await blocked.start()
        message = str(caught.value)
        assert f"127.0.0.1:{port}" in message and "in use" in message
        assert "\n" not in message
        await blocked.stop()  # harmless when it never started
    finally:
        holder.close()

    first = PrometheusExporter(port)
    await first.start()
    assert first.url == f"http://127.0.0.1:{port}/metrics"
    await scrape(first)
    await first.stop()
    await first.stop()  # idempotent
    second = PrometheusExporter(port)
    await second.start()  # the port was freed
    try:
        _, samples, _ = await scrape(second)
        assert value(samples, "botctl_messages_total") == 0
    finally:
        await second.stop()


async def test_counters_move_as_the_engine_answers_through_the_sandbox_llm(
    exporter: PrometheusExporter, service: MetricsService
) -> None:
    """The real engine's events (not hand-made ones) reach the exporter through log_event."""
    async with running_llm(latency=0.2, tokens_per_second=200.0) as llm:
        assert llm.url is not None
        url = llm.url
        models = ModelSet(
            {"small": ModelSpec("small", "ollama", url, "m")},
            RoutingSpec(),
            lambda spec: OllamaTransport(spec.url),
            default="small",
        )
        engine = ChatEngine(
            models,
            ChatHistoryManager(max_channels=10, max_messages=10),
            service,
            RequestDeduplicator(),
            system_prompt="Be brief.",
        )
        try:

            async def ask(channel: str, text: str) -> str:
                engine.take_message(channel, "user", text)
                return "".join([d async for d in engine.answer(Question(channel, text))])

            # Five channels ask the same thing at once: one upstream call, four followers.
            await asyncio.gather(*(ask(f"c{i}", "what is dedup?") for i in range(5)))
            _, first, _ = await scrape(exporter)
            await ask("c9", "something else")
            _, second, _ = await scrape(exporter)
        finally:
            await engine.models.close()
    assert llm.calls_total == 2

    calls = "botctl_llm_calls_total"
    assert value(first, "botctl_messages_total") == 5
    assert value(first, calls, model="small", dedup="leader", status="ok") == 1
    assert value(first, calls, model="small", dedup="follower", status="ok") == 4
    latency = "botctl_llm_latency_seconds"
    assert value(first, f"{latency}_count", model="small") == 5
    assert value(first, f"{latency}_bucket", model="small", le="0.1") == 0  # 0.2 s to first token
    ttft = "botctl_llm_time_to_first_token_seconds"
    assert value(first, f"{ttft}_bucket", model="small", le="0.25") >= 1
    tokens_out = value(first, "botctl_llm_tokens_total", model="small", direction="out")
    assert tokens_out > 0

    assert value(second, "botctl_messages_total") == 6
    assert value(second, calls, model="small", dedup="leader", status="ok") == 2
    assert value(second, f"{latency}_count", model="small") == 6
    assert value(second, "botctl_llm_tokens_total", model="small", direction="out") > tokens_out
