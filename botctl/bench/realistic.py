"""The bot as it will really run: Discord's rate limits on, a streaming LLM, a few questions a second.

One trial per rate (the e2e machinery: a child process, the sandbox in its own process, the bot
in-process), the sandbox as ``botctl run`` starts it: Discord's limits on (50 requests/s per bot,
5 message writes per 5 s per channel, answered with Discord's headers), its LLM at its defaults
(0.2 s to the first token, 50 tokens/s, 300-character answers), 10 channels, no duplicates.

Per rate: time from question to final text (the users' clock: question posted -> last send or
edit of its reply) p50/p95 over every question of the window (the users stop at its end and the
trial waits for the last replies, as under the limits they can come seconds late); against the
model's own time for such an answer, streamed to a bare client from the same LLM before the load
starts; REST calls per answer (sends, edits, typing) and the 429s the bot ran into, from the
sandbox's counters. Latency is the point here, not CPU: one trial per rate, no bare bot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from botctl.bench.common import ratio
from botctl.bench.e2e import E2EConfig, E2EResult, run_child
from botctl.sandbox.config import SandboxConfig

__all__ = ["REALISTIC_LOAD", "REALISTIC_RATES", "run_realistic", "summarise_realistic"]

# The sandbox's own defaults for the LLM and the limits; only the traffic is set here.
REALISTIC_LOAD = SandboxConfig(users=50, channels=10, duplicate_ratio=0.0, seed=1)
REALISTIC_RATES = (1.0, 5.0, 20.0)
# Window per rate (seconds): enough questions for a p95 at 1 q/s, and at 20 q/s a backlog the
# channels' buckets (1 write/s each) clear within the drain bound.
WINDOWS: Mapping[float, float] = {1.0: 20.0, 5.0: 12.0, 20.0: 8.0}
DRAIN_S = 90.0
WARMUP_S = 0.0  # every question counts: the percentiles are over all of them anyway


def run_realistic(
    rates: Sequence[float] = REALISTIC_RATES,
    *,
    windows: Mapping[float, float] = WINDOWS,
    load: SandboxConfig = REALISTIC_LOAD,
    warmup: float = WARMUP_S,
    drain: float = DRAIN_S,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    rows = []
    for rate in rates:
        window = windows.get(rate, 10.0)
        if progress is not None:
            progress(f"realistic sandbox: {rate:g} q/s over {load.channels} channels, {window:g} s")
        config = E2EConfig(
            kind="bot",
            load=replace(load, rate=rate),
            duration=window,
            warmup=warmup,
            drain=drain,
            model_time=True,
        )
        rows.append(summarise_realistic(rate, window, run_child(config)))
    return {"channels": load.channels, "rows": rows}


def summarise_realistic(rate: float, window: float, trial: E2EResult) -> dict[str, Any]:
    """One rate's figures from its trial (``None`` where the trial measured nothing)."""
    extra = trial.extra
    sandbox: dict[str, Any] = extra.get("sandbox") or {}
    model: dict[str, Any] = extra.get("model") or {}
    answers = trial.replies
    model_ms = model.get("answer_ms")

    def per_answer(key: str) -> float | None:
        return ratio(sandbox[key], answers) if key in sandbox and answers else None

    def overhead(value: float | None) -> float | None:
        return None if value is None or model_ms is None else value - model_ms

    return {
        "rate": rate,
        "window_s": window,
        "error": trial.error,
        "answers": answers,
        "questions": sandbox.get("messages_posted"),
        "unanswered": extra.get("unanswered"),
        "drain_timed_out": bool(extra.get("drain_timed_out")),
        "final_p50_ms": trial.p50_ms,
        "final_p95_ms": trial.p95_ms,
        "model_ms": model_ms,
        "model_first_token_ms": model.get("first_token_ms"),
        "overhead_p50_ms": overhead(trial.p50_ms),
        "overhead_p95_ms": overhead(trial.p95_ms),
        "rest_per_answer": per_answer("rest_calls"),
        "sends_per_answer": per_answer("bot_messages"),
        "edits_per_answer": per_answer("bot_edits"),
        "typing_per_answer": per_answer("typing_calls"),
        "rate_limited": sandbox.get("rate_limited_total"),
        "rate_limited_by_bucket": sandbox.get("rate_limited"),
        "bot_cpu_ms_per_answer": ratio(trial.bot_cpu_s * 1000, answers) if answers else None,
    }
