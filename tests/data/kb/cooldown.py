"""Per-user cooldown: how long a member waits between two questions."""

from __future__ import annotations

import time

DEFAULT_COOLDOWN_SECONDS = 3.0


class Cooldown:
    """Remembers when each user last asked, and refuses a question asked too soon."""

    def __init__(self, seconds: float = DEFAULT_COOLDOWN_SECONDS) -> None:
        self.seconds = seconds
        self.last: dict[int, float] = {}

    def allow(self, user_id: int) -> bool:
        now = time.monotonic()
        if now - self.last.get(user_id, -self.seconds) < self.seconds:
            return False
        self.last[user_id] = now
        return True


def remaining(cooldown: Cooldown, user_id: int) -> float:
    """Seconds until ``user_id`` may ask again (0 when they may ask now)."""
    since = time.monotonic() - cooldown.last.get(user_id, -cooldown.seconds)
    return max(0.0, cooldown.seconds - since)
