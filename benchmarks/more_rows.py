"""Sections of ``python -m benchmarks`` built from the standalone scripts of this folder.

- ``kb``: the knowledge base's add throughput and search latency (``benchmarks.kb``);
- ``prometheus``: what the exporter's ``observe`` costs per event against ``log_event``
  (``benchmarks.prometheus_observe``, its budget);
- ``llm_server``: the sandbox LLM's own CPU per answer, Ollama against OpenAI (the load generator
  of the ``openai`` row must cost the same for both; informational);
- ``local_speed``: the real local model's speed as a raw client sees it (opt-in: ``--only``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from botctl.bench.budgets import Budget
from botctl.bench.rows import Row

__all__ = ["kb_section", "llm_server_row", "local_speed_row", "prometheus_row"]

LLM_SERVER_ROUNDS = 3
LLM_SERVER_REQUESTS = 100
LOCAL_SPEED_ROUNDS = 3


def kb_section(progress: Callable[[str], None]) -> Row:
    from benchmarks.kb import kb_row

    return kb_row(progress)


def prometheus_row(progress: Callable[[str], None]) -> Row:
    from benchmarks.prometheus_observe import BUDGET, bench

    progress("Prometheus exporter: observe against log_event")
    r = bench(15, 30_000)
    measured = (
        f"log_event {r['log_event_us']:.2f} µs/event; with the exporter as observer "
        f"{r['log_event_with_observer_us']:.2f} µs; observe alone {r['observe_us']:.2f} µs "
        f"({r['observe_over_log_event']:.2f}x log_event)"
    )
    budget = Budget(
        "prometheus: observe cost over log_event",
        r["observe_over_log_event"],
        "<=",
        BUDGET,
        detail=f"the observer adds {r['added_by_observer_over_log_event']:.2f}x to log_event",
    )
    return Row(
        "prometheus", "Prometheus exporter on the hot path", None, measured, [budget], data=r
    )


def llm_server_row(progress: Callable[[str], None]) -> Row:
    from benchmarks.llm_server_cpu import measure

    parts, data = [], {}
    for pace in (0.0, 200.0):
        progress(f"sandbox LLM server CPU per answer, ollama vs openai, pace {pace:g} tok/s")
        r = measure(pace, LLM_SERVER_ROUNDS, LLM_SERVER_REQUESTS, 20)
        cpu = r["cpu_ms_per_answer"]
        label = f"{pace:g} tok/s" if pace else "all at once"
        parts.append(
            f"{label}: ollama {cpu['ollama']:.3f} vs openai {cpu['openai']:.3f} ms "
            f"({r['ratio_openai_over_ollama']:.2f}x)"
        )
        data[label] = r
    return Row(
        "llm_server",
        "Sandbox LLM server: its own CPU per streamed answer, by protocol",
        None,
        " · ".join(parts),
        data=data,
        note="informational: the load generator of the openai row should cost about the same "
        "for both protocols",
    )


def local_speed_row(progress: Callable[[str], None]) -> Row:
    from benchmarks.local_model_speed import measure
    from botctl.sandbox.local_model.runtime import LocalModelError, find_gguf, require_runtime

    title = "Local model speed (SmolLM2, llama.cpp, 1 thread) as a raw client sees it"
    try:
        require_runtime()
        find_gguf(None)
    except LocalModelError as exc:
        return Row("local_speed", title, None, f"skipped: {exc}")
    progress("local model speed: short and long prompts, cold and cached")
    r = asyncio.run(measure(LOCAL_SPEED_ROUNDS, 64, 1))
    parts = [
        f"{name}: {m['prompt_tokens']:.0f} prompt tokens, TTFT {m['client_ttft_ms']:.0f} ms "
        f"(server prompt_ms {m['server_prompt_ms']:.0f}), {m['client_tokens_per_s']:.1f} tok/s"
        for name, m in r["medians"].items()
    ]
    return Row("local_speed", title, None, " · ".join(parts), data=r, note="informational (opt-in)")
