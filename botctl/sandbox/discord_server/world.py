"""The sandbox's world: guilds, channels, threads, users, roles and members, as Discord payloads.

Nothing here talks to a socket: the REST routes and the control API read and change this state, and
the gateway sends what it builds. Ids are snowflake strings. Guild ids have consecutive timestamps,
so guilds spread evenly over shards (``(guild_id >> 22) % shards``).

Besides the simulated users (``user_ids``) every guild has two people of its own: its owner (who,
on Discord, holds every permission) and a moderator with the ``moderator`` role (Manage Server), so
a bot's permission checks can be tried against a plain member and against one who may manage it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botctl.sandbox.discord_server.common import (
    CHANNEL_TYPE_DM,
    CHANNEL_TYPE_PUBLIC_THREAD,
    CHANNEL_TYPE_TEXT,
    EVERYONE_PERMISSIONS,
    JSON,
    MANAGE_GUILD,
    Snowflakes,
    iso_now,
)

__all__ = ["Guild", "World"]

# The roles every guild has besides @everyone: (name, permissions added to @everyone's).
ROLES: tuple[tuple[str, int], ...] = (("moderator", MANAGE_GUILD), ("member", 0))


def _user(uid: str, username: str, global_name: str, *, bot: bool = False) -> JSON:
    return {
        "id": uid,
        "username": username,
        "discriminator": "0",
        "global_name": global_name,
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


@dataclass(slots=True)
class Guild:
    id: str
    name: str
    roles: list[JSON]
    channel_ids: list[str] = field(default_factory=list)
    thread_ids: list[str] = field(default_factory=list)
    member_roles: dict[str, list[str]] = field(default_factory=dict)  # user id -> role ids

    def role_id(self, name_or_id: str) -> str:
        for role in self.roles:
            if name_or_id in (role["id"], role["name"]):
                return str(role["id"])
        raise KeyError(f"unknown role {name_or_id!r} in guild {self.id}")


class World:
    """Guilds with their channels and members, DM channels, threads; no messages (see ``messages``)."""

    def __init__(
        self, *, channels: int, users: int, guilds: int = 1, guild_name: str = "sandbox"
    ) -> None:
        if channels < 1 or users < 1 or guilds < 1:
            raise ValueError("the sandbox needs at least one guild, one channel and one user")
        self.ids = Snowflakes()
        self.started_at = iso_now()
        guild_ids = self.ids.consecutive(guilds)
        self.bot_user_id = self.ids()
        self.application_id = self.bot_user_id
        self.bot_user: JSON = {
            **_user(self.bot_user_id, "sandbox-bot", "Sandbox Bot", bot=True),
            "flags": 0,
            "verified": True,
            "mfa_enabled": False,
        }
        self.users: dict[str, JSON] = {}
        self.user_ids: list[str] = []  # the simulated users
        for n in range(1, users + 1):
            uid = self.ids()
            self.users[uid] = _user(uid, f"user{n}", f"User {n}")
            self.user_ids.append(uid)
        self.owner_id = self.ids()
        self.users[self.owner_id] = _user(self.owner_id, "owner", "Server Owner")
        self.moderator_id = self.ids()
        self.users[self.moderator_id] = _user(self.moderator_id, "moderator", "Moderator")

        self.guilds: dict[str, Guild] = {}
        for n, gid in enumerate(guild_ids, 1):
            roles = [self._role(gid, "@everyone", EVERYONE_PERMISSIONS, 0)]
            roles += [
                self._role(self.ids(), name, EVERYONE_PERMISSIONS | extra, position)
                for position, (name, extra) in enumerate(ROLES, 1)
            ]
            name = guild_name if guilds == 1 else f"{guild_name}-{n}"
            self.guilds[gid] = Guild(gid, name, roles)
        self.guild_ids: list[str] = guild_ids
        self.guild_id = guild_ids[0]
        self.guild_name = guild_name

        self.channels: dict[str, JSON] = {}  # text channels and threads
        self.channel_ids: list[str] = []  # text channels (not threads), those made later included
        for n in range(1, channels + 1):
            self.add_channel(f"chat-{n}", guild_ids[(n - 1) % guilds])
        self.guild_channel_ids: tuple[str, ...] = tuple(self.channel_ids)
        self.dm_channels: dict[str, str] = {}  # DM channel id -> user id
        self._dm_by_user: dict[str, str] = {}
        self._next_guild = 0
        # A member as messages carry it (no user), shared by everyone with no role.
        self._member_stub: JSON = self._stub([])
        self._stubs: dict[tuple[str, str], JSON] = {}
        # The bot mentioned in a message: the user plus their member data.
        self.bot_mention: JSON = {**self.bot_user, "member": self._member_stub}
        for gid in guild_ids:
            self.set_roles(gid, self.moderator_id, ["moderator"])

    @staticmethod
    def _role(rid: str, name: str, permissions: int, position: int) -> JSON:
        return {
            "id": rid,
            "name": name,
            "permissions": str(permissions),
            "position": position,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    # ------------------------------------------------------------------ channels

    def add_channel(self, name: str, guild_id: str | None = None) -> JSON:
        if guild_id is None:
            guild_id = self.guild_ids[self._next_guild % len(self.guild_ids)]
            self._next_guild += 1
        guild = self.guilds[guild_id]
        cid = self.ids()
        channel: JSON = {
            "id": cid,
            "type": CHANNEL_TYPE_TEXT,
            "guild_id": guild_id,
            "name": name,
            "position": len(guild.channel_ids),
            "permission_overwrites": [],
            "nsfw": False,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }
        self.channels[cid] = channel
        self.channel_ids.append(cid)
        guild.channel_ids.append(cid)
        return channel

    def remove_channel(self, cid: str) -> JSON | None:
        if cid in self.guild_channel_ids:
            raise ValueError("the guild's own channels stay")
        channel = self.channels.pop(cid, None)
        if channel is None:
            return None
        guild = self.guilds[channel["guild_id"]]
        if channel["type"] == CHANNEL_TYPE_PUBLIC_THREAD:
            guild.thread_ids.remove(cid)
        else:
            self.channel_ids.remove(cid)
            guild.channel_ids.remove(cid)
        return channel

    def add_thread(self, parent_id: str, owner_id: str, name: str, thread_id: str | None) -> JSON:
        """A public thread in ``parent_id``; ``thread_id`` is the starter message's id, as on Discord."""
        parent = self.channels.get(parent_id)
        if parent is None or parent["type"] != CHANNEL_TYPE_TEXT:
            raise KeyError(f"unknown text channel {parent_id}")
        tid = thread_id or self.ids()
        if tid in self.channels:
            raise ValueError("a thread has already been created for this message")
        now = iso_now()
        thread: JSON = {
            "id": tid,
            "type": CHANNEL_TYPE_PUBLIC_THREAD,
            "guild_id": parent["guild_id"],
            "parent_id": parent_id,
            "owner_id": owner_id,
            "name": name[:100] or "thread",
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": now,
                "locked": False,
                "create_timestamp": now,
            },
        }
        self.channels[tid] = thread
        self.guilds[parent["guild_id"]].thread_ids.append(tid)
        return thread

    def dm_channel_for(self, user_id: str) -> str:
        cid = self._dm_by_user.get(user_id)
        if cid is None:
            cid = self.ids()
            self._dm_by_user[user_id] = cid
            self.dm_channels[cid] = user_id
        return cid

    def dm_payload(self, cid: str) -> JSON:
        return {
            "id": cid,
            "type": CHANNEL_TYPE_DM,
            "last_message_id": None,
            "flags": 0,
            "recipients": [self.users[self.dm_channels[cid]]],
        }

    def channel_payload(self, cid: str) -> JSON | None:
        """A guild channel or thread, or a DM channel, or None."""
        channel = self.channels.get(cid)
        if channel is not None:
            return channel
        if cid in self.dm_channels:
            return self.dm_payload(cid)
        return None

    # ------------------------------------------------------------------ people

    def user(self, user_id: str | int | None) -> JSON:
        uid = self.user_ids[0] if user_id is None else str(user_id)
        try:
            return self.users[uid]
        except KeyError:
            raise KeyError(f"unknown user {uid}") from None

    def _stub(self, roles: list[str]) -> JSON:
        return {
            "roles": roles,
            "joined_at": self.started_at,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
        }

    def member_stub(self, guild_id: str, user_id: str) -> JSON:
        """A member as a message carries it (no ``user``); shared, do not change it."""
        return self._stubs.get((guild_id, user_id), self._member_stub)

    def member(self, guild_id: str, user: JSON) -> JSON:
        return {**self.member_stub(guild_id, str(user["id"])), "user": user}

    def members(self, guild_id: str) -> list[JSON]:
        return [self.member(guild_id, self.bot_user)] + [
            self.member(guild_id, u) for u in self.users.values()
        ]

    def set_roles(self, guild_id: str, user_id: str, roles: list[str]) -> JSON:
        """Give a member exactly ``roles`` (names or ids); returns the member (with ``user``)."""
        guild = self.guilds[guild_id]
        user = self.user(user_id)
        ids = [guild.role_id(r) for r in roles]
        guild.member_roles[str(user["id"])] = ids
        self._stubs[(guild_id, str(user["id"]))] = self._stub(ids)
        return self.member(guild_id, user)

    def permissions(self, guild_id: str, user_id: str) -> int:
        """The member's guild permissions, as Discord computes them (the owner has them all)."""
        if user_id == self.owner_id:
            return (1 << 53) - 1
        guild = self.guilds[guild_id]
        value = EVERYONE_PERMISSIONS
        wanted = set(guild.member_roles.get(user_id, ()))
        for role in guild.roles:
            if role["id"] in wanted:
                value |= int(role["permissions"])
        return value

    def guild_of(self, cid: str) -> str | None:
        channel = self.channels.get(cid)
        return None if channel is None else str(channel["guild_id"])

    # ------------------------------------------------------------------ payloads

    def guild_payload(self, guild_id: str, *, full: bool = True) -> JSON:
        """GUILD_CREATE's payload (``full``) or ``GET /guilds/{id}``'s."""
        guild = self.guilds[guild_id]
        payload: JSON = {
            "id": guild.id,
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": self.owner_id,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "system_channel_id": guild.channel_ids[0] if guild.channel_ids else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "vanity_url_code": None,
            "features": [],
            "roles": guild.roles,
            "emojis": [],
            "stickers": [],
            "premium_progress_bar_enabled": False,
        }
        if not full:
            return payload
        members = self.members(guild_id)
        strip = ("guild_id",)
        payload.update(
            channels=[
                {k: v for k, v in self.channels[c].items() if k not in strip}
                for c in guild.channel_ids
            ],
            threads=[self.channels[t] for t in guild.thread_ids],
            members=members,
            # Equal to len(members): the client then counts the guild as chunked and never
            # waits for GUILD_MEMBERS_CHUNK.
            member_count=len(members),
            presences=[],
            voice_states=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
            large=False,
            unavailable=False,
            joined_at=self.started_at,
            lazy=True,
        )
        return payload

    def application_payload(self) -> JSON:
        return {
            "id": self.application_id,
            "name": "sandbox",
            "description": "the botctl sandbox",
            "icon": None,
            "summary": "",
            "rpc_origins": [],
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": self.users[self.owner_id],
            "team": None,
            "flags": 0,
            "interactions_endpoint_url": None,
            "tags": [],
            "bot": self.bot_user,
        }

    def describe(self) -> dict[str, Any]:
        """The world's ids, for a test or the ``--chat`` terminal in another process."""
        return {
            "bot_user_id": self.bot_user_id,
            "owner_id": self.owner_id,
            "moderator_id": self.moderator_id,
            "user_ids": self.user_ids,
            "guilds": [
                {
                    "id": g.id,
                    "name": g.name,
                    "channel_ids": g.channel_ids,
                    "thread_ids": g.thread_ids,
                    "roles": [
                        {"id": r["id"], "name": r["name"], "permissions": r["permissions"]}
                        for r in g.roles
                    ],
                }
                for g in self.guilds.values()
            ],
        }
