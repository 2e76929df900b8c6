"""A user's cooldown held in Redis, so it holds across shards and processes.

One atomic ``SET <prefix>cd:<user> <expiry> NX PX <cooldown> GET`` per question: the key's existence
is the cooldown (set by the first process to see the question, expiring by itself), and its value,
the wall-clock time it ends, gives the seconds left without a second round trip (a clock skew
between machines only changes the figure shown, never who may ask). Redis down: the local
:class:`~bot.cooldown.Cooldown`, which also records every question Redis allowed, so it takes over
with what it saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.cooldown import Cooldown
from bot.shared.state import SharedState, SharedUnavailable

__all__ = ["SharedCooldown"]


class SharedCooldown(Cooldown):
    def __init__(
        self, state: SharedState, seconds: float, *, wall: Callable[[], float] = time.time
    ) -> None:
        super().__init__(seconds)
        self.state = state
        self._wall = wall

    async def check(self, user_id: int, now: float) -> float:
        """0 if the user may ask now (and records it, here and in Redis), else the seconds left."""
        if self.seconds <= 0:
            return 0.0
        ms = max(1, int(self.seconds * 1000))
        ends = self._wall() + self.seconds
        key = self.state.key("cd", str(user_id))
        try:
            previous = await self.state.run(
                lambda r: r.set(key, f"{ends:.3f}", nx=True, px=ms, get=True)
            )
        except SharedUnavailable:
            return self.retry_after(user_id, now)
        if previous is None:
            self.retry_after(user_id, now)  # keep the local record current for a fallback
            return 0.0
        try:
            left = float(previous) - self._wall()
        except (TypeError, ValueError):
            left = self.seconds  # not a value this bot writes: the key still blocks
        return min(self.seconds, max(left, 0.001))
