"""``botctl profile``: every mode against the real bot in the sandbox, as real subprocesses.

The unit tests at the top need no bot; the integration ones run the bot for a few seconds each.
"""

from __future__ import annotations

import json
import os
import pstats
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botctl.console import console
from botctl.main import app
from botctl.profile.attach import catches_signal, is_botctl_run
from botctl.profile.launcher import BotExit
from botctl.profile.pyspy import PySpyOptions, build_command, parse_failure
from botctl.profile.request import OutputFile, ProfileResult, default_output, memory_prefix
from botctl.profile.throughput import SummaryCounts, counts_from_summary, throughput
from botctl.reporters.profile import ProfileReporter

BOT = [sys.executable, "-m", "botctl"]
LOAD = ["--rate", "10", "--users", "5", "--channels", "5"]

# py-spy 0.4's own words when it may not ptrace the target (non-root, Yama scope 1).
PYSPY_DENIED = (
    "Permission Denied: Try running again with elevated permissions by going "
    "'sudo env \"PATH=$PATH\" !!'\n"
)
PYSPY_DENIED_DOCKER = (
    "Permission Denied\n\nIt looks like you are running in a docker container. Please make sure "
    "you started your container with the SYS_PTRACE capability. See "
    "https://github.com/benfred/py-spy#how-do-i-run-py-spy-in-docker for more details\n"
)
PYSPY_NO_PROCESS = (
    "Error: Failed to get process executable name. Check that the process is running.\n\n"
    "Caused by:\n    0: No such file or directory (os error 2)\n"
)


def botctl(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BOT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


# --------------------------------------------------------------------------------------------------
# Units


@pytest.mark.parametrize("text", [PYSPY_DENIED, PYSPY_DENIED_DOCKER])
def test_pyspy_permission_error_says_how_to_fix(text: str) -> None:
    message = parse_failure(text, 4242)
    assert "4242" in message
    assert "CAP_SYS_PTRACE" in message
    assert "ptrace_scope=0" in message
    assert "root" in message
    assert "\n" not in message


def test_pyspy_other_errors_keep_py_spys_reason() -> None:
    message = parse_failure(PYSPY_NO_PROCESS, 7)
    assert message.startswith("py-spy could not profile pid 7: Failed to get process")
    assert "\n" not in message


def test_pyspy_command_defaults_to_gil_and_whole_seconds(tmp_path: Path) -> None:
    out = tmp_path / "x.svg"
    command = build_command("py-spy", 12, out, 2.2, PySpyOptions())
    assert command[:4] == ["py-spy", "record", "--pid", "12"]
    assert command[command.index("--duration") + 1] == "3"
    assert "--gil" in command and "--idle" not in command
    options = PySpyOptions(format="raw", rate=250, gil=False, nonblocking=True, subprocesses=True)
    command = build_command("py-spy", 12, out, 5, options)
    assert "--gil" not in command
    assert {"--nonblocking", "--subprocesses"} <= set(command)
    assert command[command.index("--format") + 1] == "raw"
    assert command[command.index("--rate") + 1] == "250"


def test_default_outputs_and_memory_prefixes() -> None:
    assert default_output("cprofile").parent == Path("profiles")
    assert default_output("cprofile").name.startswith("cprofile-")
    assert default_output("cprofile").suffix == ".prof"
    assert default_output("pyspy", "speedscope").name.endswith(".speedscope.json")
    assert default_output("pyspy", "raw").suffix == ".txt"
    assert memory_prefix(Path("a/m.json")) == Path("a/m")
    assert memory_prefix(Path("a/m")) == Path("a/m")


SUMMARY = (
    "Summary (6.2 s)\n│ messages                   │     18  (2.9/s) │\n"
    "│ replies                    │  17  (0 errors) │\n"
)


def test_throughput_from_the_bots_summary_alone() -> None:
    counts = counts_from_summary(SUMMARY)
    assert counts == SummaryCounts(messages=18, replies=17, elapsed_s=6.2)
    found = throughput(SUMMARY, None, since=0.0)
    assert found is not None
    assert (found.messages, found.replies, found.replies_in_window) == (18, 17, None)
    assert found.replies_per_s == pytest.approx(17 / 6.2)


def test_profile_counts_what_the_bots_summary_counts_and_rates_the_traffic(
    tmp_path: Path,
) -> None:
    """Issue 10, defect 10: the profile said "answered 148" above a summary saying 184 replies."""
    metrics = tmp_path / "m.jsonl"
    events = [
        {"ts": 5.0, "type": "message", "run": "old"},  # an older run: ignored
        {"ts": 100.0, "type": "message", "run": "new"},
        {"ts": 101.0, "type": "reply", "run": "new"},
        {"ts": 102.0, "type": "message", "run": "new"},
        {"ts": 103.0, "type": "reply", "run": "new"},  # after the last message: the drain
    ]
    metrics.write_text("\n".join(json.dumps(e) for e in events) + "\n{torn")
    summary = SUMMARY.replace("18  (2.9/s)", " 2  (0.3/s)").replace(
        "17  (0 errors)", " 2  (0 errors)"
    )
    found = throughput(summary, metrics, since=50.0)
    assert found is not None
    assert (found.messages, found.replies) == (2, 2)  # as the summary says: one source
    assert (found.replies_in_window, found.window_s) == (1, 2.0)
    assert found.replies_per_s == 0.5

    ended = BotExit(
        command=["botctl", "run"],
        pid=1,
        returncode=0,
        killed=False,
        stdout=summary,
        launched_at=50.0,
        profiled_s=3.0,
        peak_rss_kib=None,
        metrics_file=metrics,
    )
    result = ProfileResult(
        mode="pyspy", target="the bot", pid=1, outputs=[], profiled_s=3.0, top=5, bot=ended
    )
    with console.capture() as captured:
        ProfileReporter()._bot(result)
    text = " ".join(captured.get().split())
    assert "took 2 messages and answered 2 of them" in text
    assert "1 reply while the traffic flowed (2.0 s" in text


def test_at_80_columns_written_paths_keep_their_file_name_and_help_keeps_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10, defect 8: the "Written" table split file names; `profile -h` cut a default."""
    monkeypatch.setenv("COLUMNS", "80")
    deep = tmp_path / "a-rather-long-folder-name" / "and-another-one" / "profiles"
    out = deep / "cprofile-20261202-132233.prof"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"x" * 2048)
    result = ProfileResult(
        mode="cprofile",
        target="the bot",
        pid=1,
        outputs=[OutputFile(out, "cProfile profile (pstats)")],
        profiled_s=1.0,
        top=5,
    )
    with console.capture() as captured:
        ProfileReporter()._written(result)
    lines = captured.get().splitlines()
    assert all(len(line) <= 80 for line in lines)
    row = next(line for line in lines if "cprofile-" in line)
    assert "…/" in row and out.name in row and "2.0 KiB" in row

    help_text = CliRunner().invoke(app, ["profile", "-h"]).stdout
    assert "…" not in help_text
    assert "[default: MODE-DATE-TIME.EXT under profiles/]" in " ".join(
        part.strip(" │") for part in help_text.splitlines()
    )


def test_sample_rate_is_the_name_and_rate_a_hidden_alias(tmp_path: Path) -> None:
    help_text = CliRunner().invoke(app, ["profile", "-h"], env={"COLUMNS": "120"}).stdout
    assert "--sample-rate" in help_text
    assert "--rate " not in help_text.replace("-- --rate", "")  # hidden (the bot's own stays)
    both = CliRunner().invoke(app, ["profile", "-m", "pyspy", "--rate", "5", "--sample-rate", "5"])
    assert both.exit_code == 1
    assert "old name of --sample-rate" in str(both.exception)
    # The alias still works for a release: here it reaches the check that py-spy options need
    # --mode pyspy, under its new name, after a note that the name changed.
    old = CliRunner().invoke(app, ["profile", "-m", "cprofile", "--rate", "5"])
    assert old.exit_code == 1
    assert "--sample-rate apply to --mode pyspy only" in str(old.exception)
    assert "--rate is now --sample-rate" in old.stderr


def test_cmdline_check_knows_a_bot_from_another_process() -> None:
    assert is_botctl_run(os.getpid()) is False


def test_signal_check_reads_the_handlers_of_a_process() -> None:
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    try:
        assert catches_signal(os.getpid(), signal.SIGUSR1) is True
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert catches_signal(os.getpid(), signal.SIGUSR1) is False


def test_cprofile_pid_never_signals_a_process_that_is_not_a_bot(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    # This very process would die of a SIGUSR1: the check must refuse before signalling.
    args = ("profile", "--mode", "cprofile", "--pid", str(os.getpid()), "--duration", "1")
    assert "is not `botctl run`" in one_line_error(botctl(*args, cwd=tmp_path, env=clean_env))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--mode", "memory", "--pid", "1"], "cannot attach"),
        (["--mode", "cprofile", "--format", "raw"], "--mode pyspy only"),
        (["--mode", "pyspy", "--backend", "memray"], "--mode memory only"),
        (["--mode", "pyspy", "--pid", "1", "--", "--rate", "3"], "drop --pid"),
    ],
)
def test_bad_combinations_are_one_line_errors(
    args: list[str], expected: str, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    assert expected in one_line_error(botctl("profile", *args, cwd=tmp_path, env=clean_env))


def test_the_bots_options_are_checked_before_anything_starts(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    # Bad usage of the bot's options is bad usage (2, with run's usage); a bad value one line.
    result = botctl("profile", "--mode", "cprofile", "--", "--bogus", cwd=tmp_path, env=clean_env)
    assert result.returncode == 2
    assert "botctl run" in result.stderr and "--bogus" in result.stderr
    assert "the bot exited" not in result.stderr and "Traceback" not in result.stderr
    bad = botctl(
        "profile", "--mode", "cprofile", "--", "--batch-size", "-3", cwd=tmp_path, env=clean_env
    )
    assert "batch_size: expected a whole number >= 1, got -3" in one_line_error(bad)
    assert not (tmp_path / "profiles").exists() or not any((tmp_path / "profiles").iterdir())


def test_mode_is_required(tmp_path: Path, clean_env: dict[str, str]) -> None:
    result = botctl("profile", cwd=tmp_path, env=clean_env)
    assert result.returncode == 2
    assert "--mode" in result.stderr


def test_guide(tmp_path: Path, clean_env: dict[str, str]) -> None:
    result = botctl("profile", "--mode", "guide", cwd=tmp_path, env=clean_env)
    assert result.returncode == 0, result.stderr
    assert "Reading a flamegraph" in result.stdout
    assert "What each mode costs" in result.stdout


@pytest.mark.integration
def test_pid_that_does_not_exist(tmp_path: Path, clean_env: dict[str, str]) -> None:
    for mode in ("cprofile", "pyspy"):
        args = ("profile", "--mode", mode, "--pid", "4194304", "--duration", "1")
        message = one_line_error(botctl(*args, cwd=tmp_path, env=clean_env))
        assert "no process with pid 4194304" in message


# --------------------------------------------------------------------------------------------------
# Against the bot


def bot_functions(stats: pstats.Stats) -> set[str]:
    table = stats.stats  # type: ignore[attr-defined]
    return {f"{Path(file).name}:{name}" for file, _line, name in table if f"bot{os.sep}" in file}


@pytest.mark.integration
def test_cprofile_profiles_the_bot(tmp_path: Path, clean_env: dict[str, str]) -> None:
    out = tmp_path / "out" / "bot.prof"  # the folder does not exist yet
    args = ["profile", "--mode", "cprofile", "--duration", "4", "-o", str(out), "--top", "5"]
    args += ["--", *LOAD, "--metrics-file", str(tmp_path / "m.jsonl")]
    result = botctl(*args, cwd=tmp_path, env=clean_env)
    assert result.returncode == 0, result.stderr
    functions = bot_functions(pstats.Stats(str(out)))
    assert any(f.startswith(("engine.py:", "delivery.py:")) for f in functions), functions
    assert "replies/s" in result.stdout
    assert f"botctl analyze {out}" in result.stdout
    assert "Summary of run " in result.stdout  # the bot's own summary
    # The profile's sentence and the bot's summary under it count the same messages and replies.
    said = re.search(r"took (\d+) messages? and answered (\d+) of them", result.stdout)
    messages = re.search(r"│ messages\s+│\s+(\d+)", result.stdout)
    replies = re.search(r"│ replies\s+│\s+(\d+)", result.stdout)
    assert said and messages and replies, result.stdout
    assert (said[1], said[2]) == (messages[1], replies[1])


@pytest.mark.integration
def test_pyspy_speedscope(tmp_path: Path, clean_env: dict[str, str]) -> None:
    out = tmp_path / "flame.speedscope.json"
    args = ["profile", "--mode", "pyspy", "--format", "speedscope", "--duration", "3"]
    args += ["-o", str(out), "--", *LOAD, "--metrics-file", str(tmp_path / "m.jsonl")]
    result = botctl(*args, cwd=tmp_path, env=clean_env)
    if result.returncode == 1 and "no permission to ptrace" in result.stderr:
        pytest.skip(f"py-spy may not attach here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["profiles"][0]["samples"]
    files = {str(frame.get("file", "")) for frame in data["shared"]["frames"]}
    assert any(f"bot{os.sep}" in file for file in files), sorted(files)[:20]
    assert "speedscope.app" in result.stdout


@pytest.mark.integration
def test_memory_report(tmp_path: Path, clean_env: dict[str, str]) -> None:
    prefix = tmp_path / "mem"
    args = ["profile", "--mode", "memory", "--duration", "3", "-o", str(prefix), "--top", "5"]
    args += ["--", *LOAD, "--metrics-file", str(tmp_path / "m.jsonl")]
    result = botctl(*args, cwd=tmp_path, env=clean_env, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "mem.json").read_text())
    assert report["peak_rss_kib"] > 0
    assert report["top"], report
    assert report["baseline"].startswith("start-up done")
    assert report["end"].startswith("end of the profiling window")
    first = report["top"][0]["traceback"]
    assert first and {"file", "line", "code"} <= set(first[0])
    assert not any(f["file"].startswith("<frozen") for f in first[:1])
    text = (tmp_path / "mem.txt").read_text()
    assert "peak RSS" in text and "#1:" in text


@pytest.mark.integration
def test_cprofile_attaches_to_a_running_bot(tmp_path: Path, clean_env: dict[str, str]) -> None:
    bot = subprocess.Popen(
        [*BOT, "run", "--duration", "20", *LOAD, "--metrics-file", str(tmp_path / "m.jsonl")],
        cwd=tmp_path,
        env={**clean_env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert bot.stdout is not None
        deadline = time.monotonic() + 30
        line = ""
        while not line.startswith("botctl run") and time.monotonic() < deadline:
            line = bot.stdout.readline()
            if not line:
                break
        assert line.startswith("botctl run"), "the bot printed no banner"
        out = tmp_path / "attached.prof"
        args = ["profile", "--mode", "cprofile", "--pid", str(bot.pid), "--duration", "2"]
        result = botctl(*args, "-o", str(out), cwd=tmp_path, env=clean_env)
        assert result.returncode == 0, result.stderr
        assert bot_functions(pstats.Stats(str(out)))
        assert not Path(f"/tmp/botctl-cprofile-{bot.pid}.request").exists()
        assert bot.poll() is None, "the bot must keep running after the profile"
    finally:
        bot.send_signal(signal.SIGTERM)
        try:
            bot.wait(timeout=30)
        except subprocess.TimeoutExpired:
            bot.kill()
            bot.wait(timeout=5)
        if bot.stdout is not None:
            bot.stdout.close()
    assert bot.returncode == 0
