"""Sources into the prompt, and the sources line(s) under the answer. Pure functions.

:func:`prompt_block` numbers the retrieved chunks that fit a token budget as ``[n] path:start-end``
followed by their text; :func:`sources_lines` lists, for the answer, the sources the model cited
as ``[n]`` — or every source given to it when it cited none — and never a source that was not
retrieved for this question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.kb.store import Hit

__all__ = [
    "CITE_INSTRUCTION",
    "PromptBlock",
    "cited_numbers",
    "estimate_tokens",
    "prompt_block",
    "sources_footer",
    "sources_lines",
]

CITE_INSTRUCTION = (
    "Answer from the numbered sources below when they are relevant, and cite each source you "
    "use as [n]. If they do not hold the answer, say so."
)
_TRUNCATED = " […]"
# [1], [1, 3], [1][2]; not x[1] (an index in code), nor inside code spans or blocks.
_CITE = re.compile(r"(?<![\w)\]])\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]|(?<=\])\[(\d{1,3})\]")
_CODE = re.compile(r"```.*?(?:```|$)|`[^`\n]*`", re.DOTALL)


def estimate_tokens(text: str) -> int:
    """About four characters a token: good enough to keep a prompt inside a budget."""
    return (len(text) + 3) // 4


@dataclass(frozen=True, slots=True)
class PromptBlock:
    """``text`` for the prompt; ``hits[n - 1]`` is source ``[n]``."""

    text: str
    hits: list[Hit]


def prompt_block(
    hits: Sequence[Hit], budget_tokens: int, instruction: str = CITE_INSTRUCTION
) -> PromptBlock:
    """The best hits, in rank order, that fit ``budget_tokens`` with the instruction. A hit that
    does not fit is left out and the next ones are tried; the first one is cut to fit rather than
    dropped, so some source is always given when any was retrieved."""
    used = estimate_tokens(instruction) + 1
    parts: list[str] = []
    kept: list[Hit] = []
    for hit in hits:
        header = f"[{len(kept) + 1}] {hit.location}\n"
        cost = estimate_tokens(header + hit.text) + 1
        if used + cost <= budget_tokens:
            parts.append(header + hit.text)
            kept.append(hit)
            used += cost
        elif not kept:
            room = (budget_tokens - used - estimate_tokens(header + _TRUNCATED) - 1) * 4
            if room > 0:
                parts.append(header + hit.text[:room].rstrip() + _TRUNCATED)
                kept.append(hit)
                used = budget_tokens
    if not kept:
        return PromptBlock("", [])
    return PromptBlock(instruction + "\n\n" + "\n\n".join(parts), kept)


def cited_numbers(answer: str, count: int) -> list[int]:
    """The source numbers 1..``count`` that ``answer`` cites as ``[n]``, in order, once each."""
    prose = _CODE.sub(" ", answer)
    seen: dict[int, None] = {}
    for match in _CITE.finditer(prose):
        for number in re.findall(r"\d+", match.group(1) or match.group(2)):
            n = int(number)
            if 1 <= n <= count:
                seen.setdefault(n, None)
    return list(seen)


def sources_lines(answer: str, hits: Sequence[Hit]) -> list[str]:
    """``[n] path:start-end`` for each source the answer cites, in number order; every source
    when it cites none; nothing when nothing was retrieved."""
    cited = sorted(cited_numbers(answer, len(hits)))
    numbers = cited or list(range(1, len(hits) + 1))
    return [f"[{n}] {hits[n - 1].location}" for n in numbers]


def sources_footer(answer: str, hits: Sequence[Hit]) -> str:
    """What to append to the answer: ``Sources:`` and its lines, or ``""``."""
    lines = sources_lines(answer, hits)
    return "Sources:\n" + "\n".join(lines) if lines else ""
