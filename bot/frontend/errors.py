"""Why the bot could not connect to Discord, in one line: what failed, where, and what to check."""

from __future__ import annotations

import aiohttp
import discord

from bot.settings import Settings

_DISCORD_API = "https://discord.com/api/v10"
_DISCORD_GATEWAY = "wss://gateway.discord.gg"


def describe_connect_error(exc: BaseException | None, settings: Settings) -> str:
    api = settings.discord_api or _DISCORD_API
    gateway = settings.discord_gateway or _DISCORD_GATEWAY
    where = "--discord-api" if settings.discord_api else "your network"
    if isinstance(exc, discord.LoginFailure):
        return f"Discord at {api} refused the token: check DISCORD_TOKEN (or --token)"
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return (
            "Discord refused the message content intent (reply_channels needs it): "
            "enable it in the developer portal"
        )
    if isinstance(exc, discord.ConnectionClosed) and exc.code == 4004:
        return f"Discord's gateway at {gateway} refused the token: check DISCORD_TOKEN (or --token)"
    if isinstance(exc, discord.HTTPException):
        return (
            f"the Discord API at {api} answered HTTP {exc.status} at login: "
            f"check the token and {where}"
        )
    if isinstance(exc, discord.GatewayNotFound | discord.ConnectionClosed) or (
        # How discord.py 2.7 reports a failed websocket handshake (measured against a bad URL).
        isinstance(exc, AttributeError) and "sequence" in str(exc)
    ):
        flag = "--discord-gateway" if settings.discord_gateway else "your network"
        return f"cannot open Discord's gateway at {gateway}: check {flag}"
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        return f"cannot reach Discord at {api} ({type(exc).__name__}): check {where}"
    return f"the Discord connection failed: {type(exc).__name__}"
