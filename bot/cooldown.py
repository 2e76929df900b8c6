"""Per-user cooldown: seconds between two questions of one user.

In-process here (bounded: the least recently seen users are forgotten first); with ``--redis`` the
shared version (:mod:`bot.shared`) holds it in Redis, so a user cannot dodge it by asking another
shard or another server the bot is in.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["Cooldown"]

_KEEP = 10_000


class Cooldown:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: OrderedDict[int, float] = OrderedDict()

    async def check(self, user_id: int, now: float) -> float:
        """0 if the user may ask now (and records it), else the seconds left."""
        return self.retry_after(user_id, now)

    def retry_after(self, user_id: int, now: float) -> float:
        if self.seconds <= 0:
            return 0.0
        last = self._last.get(user_id)
        if last is not None and now - last < self.seconds:
            return self.seconds - (now - last)
        self._last[user_id] = now
        self._last.move_to_end(user_id)
        if len(self._last) > _KEEP:
            self._last.popitem(last=False)
        return 0.0
