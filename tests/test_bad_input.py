"""Bad input, from the command line and from chat users (and from the model).

User errors on the command line: one line on stderr, exit 1 (2 for bad usage), never a traceback.
Messages: empty, 4,000 characters, emoji, zero-width and right-to-left text are answered like any
other; mentions in a model's answer (or in an error text quoted to the user) never ping anyone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _faults import WARNING, assert_no_pings, botctl, pings, running_bot

from bot.frontend.cogs.chat import EMPTY_QUESTION
from botctl.main import main
from botctl.sandbox.discord_server import MAX_CONTENT

# --------------------------------------------------------------------------- the command line


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 1, err
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("config", "needles"),
    [
        ("batch_size = [\n", ("is not valid TOML",)),
        ('batch_size = "fifty"\n', ("batch_size", "whole number")),
        ("[bot]\nllm_timeout = -1\n", ("llm_timeout", "> 0")),
        ("history_limit = true\n", ("history_limit",)),
        ('llm_url = "ftp://example"\n', ("llm_url",)),
        ("bacth_size = 5\n", ("unknown setting 'bacth_size'",)),
        ('token = "abc"\n', ("DISCORD_TOKEN",)),
    ],
    ids=["malformed", "string-for-int", "negative", "bool-for-int", "bad-url", "typo", "token"],
)
def test_bad_config_file_is_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    clean_env: dict[str, str],
    config: str,
    needles: tuple[str, ...],
) -> None:
    path = write(tmp_path / "bot.toml", config)
    code, out, err = run_main(["run", "--config", str(path), "--duration", "1"], capsys)
    assert_one_line_error(code, out, err, *needles)
    assert "abc" not in err  # a token put in the file is not echoed back


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--batch-size", "0"], ("batch_size",)),
        (["--llm-url", "ftp://nowhere"], ("llm_url",)),
        (["--discord-api", "not a url"], ("discord_api",)),
        (["--config", "/nonexistent/bot.toml"], ("no file at",)),
    ],
)
def test_bad_flags_are_one_line(
    capsys: pytest.CaptureFixture[str],
    clean_env: dict[str, str],
    args: list[str],
    needles: tuple[str, ...],
) -> None:
    code, out, err = run_main(["run", *args, "--duration", "1"], capsys)
    assert_one_line_error(code, out, err, *needles)


def test_wrong_type_in_the_environment(
    capsys: pytest.CaptureFixture[str],
    clean_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOT_HISTORY_CHANNELS", "lots")
    code, _out, err = run_main(["run", "--duration", "1"], capsys)
    # Typer checks an int option's environment value itself: bad usage (exit 2) that names the
    # variable, no traceback.
    assert code == 2, err
    assert "Traceback" not in err
    assert "BOT_HISTORY_CHANNELS" in err and "--history-channels" in err


def metrics_targets(tmp_path: Path) -> list[tuple[str, Path]]:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    targets = [
        ("a folder", tmp_path),
        ("under a file", blocker / "metrics.jsonl"),
        ("under /dev/null", Path("/dev/null/profiles/metrics.jsonl")),
    ]
    if os.geteuid() != 0:  # root may write anywhere but through a file
        readonly = tmp_path / "readonly"
        readonly.mkdir(mode=0o500)
        targets.append(("read-only folder", readonly / "metrics.jsonl"))
    return targets


def test_unwritable_metrics_path_is_one_line_before_start_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], clean_env: dict[str, str]
) -> None:
    for what, target in metrics_targets(tmp_path):
        code, out, err = run_main(["run", "--metrics-file", str(target), "--duration", "1"], capsys)
        assert_one_line_error(code, out, err, "--metrics-file")
        assert "botctl run" not in out, f"{what}: the bot started before failing"


def test_corrupt_profile_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corrupt = tmp_path / "corrupt.prof"
    corrupt.write_bytes(b"\x80\x04garbage, not marshal")
    code, out, err = run_main(["analyze", str(corrupt)], capsys)
    assert_one_line_error(code, out, err, "is not a pstats profile")


@pytest.mark.integration
def test_real_entry_point_bad_usage_and_bad_toml(tmp_path: Path) -> None:
    """The console script as users run it: bad usage exits 2, a user error 1, no traceback."""
    unknown = botctl("run", "--no-such-flag")
    assert unknown.returncode == 2
    assert "No such option" in unknown.stderr and "Traceback" not in unknown.stderr
    bad = write(tmp_path / "bad.toml", "batch_size = = 3\n")
    done = botctl("run", "--config", str(bad))
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1
    assert "is not valid TOML" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


# --------------------------------------------------------------------------- chat input


def test_pings_follows_discords_rules() -> None:
    """The checker itself: without allowed_mentions everything pings."""
    text = "@everyone @here <@1> <@!2> <@&3>"
    assert len(pings(text, None, is_reply=True)) == 6
    assert pings(text, {"parse": []}, is_reply=True) == []
    assert pings(text, {"parse": [], "users": ["1"]}, is_reply=False) == ["user 1"]
    assert pings("x", {"parse": [], "replied_user": True}, is_reply=True) == [
        "the replied-to author"
    ]


@pytest.mark.integration
async def test_awkward_messages_are_answered_and_nobody_is_pinged(tmp_path: Path) -> None:
    async with running_bot(tmp_path, llm_timeout=15.0) as run:  # streams ~1 s: room under load
        server = run.server
        assert run.llm is not None
        user, role = server.user_ids[3], server.guild_id

        # An empty mention (and one of spaces only): a hint, not an LLM call.
        assert await run.ask("") == EMPTY_QUESTION
        assert await run.ask("   \n\t ") == EMPTY_QUESTION
        assert run.llm.calls_total == 0

        # 4,000 characters in, and an answer as long: split at Discord's limit, nothing lost.
        long_text = ("lorem ipsum dolor sit amet " * 160)[:3994].strip()
        mid = run.post("!echo " + long_text)
        parts = await run.reply(mid, 10.0)
        assert len(parts) >= 2 and all(len(p.content) <= MAX_CONTENT for p in parts)
        assert " ".join(p.content for p in parts) == long_text

        # Emoji (with modifiers and joiners), zero-width and right-to-left text, verbatim.
        awkward = "héllo 👋🏽 👨\u200d👩\u200d👧 zero\u200bwidth \u202eRTL\u202c שלום مرحبا \u2066x\u2069 ∑"
        assert await run.ask("!echo " + awkward) == awkward
        assert await run.ask("\u200b") not in ("", EMPTY_QUESTION)  # not whitespace: a question

        # A model answer full of mentions, fast (one send) and streamed (send, then edits).
        mentions = f"@everyone @here <@{user}> <@!{user}> <@&{role}> hi"
        assert await run.ask("!echo " + mentions) == mentions
        run.llm.tokens_per_second = 40.0
        streamed = mentions + " " + "and more " * 12
        assert await run.ask("!echo " + streamed, timeout=15.0, settle=1.5) == streamed.strip()
        run.llm.tokens_per_second = 0.0
        # A user asking the bot to ping everyone; the reply quotes nobody into a ping either.
        await run.ask("please ping @everyone and <@&" + role + "> right now")
        # An error text from the model server quoted back to the user.
        run.llm.add_fault("status", count=1, status=500, message=f"@everyone <@{user}> broke")
        notice = await run.ask("fail loudly")
        assert WARNING in notice and "@everyone" in notice
        # Slash command /ask and a DM take the same care.
        iid = server.send_interaction(
            server.channel_ids[0], user, "ask", {"question": "!echo " + mentions}
        )
        slash = await run.server.wait_for_settled_reply(iid, 10.0, settle=0.3)
        assert slash and slash[0].content == mentions
        dm = server.post_dm(user, "!echo " + mentions)
        assert [p.content for p in await run.reply(dm)] == [mentions]

        assert server.all_edits, "the streamed answer was never edited"
        assert slash[0] in server.all_sends  # the deferred response's first edit counts as a send
        assert_no_pings(server.all_sends, server.all_edits)
        # The users' text never reaches the metrics file, however odd it is.
        raw = (await run.events()) and run.metrics_file.read_text(encoding="utf-8")
        for text in (long_text[:40], "שלום", "lorem", "please ping", "broke"):
            assert text not in raw
