"""What the Prometheus exporter adds to the bot's hot path: ``PrometheusExporter.observe`` per event
against ``MetricsService.log_event`` itself.

Run: ``python -m benchmarks.prometheus_observe [--rounds N] [--json]``.

The events are one answer's worth, as the bot logs them (``message``, ``llm_call``, ``reply``),
round-robin. Three variants, interleaved round by round, medians reported:

- ``log_event``: the service without an observer (what every event costs today);
- ``log_event+observe``: the same with ``exporter.observe`` added as its observer;
- ``observe``: the exporter alone, fed the dicts that ``log_event`` built.

Budget: ``observe`` costs at most 0.6x ``log_event`` (measured ~0.5x on a shared 2-core machine; a
ratio, as absolute times there mean little).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bot.metrics import MetricsService
from bot.prometheus import PrometheusExporter

BUDGET = 0.6

ANSWER: tuple[tuple[str, dict[str, Any]], ...] = (
    ("message", {"channel": "1234567890", "user": "987654321", "length": 42, "source": "mention"}),
    (
        "llm_call",
        {
            "model": "fast",
            "route": "default",
            "api": "ollama",
            "latency_ms": 812.512,
            "ttft_ms": 201.204,
            "tokens_in": 120,
            "tokens_out": 80,
            "dedup": "leader",
            "status": "ok",
            "error": None,
        },
    ),
    (
        "reply",
        {
            "channel": "1234567890",
            "latency_ms": 950.125,
            "parts": 1,
            "chars": 300,
            "edits": 1,
            "status": "ok",
        },
    ),
)


def _timed(func: Callable[[], None]) -> float:
    """Seconds for one call of ``func``, the cyclic GC paused (as timeit does)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        func()
        return time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()


def bench(rounds: int, events: int) -> dict[str, float]:
    """Microseconds per event of each variant (medians over ``rounds``), and the ratios."""
    work = [ANSWER[i % len(ANSWER)] for i in range(events)]
    samples: dict[str, list[float]] = {"log_event": [], "log_event+observe": [], "observe": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.jsonl"
        for r in range(rounds):
            # Fresh services per round (never flushed: a batch never fills).
            plain = MetricsService(path, batch_size=10**9, max_buffer=10**7)
            observed = MetricsService(path, batch_size=10**9, max_buffer=10**7)
            observed.add_observer(PrometheusExporter(0).observe)
            built: list[dict[str, Any]] = []
            collect = MetricsService(path, batch_size=10**9, max_buffer=10**7)
            collect.add_observer(built.append)
            for kind, data in work:
                collect.log_event(kind, data)
            alone = PrometheusExporter(0).observe

            def run_plain(log: Callable[..., None] = plain.log_event) -> None:
                for kind, data in work:
                    log(kind, data)

            def run_observed(log: Callable[..., None] = observed.log_event) -> None:
                for kind, data in work:
                    log(kind, data)

            def run_observe(
                observe: Callable[[Any], None] = alone, events: list[dict[str, Any]] = built
            ) -> None:
                for event in events:
                    observe(event)

            variants = [
                ("log_event", run_plain),
                ("log_event+observe", run_observed),
                ("observe", run_observe),
            ]
            shift = r % len(variants)
            for name, func in variants[shift:] + variants[:shift]:
                samples[name].append(_timed(func) / events * 1e6)
    us = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "log_event_us": us["log_event"],
        "log_event_with_observer_us": us["log_event+observe"],
        "observe_us": us["observe"],
        "observe_over_log_event": us["observe"] / us["log_event"],
        "added_by_observer_over_log_event": (us["log_event+observe"] - us["log_event"])
        / us["log_event"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--events", type=int, default=30_000, help="events per round")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = bench(args.rounds, args.events)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
        return 0
    ratio = result["observe_over_log_event"]
    print(
        f"log_event {result['log_event_us']:.2f} us/event; with the exporter as observer "
        f"{result['log_event_with_observer_us']:.2f} us/event; observe alone "
        f"{result['observe_us']:.2f} us/event"
    )
    print(
        f"{'PASS' if ratio <= BUDGET else 'FAIL'} observe over log_event: {ratio:.2f}x "
        f"(budget <= {BUDGET:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
