from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.options import declared
from bot.settings import Settings, SettingsError, normalize_llm_url
from botctl.commands.run import load as load_run
from botctl.commands.run import parse_args as parse_run_args
from botctl.run.options import RunOptions
from botctl.sandbox.config import SandboxConfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    s = load_settings()
    assert s == Settings()
    assert s.batch_size == 50 and s.batch_interval == 60.0 and s.dedup_window == 5.0
    assert s.llm_timeout == 120.0 and s.sandbox and s.llm_url is None
    assert s.effective_llm_url == "http://127.0.0.1:11434"


def test_file_then_overrides_precedence(tmp_path: Path) -> None:
    cfg = write(tmp_path, 'batch_size = 10\nmodel = "from-file"\n')
    s = load_settings(cfg, {"model": "from-flag", "batch_size": None})
    assert s.model == "from-flag"  # flags/env beat the file
    assert s.batch_size == 10  # None means "not given": the file's value stays


def test_one_file_holds_bot_sandbox_and_run_keys(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        'batch_size = 10\nduration = 3\n[bot]\nmodel = "m"\n[sandbox]\nrate = 2.5\nusers = 4\n',
    )
    settings, sandbox, options = load_run(cfg, {"users": 7, "chat": False})
    assert (settings.batch_size, settings.model) == (10, "m")
    assert (sandbox.rate, sandbox.users) == (2.5, 7)  # the flag beats the file
    assert options.duration == 3.0 and options.chat is False
    with pytest.raises(SettingsError, match="unknown setting 'nope'"):
        load_run(write(tmp_path, "nope = 1\n"), {})


def test_every_declared_setting_has_help_and_a_check() -> None:
    names: set[str] = set()
    for cls in (Settings, SandboxConfig, RunOptions):
        for f, meta in declared(cls):
            assert meta.help.strip(), f.name
            assert f.name not in names, f"{f.name} is declared twice"
            names.add(f.name)


def test_no_dedup_in_file(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "no-dedup = true\n")).dedup is False


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"batch_size": "zero"}, "batch_size: expected a whole number >= 1"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_interval": -1}, "batch_interval"),
        ({"llm_api": "grpc"}, "llm_api: expected one of auto, ollama, openai"),
        ({"llm_url": "not a url"}, "llm_url: expected an http(s) URL"),
        ({"discord_api": "ftp://x"}, "discord_api: expected a URL"),
        ({"discord_gateway": "http://x"}, "discord_gateway: expected a URL"),
        ({"llm_url": "ftp://x"}, "llm_url"),
        ({"dedup": "maybe"}, "dedup: expected true or false"),
    ],
)
def test_bad_values_name_the_setting(overrides: dict[str, object], needle: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, overrides)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_malformed_toml(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(write(tmp_path, "batch_size = = 3\n"))


def test_wrong_type_in_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="batch_size"):
        load_settings(write(tmp_path, 'batch_size = "many"\n'))


def test_unknown_key_and_token_in_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="unknown setting 'batchsize'"):
        load_settings(write(tmp_path, "batchsize = 3\n"))
    with pytest.raises(SettingsError, match="DISCORD_TOKEN"):
        load_settings(write(tmp_path, 'token = "abc"\n'))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no file at"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("localhost", "http://localhost:11434"),
        ("0.0.0.0:11434", "http://127.0.0.1:11434"),
        ("127.0.0.1:9999", "http://127.0.0.1:9999"),
        ("http://example.test", "http://example.test:80"),
        ("https://example.test/", "https://example.test:443"),
    ],
)
def test_ollama_host_forms(given: str, expected: str) -> None:
    assert normalize_llm_url("llm_url", given) == expected


def test_token_never_in_repr_or_redacted() -> None:
    s = load_settings(None, {"token": "SECRET-TOKEN-123", "llm_url": "http://user:pw@h:1"})
    assert "SECRET-TOKEN-123" not in repr(s)
    red = s.redacted()
    assert red["token"] == "***"
    assert "pw" not in red["llm_url"]
    assert not s.sandbox and s.effective_cooldown == 2.0
    assert load_settings().effective_cooldown == 0.0


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--shard-ids", "0,1", "--shard-count", "4"], {}),
        (["--shard-count", "4"], {"BOT_SHARD_IDS": "0,1"}),
        (["--shard-ids", "0", "--shard-ids", "1", "--shard-count", "4"], {}),
    ],
    ids=["comma-flag", "comma-env", "repeated"],
)
def test_id_lists_take_the_comma_form_on_the_command_line(
    args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # SPEC: `--shard-count N --shard-ids 0,1`; the same field parses a TOML list in a file.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings, _sandbox, _options = parse_run_args(args)
    assert settings.shard_ids == (0, 1) and settings.shard_count == 4


def test_a_bad_flag_value_names_its_env_var_as_text() -> None:
    # Typer's own (vendored) click raises it: bad usage, exit 2 where the CLI catches it.
    with pytest.raises(Exception, match="valid integer") as caught:
        parse_run_args(["--batch-size", "abc"])
    assert type(caught.value).__name__ == "BadParameter"
    message = caught.value.format_message()  # type: ignore[attr-defined]
    assert "env var: 'BOT_BATCH_SIZE'" in message and "['BOT" not in message
