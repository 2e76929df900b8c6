"""Where a message was written, as the engine's choices and rules see it: a channel, or a thread
and the channel it belongs to (a thread follows its channel's persona, model and rules unless it
chose its own)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord

__all__ = ["Place"]


@dataclass(frozen=True, slots=True)
class Place:
    channel: int | None
    name: str | None = None
    parent: int | None = None
    parent_name: str | None = None

    @classmethod
    def of(cls, channel: Any) -> Place:
        """The place of a discord.py channel (``None`` for an interaction without one)."""
        if channel is None:
            return cls(None)
        name = getattr(channel, "name", None)
        if isinstance(channel, discord.Thread):
            parent = channel.parent
            return cls(channel.id, name, channel.parent_id, getattr(parent, "name", None))
        return cls(channel.id, name)
