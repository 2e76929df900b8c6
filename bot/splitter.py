"""Splitting a reply into Discord messages of at most 2,000 characters.

Cuts fall on a line break where one exists in the window, else on a space, else mid-word. A code
block that a cut leaves open is closed at the end of the part and reopened (with its language) at the
start of the next, so every message renders on its own.

The split is greedy from the start, so it is stable as a streamed answer grows: the parts before the
last never change once they are full, which lets the front end edit only the last message.
"""

from __future__ import annotations

DISCORD_LIMIT = 2000
_CLOSE = "\n```"


def _fence_after(chunk: str, fence: str | None) -> str | None:
    """The code fence still open after ``chunk``, given the one open before it."""
    for line in chunk.split("\n"):
        stripped = line.strip()
        if stripped.startswith("```"):
            if fence is None:
                fence = stripped[:24]  # "```py" reopens with its language (bounded)
            elif stripped == "```":
                fence = None
            # A "```lang" line inside an open block is text, not a fence change.
    return fence


def _cut(text: str, budget: int) -> tuple[str, str]:
    """Split ``text`` (longer than ``budget``) into a head of at most ``budget`` and the rest."""
    window = text[: budget + 1]
    newline = window.rfind("\n", 0, budget + 1)
    if newline > 0:
        return text[:newline], text[newline + 1 :]
    space = window.rfind(" ", 0, budget + 1)
    if space > 0:
        return text[:space], text[space + 1 :]
    return text[:budget], text[budget:]


def split_message(text: str, limit: int = DISCORD_LIMIT) -> list[str]:
    """``text`` as a list of messages of at most ``limit`` characters (an empty text gives [])."""
    if limit < 64:
        raise ValueError("limit must be at least 64 characters")
    parts: list[str] = []
    fence: str | None = None
    remaining = text
    while remaining:
        prefix = f"{fence}\n" if fence else ""
        if len(prefix) + len(remaining) <= limit:
            parts.append(prefix + remaining)
            break
        # Room for the reopened fence before and a closing fence after, whatever the cut finds.
        budget = limit - len(prefix) - len(_CLOSE)
        head, remaining = _cut(remaining, budget)
        fence_after = _fence_after(head, fence)
        part = prefix + head
        if fence_after is not None:
            part += _CLOSE
        if part.strip():
            parts.append(part)
        fence = fence_after
    return parts
