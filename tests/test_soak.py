"""Soak: ``botctl run`` in the sandbox at 50 messages a second for ``SOAK_SECONDS`` (default 600).

Samples the bot process's RSS (``VmRSS`` of ``/proc/PID/status``) every 10 s. After the warm-up
(``SOAK_WARMUP``, default half the run and at most 300 s: discord.py keeps a rate-limit bucket per
channel for 5 minutes, so its maps only reach their steady size then), RSS must grow less than 5 %,
and the periodic ``stats`` events must show the dedup and history structures within their bounds.

Outside the default run (``-m slow``): ``make soak``, or ``SOAK_SECONDS=60 make soak`` for a taste.
``SOAK_REPORT=path.json`` also writes the figures there.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from _faults import clean_env, read_events, stop_process, table_value

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
WARMUP = float(os.environ.get("SOAK_WARMUP", str(min(300.0, SOAK_SECONDS / 2))))
RATE = 50.0
SAMPLE_EVERY = 10.0
LLM_TIMEOUT = 10.0
MAX_GROWTH = 0.05

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@pytest.mark.timeout(SOAK_SECONDS + 240)
def test_soak_memory_and_structures_stay_bounded(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    config = tmp_path / "soak.toml"
    config.write_text("stats_interval = 10\n", encoding="utf-8")
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    args = ["run", "--rate", f"{RATE:g}", "--duration", f"{SOAK_SECONDS:g}", "--no-rate-limits"]
    args += ["--config", str(config), "--metrics-file", str(metrics)]
    args += ["--llm-timeout", f"{LLM_TIMEOUT:g}"]
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "botctl", *args],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=clean_env(),
        )
        samples: list[tuple[float, int]] = []
        started = time.monotonic()
        try:
            while proc.poll() is None:
                elapsed = time.monotonic() - started
                if elapsed > SOAK_SECONDS + 120:
                    raise AssertionError("the bot did not stop after --duration")
                rss = rss_kib(proc.pid)
                if rss is not None and elapsed <= SOAK_SECONDS:  # not the stop's own figures
                    samples.append((elapsed, rss))
                time.sleep(SAMPLE_EVERY - (time.monotonic() - started) % SAMPLE_EVERY)
        finally:
            stop_process(proc, signal.SIGTERM, 30.0)
    stdout = out_path.read_text()
    assert proc.returncode == 0, err_path.read_text()[-2000:]

    # Memory: the RSS around the end of the warm-up against the RSS at the end of the run.
    warm = [rss for t, rss in samples if t >= WARMUP]
    assert len(warm) >= 4, samples
    base = statistics.median(warm[:3])
    end = statistics.median(warm[-3:])
    growth = (end - base) / base
    peak_growth = (max(warm) - base) / base

    # Structures: every periodic snapshot within its bounds; the last one (after the graceful
    # stop) with nothing left in flight.
    stats = [e for e in read_events(metrics) if e["type"] == "stats"]
    assert len(stats) >= SOAK_SECONDS / 10 - 2
    pending = [e["dedup"]["pending_requests"] for e in stats]
    window = [e["dedup"]["window_entries"] for e in stats]
    window_bytes = [e["dedup"]["window_bytes"] for e in stats]
    channels = [e["history"]["channels"] for e in stats]
    capacity = stats[-1]["history"]["capacity"]
    buffered = [e["batch"]["pending_events"] for e in stats]
    messages = table_value(stdout, "messages")
    report: dict[str, Any] = {
        "seconds": SOAK_SECONDS,
        "warmup_s": WARMUP,
        "rate": RATE,
        "messages": messages,
        "rss_kib_at_warmup": base,
        "rss_kib_at_end": end,
        "rss_growth_pct": round(growth * 100, 2),
        "rss_peak_growth_pct": round(peak_growth * 100, 2),
        "rss_samples_kib": [rss for _, rss in samples],
        "pending_requests_max": max(pending),
        "pending_requests_final": pending[-1],
        "window_entries_max": max(window),
        "window_bytes_max": max(window_bytes),
        "history_channels_max": max(channels),
        "history_capacity": capacity,
        "metrics_buffer_max": max(buffered),
        "stats_events": len(stats),
    }
    print("soak:", orjson.dumps(report).decode())
    if os.environ.get("SOAK_REPORT"):
        Path(os.environ["SOAK_REPORT"]).write_bytes(
            orjson.dumps(report, option=orjson.OPT_INDENT_2)
        )

    assert messages >= 0.9 * RATE * SOAK_SECONDS, report
    assert growth < MAX_GROWTH, report
    # In flight: at most what the rate brings in within the LLM deadline.
    assert max(pending) <= RATE * LLM_TIMEOUT, report
    assert pending[-1] == 0, report
    assert max(window) <= 1024, report  # the deduplicator's entry cap
    assert max(window_bytes) <= 32 * 1024 * 1024, report
    assert max(channels) <= capacity, report
    assert all(e["batch"]["dropped_events"] == 0 for e in stats), report
    assert all(e["batch"]["write_errors"] == 0 for e in stats), report
