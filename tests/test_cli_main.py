"""The root of ``botctl``: the explicit command list, lazy loading, errors and exit codes, completion."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botctl import commands
from botctl.commands import COMMANDS, CommandSpec
from botctl.main import app, main

runner = CliRunner()
BOT = [sys.executable, "-m", "botctl"]

# What `botctl --help` may import, checked in a fresh interpreter.
_IMPORTS = """
import contextlib, io, json, sys
from botctl.main import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
print(json.dumps(sorted(sys.modules)))
"""


def imported_by(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORTS, *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


def present(spec: CommandSpec) -> bool:
    return importlib.util.find_spec(spec.module) is not None


def test_the_help_lists_every_command_of_the_list_in_order() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    listing = result.stdout[result.stdout.index("Commands") :]
    positions = [listing.find(f" {spec.name} ") for spec in COMMANDS]
    assert all(p >= 0 for p in positions), result.stdout
    assert positions == sorted(positions)
    for spec in COMMANDS:
        assert spec.summary[:40] in listing


@pytest.mark.integration
def test_the_help_imports_no_command_module_nor_discord_nor_aiohttp() -> None:
    modules = imported_by("--help")
    assert not {spec.module for spec in COMMANDS} & modules
    assert not {"discord", "aiohttp", "rich.progress"} & modules


@pytest.mark.integration
def test_a_command_imports_its_own_module_only() -> None:
    modules = imported_by("analyze", "--help")
    assert "botctl.commands.analyze" in modules
    others = {spec.module for spec in COMMANDS if spec.name != "analyze"}
    assert not others & modules
    assert not {"discord", "aiohttp"} & modules


@pytest.mark.integration
@pytest.mark.parametrize("command", [spec.name for spec in COMMANDS])
def test_no_command_help_imports_discord_aiohttp_or_redis(command: str) -> None:
    # `botctl run --help` is what a new user types first: it must not pay for the bot itself.
    modules = imported_by(command, "--help")
    assert f"botctl.commands.{command}" in modules
    assert not {"discord", "aiohttp", "redis"} & modules


@pytest.mark.parametrize("spec", COMMANDS, ids=lambda s: s.name)
def test_every_listed_command_shows_its_help(spec: CommandSpec) -> None:
    if not present(spec):
        pytest.skip(f"{spec.module} lands with another branch")
    result = runner.invoke(app, [spec.name, "-h"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert f"botctl {spec.name}" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["run", "-h"],
        ["metrics", "top", "-h"],
        ["metrics", "summary", "-h"],
        ["profile", "-h"],
        ["bench", "-h"],
        ["kb", "add", "-h"],
        ["sandbox", "llm", "-h"],
    ],
    ids=" ".join,
)
def test_flags_show_no_value_type(args: list[str]) -> None:
    # A flag takes no value: Typer's <bool> beside it reads as if `--json true` were the syntax.
    result = runner.invoke(app, args, env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.stdout and "<bool>" not in result.stdout


def test_a_listed_command_whose_module_is_missing_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ghost = CommandSpec("ghost", "command", "Not installed.")
    monkeypatch.setattr(commands, "COMMANDS", (*COMMANDS, ghost))
    with pytest.raises(SystemExit) as exit_info:
        main(["ghost"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "`ghost` command is not in this installation" in err
    assert "botctl.commands.ghost" in err


def test_bad_usage_exits_2_and_an_unknown_command_gets_a_suggestion() -> None:
    result = runner.invoke(app, ["metrix"])
    assert result.exit_code == 2
    assert "metrics" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("botctl ")


@pytest.mark.integration
def test_python_dash_m_and_completion_work_as_subprocesses(tmp_path: Path) -> None:
    script = subprocess.run(
        [*BOT, "--show-completion", "bash"], capture_output=True, text=True, timeout=60
    )
    assert script.returncode == 0, script.stderr
    assert "_BOTCTL_COMPLETE" in script.stdout

    def complete(words: str) -> list[str]:
        env = {
            **os.environ,
            "_BOTCTL_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        done = subprocess.run(
            [*BOT], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("botctl met") == ["metrics"]
    # Completing inside a group loads that group (and only then).
    assert "summary" in complete("botctl metrics su")
    assert "--sort" in complete("botctl analyze --so")
