"""Issue 12 with the real discord.py client against the sandbox: reply chains and threads, fetched
chains, the context budget and its summaries, dedup, attachments and images, personas, access, and
what reaches the metrics file. The bad-input group is in ``test_conversations_input.py``.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import orjson
import pytest
from _conversations import (
    dm_channel,
    no_reply,
    rest_calls,
    running_bot,
    sandbox,
    sends_in,
    serving,
    turns,
)

from bot.context import SUMMARY_PREFIX, answer_room, count_tokens, fold_count, summary_request
from bot.frontend.access import REFUSED_IN_DM
from bot.frontend.cogs.admin import NOT_ALLOWED
from bot.kb import KnowledgeBase, add_paths
from bot.settings import DEFAULT_SYSTEM_PROMPT
from botctl.sandbox.discord_server import NewAttachment
from botctl.sandbox.llm_server import answer_for

pytestmark = pytest.mark.integration

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def vision_models(url: str) -> dict[str, Any]:
    """Two models on the sandbox LLM, ``eyes`` able to see images, ``plain`` the default."""
    return {
        "models": {
            "plain": {"api": "ollama", "url": url, "model": "llama3.2"},
            "eyes": {"api": "ollama", "url": url, "model": "llava", "vision": True},
        },
        "routing": {"default": "plain"},
    }


# ------------------------------------------------------------------------------------ reply chains


async def test_a_reply_to_the_answer_after_reset_still_carries_the_chain(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        _, a1 = await bot.ask("!echo the capital of Peru is Lima")
        assert a1.content == "the capital of Peru is Lima"
        assert await bot.interaction("reset") == "History cleared."
        assert bot.components.history.get_history(bot.channel) == []

        q2, a2 = await bot.ask("!echo and its population?", reply_to=a1.id, mention=False)
        assert a2.reply_to == q2
        assert turns(bot.last_chat()) == [
            ("user", "!echo the capital of Peru is Lima"),
            ("assistant", "the capital of Peru is Lima"),
            ("user", "!echo and its population?"),
        ]
        # The chain is the context: the channel's (reset) history stays out of it and untouched.
        assert bot.components.history.get_history(bot.channel) == []


async def test_the_bots_mention_is_taken_out_wherever_it_stands(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        me = bot.server.bot_user_id  # the sandbox puts one mention first; these add another
        for text in ("what is up?", f"what <@{me}> is up?", f"what is up? <@!{me}>"):
            await bot.reply_to(bot.say(text))
            assert turns(bot.last_chat())[-1] == ("user", "what is up?"), text


async def test_two_interleaved_chains_in_one_channel_keep_separate_contexts(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as bot:
        alice, bob = bot.server.user_ids[1], bot.server.user_ids[2]
        qa1, aa1 = await bot.ask("!echo alpha one", user=alice)
        _, ab1 = await bot.ask("!echo beta one", user=bob)
        _, aa2 = await bot.ask("!echo alpha two", user=alice, reply_to=aa1.id, mention=False)
        assert turns(bot.last_chat()) == [
            ("user", "!echo alpha one"),
            ("assistant", "alpha one"),
            ("user", "!echo alpha two"),
        ]
        _, ab2 = await bot.ask("!echo beta two", user=bob, reply_to=ab1.id, mention=False)
        assert turns(bot.last_chat()) == [
            ("user", "!echo beta one"),
            ("assistant", "beta one"),
            ("user", "!echo beta two"),
        ]
        await bot.ask("!echo alpha three", user=alice, reply_to=aa2.id, mention=False)
        alpha = bot.last_chat()
        await bot.ask("!echo beta three", user=bob, reply_to=ab2.id, mention=False)
        beta = bot.last_chat()
        assert [c for _, c in turns(alpha)] == [
            "!echo alpha one",
            "alpha one",
            "!echo alpha two",
            "alpha two",
            "!echo alpha three",
        ]
        assert [c for _, c in turns(beta)] == [
            "!echo beta one",
            "beta one",
            "!echo beta two",
            "beta two",
            "!echo beta three",
        ]
        # A reply to the first question itself (not to the answer) starts from that question.
        await bot.ask("!echo alpha again", user=alice, reply_to=qa1)
        assert turns(bot.last_chat()) == [
            ("user", "!echo alpha one"),
            ("user", "!echo alpha again"),
        ]


async def test_a_thread_continues_its_starter_messages_conversation(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        await bot.ask("!echo unrelated chatter")  # in the channel's history, not the thread's
        q1, a1 = await bot.ask("!echo rust lifetimes, explained")
        thread = bot.server.start_thread(q1, "lifetimes")
        await bot.server.flush()
        tq1, ta1 = await bot.ask("!echo what about 'static?", channel=thread)
        assert ta1.channel_id == thread
        assert turns(bot.last_chat()) == [
            ("user", "!echo rust lifetimes, explained"),
            ("assistant", "rust lifetimes, explained"),
            ("user", "!echo what about 'static?"),
        ]
        await bot.ask("!echo and elision?", channel=thread)
        assert [c for _, c in turns(bot.last_chat())] == [
            "!echo rust lifetimes, explained",
            "rust lifetimes, explained",
            "!echo what about 'static?",
            "what about 'static?",
            "!echo and elision?",
        ]
        # The channel's own history did not take the thread's turns.
        channel = [m["content"] for m in bot.components.history.get_history(bot.channel)]
        assert channel == [
            "!echo unrelated chatter",
            "unrelated chatter",
            "!echo rust lifetimes, explained",
            "rust lifetimes, explained",
        ]
        assert tq1 != a1.id


async def test_a_thread_after_a_restart_fetches_its_starter_and_the_answer(
    tmp_path: Path,
) -> None:
    async with sandbox() as (server, llm):
        async with serving(server, llm, tmp_path / "first.jsonl") as first:
            _, a0 = await first.ask("!echo zero")
            q1, _ = await first.ask("!echo one", reply_to=a0.id, mention=False)
            await first.ask("!echo later chatter")
        async with serving(server, llm, tmp_path / "second.jsonl") as bot:
            thread = server.start_thread(q1)
            await server.flush()
            await bot.ask("!echo in the thread", channel=thread)
            assert [c for _, c in turns(bot.last_chat())] == [
                "!echo zero",
                "zero",
                "!echo one",
                "one",
                "!echo in the thread",
            ]
            # The starter and its chain (fetch), the answer to it (one page of history).
            assert bot.components.chains.fetched == 4
            before = rest_calls(server)
            await bot.ask("!echo again", channel=thread)
            assert rest_calls(server) - before == 1  # seeded once: the send alone
            assert len(turns(bot.last_chat())) == 7


async def test_a_chain_the_bot_does_not_remember_is_fetched_once(tmp_path: Path) -> None:
    async with sandbox() as (server, llm):
        async with serving(server, llm, tmp_path / "first.jsonl") as first:
            _, a1 = await first.ask("!echo one")
            q2, a2 = await first.ask("!echo two", reply_to=a1.id, mention=False)
            q1 = a1.reply_to
        # A new bot process: nothing of that conversation in its memory.
        async with serving(server, llm, tmp_path / "second.jsonl") as bot:
            chains = bot.components.chains
            assert len(chains) == 0
            before = rest_calls(server)
            q3, a3 = await bot.ask("!echo three", reply_to=a2.id, mention=False)
            assert turns(bot.last_chat()) == [
                ("user", "!echo one"),
                ("assistant", "one"),
                ("user", "!echo two"),
                ("assistant", "two"),
                ("user", "!echo three"),
            ]
            # a2 came with the reply (referenced_message); q2, a1, q1 were fetched.
            assert chains.fetched == 3
            assert rest_calls(server) - before == 1 + 3  # the answer's send, the fetches
            assert q1 is not None and all(chains.get(int(m)) for m in (q1, a1.id, q2))

            before = rest_calls(server)
            await bot.ask("!echo four", reply_to=a3.id, mention=False)
            assert [c for _, c in turns(bot.last_chat())][-3:] == [
                "!echo three",
                "three",
                "!echo four",
            ]
            assert len(turns(bot.last_chat())) == 7
            assert chains.fetched == 3  # the second reply in that chain fetched nothing
            assert rest_calls(server) - before == 1  # its answer's send alone
            assert q3


async def test_fetches_per_message_are_capped_and_the_rest_is_noted(tmp_path: Path) -> None:
    async with sandbox() as (server, llm):
        async with serving(server, llm, tmp_path / "first.jsonl") as first:
            answer = None
            for n in range(1, 5):  # a chain of 8 messages
                where: dict[str, Any] = {"reply_to": answer.id, "mention": False} if answer else {}
                _, answer = await first.ask(f"!echo step {n}", **where)
        assert answer is not None
        async with serving(server, llm, tmp_path / "second.jsonl") as bot:
            mid = bot.say("!echo step 5", reply_to=answer.id, mention=False)
            (reply,) = await bot.reply_to(mid)
            # The reply gave one message, five fetches the next five: the chain's first two are out.
            assert bot.components.chains.fetched == 5
            assert [c for _, c in turns(bot.last_chat())] == [
                "!echo step 2",
                "step 2",
                "!echo step 3",
                "step 3",
                "!echo step 4",
                "step 4",
                "!echo step 5",
            ]
            assert reply.content.startswith("step 5")
            assert reply.content.endswith(
                "-# Left out: an older part of the reply chain was left out"
            )


# ------------------------------------------------------------------------------- context budget

QUESTIONS = 100
ANSWER_CHARS = 300
CONTEXT_TOKENS = 1024
HISTORY_LIMIT = 20


def question(n: int) -> str:
    return f"question {n:03d}: what should the weather be like on the coast?"


def expected_summary_calls(budget: int, summary_chars: int) -> int:
    """The summary calls of :data:`QUESTIONS` questions, by the rule of ``fold_count``: before each
    question, the oldest turns fold into the summary when the request would be over the budget;
    the history then grows by the question and its answer (the limit drops the oldest)."""
    system = {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}
    summary = {"role": "system", "content": SUMMARY_PREFIX + "s" * summary_chars}
    history: list[dict[str, str]] = []
    folded = False
    calls = 0
    for n in range(1, QUESTIONS + 1):
        asked = {"role": "user", "content": question(n)}
        prompt = [system, *([summary] if folded else []), *history, asked]
        fold = fold_count(len(history)) if count_tokens(prompt) > budget else 0
        if fold:
            calls += 1
            folded = True
            history = history[fold:]
        history = [*history, asked, {"role": "assistant", "content": "a" * ANSWER_CHARS}]
        history = history[-HISTORY_LIMIT:]
    return calls


async def test_a_200_message_conversation_stays_in_budget_with_the_expected_summaries(
    tmp_path: Path,
) -> None:
    budget = CONTEXT_TOKENS - answer_room(CONTEXT_TOKENS, None)
    async with running_bot(
        tmp_path,
        llm={"answer_chars": ANSWER_CHARS},
        history_limit=HISTORY_LIMIT,
        context_tokens=CONTEXT_TOKENS,
    ) as bot:
        for n in range(1, QUESTIONS + 1):
            mid = bot.say(question(n))
            await bot.server.wait_for_reply(mid, 10)
        await asyncio.sleep(0.2)  # the last answer's bookkeeping

        requests = [r.messages for r in bot.chat_requests()]
        summaries = [
            m for m in requests if m[0]["content"] == summary_request(None, [])[0]["content"]
        ]
        answers = [m for m in requests if m not in summaries]
        assert len(answers) == QUESTIONS
        # Every summary the sandbox writes is "Summary of 1 message: " and 120 characters.
        texts = [answer_for(m) for m in summaries]
        assert texts and {len(t) for t in texts} == {len("Summary of 1 message: ") + 120}
        expected = expected_summary_calls(budget, len(texts[0]))
        assert expected == 31  # by hand: the first fold at question 9, then every third
        assert len(summaries) == expected
        calls = await bot.events("llm_call")
        assert sum(1 for e in calls if e["purpose"] == "summary") == expected
        assert sum(1 for e in calls if e["purpose"] == "answer") == QUESTIONS
        assert all(e["status"] == "ok" for e in calls)

        # Every request inside the budget, as the engine counts it; answers near it (the budget
        # was what folded them, not the history limit alone).
        assert max(count_tokens(m) for m in requests) <= budget
        assert max(count_tokens(m) for m in answers) > budget * 3 // 4
        # Each summary call extends the previous summary, never starts over.
        assert "Summary so far:" not in summaries[0][1]["content"]
        for previous, request in zip(texts, summaries[1:], strict=False):
            assert request[1]["content"].startswith(f"Summary so far: {previous}\n\nConversation:")
        # After the last fold every answer request carries the newest summary.
        assert answers[-1][1] == {"role": "system", "content": SUMMARY_PREFIX + texts[-1]}
        assert bot.components.summaries.get(bot.channel) == texts[-1]


# ----------------------------------------------------------------------------------------- dedup


async def test_identical_questions_in_fresh_channels_make_one_llm_call(tmp_path: Path) -> None:
    async with running_bot(tmp_path, llm={"latency": 0.3}) as bot:
        channels = [bot.server.create_channel() for _ in range(6)]
        await bot.server.flush()
        await asyncio.sleep(0.1)
        mids = [
            bot.say("what is a monad?", channel=c, user=bot.server.user_ids[i % 5])
            for i, c in enumerate(channels)
        ]
        replies = await asyncio.gather(*(bot.reply_to(m) for m in mids))
        assert bot.llm.calls_total == 1
        assert len({r[0].content for r in replies if len(r) == 1}) == 1
        roles = sorted(e["dedup"] for e in await bot.events("llm_call"))
        assert roles[0] == "follower" and roles[-1] == "leader" and roles.count("leader") == 1


def make_kb(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "office.md").write_text(
        "# Office hours\n\nThe office closes at six on Fridays and at eight on other days.\n",
        "utf-8",
    )
    (docs / "parking.md").write_text("# Parking\n\nVisitors park behind the building.\n", "utf-8")
    path = tmp_path / "kb.sqlite"
    with KnowledgeBase.open(path, create=True) as writer:
        add_paths(writer.conn, [docs])
    return path


async def test_identical_questions_with_a_knowledge_base_retrieve_once_and_call_once(
    tmp_path: Path,
) -> None:
    kb = make_kb(tmp_path)
    async with running_bot(tmp_path, llm={"latency": 0.3}, kb=kb) as bot:
        channels = [bot.server.create_channel() for _ in range(2)]
        await bot.server.flush()
        await asyncio.sleep(0.1)
        mids = [bot.say("when does the office close on Fridays?", channel=c) for c in channels]
        replies = await asyncio.gather(*(bot.reply_to(m) for m in mids))
        assert bot.llm.calls_total == 1
        assert len(await bot.events("retrieval")) == 1
        (text,) = {"\n".join(p.content for p in r) for r in replies}
        assert "[1]" in text and "office.md" in text
        assert any("closes at six on Fridays" in m["content"] for m in bot.last_chat())
        raw = bot.metrics_file.read_text("utf-8")
        assert "office close" not in raw and "closes at six" not in raw


# ----------------------------------------------------------------------------------- attachments


async def test_a_text_attachment_reaches_the_model_with_its_name(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        notes = NewAttachment("notes.md", b"# Plan\n\nShip on Tuesday.\n", "text/markdown")
        csv = NewAttachment("data.csv", b"a,b\n1,2\n")  # no content type: the suffix says text
        mid = bot.say("what do these say?", attachments=[notes, csv])
        (reply,) = await bot.reply_to(mid)
        question = bot.last_chat()[-1]["content"]
        assert question == (
            "what do these say?\n\n[file notes.md]\n# Plan\n\nShip on Tuesday.\n"
            "\n\n[file data.csv]\na,b\n1,2"  # the question is stripped, the last newline too
        )
        assert "Left out" not in reply.content


async def test_a_reply_chain_keeps_the_text_files_of_its_questions(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        secret = NewAttachment("notes.txt", b"the code word is papaya", "text/plain")
        _, answer = await bot.ask("read this file", attachments=[secret])
        await bot.ask("what was the code word?", reply_to=answer.id, mention=False)
        assert "the code word is papaya" in bot.last_chat()[1]["content"]


async def test_an_image_reaches_the_vision_model(tmp_path: Path) -> None:
    async with sandbox() as (server, llm):
        assert llm.url is not None
        async with serving(
            server, llm, tmp_path / "metrics.jsonl", **vision_models(llm.url)
        ) as bot:
            photo = NewAttachment("cat.png", PNG, "image/png")
            mid = bot.say("what is in this picture?", attachments=[photo])
            (reply,) = await bot.reply_to(mid)
            sent = bot.llm.last_request(kind="chat")
            assert sent is not None and sent.model == "llava"
            assert sent.messages[-1]["images"] == [base64.b64encode(PNG).decode()]
            assert reply.content.startswith("I see 1 image.")
            (call,) = await bot.events("llm_call")
            assert call["model"] == "eyes" and call["route"] == "rule:image"

            # Text alone still goes to the default model, without images.
            await bot.ask("and without a picture?")
            sent = bot.llm.last_request(kind="chat")
            assert sent is not None and sent.model == "llama3.2" and sent.images == []


async def test_an_image_without_a_vision_model_gets_a_note(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        photo = NewAttachment("cat.png", PNG, "image/png")
        mid = bot.say("what is in this picture?", attachments=[photo])
        (reply,) = await bot.reply_to(mid)
        assert reply.content.endswith("-# Left out: cat.png: no model here can see images")
        sent = bot.llm.last_request(kind="chat")
        assert sent is not None and sent.images == []


async def test_an_image_alone_without_a_vision_model_still_says_why(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        mid = bot.say("", attachments=[NewAttachment("cat.png", PNG, "image/png")])
        (reply,) = await bot.reply_to(mid)
        assert "cat.png: no model here can see images" in reply.content


# -------------------------------------------------------------------------------------- personas


async def test_persona_rules_slash_persona_and_stats(tmp_path: Path) -> None:
    async with sandbox() as (server, llm):
        general, help_desk, other = server.channel_ids
        settings: dict[str, Any] = {
            "personas": {
                "pirate": {"system_prompt": "You are a pirate."},
                "teacher": {"system_prompt": "You are a patient teacher.", "options": {"seed": 7}},
            },
            "persona_rules": [
                {"regex": "(?i)^arr\\b", "persona": "pirate"},
                {"channels": [int(help_desk)], "persona": "teacher"},
                {"channel_name": "class-*", "persona": "teacher"},
            ],
        }
        async with serving(server, llm, tmp_path / "metrics.jsonl", **settings) as bot:

            def system() -> str:
                return str(bot.last_chat()[0]["content"])

            await bot.ask("arr, where is the treasure?", channel=general)
            assert system() == "You are a pirate."
            await bot.ask("how do fractions work?", channel=help_desk)
            assert system() == "You are a patient teacher."
            sent = bot.llm.last_request(kind="chat")
            assert sent is not None and sent.body.get("options", {}).get("seed") == 7
            await bot.ask("how do fractions work?", channel=other)
            assert system() == DEFAULT_SYSTEM_PROMPT
            classroom = server.create_channel("class-7b")
            await server.flush()
            await bot.ask("how do decimals work?", channel=classroom)
            assert system() == "You are a patient teacher."
            personas = [e["persona"] for e in await bot.events("llm_call")]
            assert personas == ["pirate", "teacher", None, "teacher"]

            member, moderator = server.user_ids[1], server.moderator_id
            listed = await bot.interaction("persona", channel=other, user=member)
            assert "Choices: pirate, teacher" in listed
            refused = await bot.interaction(
                "persona", {"name": "pirate"}, channel=other, user=member
            )
            assert refused == NOT_ALLOWED
            assert bot.components.personas.channel_persona(int(other)) is None
            done = await bot.interaction(
                "persona", {"name": "teacher"}, channel=other, user=moderator
            )
            assert done == "This channel now speaks as teacher."
            # The channel's choice beats the rules.
            await bot.ask("arr, still a pirate?", channel=other)
            assert system() == "You are a patient teacher."
            assert (await bot.events("llm_call"))[-1]["persona"] == "teacher"
            stats = await bot.interaction("stats", channel=other, user=member)
            assert "persona here      teacher" in stats
            assert "persona here" not in await bot.interaction("stats", channel=general)
            owner = await bot.interaction(
                "persona", {"name": "default"}, channel=other, user=server.owner_id
            )
            assert "follows the persona rules again" in owner
            await bot.ask("arr, and now?", channel=other)
            assert system() == "You are a pirate."


async def test_a_thread_speaks_as_its_channel_unless_it_chose_otherwise(tmp_path: Path) -> None:
    async with sandbox() as (server, llm):
        help_desk, other, _ = server.channel_ids
        settings: dict[str, Any] = {
            "personas": {
                "pirate": {"system_prompt": "You are a pirate."},
                "teacher": {"system_prompt": "You are a patient teacher."},
            },
            "persona_rules": [{"channels": [int(help_desk)], "persona": "teacher"}],
            "models": {
                "plain": {"api": "ollama", "url": llm.url, "model": "llama3.2"},
                "big": {"api": "ollama", "url": llm.url, "model": "qwen2.5:14b"},
            },
            "routing": {"default": "plain"},
        }
        async with serving(server, llm, tmp_path / "metrics.jsonl", **settings) as bot:

            def sent() -> tuple[str, str]:
                request = bot.llm.last_request(kind="chat")
                assert request is not None
                return str(request.body["messages"][0]["content"]), str(request.body["model"])

            # The rule for the help desk holds in a thread of it.
            starter = bot.say("a question", channel=help_desk, mention=False)
            desk_thread = server.start_thread(starter, "fractions")
            await server.flush()
            await bot.ask("how do fractions work?", channel=desk_thread)
            assert sent() == ("You are a patient teacher.", "llama3.2")

            # The channel's choices (persona and model) reach its threads.
            moderator = server.moderator_id
            await bot.interaction("persona", {"name": "pirate"}, channel=other, user=moderator)
            await bot.interaction("model", {"name": "big"}, channel=other, user=moderator)
            starter = bot.say("ahoy", channel=other, mention=False)
            thread = server.start_thread(starter, "treasure")
            await server.flush()
            await bot.ask("where is the treasure?", channel=thread)
            assert sent() == ("You are a pirate.", "qwen2.5:14b")
            assert (await bot.events("llm_call"))[-1]["persona"] == "pirate"
            shown = await bot.interaction("persona", channel=thread)
            assert "Persona here: pirate (this thread's channel's)" in shown
            assert "Model here: big (this thread's channel's)" in await bot.interaction(
                "model", channel=thread
            )
            assert "persona here      pirate" in await bot.interaction("stats", channel=thread)

            # A thread's own choice beats its channel's, and leaves the channel's alone.
            await bot.interaction("persona", {"name": "teacher"}, channel=thread, user=moderator)
            await bot.ask("and the map?", channel=thread)
            assert sent()[0] == "You are a patient teacher."
            await bot.ask("and the ship?", channel=other)
            assert sent() == ("You are a pirate.", "qwen2.5:14b")


async def test_ask_keeps_the_same_cooldown_as_a_mention(tmp_path: Path) -> None:
    async with (
        sandbox() as (server, llm),
        serving(server, llm, tmp_path / "metrics.jsonl", cooldown=30.0) as bot,
    ):
        user = server.user_ids[1]
        _, answer = await bot.ask("!echo first", user=user)
        assert answer.content == "first"
        calls = llm.calls_total
        refused = await bot.interaction("ask", {"question": "!echo around it?"}, user=user)
        assert refused.startswith("Slow down a little: ask again in ")
        assert llm.calls_total == calls  # no LLM call for a user in their cooldown
        iid = server.send_interaction(
            bot.channel, server.user_ids[2], "ask", {"question": "!echo someone else"}
        )
        other = await server.wait_for_settled_reply(iid, 10.0, settle=0.3)
        assert other and other[0].content == "someone else"
        statuses = [e["status"] for e in await bot.events("reply")]
        assert statuses == ["ok", "cooldown", "ok"]


async def test_a_reply_cancelled_at_a_stop_says_what_had_gone_out(tmp_path: Path) -> None:
    # An answer streaming longer than the stop's drain (5 s here) is cancelled; its reply event
    # still counts the message posted and the characters shown, and its time is no latency.
    metrics = tmp_path / "metrics.jsonl"
    async with sandbox(llm={"tokens_per_second": 8.0}) as (server, llm):
        async with serving(server, llm, metrics, llm_timeout=60.0) as bot:
            mid = bot.say("!echo " + " ".join(f"word{i}" for i in range(150)))
            first = await server.wait_for_reply(mid, 10.0)  # posted after its first second
            assert first.content.startswith("word0")
        posted = server.replies_to(mid)
    events = [orjson.loads(line) for line in metrics.read_bytes().splitlines()]
    (reply,) = [e for e in events if e["type"] == "reply"]
    assert reply["status"] == "cancelled"
    assert reply["parts"] == len(posted) == 1
    assert 0 < reply["chars"] < len(" ".join(f"word{i}" for i in range(150)))
    assert reply["chars"] == len(posted[0].content)
    stats = [e for e in events if e["type"] == "stats"][-1]
    assert stats["final"] is True


# ---------------------------------------------------------------------------------------- access


async def test_a_blocked_user_gets_nothing_in_a_channel_and_a_note_in_a_dm(
    tmp_path: Path,
) -> None:
    async with sandbox() as (server, llm):
        blocked, other = server.user_ids[3], server.user_ids[4]
        async with serving(
            server, llm, tmp_path / "metrics.jsonl", block_users=[int(blocked)]
        ) as bot:
            calls = llm.calls_total
            assert await no_reply(bot, bot.say("!echo hello?", user=blocked))
            dm = server.post_dm(blocked, "!echo hello in private?")
            (note,) = await sends_in(server, dm_channel(server, dm))
            assert note.content == REFUSED_IN_DM
            assert llm.calls_total == calls
            _, answer = await bot.ask("!echo hello", user=other)
            assert answer.content == "hello"
            assert [e["user"] for e in await bot.events("message")] == [other]


async def test_allow_users_roles_and_channels_are_honoured(tmp_path: Path) -> None:
    async with sandbox() as (server, llm):
        allowed, stranger, promoted = server.user_ids[:3]
        open_channel, closed_channel, _ = server.channel_ids
        moderators = server.world.guilds[server.guild_id].role_id("moderator")
        settings = {
            "allow_users": [int(allowed)],
            "allow_roles": [int(moderators)],
            "allow_channels": [int(open_channel)],
        }
        async with serving(server, llm, tmp_path / "metrics.jsonl", **settings) as bot:
            _, answer = await bot.ask("!echo ok", user=allowed, channel=open_channel)
            assert answer.content == "ok"
            _, answer = await bot.ask("!echo mod", user=server.moderator_id, channel=open_channel)
            assert answer.content == "mod"
            # Not listed, no role: nothing.
            assert await no_reply(bot, bot.say("!echo me?", user=stranger, channel=open_channel))
            # Listed, in a channel not allowed: nothing either.
            assert await no_reply(bot, bot.say("!echo here?", user=allowed, channel=closed_channel))
            # A thread counts as its channel.
            starter = bot.say("a thread", user=allowed, channel=open_channel, mention=False)
            thread = server.start_thread(starter)
            await server.flush()
            _, answer = await bot.ask("!echo in thread", user=allowed, channel=thread)
            assert answer.content == "in thread"
            # Given the role, the stranger is let in.
            server.set_roles(promoted, ["moderator"])
            await server.flush()
            _, answer = await bot.ask("!echo promoted", user=promoted, channel=open_channel)
            assert answer.content == "promoted"
            # Allowed users may write in DMs; the others hear why.
            dm = server.post_dm(allowed, "!echo private")
            assert [p.content for p in await bot.reply_to(dm)] == ["private"]
            dm = server.post_dm(stranger, "!echo private?")
            (note,) = await sends_in(server, dm_channel(server, dm))
            assert note.content == REFUSED_IN_DM


# --------------------------------------------------------------------------------------- privacy


async def test_no_text_attachment_or_summary_reaches_the_metrics_file(tmp_path: Path) -> None:
    async with sandbox() as (server, llm):
        assert llm.url is not None
        settings: dict[str, Any] = {"context_tokens": 512, **vision_models(llm.url)}
        async with serving(server, llm, tmp_path / "metrics.jsonl", **settings) as bot:
            secrets = ["zebra-question-one", "zebra-question-two", "zebra-question-three"]
            answers = []
            padding = " and more words" * 24  # three exchanges outgrow a 512-token context
            for secret in secrets:  # the later ones fold the earlier into a summary
                _, answer = await bot.ask(f"!echo {secret} echoed{padding}")
                answers.append(answer.content)
            summary = bot.components.summaries.get(bot.channel)
            assert summary and summary.startswith("Summary of")
            attached = [
                NewAttachment("diary.txt", b"okapi-attachment-content\n", "text/plain"),
                NewAttachment("photo.png", PNG, "image/png"),
            ]
            mid = bot.say("!echo look at these", attachments=attached, reply_to=None)
            await bot.reply_to(mid)
            assert "okapi-attachment-content" in bot.last_chat()[-1]["content"]
            await bot.ask("!echo zebra-reply-text", reply_to=mid, mention=True)

        raw = (tmp_path / "metrics.jsonl").read_text("utf-8")
        assert '"type":"message"' in raw.replace(" ", "") and "llm_call" in raw
        for needle in [
            *secrets,
            *answers,
            "zebra-reply-text",
            "okapi-attachment-content",
            summary,
            summary[len("Summary of 1 message: ") :][:40],
            base64.b64encode(PNG).decode()[:24],
            "look at these",
        ]:
            assert needle not in raw, needle
