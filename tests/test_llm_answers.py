"""The sandbox LLM's deterministic answers, message reading and embeddings (no server)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from botctl.sandbox.llm_server import (
    answer_for,
    cosine,
    embed_text,
    last_user_text,
    make_answer,
    parse_turns,
)
from botctl.sandbox.llm_server.answers import citations, is_summary_request
from botctl.sandbox.llm_server.embeddings import to_base64

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def ollama_image_message(text: str, images: int) -> dict[str, Any]:
    return {"role": "user", "content": text, "images": [PNG] * images}


def openai_image_message(text: str, images: int) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    url = f"data:image/png;base64,{PNG}"
    parts += [{"type": "image_url", "image_url": {"url": url}}] * images
    return {"role": "user", "content": parts}


# --- reading messages --------------------------------------------------------------------------


def test_both_protocols_read_as_the_same_turns() -> None:
    (ollama,) = parse_turns([ollama_image_message("what is this?", 2)])
    (openai,) = parse_turns([openai_image_message("what is this?", 2)])
    assert ollama.text == openai.text == "what is this?"
    assert len(ollama.images) == len(openai.images) == 2
    assert ollama.images[0] == PNG and openai.images[0] == f"data:image/png;base64,{PNG}"
    # Text parts join by line; unknown parts and non-dict entries are skipped, never crash.
    odd = {"role": "user", "content": [{"type": "text", "text": "a"}, 3, {"type": "audio"}, {"type": "text", "text": "b"}]}  # fmt: skip
    assert last_user_text([odd]) == "a\nb"
    assert last_user_text([{"role": "user", "content": None}]) == ""
    assert last_user_text([{"role": "assistant", "content": "x"}]) == ""


# --- answers -----------------------------------------------------------------------------------


def test_an_image_is_mentioned_with_its_count_on_both_protocols() -> None:
    one = answer_for([ollama_image_message("describe it", 1)])
    two = answer_for([ollama_image_message("describe it", 2)])
    assert one.startswith("I see 1 image. ") and two.startswith("I see 2 images. ")
    assert answer_for([openai_image_message("describe it", 2)]) == two
    assert len(one) == 300  # the prefix is inside the answer's size
    assert "image" not in answer_for([{"role": "user", "content": "describe it"}]).lower()
    # Only the last user message's images count.
    history = [ollama_image_message("earlier", 1), {"role": "user", "content": "describe it"}]
    assert not answer_for(history).startswith("I see")


def test_numbered_sources_get_cited() -> None:
    sources = (
        "Answer from these sources and cite them as [n].\n"
        "[1] docs/guide.md:10-42\nInstall with make.\n"
        "[2] docs/faq.md:1-9\nIt is fast."
    )
    messages = [
        {"role": "system", "content": sources},
        {"role": "user", "content": "how do I install it?"},
    ]
    text = answer_for(messages)
    first = text[: text.index(".") + 1]
    assert first.endswith(" [1].") and text.count("[") == 1
    assert text == answer_for(messages)  # still a pure function of the messages
    # Sources in the user message count too; the lowest number is cited.
    in_user = [{"role": "user", "content": "[3] a.md:1-2\nx\n[2] b.md:4-5\ny\n\nhow?"}]
    assert "[2]." in answer_for(in_user) and "[3]" not in answer_for(in_user)
    # No sources and no directive: no citation, whatever brackets the text has.
    plain = [{"role": "user", "content": "what does [1] mean in a list?"}]
    assert citations(parse_turns(plain), "what does [1] mean in a list?") == []


def test_the_cite_directive() -> None:
    assert answer_for([{"role": "user", "content": "!cite what is it?"}]).count("[1]") == 1
    chosen = answer_for([{"role": "user", "content": "what is it? !cite 2, 3"}])
    first = chosen[: chosen.index(".") + 1]
    assert first.endswith(" [2][3].") and "[1]" not in chosen
    assert "[" not in answer_for([{"role": "user", "content": "what is !citeless?"}])


def test_summary_requests_get_a_short_summary() -> None:
    conversation = [
        {"role": "user", "content": "what is a monad?"},
        {"role": "assistant", "content": "A monoid in the category of endofunctors."},
        {"role": "user", "content": "and a functor?"},
    ]
    ask = {"role": "system", "content": "Summarize the conversation below in a few sentences."}
    summary = answer_for([ask, *conversation])
    assert summary.startswith("Summary of 3 messages: ") and len(summary) < 160
    assert summary == answer_for([ask, *conversation])
    assert answer_for([ask, *conversation[:1]]).startswith("Summary of 1 message: ")
    assert answer_for([ask, *conversation[:1]]) != summary
    bang = answer_for([*conversation, {"role": "user", "content": "!summary"}])
    assert bang.startswith("Summary of 4 messages: ")


@pytest.mark.parametrize(
    "context",
    [
        "Summary of the conversation so far: they talked about monads.",
        "You are helpful. Here is a summary of earlier messages: none.",
        "Summarise the rules of chess in a few sentences.",
    ],
)
def test_a_summary_given_as_context_is_no_summary_request(context: str) -> None:
    messages = [{"role": "system", "content": context}, {"role": "user", "content": "and then?"}]
    assert not is_summary_request(parse_turns(messages))
    assert answer_for(messages) == make_answer("and then?")


def test_directives_keep_their_precedence() -> None:
    summary_ask = {"role": "system", "content": "Summarize the conversation."}
    assert answer_for([summary_ask, {"role": "user", "content": "!echo hi [1]"}]) == "hi [1]"
    assert len(answer_for([summary_ask, {"role": "user", "content": "!long 500"}])) == 500


# --- embeddings --------------------------------------------------------------------------------


def test_embeddings_are_unit_vectors_and_shared_words_are_closer() -> None:
    query = embed_text("how do I reset the channel history")
    near = embed_text("Reset clears the channel history")
    far = embed_text("Bananas grow in warm climates")
    assert len(query) == 64 and embed_text("x", 16).__len__() == 16
    for vector in (query, near, far, embed_text(""), embed_text("!!!")):
        assert abs(sum(x * x for x in vector) - 1.0) < 1e-9
    assert cosine(query, near) > cosine(query, far) + 0.3
    assert embed_text("Same Text") == embed_text("same text")
    assert embed_text("") != embed_text("!!!")  # no words: the text itself decides


def test_base64_embeddings_are_little_endian_float32() -> None:
    vector = embed_text("hello world")
    raw = base64.b64decode(to_base64(vector))
    decoded = struct.unpack(f"<{len(vector)}f", raw)
    assert all(abs(a - b) < 1e-6 for a, b in zip(decoded, vector, strict=True))
