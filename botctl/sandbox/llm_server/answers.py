"""Deterministic answers: the text the sandbox LLM gives to a conversation.

The answer is a pure function of the request's messages (identical requests get identical answers,
which the bot's dedup tests rely on), read from the last user message unless said otherwise:

- ``!echo TEXT`` gets ``TEXT`` verbatim (to exercise mention safety);
- ``!long N`` gets exactly ``N`` characters, with line breaks and a fenced code block across the
  middle (to exercise message splitting);
- a summary request — a system message or the last user message asking to summarise
  (``summarise``/``summarize``/``summarising``: the verb, so a summary *given* as context is no
  request) the ``conversation`` / ``chat`` / ``discussion`` / ``messages``, or a last user message
  starting with ``!summary`` — gets ``Summary of N messages: ...`` (N: the non-system messages), a
  short text derived from them all;
- otherwise a few sentences (``answer_chars`` characters) derived from the question's hash, with:

  - ``I see N image(s). `` in front when the last user message carries images (Ollama
    ``images`` or OpenAI ``image_url`` parts), so a test sees the image reached the model;
  - a citation: when a system or user message holds numbered sources (a line starting
    ``[n] path:...``) or the question holds ``!cite``, the first sentence ends with ``[n]`` —
    the lowest source number (``[1]`` with ``!cite`` alone); ``!cite 2,3`` cites ``[2][3]``.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from botctl.sandbox.llm_server.messages import Turn, last_user_turn, parse_turns

MAX_LONG_ANSWER = 1_000_000
SUMMARY_CHARS = 120

_WORD_TEXT = (
    "answer bot channel cache chat code data dedup event fast history latency message metric "
    "model prompt queue reply request result sandbox server stream system test token user value "
    "window simple small clear short quick local steady every which while after before often "
    "usually always never sends reads keeps makes gives takes finds holds shows counts waits "
    "the a an this that one each some its our your their of to in on for with from by at as"
)
_WORDS = tuple(_WORD_TEXT.split())

_LONG = re.compile(r"^!long\s+(\d+)")
_SOURCE = re.compile(r"^[ \t]*\[(\d{1,3})\][ \t]*\S+:", re.MULTILINE)
_CITE = re.compile(r"(?:^|\s)!cite(?:[ \t]+(\d{1,3}(?:[ \t]*,[ \t]*\d{1,3})*))?(?=\s|$)")
_SUMMARY_VERB = re.compile(r"\bsummari[sz](?:e|ing)\b", re.IGNORECASE)
_SUMMARY_OBJECT = re.compile(r"\b(?:conversation|chat|discussion|messages)\b", re.IGNORECASE)


def _rng(seed: str) -> random.Random:
    return random.Random(hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest())


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(5, 13))]
    return words[0].capitalize() + " " + " ".join(words[1:]) + "."


def _fit(text: str, n: int) -> str:
    """``text`` cut to exactly ``n`` characters, not ending on whitespace."""
    out = text[:n]
    if out and out[-1].isspace():
        out = out[:-1] + "."
    return out


def _prose(rng: random.Random, n: int, *, line_breaks: bool) -> str:
    parts: list[str] = []
    size = 0
    while size < n + 1:
        sentence = _sentence(rng)
        if parts:
            sep = " "
            if line_breaks:
                roll = rng.random()
                sep = "\n\n" if roll < 0.15 else "\n" if roll < 0.5 else " "
            parts.append(sep)
            size += len(sep)
        parts.append(sentence)
        size += len(sentence)
    return _fit("".join(parts), n)


def make_answer(prompt: str, chars: int = 300) -> str:
    """A few sentences of exactly ``chars`` characters, the same for the same ``prompt``."""
    return _prose(_rng(prompt), max(0, chars), line_breaks=False)


def _code_block(rng: random.Random, size: int) -> str:
    """A fenced Python block of at most ``size`` characters (at least its fences)."""
    head, tail = "```python\n", "```\n"
    lines: list[str] = []
    used = len(head) + len(tail)
    i = 0
    while True:
        name = rng.choice(_WORDS[:40])
        line = f"def {name}_{i}(x):\n    return x * {rng.randint(2, 99)} + {i}\n"
        if used + len(line) > size:
            break
        lines.append(line)
        used += len(line)
        i += 1
    return head + "".join(lines) + tail


def long_answer(n: int, seed: str = "") -> str:
    """Exactly ``n`` characters of prose with line breaks and, from 200 characters, a fenced code
    block starting at about 40 % (so a 4,500-character answer has one across the 2,000 mark)."""
    rng = _rng(f"!long {n} {seed}")
    if n < 200:
        return _prose(rng, n, line_breaks=True)
    head = _prose(rng, int(n * 0.4) - 1, line_breaks=True) + "\n"
    code = _code_block(rng, int(n * 0.3))
    tail = _prose(rng, n - len(head) - len(code), line_breaks=True)
    return head + code + tail


def _asks_summary(text: str) -> bool:
    return _SUMMARY_VERB.search(text) is not None and _SUMMARY_OBJECT.search(text) is not None


def is_summary_request(turns: Sequence[Turn]) -> bool:
    last = last_user_turn(turns).text
    if last.lstrip().startswith("!summary") or _asks_summary(last):
        return True
    return any(turn.role == "system" and _asks_summary(turn.text) for turn in turns)


def summary_for(turns: Sequence[Turn]) -> str:
    said = [turn for turn in turns if turn.role != "system"]
    seed = "\x00".join(f"{turn.role}\x01{turn.text}" for turn in said)
    noun = "message" if len(said) == 1 else "messages"
    return f"Summary of {len(said)} {noun}: " + make_answer(f"summary\x00{seed}", SUMMARY_CHARS)


def citations(turns: Sequence[Turn], question: str) -> list[int]:
    """The source numbers the answer cites (none: no citation)."""
    directive = _CITE.search(question)
    if directive is not None and directive.group(1):
        return sorted({int(n) for n in re.findall(r"\d+", directive.group(1))})
    numbers = {
        int(match.group(1))
        for turn in turns
        if turn.role in ("system", "user")
        for match in _SOURCE.finditer(turn.text)
    }
    if numbers:
        return [min(numbers)]
    return [1] if directive is not None else []


def _cite(text: str, numbers: Sequence[int]) -> str:
    marks = "".join(f"[{n}]" for n in numbers)
    end = text.find(".")
    if end < 0:
        return f"{text} {marks}" if text else marks
    return f"{text[:end]} {marks}{text[end:]}"


def answer_for(messages: Sequence[Mapping[str, Any]], answer_chars: int = 300) -> str:
    """The answer to a conversation (see the module's docstring for the rules)."""
    turns = parse_turns(messages)
    last = last_user_turn(turns)
    raw = last.text.lstrip()
    if raw == "!echo" or raw.startswith(("!echo ", "!echo\n")):
        # Verbatim after one separator, so tests control every character of the answer.
        return raw[len("!echo ") :]
    prompt = raw.strip()
    match = _LONG.match(prompt)
    if match:
        return long_answer(min(int(match.group(1)), MAX_LONG_ANSWER), prompt)
    if is_summary_request(turns):
        return summary_for(turns)
    prefix = ""
    if last.images:
        count = len(last.images)
        prefix = f"I see {count} image{'s' if count != 1 else ''}. "
    text = make_answer(prompt, answer_chars - len(prefix))
    cited = citations(turns, prompt)
    if cited:
        text = _cite(text, cited)
    return prefix + text
