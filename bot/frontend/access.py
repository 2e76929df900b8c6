"""Who may use the bot: ``allow_users``, ``allow_roles``, ``allow_channels`` and ``block_users``.

Blocked users never; when ``allow_users`` or ``allow_roles`` is set, only those users or members
with one of those roles; when ``allow_channels`` is set, only in those channels (a thread counts as
its parent channel; DMs are not channels of a server and stay open to allowed users).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord

from bot.settings import Settings

__all__ = ["REFUSED_IN_DM", "Access"]

REFUSED_IN_DM = "Sorry, this bot is not open to you."


@dataclass(frozen=True, slots=True)
class Access:
    allow_users: frozenset[int]
    allow_roles: frozenset[int]
    allow_channels: frozenset[int]
    block_users: frozenset[int]

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        return cls(
            frozenset(settings.allow_users),
            frozenset(settings.allow_roles),
            frozenset(settings.allow_channels),
            frozenset(settings.block_users),
        )

    def allows(self, user: discord.abc.User, channel: Any) -> bool:
        if user.id in self.block_users:
            return False
        if self.allow_users or self.allow_roles:
            roles = {role.id for role in getattr(user, "roles", ())}
            if user.id not in self.allow_users and not roles & self.allow_roles:
                return False
        if self.allow_channels and not isinstance(channel, discord.DMChannel):
            where = channel.parent_id if isinstance(channel, discord.Thread) else channel.id
            if where not in self.allow_channels and channel.id not in self.allow_channels:
                return False
        return True
