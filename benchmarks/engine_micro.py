"""Micro-benchmarks of the engine's hot paths: the dedup key and ``MetricsService.log_event``.

Run: ``python -m benchmarks.engine_micro [--rounds N] [--json]``.

- Dedup key at a 50-message history (``bench_key(..., history=N)`` for others):
  :meth:`RequestDeduplicator.make_key` against the reference
  ``hashlib.sha256(orjson.dumps(req, option=orjson.OPT_SORT_KEYS)).hexdigest()`` (budget: <= 1.2x).
- ``log_event`` throughput (events per second) against the bare minimum that any buffered logger
  pays (building the dict and appending it to a list), for context.

Variants are interleaved round by round (so drift in CPU frequency or load hits all of them alike)
and the medians reported, as ratios are what carry over between machines.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bot.dedup import RequestDeduplicator
from bot.llm.ollama import OllamaTransport
from bot.llm.types import ChatRequest
from bot.metrics import MetricsService

KEY_BUDGET = 1.2


def chat_request(history: int = 50) -> dict[str, Any]:
    messages: list[dict[str, str]] = [{"role": "system", "content": "You are a helpful assistant."}]
    for i in range(history):
        role = "user" if i % 2 == 0 else "assistant"
        messages.append({"role": role, "content": f"message {i}: " + "lorem ipsum dolor " * 12})
    return {
        "model": "llama3.2",
        "messages": messages,
        "options": {"temperature": 0.7, "num_ctx": 4096},
        "stream": True,
    }


def per_call_us(func: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        func()
    return (time.perf_counter() - start) / number * 1e6


def bench_key(
    rounds: int, number: int, history: int = 50, *, shape: str = "service"
) -> dict[str, float]:
    """The bot's dedup key against the reference ``sha256(orjson.dumps(OPT_SORT_KEYS))``.

    ``shape`` "service": the key as the engine makes it — the request's body serialised (once: the
    same bytes are sent) and hashed with the protocol and server — against the reference over the
    same fields; "client": :meth:`RequestDeduplicator.make_key` on a client-shaped request
    (with ``stream`` and missing fields, reduced to the key's fields first)."""
    req = chat_request(history)
    dumps, sort_keys, sha256 = orjson.dumps, orjson.OPT_SORT_KEYS, hashlib.sha256
    if shape == "service":
        request = ChatRequest(req["model"], req["messages"], req["options"])
        fields = {
            "api": "ollama",
            "url": "http://127.0.0.1:11434",
            "model": req["model"],
            "messages": req["messages"],
            "options": req["options"],
            "format": None,
            "tools": None,
        }

        transport = OllamaTransport("http://127.0.0.1:11434")

        def ours() -> object:
            return transport.key(transport.payload(request))
    else:
        fields = req
        make_key = RequestDeduplicator.make_key

        def ours() -> object:
            return make_key(req)

    def reference() -> object:
        # The same output as ours (a hex string) on the same fields: only the key's own work differs.
        return sha256(dumps(fields, option=sort_keys)).hexdigest()

    samples: dict[str, list[float]] = {"reference": [], "make_key": []}
    variants = list(samples.items())
    for _ in range(3):  # warm-up
        reference()
        ours()
    for r in range(rounds):
        # Alternate which variant goes first so neither always runs on a warmer cache.
        order = variants if r % 2 == 0 else variants[::-1]
        for name, bucket in order:
            bucket.append(per_call_us(reference if name == "reference" else ours, number))
    ref = statistics.median(samples["reference"])
    mine = statistics.median(samples["make_key"])
    return {"reference_us": ref, "make_key_us": mine, "ratio": mine / ref}


def bench_log_event(rounds: int, number: int) -> dict[str, float]:
    from botctl.bench.metrics_io import EVENT as data  # the same typical event as `botctl bench`

    clock = time.time
    samples: dict[str, list[float]] = {"log_event": [], "baseline": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.jsonl"
        for r in range(rounds):
            # Fresh buffers per round so every round measures the same (unfilled) state.
            svc = MetricsService(path, batch_size=10**9, max_buffer=10**7)
            plain: list[dict[str, Any]] = []

            # Bound as defaults: a local lookup, as cheap as the closure but per round.
            def run_service(log_event: Callable[..., None] = svc.log_event) -> None:
                log_event("llm_call", data)

            def run_baseline(append: Callable[[Any], None] = plain.append) -> None:
                append({"ts": clock(), "type": "llm_call", **data})

            pairs = [("log_event", run_service), ("baseline", run_baseline)]
            for name, func in pairs if r % 2 == 0 else pairs[::-1]:
                samples[name].append(1e6 / per_call_us(func, number))
    service = statistics.median(samples["log_event"])
    baseline = statistics.median(samples["baseline"])
    return {
        "events_per_s": service,
        "baseline_events_per_s": baseline,
        "cost_vs_baseline": baseline / service,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    key = bench_key(args.rounds, 2000)
    log = bench_log_event(args.rounds, 20000)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps({"dedup_key": key, "log_event": log}) + b"\n")
        return 0
    verdict = "PASS" if key["ratio"] <= KEY_BUDGET else "FAIL"
    print(
        f"dedup key, 50-message history: make_key {key['make_key_us']:.2f} us, "
        f"reference sha256(orjson OPT_SORT_KEYS) {key['reference_us']:.2f} us, "
        f"ratio {key['ratio']:.2f}x (budget <= {KEY_BUDGET}x) {verdict}"
    )
    print(
        f"log_event: {log['events_per_s']:,.0f} events/s "
        f"(dict+append baseline {log['baseline_events_per_s']:,.0f}/s, "
        f"{log['cost_vs_baseline']:.2f}x its cost)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
