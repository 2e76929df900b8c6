"""The bot's state in Redis, shared by its processes (``--redis URL``).

:class:`SharedState` is the one connection pool and the up/down state; over it,
:class:`SharedFlights` (dedup across processes), :class:`SharedHistory` and :class:`SharedSummaries`
(conversations a restarted process continues), :class:`SharedCooldown` and :class:`SharedChoices`.
Each falls back to its in-process behaviour while Redis is down. Nothing here imports discord.
"""

from bot.shared.choices import SharedChoices
from bot.shared.cooldown import SharedCooldown
from bot.shared.flights import RerunDivergedError, SharedFlights
from bot.shared.history import SharedHistory, SharedSummaries
from bot.shared.state import SharedState, SharedStateError, SharedUnavailable

__all__ = [
    "RerunDivergedError",
    "SharedChoices",
    "SharedCooldown",
    "SharedFlights",
    "SharedHistory",
    "SharedState",
    "SharedStateError",
    "SharedSummaries",
    "SharedUnavailable",
]
