"""What a request may hold: the model's context, counted, and the summary that replaces old turns.

Tokens are estimated at four characters a token plus four a message (and a flat 768 an image),
close to what Llama- and GPT-family tokenizers give for English prose and code; the servers the bot
talks to do not all expose their tokenizer, and an estimate that errs a little high keeps every
request inside the model's window. A request's budget is the model's context less the answer's own
room (``num_predict``/``max_tokens`` when the model's options set it, else a quarter of the context
up to 1,024 tokens).

A conversation that outgrows its budget has its oldest half folded into a summary the LLM writes (:func:`summary_request`), kept per conversation (:class:`Summaries`) and
extended at the next overflow from the previous summary and the newly folded turns: one summary
call per overflow, never one per message.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "SUMMARY_PREFIX",
    "Summaries",
    "answer_room",
    "count_tokens",
    "estimate_tokens",
    "fold_count",
    "summary_request",
]

SUMMARY_PREFIX = "Summary of the earlier conversation: "
_SUMMARY_PROMPT = (
    "Summarise the conversation below in a few sentences for the assistant taking part in it. "
    "Keep names, facts, open questions and decisions; write only the summary."
)
_PER_MESSAGE = 4
_PER_IMAGE = 768


def estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def count_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    total = 0
    for message in messages:
        content = message.get("content")
        # estimate_tokens inlined: this runs over the whole prompt for every question.
        total += _PER_MESSAGE + (len(content) + 3) // 4 if type(content) is str else _PER_MESSAGE
        if "images" in message:
            total += _PER_IMAGE * len(message["images"] or ())
    return total


def answer_room(context_tokens: int, options: Mapping[str, Any] | None) -> int:
    """Tokens kept free for the answer."""
    for name in ("num_predict", "max_tokens", "max_completion_tokens"):
        value = (options or {}).get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return min(value, context_tokens // 2)
    return min(1024, context_tokens // 4)


def fold_count(history_len: int) -> int:
    """How many of the oldest messages a conversation over its budget folds into the summary.

    The oldest half, in whole exchanges (a question and its answer), so the next overflow is half a
    history away: one summary call per overflow. (The history limit is a bound on memory: turns it
    drops were within budget and are simply forgotten.)
    """
    if history_len < 2:
        return 0
    half = max(2, history_len // 2)
    return half - half % 2


def summary_request(
    previous: str | None, turns: Sequence[Mapping[str, Any]]
) -> list[dict[str, str]]:
    """The messages asking the LLM to extend ``previous`` with ``turns``."""
    transcript = "\n".join(f"{m.get('role', 'user')}: {m.get('content') or ''}" for m in turns)
    earlier = f"Summary so far: {previous}\n\n" if previous else ""
    return [
        {"role": "system", "content": _SUMMARY_PROMPT},
        {"role": "user", "content": f"{earlier}Conversation:\n{transcript}"},
    ]


class Summaries:
    """Each conversation's summary, for at most ``capacity`` conversations (LRU)."""

    def __init__(self, capacity: int = 1000) -> None:
        self._capacity = capacity
        self._texts: OrderedDict[str, str] = OrderedDict()

    def get(self, conversation: str) -> str | None:
        text = self._texts.get(conversation)
        if text is not None:
            self._texts.move_to_end(conversation)
        return text

    def set(self, conversation: str, text: str) -> None:
        self._texts[conversation] = text
        self._texts.move_to_end(conversation)
        while len(self._texts) > self._capacity:
            self._texts.popitem(last=False)

    def clear(self, conversation: str) -> None:
        self._texts.pop(conversation, None)

    def __len__(self) -> int:
        return len(self._texts)
