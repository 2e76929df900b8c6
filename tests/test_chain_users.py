"""The bench's reply-chain users (``ReplyChainTraffic``) against a fake server whose "bot" answers
every question at once: chains are built exchange by exchange, then every question replies to a
tip with exactly ``depth`` messages of chain behind it, and never repeats a text."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from botctl.sandbox.chain_users import ReplyChainTraffic
from botctl.sandbox.discord_server.recorder import Listener


@dataclass
class _Answer:
    id: str
    reply_to: str
    at: float


class FakeServer:
    """Posts are recorded; an answer from the "bot" follows each on the next loop turn."""

    def __init__(self) -> None:
        self.listeners: list[Listener] = []
        self.posts: dict[str, tuple[str, str, str | None]] = {}  # id -> (channel, text, parent)
        self.parent_of: dict[str, str | None] = {}
        self._next = 0

    @property
    def user_ids(self) -> Sequence[str]:
        return ["u1", "u2", "u3"]

    @property
    def guild_channel_ids(self) -> Sequence[str]:
        return ["c1", "c2"]

    def post_message(
        self,
        channel_id: str | int,
        user_id: str | int,
        content: str,
        *,
        reply_to: str | int | None = None,
    ) -> str:
        self._next += 1
        mid = f"q{self._next}"
        parent = None if reply_to is None else str(reply_to)
        self.posts[mid] = (str(channel_id), content, parent)
        self.parent_of[mid] = parent
        answer = f"a{self._next}"
        self.parent_of[answer] = mid
        loop = asyncio.get_running_loop()
        for listener in self.listeners:
            reply = _Answer(answer, mid, loop.time())
            loop.call_soon(listener, reply, None)  # type: ignore[arg-type]
        return mid

    def create_channel(self) -> str:
        raise AssertionError("chains never create channels")

    def delete_channel(self, channel_id: str | int) -> bool:
        raise AssertionError("chains never delete channels")

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self.listeners.remove(listener)

    async def flush(self, timeout: float = 5.0) -> None:
        return None


def _depth(server: FakeServer, message: str | None) -> int:
    depth = 0
    while message is not None:
        depth += 1
        message = server.parent_of[message]
    return depth


async def test_questions_reply_to_tips_of_chains_depth_deep() -> None:
    server = FakeServer()
    traffic = ReplyChainTraffic(
        server, depth=6, conversations=4, rate=500.0, seed=3, max_messages=30
    )
    traffic.start()
    await traffic.wait_finished(10.0)
    await asyncio.sleep(0.01)  # the last answers
    await traffic.stop()
    traffic.close()
    measured = [(mid, post) for mid, post in server.posts.items() if "(#" in post[1]]
    assert len(measured) == 30
    tips = {parent for _mid, (_c, _t, parent) in measured}
    assert len(tips) <= 4
    for _mid, (channel, _text, parent) in measured:
        assert parent is not None and parent.startswith("a")  # a reply to the bot's answer
        assert _depth(server, parent) == 6
        assert server.posts[server.parent_of[parent] or ""][0] == channel  # the chain's channel
    assert len({text for _mid, (_c, text, _p) in measured}) == 30  # never the same request
    stats = traffic.stats()
    assert stats["preparing"] is False and stats["conversations"] == 4
    assert stats["messages_sent"] == 30 and stats["replies_received"] == 30
    assert stats["unanswered"] == 0
