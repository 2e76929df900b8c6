"""The real discord.py client (the bot, in-process) against the sandbox's Discord server and LLM."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from bot.components import Components
from bot.config import load_settings
from bot.frontend.app import ServeResult, serve
from bot.frontend.endpoints import reset_endpoints
from botctl.sandbox.discord_server import DiscordServer, RecordedMessage
from botctl.sandbox.llm_server import LLMServer, answer_for

pytestmark = pytest.mark.integration


@dataclass
class Harness:
    discord: DiscordServer
    llm: LLMServer
    components: Components
    metrics_file: Path
    stop: asyncio.Event
    task: asyncio.Task[ServeResult]

    async def ask(
        self, text: str, *, channel: str | None = None, timeout: float = 15.0
    ) -> list[RecordedMessage]:
        cid = channel or self.discord.channel_ids[0]
        mid = self.discord.post_message(cid, self.discord.user_ids[0], text)
        return await self.discord.wait_for_settled_reply(mid, timeout, settle=1.3)


@contextlib.asynccontextmanager
async def running_bot(
    tmp_path: Path,
    *,
    latency: float = 0.05,
    tokens_per_second: float = 0.0,
    answer_chars: int = 300,
    **settings: Any,
) -> AsyncIterator[Harness]:
    discord = DiscordServer(channels=3, users=5)
    llm = LLMServer(latency=latency, tokens_per_second=tokens_per_second, answer_chars=answer_chars)
    await discord.start()
    llm_url = await llm.start()
    metrics_file = tmp_path / "metrics.jsonl"
    stop = asyncio.Event()
    try:
        async with _serving(discord, llm, llm_url, metrics_file, stop, settings) as (
            components,
            task,
        ):
            yield Harness(discord, llm, components, metrics_file, stop, task)
    finally:
        await llm.stop()
        await discord.stop()
        reset_endpoints()


@contextlib.asynccontextmanager
async def _serving(
    discord: DiscordServer,
    llm: LLMServer,
    llm_url: str,
    metrics_file: Path,
    stop: asyncio.Event,
    settings: dict[str, Any],
) -> AsyncIterator[tuple[Components, asyncio.Task[ServeResult]]]:
    config = load_settings(
        None,
        {
            "discord_api": discord.api_base,
            "discord_gateway": discord.gateway_url,
            "llm_url": llm_url,
            "metrics_file": metrics_file,
            "llm_timeout": 10,
            **settings,
        },
    )
    ready: asyncio.Future[Components] = asyncio.get_running_loop().create_future()

    async def on_ready(components: Components) -> None:
        ready.set_result(components)

    task = asyncio.create_task(
        serve(
            config,
            "sandbox-token",
            stop,
            on_ready=on_ready,
            client_options={"guild_ready_timeout": 0.1},
        )
    )
    try:
        components = await asyncio.wait_for(ready, 15)
        yield components, task
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)


def events(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def rejoin(parts: list[str]) -> str:
    """Undo the code-fence closing/reopening of the splitter, and fold whitespace at the cuts."""
    texts = list(parts)
    for i in range(len(texts) - 1):
        if texts[i].endswith("\n```") and texts[i + 1].startswith("```"):
            texts[i] = texts[i][: -len("\n```")]
            texts[i + 1] = texts[i + 1].split("\n", 1)[1]
    return " ".join(" ".join(texts).split())


async def test_mention_gets_the_answer_in_one_message(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h:
        parts = await h.ask("!echo hello from the sandbox")
        assert [p.content for p in parts] == ["hello from the sandbox"]
        # A fast answer: no placeholder, no edit, no typing call.
        assert parts[0].edits == []
        assert h.discord.typing_calls == []
        assert parts[0].message_reference is not None


async def test_ten_identical_questions_in_ten_fresh_channels_make_one_llm_call(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, latency=0.5) as h:
        channels = [h.discord.create_channel() for _ in range(10)]
        await asyncio.sleep(0.2)  # CHANNEL_CREATE reaches the client first
        before = h.llm.calls_total
        mids = [
            h.discord.post_message(cid, h.discord.user_ids[i % 5], "what is a monad?")
            for i, cid in enumerate(channels)
        ]
        replies = await asyncio.gather(
            *(h.discord.wait_for_settled_reply(m, 15, settle=1.3) for m in mids)
        )
        assert h.llm.calls_total - before == 1
        expected = answer_for(
            [
                {"role": "system", "content": h.components.settings.system_prompt},
                {"role": "user", "content": "what is a monad?"},
            ]
        )
        assert all(len(r) == 1 and r[0].content == expected for r in replies)


async def test_history_carries_to_the_next_question(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h:
        cid = h.discord.channel_ids[1]
        await h.ask("!echo first answer", channel=cid)
        await h.ask("!echo second", channel=cid)
        sent = h.llm.recent_requests[-1]
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
        assert sent[1]["content"] == "!echo first answer"
        assert sent[2]["content"] == "first answer"
        assert sent[3]["content"] == "!echo second"
        # Nothing per user or per moment reaches the model.
        assert all(set(m) == {"role", "content"} for m in sent)


async def test_long_answer_is_split_and_joins_back(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h:
        parts = await h.ask("!long 4500")
        answer = answer_for([{"role": "user", "content": "!long 4500"}])
        assert len(answer) == 4500
        assert len(parts) >= 3
        assert all(len(p.content) <= 2000 for p in parts)
        assert all(p.content.count("```") % 2 == 0 for p in parts)
        assert rejoin([p.content for p in parts]) == " ".join(answer.split())


async def test_streamed_answer_is_edited_at_most_once_a_second(tmp_path: Path) -> None:
    # ~150 tokens at 50/s: about 3 s of streaming.
    async with running_bot(tmp_path, latency=0.05, tokens_per_second=50, answer_chars=600) as h:
        parts = await h.ask("tell me a story", timeout=20)
        assert len(parts) == 1
        message = parts[0]
        assert 1 <= len(message.edits) <= 4
        times = [message.at, *(e.at for e in message.edits)]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 0.9, gaps
        assert message.content == answer_for(
            [
                {"role": "system", "content": h.components.settings.system_prompt},
                {"role": "user", "content": "tell me a story"},
            ],
            600,
        )


async def test_slow_first_token_shows_typing(tmp_path: Path) -> None:
    async with running_bot(tmp_path, latency=1.0) as h:
        await h.ask("!echo slow")
        assert len(h.discord.typing_calls) == 1


async def test_no_send_or_edit_can_ping(tmp_path: Path) -> None:
    async with running_bot(tmp_path, tokens_per_second=60) as h:
        await h.ask("!echo @everyone @here <@123> <@&456> look")
        await h.ask("!long 2500")
        records = list(h.discord.all_sends) + list(h.discord.all_edits)
        assert len(records) >= 3
        for record in records:
            allowed = record.allowed_mentions
            assert allowed is not None
            assert allowed.get("parse") == []
            assert not allowed.get("users") and not allowed.get("roles")
            assert allowed.get("replied_user") in (False, None)


async def test_dm_is_answered_and_unmentioned_channel_message_is_not(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h:
        dm = h.discord.post_dm(h.discord.user_ids[2], "!echo in private")
        parts = await h.discord.wait_for_settled_reply(dm, 10, settle=1.0)
        assert [p.content for p in parts] == ["in private"]
        quiet = h.discord.post_message(
            h.discord.channel_ids[0], h.discord.user_ids[0], "!echo nope", mention_bot=False
        )
        assert await h.discord.wait_for_settled_reply(quiet, 1.5, settle=0.5) == []


async def test_slash_commands_are_answered(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h:
        cid = h.discord.channel_ids[0]
        iid = h.discord.send_interaction(
            cid, h.discord.user_ids[0], "ask", {"question": "!echo via slash"}
        )
        parts = await h.discord.wait_for_settled_reply(iid, 10, settle=1.0)
        assert parts and parts[0].content == "via slash"
        stats = h.discord.send_interaction(cid, h.discord.user_ids[0], "stats")
        await asyncio.sleep(0.5)
        responses = [r for r in h.discord.interaction_responses if r.interaction_id == stats]
        assert responses and "LLM requests" in str(responses[0].data)
        reset = h.discord.send_interaction(cid, h.discord.user_ids[0], "reset")
        await asyncio.sleep(0.5)
        assert any(r.interaction_id == reset for r in h.discord.interaction_responses)
        assert h.components.history.get_history(cid) == []


async def test_llm_failure_gives_a_clear_reply_and_the_bot_keeps_going(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h:
        h.llm.add_fault("status", count=1, status=500)
        parts = await h.ask("!echo first")
        assert len(parts) == 1 and parts[0].content.startswith("⚠️")
        parts = await h.ask("!echo second")
        assert [p.content for p in parts] == ["second"]


async def test_graceful_stop_writes_every_message_event(tmp_path: Path) -> None:
    async with running_bot(tmp_path, batch_size=1000, batch_interval=600) as h:
        mids = [
            h.discord.post_message(
                h.discord.channel_ids[i % 3], h.discord.user_ids[0], f"!echo {i}"
            )
            for i in range(12)
        ]
        await asyncio.gather(*(h.discord.wait_for_reply(m, 10) for m in mids))
        h.stop.set()
        await asyncio.wait_for(h.task, 20)
        found = events(h.metrics_file)
        assert sum(1 for e in found if e["type"] == "message") == 12
        assert sum(1 for e in found if e["type"] == "reply") == 12
        assert all("content" not in e and "text" not in e for e in found)


async def response_text(h: Harness, iid: str) -> str:
    async with asyncio.timeout(10):
        while True:
            found = [r for r in h.discord.interaction_responses if r.interaction_id == iid]
            if found:
                return str(found[0].data.get("content", ""))
            await asyncio.sleep(0.05)


async def test_model_shows_and_sets_the_channel_model_for_admins_only(tmp_path: Path) -> None:
    async with running_bot(tmp_path, latency=0.0) as h:
        admin, member = h.discord.user_ids[0], h.discord.user_ids[1]
        h.components.settings = h.components.settings.with_changes(admins=[int(admin)])
        cid = h.discord.channel_ids[1]
        shown = await response_text(h, h.discord.send_interaction(cid, member, "model"))
        assert "Model here: llama3.2" in shown and "Choices: llama3.2" in shown
        refused = await response_text(
            h, h.discord.send_interaction(cid, member, "model", {"name": "llama3.2"})
        )
        assert "Only members with Manage Server" in refused
        assert h.components.models.channel_model(int(cid)) is None
        done = await response_text(
            h, h.discord.send_interaction(cid, admin, "model", {"name": "llama3.2"})
        )
        assert "now uses llama3.2" in done
        await h.ask("!echo routed", channel=cid)
        await h.components.metrics.flush()
        calls = [e for e in events(h.metrics_file) if e["type"] == "llm_call"]
        assert calls[-1]["route"] == "channel" and calls[-1]["model"] == "llama3.2"
        unknown = await response_text(
            h, h.discord.send_interaction(cid, admin, "model", {"name": "nope"})
        )
        assert "No model named 'nope'" in unknown
