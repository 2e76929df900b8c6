"""Issue 12, bad input, with the real discord.py client against the sandbox: attachments over the cap,
binary files, attachment URLs that 404 or hang, replies to deleted messages, reply chains that loop.
The bot answers what it can, says what it skipped (the reply's last line, ``-# Left out: ...``), and
nothing crashes.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from _conversations import Bot, running_bot, sandbox, serving, turns

import bot.frontend.attachments as attachments_module
from bot.context import answer_room, count_tokens
from botctl.sandbox.discord_server import NewAttachment

pytestmark = pytest.mark.integration

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
LEFT_OUT = "\n\n-# Left out: "


def vision_models(url: str) -> dict[str, Any]:
    return {
        "models": {
            "plain": {"api": "ollama", "url": url, "model": "llama3.2"},
            "eyes": {"api": "ollama", "url": url, "model": "llava", "vision": True},
        },
        "routing": {"default": "plain"},
    }


def left_out(content: str) -> list[str]:
    """The notes of a reply's ``-# Left out:`` line (none: ``[]``)."""
    if LEFT_OUT not in content:
        return []
    return content.rsplit(LEFT_OUT, 1)[1].split("; ")


async def still_fine(bot: Bot) -> None:
    """The bot still answers, and logged no unexpected error."""
    _, answer = await bot.ask("!echo still here")
    assert answer.content == "still here"
    assert not bot.task.done()
    errors = await bot.events("error")
    assert [e for e in errors if e["where"] != "discord"] == [], errors


# ----------------------------------------------------------------------------------- attachments


async def test_files_over_the_cap_binary_or_not_utf8_are_left_out_with_notes(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as bot:
        files = [
            NewAttachment("big.txt", b"x" * (64 * 1024 + 1), "text/plain"),
            NewAttachment("tool.exe", b"MZ\x90\x00\x03", "application/octet-stream"),
            NewAttachment("dump.log", b"ok\x00\x01\x02binary", "text/plain"),
            NewAttachment("latin.txt", "café".encode("latin-1"), "text/plain"),
            NewAttachment("fine.txt", b"the one readable file", "text/plain"),
        ]
        mid = bot.say("what is in these files?", attachments=files)
        (reply,) = await bot.reply_to(mid)
        assert left_out(reply.content) == [
            "big.txt: larger than 64 KB",
            "tool.exe: not a text file or an image",
            "dump.log: not a text file",
            "latin.txt: not UTF-8 text",
        ]
        question = bot.last_chat()[-1]["content"]
        assert question == "what is in these files?\n\n[file fine.txt]\nthe one readable file"
        await still_fine(bot)


async def test_attachments_that_404_or_hang_are_bounded_and_noted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(attachments_module, "READ_TIMEOUT", 1.0)
    async with sandbox() as (server, llm):
        assert llm.url is not None
        async with serving(
            server, llm, tmp_path / "metrics.jsonl", **vision_models(llm.url)
        ) as bot:
            files = [
                NewAttachment("gone.png", PNG, "image/png", fault="404"),
                NewAttachment("slow.png", PNG, "image/png", fault="hang"),
                NewAttachment("slow.txt", b"never read", "text/plain", fault="hang"),
                NewAttachment("slow.md", b"never read", "text/markdown", fault="hang"),
                NewAttachment("ok.png", PNG, "image/png"),
            ]
            started = time.monotonic()
            mid = bot.say("what do you see?", attachments=files)
            (reply,) = await bot.reply_to(mid)
            # Read at once: one timeout (1 s), not one per hung file (3 s).
            assert time.monotonic() - started < 2.5
            assert reply.content.startswith("I see 1 image.")
            assert left_out(reply.content) == [
                "gone.png: could not be downloaded (HTTP 404)",
                "slow.png: could not be downloaded within 1 s",
                "slow.txt: could not be downloaded within 1 s",
                "slow.md: could not be downloaded within 1 s",
            ]
            sent = bot.llm.last_request(kind="chat")
            assert sent is not None and sent.images == [base64.b64encode(PNG).decode()]
            assert sent.messages[-1]["content"] == "what do you see?"
            await still_fine(bot)


async def test_a_message_of_unreadable_attachments_and_text_still_gets_its_text_answered(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as bot:
        files = [NewAttachment("gone.md", b"# x", "text/markdown", fault="404")]
        mid = bot.say("!echo the text part", attachments=files)
        (reply,) = await bot.reply_to(mid)
        assert (
            reply.content
            == "the text part" + LEFT_OUT + "gone.md: could not be downloaded (HTTP 404)"
        )


async def test_a_text_file_bigger_than_the_context_is_cut_to_fit(tmp_path: Path) -> None:
    async with running_bot(tmp_path, context_tokens=1024) as bot:
        budget = 1024 - answer_room(1024, None)
        text = ("a line of the log file, long enough to count\n" * 1200).encode()  # ~54 KB
        mid = bot.say("what does the log say?", attachments=[NewAttachment("app.log", text)])
        (reply,) = await bot.reply_to(mid)
        assert count_tokens(bot.last_chat()) <= budget
        assert any(note.startswith("app.log:") for note in left_out(reply.content))


# ---------------------------------------------------------------------------------- reply chains


async def test_a_reply_to_a_deleted_message_is_answered_without_it(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        _, a1 = await bot.ask("!echo first")
        q2, _ = await bot.ask("!echo secret second", reply_to=a1.id, mention=False)
        assert bot.server.delete_message(q2)
        # Posted after the deletion: Discord sends the reply with referenced_message null.
        q3, a3 = await bot.ask("!echo third", reply_to=q2)
        assert turns(bot.last_chat()) == [
            ("user", "!echo first"),
            ("assistant", "first"),
            ("user", "!echo third"),
        ]
        assert left_out(a3.content) == ["a deleted message of the reply chain"]
        # Later replies in that chain still leave it out, and fetch nothing for it.
        fetched = bot.components.chains.fetched
        _, a4 = await bot.ask("!echo fourth", reply_to=a3.id, mention=False)
        assert "secret second" not in str(bot.last_chat())
        # The answer as the model said it: the "Left out" line was for the user.
        assert [c for _, c in turns(bot.last_chat())][-3:] == [
            "!echo third",
            "third",
            "!echo fourth",
        ]
        assert left_out(a4.content) == ["a deleted message of the reply chain"]
        assert bot.components.chains.fetched == fetched
        assert q3
        await still_fine(bot)


async def test_a_deleted_message_in_a_fetched_chain_is_left_out_once_fetched(
    tmp_path: Path,
) -> None:
    async with sandbox() as (server, llm):
        async with serving(server, llm, tmp_path / "first.jsonl") as first:
            _, a1 = await first.ask("!echo one")
            _, a2 = await first.ask("!echo two", reply_to=a1.id, mention=False)
            q1 = a1.reply_to
        assert q1 is not None and server.delete_message(q1)
        async with serving(server, llm, tmp_path / "second.jsonl") as bot:
            _, a3 = await bot.ask("!echo three", reply_to=a2.id, mention=False)
            assert [c for _, c in turns(bot.last_chat())] == [
                "one",
                "!echo two",
                "two",
                "!echo three",
            ]
            assert left_out(a3.content) == ["a deleted message of the reply chain"]
            assert bot.components.chains.fetched == 2  # q2 and a1; q1's 404 is remembered
            _, a4 = await bot.ask("!echo four", reply_to=a3.id, mention=False)
            assert bot.components.chains.fetched == 2
            assert left_out(a4.content) == ["a deleted message of the reply chain"]
            await still_fine(bot)


async def test_a_remembered_message_deleted_later_leaves_the_chain(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        q1, a1 = await bot.ask("my password is hunter2, keep it safe")
        assert bot.server.delete_message(q1)
        await bot.server.flush()
        _, a2 = await bot.ask("!echo what did I say?", reply_to=a1.id, mention=False)
        assert "hunter2" not in str(bot.last_chat())
        assert left_out(a2.content) == ["a deleted message of the reply chain"]


async def test_a_reply_chain_that_loops_is_cut_and_noted(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        server = bot.server
        a = bot.say("part a", mention=False)
        b = bot.say("part b", reply_to=a, mention=False)
        await server.flush()
        # The stored A now replies to B (its own reply): a loop that fetches walk around.
        stored = server.message(a)
        assert stored is not None
        stored["type"] = 19
        stored["message_reference"] = server.store.reference(bot.channel, b)
        c, answer = await bot.ask("!echo what now?", reply_to=b)
        assert turns(bot.last_chat()) == [
            ("user", "part a"),
            ("user", "part b"),
            ("user", "!echo what now?"),
        ]
        assert answer.content.startswith("what now?")
        assert left_out(answer.content) == [
            "the reply chain loops back on itself: cut where it repeats"
        ]
        # A message replying to itself, too.
        d = bot.say("part d", mention=False)
        await server.flush()
        itself = server.message(d)
        assert itself is not None
        itself["type"] = 19
        itself["message_reference"] = server.store.reference(bot.channel, d)
        _, answer = await bot.ask("!echo and now?", reply_to=d)
        assert turns(bot.last_chat()) == [("user", "part d"), ("user", "!echo and now?")]
        assert left_out(answer.content) == [
            "the reply chain loops back on itself: cut where it repeats"
        ]
        assert c
        await still_fine(bot)
