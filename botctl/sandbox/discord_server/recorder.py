"""What the bot did, as the sandbox saw it: its sends, edits, typing calls and interaction responses,
grouped by the user message (or interaction) they answer, with waits for a reply that need no polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from botctl.sandbox.discord_server.common import JSON

__all__ = [
    "Listener",
    "RecordedEdit",
    "RecordedInteractionResponse",
    "RecordedMessage",
    "RecordedTyping",
    "Recorder",
]

log = logging.getLogger("botctl.sandbox.discord")


@dataclass(slots=True)
class RecordedEdit:
    """One edit of a bot message (REST PATCH, or the interaction webhook's PATCH)."""

    message_id: str
    channel_id: str
    content: str
    allowed_mentions: JSON | None
    at: float  # time.monotonic()
    payload: JSON


@dataclass(slots=True)
class RecordedMessage:
    """One message the bot sent; ``content`` is its latest content (after the last edit).

    ``reply_to`` is the user message its ``message_reference`` points at, or, for a slash-command
    response or follow-up, the interaction id.
    """

    id: str
    channel_id: str
    content: str
    reply_to: str | None
    message_reference: JSON | None
    allowed_mentions: JSON | None
    at: float  # time.monotonic() of the send
    payload: JSON
    interaction_id: str | None = None
    flags: int = 0
    edits: list[RecordedEdit] = field(default_factory=list)
    deleted: bool = False

    @property
    def original_content(self) -> str:
        """What the message said when it was sent."""
        content = self.payload.get("content")
        return content if isinstance(content, str) else ""

    @property
    def last_at(self) -> float:
        """Monotonic time of the last send or edit."""
        return self.edits[-1].at if self.edits else self.at


@dataclass(slots=True)
class RecordedTyping:
    channel_id: str
    at: float


@dataclass(slots=True)
class RecordedInteractionResponse:
    """One ``POST /interactions/{id}/{token}/callback`` (type 4 message, 5 deferred, ...)."""

    interaction_id: str
    type: int
    data: JSON | None
    at: float


Listener = Callable[[RecordedMessage, RecordedEdit | None], None]


class _Replies:
    """The bot's messages answering one user message or interaction, and who waits on them."""

    __slots__ = ("last_at", "parts", "waiters")

    def __init__(self) -> None:
        self.parts: list[RecordedMessage] = []
        self.last_at = 0.0
        self.waiters: list[asyncio.Future[None]] = []

    def touch(self, at: float) -> None:
        self.last_at = at
        if self.waiters:
            waiters, self.waiters = self.waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


class Recorder:
    """The bot's sends and edits, by the message they answer; bounded to ``max_records`` each."""

    def __init__(self, max_records: int, settle_seconds: float) -> None:
        self.max_records = max_records
        self.settle_seconds = settle_seconds
        self.all_sends: list[RecordedMessage] = []
        self.all_edits: list[RecordedEdit] = []
        self.typing_calls: list[RecordedTyping] = []
        self.interaction_responses: list[RecordedInteractionResponse] = []
        self.posted_at: dict[str, float] = {}  # user message id -> monotonic time it was dispatched
        self.bot_messages: dict[str, RecordedMessage] = {}
        self._replies: dict[str, _Replies] = {}
        self._listeners: list[Listener] = []
        self.sends = 0
        self.edits = 0
        self.deletes = 0

    # ------------------------------------------------------------------ recording

    def posted(self, mid: str) -> None:
        self.posted_at[mid] = time.monotonic()

    def send(self, rec: RecordedMessage) -> None:
        self.all_sends.append(rec)
        self.bot_messages[rec.id] = rec
        self.sends += 1
        if rec.reply_to is not None:
            replies = self._replies_for(rec.reply_to)
            replies.parts.append(rec)
            replies.touch(rec.at)
        for listener in self._listeners:
            self._call(listener, rec, None)

    def edit(self, rec: RecordedMessage, edit: RecordedEdit) -> None:
        rec.edits.append(edit)
        rec.content = edit.content
        self.all_edits.append(edit)
        self.edits += 1
        if rec.reply_to is not None:
            self._replies_for(rec.reply_to).touch(edit.at)
        for listener in self._listeners:
            self._call(listener, rec, edit)

    def deleted(self, mid: str) -> None:
        rec = self.bot_messages.get(mid)
        if rec is not None:
            rec.deleted = True
            self.deletes += 1

    def typing(self, cid: str) -> None:
        self.typing_calls.append(RecordedTyping(cid, time.monotonic()))

    def interaction_response(self, response: RecordedInteractionResponse) -> None:
        self.interaction_responses.append(response)

    @staticmethod
    def _call(listener: Listener, rec: RecordedMessage, edit: RecordedEdit | None) -> None:
        try:
            listener(rec, edit)
        except Exception:
            log.exception("sandbox listener %r failed", listener)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def prune(self) -> None:
        """Forget the oldest records beyond ``max_records`` (counters stay exact)."""
        keep = self.max_records
        for store in (self.posted_at, self._replies, self.bot_messages):
            excess = len(store) - keep
            if excess > 0:
                for key in list(itertools.islice(store, excess)):
                    del store[key]
        for records in (
            self.all_sends,
            self.all_edits,
            self.typing_calls,
            self.interaction_responses,
        ):
            if len(records) > keep:
                del records[: len(records) - keep]

    # ------------------------------------------------------------------ reading

    def replies_to(self, message_id: str | int) -> list[RecordedMessage]:
        replies = self._replies.get(str(message_id))
        return list(replies.parts) if replies is not None else []

    def _replies_for(self, key: str) -> _Replies:
        replies = self._replies.get(key)
        if replies is None:
            replies = self._replies[key] = _Replies()
        return replies

    async def wait_for_reply(self, message_id: str | int, timeout: float) -> RecordedMessage:
        key = str(message_id)
        replies = self._replies_for(key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not replies.parts:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no reply to {key} within {timeout:g} s")
            waiter: asyncio.Future[None] = loop.create_future()
            replies.waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, remaining)
        return replies.parts[0]

    async def wait_for_settled_reply(
        self, message_id: str | int, timeout: float, *, settle: float | None = None
    ) -> list[RecordedMessage]:
        quiet = self.settle_seconds if settle is None else settle
        replies = self._replies_for(str(message_id))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if replies.parts:
                # last_at is time.monotonic(); the loop clock is monotonic too, but may differ
                idle = time.monotonic() - replies.last_at
                if idle >= quiet:
                    break
                wait = min(quiet - idle, remaining)
            else:
                wait = remaining
            waiter: asyncio.Future[None] = loop.create_future()
            replies.waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, wait)
        return list(replies.parts)

    def reply_summary(self, mid: str, parts: list[RecordedMessage]) -> JSON:
        """What ``GET /_sandbox/wait_reply`` answers about a reply's parts."""
        posted = self.posted_at.get(mid)
        last = max(p.last_at for p in parts)
        return {
            "message_id": mid,
            "content": "\n".join(p.content for p in parts if not p.deleted),
            "parts": len(parts),
            "part_ids": [p.id for p in parts],
            "edits": sum(len(p.edits) for p in parts),
            "settled": time.monotonic() - last >= self.settle_seconds,
            "first_ms": (parts[0].at - posted) * 1000 if posted is not None else None,
            "last_ms": (last - posted) * 1000 if posted is not None else None,
        }
