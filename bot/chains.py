"""Reply chains: which message answers which, remembered so a long chain is not fetched again.

Every message the bot takes or sends in a conversation is remembered as ``(role, content, parent)``
(the user's text without the bot's mention, the bot's whole answer); a reply's context is then the
chain of parents up to the history limit. A message not remembered (older than the bot's memory, or
written while it was down) is fetched by the front end and remembered too, so the next reply in
that chain costs no fetch. Bounded: the least recently used messages are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["ChainLink", "Chains"]


@dataclass(frozen=True, slots=True)
class ChainLink:
    role: str  # "user" | "assistant"
    content: str
    parent: int | None  # the message it replies to


class Chains:
    def __init__(self, capacity: int = 50_000) -> None:
        self._capacity = capacity
        self._links: OrderedDict[int, ChainLink] = OrderedDict()
        self._answers: dict[int, int] = {}  # a question's id -> the bot's answer's id
        self.fetched = 0  # messages fetched from Discord (remembered with `fetched=True`)

    def remember(
        self, message_id: int, role: str, content: str, parent: int | None, *, fetched: bool = False
    ) -> None:
        links = self._links
        links[message_id] = ChainLink(role, content, parent)
        links.move_to_end(message_id)
        if role == "assistant" and parent is not None:
            self._answers[parent] = message_id
        if fetched:
            self.fetched += 1
        while len(links) > self._capacity:
            old, link = links.popitem(last=False)
            if link.parent is not None and self._answers.get(link.parent) == old:
                del self._answers[link.parent]

    def get(self, message_id: int) -> ChainLink | None:
        link = self._links.get(message_id)
        if link is not None:
            self._links.move_to_end(message_id)
        return link

    def answer_to(self, message_id: int) -> int | None:
        """The bot's answer to a message, when it answered it."""
        return self._answers.get(message_id)

    def walk(self, start: int, limit: int) -> tuple[list[dict[str, str]], int | None]:
        """The chain ending at ``start``, oldest first, at most ``limit`` messages, and the first
        message id that is not remembered (to fetch), or ``None`` when the chain is whole. A chain
        that loops stops where it would repeat itself."""
        out: list[dict[str, str]] = []
        seen: set[int] = set()
        current: int | None = start
        while current is not None and len(out) < limit and current not in seen:
            link = self.get(current)
            if link is None:
                out.reverse()
                return out, current
            seen.add(current)
            out.append({"role": link.role, "content": link.content})
            current = link.parent
        out.reverse()
        return out, None

    def __len__(self) -> int:
        return len(self._links)
