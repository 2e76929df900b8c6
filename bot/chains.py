"""Reply chains: which message answers which, remembered so a long chain is not fetched again.

Every message the bot takes or sends in a conversation is remembered as ``(role, content, parent)``
(the user's text without the bot's mention, the bot's whole answer); a reply's context is then the
chain of parents up to the history limit. A message not remembered (older than the bot's memory, or
written while it was down) is fetched by the front end and remembered too, so the next reply in
that chain costs no fetch. Bounded in messages and in characters: the least recently used
messages are forgotten first.

A deleted message stays as a tombstone (:meth:`Chains.forget`): its text is gone, its place in the
chain is kept (a walk steps over it to its parent when that is known, and says it did), and it is
never fetched again. A chain that loops (a message replying, through others, to itself) stops
where it would repeat itself, and says so.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["GONE", "ChainLink", "Chains", "Trace"]

GONE = "gone"  # the role of a deleted message's tombstone


@dataclass(frozen=True, slots=True)
class ChainLink:
    role: str  # "user" | "assistant" | GONE
    content: str
    parent: int | None  # the message it replies to


@dataclass(slots=True)
class Trace:
    """A chain as far as the bot knows it: ``messages`` oldest first; ``missing`` the first message
    not remembered (to fetch), ``None`` when the chain is whole; whether a deleted message was
    stepped over (``gone``) or the chain looped (``looped``)."""

    messages: list[dict[str, str]] = field(default_factory=list)
    missing: int | None = None
    gone: int = 0
    looped: bool = False


class Chains:
    def __init__(self, capacity: int = 50_000, max_chars: int = 64 * 1024 * 1024) -> None:
        self._capacity = capacity
        self._max_chars = max_chars
        self._chars = 0  # the remembered texts' total length
        self._links: OrderedDict[int, ChainLink] = OrderedDict()
        self._answers: dict[int, int] = {}  # a question's id -> the bot's answer's id
        self.fetched = 0  # messages fetched from Discord (remembered with `fetched=True`)

    def remember(
        self, message_id: int, role: str, content: str, parent: int | None, *, fetched: bool = False
    ) -> None:
        self._put(message_id, ChainLink(role, content, parent))
        if role == "assistant" and parent is not None:
            self._answers[parent] = message_id
        if fetched:
            self.fetched += 1

    def forget(self, message_id: int, *, known_only: bool = False) -> ChainLink | None:
        """A deleted message: its text is forgotten, a tombstone keeps its place (and its parent)
        so a walk steps over it and nothing fetches it again. ``known_only``: only if it was
        remembered (a deletion anywhere in the server must not fill the memory). Returns what was
        remembered of it."""
        old = self._links.get(message_id)
        if old is None and known_only:
            return None
        self._put(message_id, ChainLink(GONE, "", old.parent if old is not None else None))
        return old if old is not None and old.role != GONE else None

    def _put(self, message_id: int, link: ChainLink) -> None:
        links = self._links
        replaced = links.get(message_id)
        if replaced is not None:
            self._chars -= len(replaced.content)
        links[message_id] = link
        links.move_to_end(message_id)
        self._chars += len(link.content)
        while len(links) > self._capacity or (self._chars > self._max_chars and len(links) > 1):
            old, gone = links.popitem(last=False)
            self._chars -= len(gone.content)
            if gone.parent is not None and self._answers.get(gone.parent) == old:
                del self._answers[gone.parent]

    def get(self, message_id: int) -> ChainLink | None:
        """The message as remembered (a tombstone, role :data:`GONE`, for a deleted one)."""
        link = self._links.get(message_id)
        if link is not None:
            self._links.move_to_end(message_id)
        return link

    def answer_to(self, message_id: int) -> int | None:
        """The bot's answer to a message, when it answered it."""
        return self._answers.get(message_id)

    def trace(self, start: int, limit: int) -> Trace:
        """The chain ending at ``start``, oldest first, at most ``limit`` messages."""
        out = Trace()
        seen: set[int] = set()
        current: int | None = start
        while current is not None and len(out.messages) < limit:
            if current in seen:
                out.looped = True
                break
            link = self.get(current)
            if link is None:
                out.missing = current
                break
            seen.add(current)
            if link.role == GONE:
                out.gone += 1
            elif link.content:  # a message with no text (an image alone) adds nothing to say
                out.messages.append({"role": link.role, "content": link.content})
            current = link.parent
        out.messages.reverse()
        return out

    def walk(self, start: int, limit: int) -> tuple[list[dict[str, str]], int | None]:
        """:meth:`trace`'s messages and first missing message id (``None``: the chain is whole)."""
        found = self.trace(start, limit)
        return found.messages, found.missing

    def __len__(self) -> int:
        return len(self._links)
