"""``botctl analyze``: tables, JSON, baselines, user errors, and ``--web`` seen by a real browser."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import cProfile
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from botctl.analyze.web import free_port
from botctl.errors import BotctlError
from botctl.main import app, main

runner = CliRunner()
CHROMIUM = "/usr/bin/chromium"


def step(n: int) -> int:
    return sum(i * i for i in range(n))


def only_in_old() -> list[int]:
    return sorted(range(3000), key=lambda x: -x)


def only_in_new() -> str:
    return json.dumps({"k": list(range(800))})


def old_workload() -> None:
    for _ in range(2):
        step(3000)
    only_in_old()


def new_workload() -> None:
    for _ in range(6):
        step(3000)
    only_in_new()


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("analyze")
    paths = []
    for name, workload in (("new", new_workload), ("old", old_workload)):
        profiler = cProfile.Profile()
        profiler.runcall(workload)
        path = directory / f"{name}.prof"
        profiler.dump_stats(path)
        paths.append(path)
    return paths[0], paths[1]


def invoke(*args: str, columns: int = 200) -> Result:
    """In-process, on a terminal wide enough for a row per function unless told otherwise."""
    return runner.invoke(app, ["analyze", *args], env={"COLUMNS": str(columns)})


# --------------------------------------------------------------------------------------------------
# In-process


def test_table_sorted_limited(profiles: tuple[Path, Path]) -> None:
    result = invoke(str(profiles[0]), "--limit", "4")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "new_workload" in out
    assert "cumtime" in out and "tottime" in out
    rows = [x for x in out.splitlines() if x.split() and x.split()[0].replace(",", "").isdigit()]
    assert len(rows) == 4


def test_json_sort_limit_filter(profiles: tuple[Path, Path]) -> None:
    result = invoke(str(profiles[0]), "--json", "--sort", "ncalls", "--limit", "3")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["sort"] == "ncalls"
    functions = data["functions"]
    assert len(functions) == 3
    assert functions[0]["function"] == "<genexpr>"
    assert functions[0]["ncalls"] == 6 * 3001
    calls = [f["ncalls"] for f in functions]
    assert calls == sorted(calls, reverse=True)
    assert set(functions[0]) >= {
        "file",
        "line",
        "function",
        "ncalls",
        "primitive_calls",
        "tottime",
        "cumtime",
        "tottime_per_call",
        "cumtime_per_call",
    }

    result = invoke(str(profiles[0]), "--json", "--sort", "tottime", "--filter", "^step$|only_in")
    data = json.loads(result.stdout)
    assert {f["function"] for f in data["functions"]} == {"step", "only_in_new"}
    own = [f["tottime"] for f in data["functions"]]
    assert own == sorted(own, reverse=True)

    result = invoke(str(profiles[0]), "--json", "--limit", "0")
    assert (
        len(json.loads(result.stdout)["functions"]) == json.loads(result.stdout)["functions_total"]
    )


def test_baseline_table_and_json(profiles: tuple[Path, Path]) -> None:
    new, old = profiles
    result = invoke(str(new), "--baseline", str(old), "--limit", "0")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()

    def row(name: str) -> str:
        return next(x for x in lines if f"({name})" in x)

    assert row("only_in_new").split()[0] == "new"
    assert row("only_in_old").split()[0] == "vanished"
    assert row("step").split()[0] == "changed"
    assert "2→6" in row("step")

    result = invoke(str(new), "--baseline", str(old), "--json", "--filter", "only_in|^step$")
    assert result.exit_code == 0, result.output
    diff = json.loads(result.stdout)["diff"]
    status = {d["function"]: d["status"] for d in diff}
    assert status == {"only_in_new": "new", "only_in_old": "vanished", "step": "changed"}
    step_row = next(d for d in diff if d["function"] == "step")
    assert (step_row["ncalls_old"], step_row["ncalls_new"], step_row["ncalls_delta"]) == (2, 6, 4)
    changes = [abs(d["cumtime_delta"]) for d in diff]
    assert changes == sorted(changes, reverse=True)


def deep_profiles(tmp_path: Path) -> tuple[Path, Path]:
    """Two profiles of code in a deep folder, as a bot installed somewhere long is."""
    source = tmp_path / "a-long-checkout-folder" / "of-someone" / "bot" / "delivery.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "def deliver_every_part_of_the_answer(n):\n    return sum(i * i for i in range(n))\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(source.read_text(), str(source), "exec"), namespace)
    paths = []
    for name, n in (("new", 40_000), ("old", 10_000)):
        profiler = cProfile.Profile()
        profiler.runcall(namespace["deliver_every_part_of_the_answer"], n)
        paths.append(tmp_path / f"{name}.prof")
        profiler.dump_stats(paths[-1])
    return paths[0], paths[1]


@pytest.mark.parametrize("baseline", [True, False], ids=["diff", "top"])
def test_at_80_columns_paths_are_shortened_never_cut(tmp_path: Path, baseline: bool) -> None:
    """Issue 10, defect 8: `change pe`, `bot/delivery.p` at 80 columns."""
    new, old = deep_profiles(tmp_path)
    args = [str(new), "--filter", "bot/"] + (["--baseline", str(old)] if baseline else [])
    result = invoke(*args, columns=80)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    headers = ("Δ tottime", "Δ cumtime", "file(function)") if baseline else ("file:line(function)",)
    for header in headers:
        assert header in result.stdout
    rows = [line for line in lines if "delivery.py" in line]
    assert rows, result.stdout
    # Folders dropped from the left, the file name whole and followed by its line or function.
    assert all(re.search(r"…/(\S+/)?delivery\.py([:(]|\s*$)", row) for row in rows), result.stdout


def test_latest_picks_the_newest_cprofile_in_profiles(
    profiles: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README's `botctl analyze profiles/cprofile-*.prof` fails once two profiles exist."""
    monkeypatch.chdir(tmp_path)
    assert "run `botctl profile --mode cprofile` first" in str(invoke("--latest").exception)
    folder = tmp_path / "profiles"
    folder.mkdir()
    older, newer = (
        folder / "cprofile-20260101-000000.prof",
        folder / "cprofile-20260102-000000.prof",
    )
    shutil.copy(profiles[1], older)
    shutil.copy(profiles[0], newer)
    os.utime(older, (1_000_000, 1_000_000))
    data = json.loads(invoke("--latest", "--json").stdout)
    assert data["profile"] == str(Path("profiles") / newer.name)
    assert invoke(str(newer), "--latest").exit_code == 2  # one or the other
    assert invoke().exit_code == 2


def test_bad_regex_missing_and_corrupt_files(
    profiles: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = invoke(str(profiles[0]), "--filter", "(unclosed")
    assert isinstance(result.exception, BotctlError)
    assert "regular expression" in result.exception.message

    corrupt = tmp_path / "corrupt.prof"
    corrupt.write_bytes(b"\x00garbage that marshal cannot read")
    for args in (
        [str(tmp_path / "absent.prof")],
        [str(corrupt)],
        [str(profiles[0]), "--baseline", str(corrupt)],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["analyze", *args])
        assert exit_info.value.code == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        assert "is not a pstats profile" in captured.err
        assert "Traceback" not in captured.err


def test_web_with_json_is_bad_usage(profiles: tuple[Path, Path]) -> None:
    result = invoke(str(profiles[0]), "--web", "--json")
    assert result.exit_code == 2


# --------------------------------------------------------------------------------------------------
# Subprocesses


def botctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "botctl", *args]


@pytest.mark.integration
def test_missing_and_corrupt_subprocess(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.prof"
    corrupt.write_text("not a profile", encoding="utf-8")
    for target in (tmp_path / "absent.prof", corrupt):
        done = subprocess.run(
            botctl("analyze", str(target)), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1
        assert done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1
        assert f"{target} is not a pstats profile" in done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_json_subprocess(profiles: tuple[Path, Path]) -> None:
    done = subprocess.run(
        botctl("analyze", str(profiles[0]), "--baseline", str(profiles[1]), "--json"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert {d["status"] for d in json.loads(done.stdout)["diff"]} >= {"new", "vanished", "changed"}


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url


@pytest.fixture
def served(profiles: tuple[Path, Path]) -> Iterator[Served]:
    """``botctl analyze --web`` in a subprocess, up and answering; stopped by Ctrl-C afterwards."""
    proc = subprocess.Popen(
        botctl("analyze", str(profiles[0]), "--web"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = ""
        deadline = time.monotonic() + 40
        # botctl prints the address only once snakeviz answers; readline is bounded by the
        # process: if it dies, stdout closes.
        while time.monotonic() < deadline:
            text = proc.stdout.readline()
            if not text:
                break
            if text.startswith("http://"):
                url = text.strip()
                break
        assert url, f"no URL printed; stderr: {proc.stderr.read() if proc.stderr else ''}"
        yield Served(proc, url)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.integration
def test_web_serves_the_profile_and_ctrl_c_stops_it(
    served: Served, profiles: tuple[Path, Path]
) -> None:
    parsed = urllib.parse.urlsplit(served.url)
    assert parsed.hostname == "127.0.0.1"
    assert parsed.port not in (None, 0)
    expected_path = "/snakeviz/" + urllib.parse.quote(str(profiles[0].resolve()), safe="")
    assert parsed.path == expected_path
    with urllib.request.urlopen(served.url, timeout=10) as response:
        assert response.status == 200
        assert b"snakeviz" in response.read().lower()

    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(timeout=15) == 0
    assert served.proc.stderr is not None
    assert "Traceback" not in served.proc.stderr.read()
    # snakeviz went with it.
    with pytest.raises(OSError):
        urllib.request.urlopen(served.url, timeout=2)


def png_is_not_blank(png: bytes) -> bool:
    """True when the PNG's pixels are not all one colour (decodes IDAT; filters left in)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat = 8, b""
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        if kind == b"IDAT":
            idat += png[offset + 8 : offset + 8 + length]
        offset += 12 + length
    raw = zlib.decompress(idat)
    return len(set(raw)) > 16


CHART_DRAWN = """(() => {
  const svg = document.querySelector('#chart svg');
  const shapes = svg ? svg.querySelectorAll('path, rect').length : 0;
  const spinner = document.querySelector('#working-spinner');
  const busy = spinner !== null && getComputedStyle(spinner).display !== 'none';
  return shapes > 0 && !busy;
})()"""


async def screenshot_when_chart_drawn(devtools_port: int, url: str, timeout: float) -> bytes:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        targets: list[dict[str, Any]] = []
        while not targets:
            try:
                async with session.get(f"http://127.0.0.1:{devtools_port}/json/list") as resp:
                    targets = [t for t in await resp.json() if t.get("type") == "page"]
            except aiohttp.ClientError:
                pass
            if not targets:
                assert time.monotonic() < deadline, "Chromium's DevTools never answered"
                await asyncio.sleep(0.2)

        async with session.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            next_id = 0

            async def call(method: str, **params: Any) -> dict[str, Any]:
                nonlocal next_id
                next_id += 1
                await ws.send_json({"id": next_id, "method": method, "params": params})
                while True:
                    remaining = deadline - time.monotonic()
                    assert remaining > 0, f"DevTools {method} timed out"
                    message = await ws.receive_json(timeout=remaining)
                    if message.get("id") == next_id:
                        assert "error" not in message, message
                        return dict(message["result"])

            await call("Page.enable")
            await call("Page.navigate", url=url)
            # snakeviz creates an empty `#chart svg` as its script loads; a web worker computes
            # the hierarchy and only then are the shapes drawn and the spinner hidden.
            while True:
                result = await call("Runtime.evaluate", expression=CHART_DRAWN, returnByValue=True)
                if result["result"].get("value") is True:
                    break
                assert time.monotonic() < deadline, "snakeviz never drew its chart"
                await asyncio.sleep(0.25)
            await asyncio.sleep(0.5)  # d3 transitions settle
            shot = await call("Page.captureScreenshot", format="png")
            return base64.b64decode(shot["data"])


@pytest.mark.integration
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")
def test_web_page_draws_its_chart_in_headless_chromium(served: Served) -> None:
    devtools_port = free_port()
    with tempfile.TemporaryDirectory(prefix="botctl-chromium-") as profile_dir:
        browser = subprocess.Popen(
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
                f"--user-data-dir={profile_dir}",
                f"--remote-debugging-port={devtools_port}",
                "--window-size=1280,900",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its helper processes share our kill below
        )
        try:
            png = asyncio.run(screenshot_when_chart_drawn(devtools_port, served.url, 60))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(browser.pid, signal.SIGTERM)
            try:
                browser.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(browser.pid, signal.SIGKILL)
                browser.wait(timeout=10)
    assert len(png) > 10_000
    (width, height) = struct.unpack(">II", png[16:24])
    assert width >= 800 and height >= 600
    assert png_is_not_blank(png)
