"""Profiler overhead: sandbox throughput with no profiler against each ``botctl profile`` mode.

The bot runs as ``botctl run`` would (a child process, the sandbox in its own process), against an
LLM served by ``botctl sandbox llm`` with no latency and every token at once, at 200 msg/s: about
two thirds of what it carries here without a profiler. (At a saturating load this bot's throughput
collapses as its backlog grows, by an amount that varies from run to run, so the ratios there
measure the collapse more than the profiler.) The question answered is whether the bot still
carries that load under each profiler; the only difference between runs is the profiler:

- ``none``: the bot started and stopped exactly as ``botctl profile`` does it
  (``botctl.profile.launcher.LaunchedBot``), with nothing attached;
- ``cprofile``, ``pyspy``, ``memory``: ``botctl profile --mode M`` as a user runs it.

Throughput is read from each run's metrics file: replies per second between its first message (plus
a warm-up) and its last. Modes are interleaved round by round and the medians compared. If
``botctl profile`` is missing or a mode fails, that mode is "not measured" with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botctl.bench.common import median, ratio, rotated

MODES = ("none", "cprofile", "pyspy", "memory")
WARMUP_S = 1.0
LLM_START_TIMEOUT_S = 30.0
RUN_OVERHEAD_S = 150.0  # start-up, the memory report, a slow stop: bounded, never waited on forever


def throughput(path: Path, warmup: float = WARMUP_S) -> dict[str, Any] | None:
    """Replies per second inside [first message + warm-up, last message] of a metrics file."""
    messages: list[float] = []
    replies: list[float] = []
    try:
        with path.open("rb") as f:
            for raw in f:
                try:
                    event = json.loads(raw)
                    ts, kind = float(event["ts"]), event["type"]
                except (ValueError, KeyError, TypeError):
                    continue
                if kind == "message":
                    messages.append(ts)
                elif kind == "reply":
                    replies.append(ts)
    except OSError:
        return None
    if len(messages) < 2:
        return None
    start, end = min(messages) + warmup, max(messages)
    if end <= start:
        return None
    inside = sum(1 for ts in replies if start <= ts <= end)
    sent = sum(1 for ts in messages if start <= ts <= end)
    window = end - start
    return {"replies_per_s": inside / window, "offered_per_s": sent / window, "window_s": window}


class LLM:
    """``botctl sandbox llm`` on a free port, as a child process we stop by its pid."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> LLM:
        cmd = [sys.executable, "-m", "botctl", "sandbox", "llm", "--port", "0"]
        cmd += ["--latency", "0", "--tokens-per-second", "0"]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + LLM_START_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if "http://127.0.0.1:" in line:
                self.url = "http://127.0.0.1:" + line.split("http://127.0.0.1:", 1)[1].split()[0]
                return self
        self.__exit__()
        raise RuntimeError("botctl sandbox llm did not print its address")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _run_none(args: list[str], duration: float) -> str | None:
    from botctl.profile.launcher import LaunchedBot, bot_command

    with LaunchedBot(bot_command(args)) as bot:
        bot.start()
        bot.wait_until_up()
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline and bot.alive():
            time.sleep(0.1)
        ended = bot.stop()
    if ended.returncode not in (0, None) or ended.killed:
        return f"the bot exited with code {ended.returncode}{' (killed)' if ended.killed else ''}"
    return None


def _run_mode(mode: str, args: list[str], duration: float, directory: Path, i: int) -> str | None:
    output = directory / {"cprofile": f"p{i}.prof", "pyspy": f"p{i}.svg", "memory": f"m{i}"}[mode]
    cmd = [sys.executable, "-m", "botctl", "profile", "--mode", mode, "--duration", f"{duration:g}"]
    cmd += ["--output", str(output), "--", *args]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=duration + RUN_OVERHEAD_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return (
            f"botctl profile --mode {mode} did not finish within {duration + RUN_OVERHEAD_S:.0f} s"
        )
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        return f"botctl profile --mode {mode} exited with {proc.returncode}: {tail[0][:200]}"
    return None


def run_profiler_overhead(
    *,
    rate: float = 200.0,
    duration: float = 10.0,
    rounds: int = 2,
    modes: tuple[str, ...] = MODES,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    try:
        import botctl.commands.profile
        import botctl.profile.launcher  # noqa: F401
    except ImportError as exc:
        return {"available": False, "reason": f"botctl profile is not importable ({exc})"}
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    offered: dict[str, list[float]] = {mode: [] for mode in modes}
    errors: dict[str, list[str]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory(prefix="botctl-bench-profile-") as tmp, LLM() as llm:
        directory = Path(tmp)
        for r in range(rounds):
            for mode in rotated(list(modes), r):
                if progress is not None:
                    progress(f"profiler overhead: {mode}, round {r + 1}/{rounds}")
                metrics = directory / f"{mode}-{r}.jsonl"
                args = ["--llm-url", llm.url, "--rate", f"{rate:g}", "--duplicate-ratio", "0"]
                args.append("--no-rate-limits")  # a load test, not a test of Discord's limits
                args += ["--channels", "100", "--users", "50", "--metrics-file", str(metrics)]
                try:
                    if mode == "none":
                        error = _run_none(args, duration)
                    else:
                        error = _run_mode(mode, args, duration, directory, r)
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                figure = throughput(metrics)
                if figure is None and error is None:
                    error = "no traffic in the metrics file"
                if error is not None:
                    errors[mode].append(error)
                elif figure is not None:
                    samples[mode].append(figure["replies_per_s"])
                    offered[mode].append(figure["offered_per_s"])
                with contextlib.suppress(OSError):
                    os.unlink(metrics)
    base = median(samples["none"]) if samples.get("none") else None
    rows = {}
    for mode in modes:
        value = median(samples[mode]) if samples[mode] else None
        rows[mode] = {
            "replies_per_s": value,
            "offered_per_s": median(offered[mode]) if offered[mode] else None,
            "samples": [round(x, 1) for x in samples[mode]],
            "vs_none": ratio(value, base) if value is not None and base else None,
            "errors": errors[mode],
        }
    return {
        "available": True,
        "rate": rate,
        "duration_s": duration,
        "rounds": rounds,
        "modes": rows,
    }
