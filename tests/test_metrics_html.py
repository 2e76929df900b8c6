"""``botctl metrics summary --html``: the plots' numbers, the page's structure against ``--json``,
escaping, atomic writes and errors, and a real render in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import _png
import pytest
from typer.testing import CliRunner

from botctl.main import app
from botctl.metrics.events import Record
from botctl.metrics.series import histogram, nice_step, replies_over_time, step_for

T0 = 1_750_000_000.0
runner = CliRunner()


def rec(event: dict[str, Any]) -> Record:
    return Record(event, b"", 0)


# --------------------------------------------------------------------------------------------------
# The plots' numbers


def test_nice_steps_are_1_2_5_times_a_power_of_ten() -> None:
    assert [nice_step(x) for x in (0.3, 1, 1.5, 3, 7, 40, 120, 999)] == [
        0.5,
        1,
        2,
        5,
        10,
        50,
        200,
        1000,
    ]


def test_histogram_bins_are_round_and_hold_every_value() -> None:
    values = [float(v) for v in range(1, 301)]  # 1..300 ms
    hist = histogram(values, target_bins=30)
    assert hist.width == 10.0
    assert hist.edges[:3] == [0.0, 10.0, 20.0]
    assert hist.counts[0] == 9 and hist.counts[1] == 10 and hist.counts[-1] == 1  # 300 alone
    assert sum(hist.counts) == hist.total == 300
    assert not hist.open_ended


def test_a_long_tail_goes_to_one_open_bin() -> None:
    values = [100.0] * 200 + [60_000.0]  # one timeout among quick answers
    hist = histogram(values, target_bins=30)
    assert hist.open_ended
    assert hist.counts[-1] == 1 and sum(hist.counts) == 201
    assert hist.edges[-2] < 60_000.0 and len(hist.counts) <= 40


def test_empty_histogram_and_timeline() -> None:
    assert histogram([]).total == 0
    assert replies_over_time([]).buckets == 0


def test_replies_are_counted_per_10_s_on_round_clock_times() -> None:
    events = [{"ts": T0 + 3 + i, "type": "reply", "status": "ok"} for i in range(25)]
    events += [{"ts": T0 + 12.5, "type": "reply", "status": "error"}]
    events += [{"ts": T0 + 4 + i, "type": "message"} for i in range(0, 25, 2)]
    series = replies_over_time(rec(e) for e in events)
    assert series.step_s == 10.0
    assert series.start == T0  # T0 is a multiple of 10
    assert series.replies_ok == [7, 10, 8]  # T0+3..9, T0+10..19, T0+20..27
    assert series.replies_failed == [0, 1, 0]
    assert sum(series.messages) == 13
    assert (step_for(600), step_for(3600), step_for(2 * 86_400)) == (10.0, 60.0, 600.0)


# --------------------------------------------------------------------------------------------------
# The page against --json


def traffic() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(90):
        ts = T0 + i * 0.7
        events.append({"ts": ts, "type": "message", "run": "r1", "channel": "c", "user": "u"})
        events.append(
            {
                "ts": ts + 0.1,
                "type": "llm_call",
                "run": "r1",
                "model": "fast",
                "latency_ms": 200.0 + 13 * i,
                "dedup": "follower" if i % 4 == 0 else "leader",
                "status": "error" if i == 7 else "ok",
                "error": "LLMError" if i == 7 else None,
            }
        )
        events.append(
            {
                "ts": ts + 0.2,
                "type": "reply",
                "run": "r1",
                "latency_ms": 250.0 + 17 * i,
                "status": "error" if i == 7 else "ok",
            }
        )
    events.append({"ts": T0 + 5, "type": "error", "run": "r1", "where": "llm", "error": "LLMError"})
    events.append(
        {
            "ts": T0 + 64,
            "type": "stats",
            "run": "r1",
            "history": {"hits": 70, "misses": 20},
            "batch": {"flushes": 4, "events_written": 270},
        }
    )
    return events


class _Page(HTMLParser):
    """The figures (data-key -> data-value), the tags seen, and the text of the SVG titles."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, str] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.titles: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        key, value = found.get("data-key"), found.get("data-value")
        if key is not None and value is not None:
            self.figures[key] = value
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.titles.append(data)


def json_at(data: dict[str, Any], key: str) -> Any:
    value: Any = data
    for part in key.split("."):
        value = value[part]
    return value


@pytest.fixture
def page(tmp_path: Path) -> tuple[str, dict[str, Any], Path]:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(e) + "\n" for e in traffic()), encoding="utf-8")
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["metrics", "summary", str(metrics), "--html", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8"), json.loads(result.stdout), out


def test_the_page_shows_the_numbers_of_summary_json(page: tuple[str, dict[str, Any], Path]) -> None:
    html, data, _ = page
    parsed = _Page()
    parsed.feed(html)
    wanted = {
        "events",
        "counts.message",
        "counts.reply",
        "counts.llm_call",
        "reply_latency_ms.p50",
        "reply_latency_ms.p95",
        "reply_latency_ms.p99",
        "llm_latency_ms.p50",
        "llm_latency_ms.p95",
        "llm_latency_ms.p99",
        "llm_calls.upstream",
        "llm_calls.saved",
        "dedup_ratio",
        "history_hit_rate",
        "flushes",
        "events_written",
        "torn_lines",
        "errors.LLMError",
        "llm_errors.LLMError",
    }
    assert wanted <= set(parsed.figures)
    for key, shown in parsed.figures.items():
        assert json.loads(shown) == json_at(data, key), key
    assert data["reply_latency_ms"]["p95"] == 250.0 + 17 * 85  # the figures are not trivial
    assert "1,695.0" in html  # ... and shown formatted


def test_the_plots_are_svg_with_bars_a_line_and_labelled_axes(
    page: tuple[str, dict[str, Any], Path],
) -> None:
    html, data, _ = page
    parsed = _Page()
    parsed.feed(html)
    charts = [attrs.get("data-chart") for tag, attrs in parsed.tags if tag == "svg"]
    assert charts == ["histogram", "timeline", "histogram"]
    bars = [attrs for tag, attrs in parsed.tags if tag == "rect"]
    assert len(bars) > 20 and all(float(b["height"] or 0) >= 0 for b in bars)
    assert any(float(b["height"] or 0) > 50 for b in bars)
    paths = [attrs for tag, attrs in parsed.tags if tag == "path"]
    assert paths and (paths[0]["d"] or "").startswith("M")
    # Every reply is in one bar of the histogram (bar titles: "250 ms – 300 ms: 3 replies").
    in_bars = [
        int(m.group(1).replace(",", ""))
        for t in parsed.titles
        if (m := re.search(r": ([\d,]+) replies$", t))
    ]
    assert sum(in_bars) == data["counts"]["reply"] == 90
    for label in ("reply latency", "replies per bin", "local time, per 10 s", "per 10 s"):
        assert f">{label}</text>" in html
    assert re.search(r">\d+ ms</text>", html) and re.search(r">\d\d:\d\d:\d\d</text>", html)


def test_the_page_needs_no_network(page: tuple[str, dict[str, Any], Path]) -> None:
    html, _, _ = page
    lowered = html.lower()
    for needle in ("<script", "src=", "href=", "url(", "@import", "<link", "http:", "https:"):
        assert needle not in lowered, needle


def test_text_from_the_file_is_escaped(tmp_path: Path) -> None:
    metrics = tmp_path / "m.jsonl"
    evil = '<script>alert("x")</script>'
    events = [
        {"ts": T0, "type": "error", "run": '"><b>run', "where": "x", "error": evil},
        {"ts": T0 + 1, "type": "reply", "run": '"><b>run', "latency_ms": 10.0, "status": "ok"},
    ]
    metrics.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    out = tmp_path / "page.html"
    result = runner.invoke(app, ["metrics", "summary", str(metrics), "--html", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert "<script" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;b&gt;run" in html


def test_written_atomically_replacing_the_old_page(
    page: tuple[str, dict[str, Any], Path], tmp_path: Path
) -> None:
    _, _, out = page
    before = out.stat().st_ino
    metrics = tmp_path / "metrics.jsonl"
    result = runner.invoke(app, ["metrics", "summary", str(metrics), "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_ino != before  # a new file renamed over the old one
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl", "report.html"]


def test_an_unwritable_out_is_a_one_line_error(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps(traffic()[0]) + "\n", encoding="utf-8")
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    # A path under a file: the OS refuses (1); a directory: bad usage, said by the parser (2).
    for out, code in ((blocker / "page.html", 1), (tmp_path, 2)):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "botctl",
                "metrics",
                "summary",
                str(metrics),
                "--html",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == code, done.stderr
        assert "Traceback" not in done.stderr
        if code == 1:
            assert done.stderr.count("\n") == 1, done.stderr
            assert f"cannot write {out}: not a directory; choose another --html path" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "metrics.jsonl"]


# --------------------------------------------------------------------------------------------------
# Headless Chromium

CHROMIUM = shutil.which("chromium")
GREEN = (0x2D, 0xA4, 0x4E)  # svg .bar


@pytest.mark.integration
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_the_page_renders_its_plots_in_headless_chromium(
    page: tuple[str, dict[str, Any], Path], tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    _, _, out = page
    shot = tmp_path / "shot.png"
    profile = tmp_path / "chromium-profile"
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1200,900",
            f"file://{out}",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=90,
        start_new_session=True,
    )
    assert shot.exists(), done.stderr.decode(errors="replace")[-2000:]
    width, height, rows = _png.decode(shot.read_bytes())
    assert (width, height) == (1200, 900)
    # The reply latency histogram sits in the first screen: its bars are drawn in their green.
    plot = [pixel for row in rows[200:700] for pixel in row[100:1100]]
    green = sum(1 for pixel in plot if _png.near(pixel, GREEN))
    assert green > 10_000, f"only {green} bar pixels"
    assert len(set(plot)) > 50  # axes, grid, text anti-aliasing: not a blank or flat area
    assert os.path.getsize(shot) > 10_000
