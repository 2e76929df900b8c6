"""End to end: sandbox messages per second through the bot, against a bare discord.py bot.

Each trial runs in a child process of its own (``python -m botctl.bench.e2e_trial CONFIG_JSON``,
:mod:`botctl.bench.e2e_trial`), which starts the sandbox in *its* own process and runs either the
real bot (:func:`bot.frontend.app.serve`) or the ceiling (:func:`~botctl.bench.bare_bot.run_bare_bot`,
one "ok" per mention) in-process. Both see the same sandbox, the same load and the same LLM set to
answer at once (latency 0, every token in one write), so what separates them is the bot's own cost.

Throughput is the replies the simulated users received per second inside the load window (after a
warm-up), read from the sandbox's own counters and clock at both ends of the window. The load is
meant to saturate, so reply latency there is mostly queueing; it is reported, not budgeted.

A fresh child per trial keeps one trial's heap, sockets and discord.py state out of the next, and
leaves the coordinating process idle while it measures. :func:`run_variants` alternates any set of
trial configurations (the bot on another loop, on the OpenAI protocol, answering reply chains) in
a rotating order, so that each comparison is measured in one run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from botctl import eventloop
from botctl.bench.common import median, ratio, rotated
from botctl.sandbox.config import SandboxConfig

__all__ = [
    "E2E_LOAD",
    "E2EConfig",
    "E2EResult",
    "run_child",
    "run_e2e",
    "run_variants",
    "side_stats",
]

Kind = Literal["bot", "bare"]
Trials = dict[str, list["E2EResult"]]

# A trial that takes longer than its own duration plus this is stuck: it is killed and reported.
TRIAL_OVERHEAD_S = 60.0
DEFAULT_RATE = 400.0
# A side that answers at least this share of what was offered kept up: it was not saturated, and
# its figure is the offered rate, a floor of what it could carry.
KEPT_UP = 0.95


# The load of every trial: many users over many channels (discord.py sends at most one request
# at a time per channel, so with few channels the round trip, not the bot, would cap replies per
# second), no rate limits (this measures the bot's cost, not Discord's pacing) and an LLM that
# answers at once, every token in one write.
E2E_LOAD = SandboxConfig(
    users=50,
    channels=100,
    rate=DEFAULT_RATE,
    duplicate_ratio=0.0,
    seed=1,
    rate_limits=False,
    llm=True,
    llm_latency=0.0,
    llm_tokens_per_second=0.0,
)


@dataclass(frozen=True, slots=True)
class E2EConfig:
    kind: Kind = "bot"
    loop: str = "asyncio"  # the bot process's event loop: "asyncio" or "uvloop"
    load: SandboxConfig = E2E_LOAD
    duration: float = 8.0
    warmup: float = 1.5
    api: str = "ollama"  # the bot's protocol to the sandbox LLM: "ollama" or "openai" (its /v1)
    # > 0: the users stop at the window's end and the trial waits up to this long for the bot's
    # last replies, so latency covers every question; 0: the load runs on to the end.
    drain: float = 0.0
    model_time: bool = False  # time the sandbox LLM's own answer with a bare client first
    # A path: cProfile the bot's (or bare bot's) process over the window into it (pstats), to
    # see where its CPU per reply goes; the profiler's own cost inflates the CPU figures.
    profile: str = ""

    def to_json(self) -> str:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "load"}
        return json.dumps({**data, "load": json.loads(self.load.to_json())})

    @classmethod
    def from_json(cls, text: str) -> E2EConfig:
        data = json.loads(text)
        load = SandboxConfig.from_json(json.dumps(data.pop("load")))
        return cls(load=load, **data)


@dataclass(slots=True)
class E2EResult:
    kind: Kind
    replies_per_s: float
    offered_per_s: float
    window_s: float
    replies: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    bot_cpu_s: float
    sandbox_cpu_s: float | None
    llm_calls: int | None = None
    error: str | None = None
    # The sandbox's counts over the window (REST calls, 429s...), the bot's (messages taken,
    # chain fetches), the LLM's calls by protocol and the model's own answer time, when measured.
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def failed(cls, kind: Kind, error: str) -> E2EResult:
        return cls(kind, 0.0, 0.0, 0.0, 0, None, None, None, 0.0, None, error=error)


def run_child(config: E2EConfig, *, python: str = sys.executable) -> E2EResult:
    """One trial in a fresh child process (bounded in time); its result, or one saying why not."""
    timeout = config.warmup + config.duration + config.drain + TRIAL_OVERHEAD_S
    env = dict(os.environ)
    env.pop("DISCORD_TOKEN", None)
    try:
        proc = subprocess.run(
            [python, "-m", "botctl.bench.e2e_trial", config.to_json()],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return E2EResult.failed(config.kind, f"the trial did not finish within {timeout:.0f} s")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return E2EResult.failed(
            config.kind, f"the trial exited with code {proc.returncode}: {tail}"
        )
    return E2EResult(**json.loads(lines[-1]))


def run_variants(
    variants: Sequence[tuple[str, E2EConfig]],
    *,
    pairs: int,
    progress: Callable[[str], None] | None = None,
    label: str = "end to end",
) -> Trials:
    """Every variant once per round, ``pairs`` rounds, in a rotating order; results by name."""
    trials: Trials = {name: [] for name, _ in variants}
    for r in range(pairs):
        for name, config in rotated(variants, r):
            if progress is not None:
                progress(f"{label}: {name} at {config.load.rate:g} msg/s, trial {r + 1}/{pairs}")
            trials[name].append(run_child(config))
    return trials


def _med(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return median(present) if present else None


def side_stats(results: Sequence[E2EResult]) -> dict[str, Any]:
    """Medians over one variant's trials (those that measured a window)."""
    good = [t for t in results if t.error is None and t.window_s > 0]
    stats: dict[str, Any] = {
        "replies_per_s": _med([t.replies_per_s for t in good]),
        "offered_per_s": _med([t.offered_per_s for t in good]),
        "p50_ms": _med([t.p50_ms for t in good]),
        "p95_ms": _med([t.p95_ms for t in good]),
        "p99_ms": _med([t.p99_ms for t in good]),
        "cpu_share_bot": _med([ratio(t.bot_cpu_s, t.window_s) for t in good]),
        "cpu_ms_per_reply": _med(
            [ratio(t.bot_cpu_s * 1000, t.replies) for t in good if t.replies > 0]
        ),
        # The same split in user and kernel time: the kernel's part is the sockets' work, which
        # no Python code of the bot can cut but fewer round trips.
        "system_ms_per_reply": _med(
            [
                ratio(t.extra["cpu"]["system_s"] * 1000, t.replies)
                for t in good
                if t.replies > 0 and "cpu" in t.extra
            ]
        ),
        "cpu_share_sandbox": _med(
            [ratio(t.sandbox_cpu_s, t.window_s) for t in good if t.sandbox_cpu_s is not None]
        ),
        "samples": [round(t.replies_per_s, 1) for t in good],
        "errors": [t.error for t in results if t.error is not None],
        "extra": [t.extra for t in good],
    }
    replies, offered = stats["replies_per_s"], stats["offered_per_s"]
    stats["kept_up"] = (
        None if replies is None or not offered else bool(replies >= KEPT_UP * offered)
    )
    return stats


def cpu_ratio(base: Mapping[str, Any], other: Mapping[str, Any] | None) -> float | None:
    """``base``'s CPU per reply over ``other``'s: above 1, ``other`` costs less per reply."""
    if not other or not base.get("cpu_ms_per_reply") or not other.get("cpu_ms_per_reply"):
        return None
    return ratio(base["cpu_ms_per_reply"], other["cpu_ms_per_reply"])


def run_e2e(
    *,
    duplicate_ratios: tuple[float, ...] = (0.0, 0.3),
    rate: float | None = None,
    duration: float = 8.0,
    warmup: float = 1.5,
    pairs: int = 3,
    load: SandboxConfig = E2E_LOAD,
    progress: Callable[[str], None] | None = None,
    uvloop: bool = True,
    bare: bool = True,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Alternate bot and bare trials ``pairs`` times per duplicate ratio, both under ``load`` (at
    ``rate`` if given) on asyncio's loop, and the bot on uvloop too where installed; medians, the
    ratio of the medians and the ratio of each back-to-back pair.

    ``extra`` adds variants of the bot at 0 % duplicates, alternated with the others: a name and
    the :class:`E2EConfig` fields it changes (``{"bot_openai": {"api": "openai"}}``); their
    figures are under ``variants`` in that row.
    """
    if rate is not None:
        load = replace(load, rate=rate)
    rate = load.rate
    rows: list[dict[str, Any]] = []
    names: list[tuple[str, Kind, str]] = [("bot", "bot", "asyncio")]
    if bare:
        names.append(("bare", "bare", "asyncio"))
    if uvloop and eventloop.loop_name("uvloop") == "uvloop":
        names.append(("bot_uvloop", "bot", "uvloop"))
    for dup in duplicate_ratios:
        at = replace(load, duplicate_ratio=dup)
        variants = [
            (name, E2EConfig(kind, loop, at, duration, warmup)) for name, kind, loop in names
        ]
        if dup == 0.0:
            for name, changes in (extra or {}).items():
                variants.append(
                    (name, replace(E2EConfig("bot", "asyncio", at, duration, warmup), **changes))
                )
        trials = run_variants(
            variants, pairs=pairs, progress=progress, label=f"end to end, {dup:.0%} duplicates"
        )
        rows.append(_summarise(dup, rate, trials))
    return {"rate": rate, "duration_s": duration, "warmup_s": warmup, "pairs": pairs, "rows": rows}


def _summarise(dup: float, rate: float, trials: Trials) -> dict[str, Any]:
    bot = side_stats(trials["bot"])
    bare = side_stats(trials["bare"]) if "bare" in trials else None
    variants = {name: side_stats(results) for name, results in trials.items()}
    uv = variants.get("bot_uvloop")
    # Ratios per pair (bot trial r against bare trial r) as well as of the medians: a pair ran
    # back to back, so its ratio is the least exposed to slow drift.
    pair_ratios = [
        ratio(b.replies_per_s, c.replies_per_s)
        for b, c in zip(trials["bot"], trials.get("bare", []), strict=False)
        if b.error is None and c.error is None and c.replies_per_s > 0
    ]
    vs_bare = (
        ratio(bot["replies_per_s"], bare["replies_per_s"])
        if bare and bot["replies_per_s"] is not None and bare["replies_per_s"] is not None
        else None
    )
    return {
        "duplicate_ratio": dup,
        "rate": rate,
        "bot": bot,
        "bare": bare,
        "ratio": vs_bare,
        "pair_ratios": [round(x, 3) for x in pair_ratios],
        # What each reply costs the bot's process against the bare one's: a capacity estimate
        # that holds even where one side kept up with the load and the other did not.
        "cpu_per_reply_ratio": cpu_ratio(bare, bot) if bare else None,
        # The bot on uvloop, against the same bare bot on asyncio's loop.
        "bot_uvloop": uv,
        "uvloop_cpu_per_reply_ratio": cpu_ratio(bare, uv) if bare else None,
        "variants": {k: v for k, v in variants.items() if k not in ("bot", "bare", "bot_uvloop")},
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m botctl.bench.e2e CONFIG_JSON``: one trial, as the child runs it (kept for
    scripts that call this module)."""
    from botctl.bench.e2e_trial import main as trial_main

    return trial_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
