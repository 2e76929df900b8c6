"""End to end: sandbox messages per second through the bot, against a bare discord.py bot.

Each trial runs in a child process of its own (``python -m botctl.bench.e2e CONFIG_JSON``), which
starts the sandbox in *its* own process (:class:`~botctl.sandbox.client.SandboxProcess`) and runs
either the real bot (:func:`bot.app.serve`) or the ceiling (:func:`~botctl.bench.bare_bot.run_bare_bot`,
one "ok" per mention) in-process. Both see the same sandbox, the same load and the same LLM set to
answer at once (latency 0, every token in one write), so what separates them is the bot's own cost.

Throughput is the replies the simulated users received per second inside the load window (after a
warm-up), read from the sandbox's own counters and clock at both ends of the window. The load is
meant to saturate, so reply latency there is mostly queueing; it is reported, not budgeted.

A fresh child per trial keeps one trial's heap, sockets and discord.py state out of the next, and
leaves the coordinating process idle while it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from botctl import eventloop
from botctl.bench.common import median, ratio, rotated
from botctl.sandbox.config import SandboxConfig

__all__ = ["E2E_LOAD", "E2EConfig", "E2EResult", "run_child", "run_e2e", "run_trial"]

Kind = Literal["bot", "bare"]

# A trial that takes longer than its own duration plus this is stuck: it is killed and reported.
TRIAL_OVERHEAD_S = 60.0
DEFAULT_RATE = 400.0
# A side that answers at least this share of what was offered kept up: it was not saturated, and
# its figure is the offered rate, a floor of what it could carry.
KEPT_UP = 0.95
BARE_READY_TIMEOUT = 0.5  # run_bare_bot's default


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

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "loop": self.loop,
                "load": json.loads(self.load.to_json()),
                "duration": self.duration,
                "warmup": self.warmup,
            }
        )

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux ``/proc``), else ``None``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, ValueError, IndexError):
        return None


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(
    sandbox: Any, config: E2EConfig, stop: asyncio.Event, out: dict[str, Any]
) -> None:
    """Start the load, skip the warm-up, read the counters at both ends of the window, stop."""
    try:
        await sandbox.start_traffic()
        await asyncio.sleep(config.warmup)
        pid = sandbox.proc.pid if sandbox.proc is not None else None
        first = await sandbox.traffic_stats()
        cpu0, sb0 = _self_cpu_s(), _proc_cpu_s(pid) if pid else None
        await asyncio.sleep(config.duration)
        last = await sandbox.traffic_stats()
        cpu1, sb1 = _self_cpu_s(), _proc_cpu_s(pid) if pid else None
        out.update(first=first, last=last, bot_cpu_s=cpu1 - cpu0)
        out["sandbox_cpu_s"] = sb1 - sb0 if sb0 is not None and sb1 is not None else None
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        stop.set()


def _result(config: E2EConfig, out: dict[str, Any], llm_calls: int | None) -> E2EResult:
    first, last = out.get("first"), out.get("last")
    if not first or not last:
        return E2EResult(
            config.kind, 0.0, 0.0, 0.0, 0, None, None, None, 0.0, None, llm_calls,
            error=out.get("error") or "the load window was never measured",
        )  # fmt: skip
    window = float(last["elapsed_s"]) - float(first["elapsed_s"])
    replies = int(last["replies_received"]) - int(first["replies_received"])
    sent = int(last["messages_sent"]) - int(first["messages_sent"])
    return E2EResult(
        kind=config.kind,
        replies_per_s=ratio(replies, window),
        offered_per_s=ratio(sent, window),
        window_s=window,
        replies=replies,
        p50_ms=last.get("last_reply_p50_ms"),
        p95_ms=last.get("last_reply_p95_ms"),
        p99_ms=last.get("last_reply_p99_ms"),
        bot_cpu_s=float(out.get("bot_cpu_s", 0.0)),
        sandbox_cpu_s=out.get("sandbox_cpu_s"),
        llm_calls=llm_calls,
        error=out.get("error"),
    )


async def run_trial(config: E2EConfig) -> E2EResult:
    """One trial in this process: the sandbox in its own process, the bot (or bare bot) here."""
    from botctl.sandbox.client import SandboxProcess

    out: dict[str, Any] = {}
    stop = asyncio.Event()
    async with SandboxProcess(config.load) as sandbox:
        endpoints = sandbox.endpoints
        assert endpoints is not None
        if config.kind == "bare":
            await _run_bare(sandbox, endpoints, config, stop, out)
        else:
            await _run_bot(sandbox, endpoints, config, stop, out)
        llm_calls: int | None = None
        with contextlib.suppress(Exception):
            llm = await sandbox.llm_stats()
            llm_calls = int(llm["calls_total"]) if llm else None
    return _result(config, out, llm_calls)


async def _run_bare(
    sandbox: Any, endpoints: Any, config: E2EConfig, stop: asyncio.Event, out: dict[str, Any]
) -> None:
    from botctl.bench.bare_bot import run_bare_bot

    ready = asyncio.Event()

    async def when_ready() -> None:
        await ready.wait()
        await _measure(sandbox, config, stop, out)

    measuring = asyncio.create_task(when_ready())
    try:
        await run_bare_bot(endpoints.api_base, endpoints.gateway_url, stop=stop, ready=ready)
    except Exception as exc:
        out.setdefault("error", f"{type(exc).__name__}: {exc}")
    finally:
        measuring.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await measuring


async def _run_bot(
    sandbox: Any, endpoints: Any, config: E2EConfig, stop: asyncio.Event, out: dict[str, Any]
) -> None:
    from bot.components import Components
    from bot.frontend.app import serve
    from bot.settings import Settings

    tasks: set[asyncio.Task[None]] = set()

    async def on_ready(_components: Components) -> None:
        # In a task of its own: serve() awaits on_ready, which must not hold it for the window.
        task = asyncio.create_task(_measure(sandbox, config, stop, out))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    with tempfile.TemporaryDirectory(prefix="botctl-bench-") as tmp:
        settings = Settings().with_changes(
            llm_url=endpoints.llm_url,
            discord_api=endpoints.api_base,
            discord_gateway=endpoints.gateway_url,
            metrics_file=str(Path(tmp) / "metrics.jsonl"),
        )
        extra: dict[str, Any] = {}
        if "client_options" in inspect.signature(serve).parameters:
            # Ready as soon as the bare bot is (its guild_ready_timeout), not 2 s later.
            extra["client_options"] = {"guild_ready_timeout": BARE_READY_TIMEOUT}
        # The load is left running to the end (stopping it makes the sandbox wait until the bot
        # has read its backlog); a short drain, as replies after the window are not measured.
        result = await serve(
            settings,
            "sandbox-token",
            stop,
            on_ready=on_ready,
            drain_timeout=1.0,
            tune_gc=True,  # as `botctl run` does: this child is the bot's process
            **extra,
        )
    if result.error:
        out.setdefault("error", result.error)
    for task in list(tasks):
        task.cancel()


def run_child(config: E2EConfig, *, python: str = sys.executable) -> E2EResult:
    """One trial in a fresh child process (bounded in time); its result, or one saying why not."""
    timeout = config.warmup + config.duration + TRIAL_OVERHEAD_S
    env = dict(os.environ)
    env.pop("DISCORD_TOKEN", None)
    try:
        proc = subprocess.run(
            [python, "-m", "botctl.bench.e2e", config.to_json()],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return _failed(config, f"the trial did not finish within {timeout:.0f} s")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return _failed(config, f"the trial exited with code {proc.returncode}: {tail}")
    data = json.loads(lines[-1])
    return E2EResult(**data)


def _failed(config: E2EConfig, error: str) -> E2EResult:
    return E2EResult(config.kind, 0.0, 0.0, 0.0, 0, None, None, None, 0.0, None, error=error)


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
) -> dict[str, Any]:
    """Alternate bot and bare trials ``pairs`` times per duplicate ratio, both under ``load`` (at
    ``rate`` if given) on asyncio's loop, and the bot on uvloop too where installed; medians, the
    ratio of the medians and the ratio of each back-to-back pair."""
    if rate is not None:
        load = replace(load, rate=rate)
    rate = load.rate
    rows: list[dict[str, Any]] = []
    variants: list[tuple[str, Kind, str]] = [("bot", "bot", "asyncio"), ("bare", "bare", "asyncio")]
    if uvloop and eventloop.loop_name("uvloop") == "uvloop":
        variants.append(("bot_uvloop", "bot", "uvloop"))
    for dup in duplicate_ratios:
        trials: dict[str, list[E2EResult]] = {name: [] for name, _, _ in variants}
        for r in range(pairs):
            for name, kind, loop in rotated(variants, r):
                config = E2EConfig(
                    kind=kind,
                    loop=loop,
                    load=replace(load, duplicate_ratio=dup),
                    duration=duration,
                    warmup=warmup,
                )
                if progress is not None:
                    progress(
                        f"end to end: {kind} on {loop} at {rate:g} msg/s, {dup:.0%} duplicates, "
                        f"trial {r + 1}/{pairs}"
                    )
                trials[name].append(run_child(config))
        rows.append(_summarise(dup, rate, trials))
    return {"rate": rate, "duration_s": duration, "warmup_s": warmup, "pairs": pairs, "rows": rows}


def _summarise(dup: float, rate: float, trials: dict[str, list[E2EResult]]) -> dict[str, Any]:
    def stats(results: list[E2EResult]) -> dict[str, Any]:
        good = [t for t in results if t.error is None and t.window_s > 0]

        def med(values: list[float | None]) -> float | None:
            present = [v for v in values if v is not None]
            return median(present) if present else None

        return {
            "replies_per_s": med([t.replies_per_s for t in good]),
            "offered_per_s": med([t.offered_per_s for t in good]),
            "p50_ms": med([t.p50_ms for t in good]),
            "p95_ms": med([t.p95_ms for t in good]),
            "p99_ms": med([t.p99_ms for t in good]),
            "cpu_share_bot": med([ratio(t.bot_cpu_s, t.window_s) for t in good]),
            "cpu_ms_per_reply": med(
                [ratio(t.bot_cpu_s * 1000, t.replies) for t in good if t.replies > 0]
            ),
            "cpu_share_sandbox": med(
                [ratio(t.sandbox_cpu_s, t.window_s) for t in good if t.sandbox_cpu_s is not None]
            ),
            "samples": [round(t.replies_per_s, 1) for t in good],
            "errors": [t.error for t in results if t.error is not None],
        }

    def kept_up(side: dict[str, Any]) -> bool | None:
        replies, offered = side["replies_per_s"], side["offered_per_s"]
        if replies is None or not offered:
            return None
        return bool(replies >= KEPT_UP * offered)

    bot, bare = stats(trials["bot"]), stats(trials["bare"])
    bot["kept_up"], bare["kept_up"] = kept_up(bot), kept_up(bare)
    uv: dict[str, Any] | None = None
    if trials.get("bot_uvloop"):
        uv = stats(trials["bot_uvloop"])
        uv["kept_up"] = kept_up(uv)
    # Ratios per pair (bot trial r against bare trial r) as well as of the medians: a pair ran
    # back to back, so its ratio is the least exposed to slow drift.
    pair_ratios = [
        ratio(b.replies_per_s, c.replies_per_s)
        for b, c in zip(trials["bot"], trials["bare"], strict=False)
        if b.error is None and c.error is None and c.replies_per_s > 0
    ]
    vs_bare = (
        ratio(bot["replies_per_s"], bare["replies_per_s"])
        if bot["replies_per_s"] is not None and bare["replies_per_s"] is not None
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
        "cpu_per_reply_ratio": (
            ratio(bare["cpu_ms_per_reply"], bot["cpu_ms_per_reply"])
            if bot["cpu_ms_per_reply"] and bare["cpu_ms_per_reply"]
            else None
        ),
        # The bot on uvloop, against the same bare bot on asyncio's loop.
        "bot_uvloop": uv,
        "uvloop_cpu_per_reply_ratio": (
            ratio(bare["cpu_ms_per_reply"], uv["cpu_ms_per_reply"])
            if uv and uv["cpu_ms_per_reply"] and bare["cpu_ms_per_reply"]
            else None
        ),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    config = E2EConfig.from_json(args[0]) if args else E2EConfig()
    result = eventloop.run(run_trial(config), loop=config.loop)
    sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
