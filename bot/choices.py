"""What each channel chose for itself (``/model NAME``, ``/persona NAME``), by kind.

In one process a dict; with ``--redis`` the shared version (:mod:`bot.shared`) keeps them in Redis
so every process of the bot, and a restarted one, sees the same choices.
"""

from __future__ import annotations

__all__ = ["ChannelChoices"]


class ChannelChoices:
    def __init__(self) -> None:
        self._values: dict[tuple[str, int], str] = {}

    def get(self, kind: str, channel: int) -> str | None:
        return self._values.get((kind, channel))

    def first(self, kind: str, channel: int, parent: int | None = None) -> str | None:
        """The channel's own choice, else (in a thread) its parent channel's."""
        value = self.get(kind, channel)
        if value is None and parent is not None:
            value = self.get(kind, parent)
        return value

    def set(self, kind: str, channel: int, value: str | None) -> None:
        """``value`` for the channel from now on; ``None`` forgets the choice."""
        if value is None:
            self._values.pop((kind, channel), None)
        else:
            self._values[(kind, channel)] = value

    def items(self) -> list[tuple[str, int, str]]:
        return [(kind, channel, value) for (kind, channel), value in self._values.items()]
