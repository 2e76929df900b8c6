"""Where the discord.py client connects: Discord itself, or a Discord-compatible server.

discord.py 2.7.1 reads its REST base from the class attribute ``discord.http.Route.BASE`` (webhooks
and interaction responses build the same ``Route``, so one setting covers slash-command replies) and
the gateway of a plain ``Client``/``Bot`` from ``DiscordWebSocket.DEFAULT_GATEWAY``. Setting both
points the real, otherwise unmodified client at a proxy or at the sandbox. ``AutoShardedClient``
asks ``GET /gateway/bot`` for its gateway and resumes use READY's ``resume_gateway_url``, both of
which the server answers itself, so nothing else needs changing.
"""

from __future__ import annotations

import discord.gateway
import discord.http
import yarl

__all__ = ["configure_endpoints", "current_endpoints", "reset_endpoints"]

# Captured at import, before anything here can have changed them.
_DEFAULT_API_BASE: str = discord.http.Route.BASE
_DEFAULT_GATEWAY: yarl.URL = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY


def _parse(value: str, schemes: tuple[str, ...], what: str, example: str) -> yarl.URL:
    try:
        url = yarl.URL(value.strip())
    except (TypeError, ValueError):
        url = None
    if url is None or url.scheme not in schemes or not url.host:
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise ValueError(f"{what} must be a {wanted} URL such as {example}, not {value!r}")
    if url.query_string or url.fragment:
        raise ValueError(f"{what} must not carry a query or fragment: {value!r}")
    return url


def configure_endpoints(api_base: str | None, gateway_url: str | None) -> None:
    """Point discord.py at ``api_base`` (REST, with its version) and ``gateway_url`` (websocket).

    ``None`` for either means discord.py's own default for that endpoint, so
    ``configure_endpoints(None, None)`` is the same as :func:`reset_endpoints`. Both are validated
    before either is set, so a bad value changes nothing.
    """
    base = _DEFAULT_API_BASE
    gateway = _DEFAULT_GATEWAY
    if api_base is not None:
        url = _parse(
            api_base, ("http", "https"), "the Discord API base", "http://127.0.0.1:8080/api/v10"
        )
        # Route builds URLs as BASE + "/users/@me": a trailing slash would double it.
        base = str(url).rstrip("/")
    if gateway_url is not None:
        gateway = _parse(
            gateway_url, ("ws", "wss"), "the Discord gateway URL", "ws://127.0.0.1:8080/gateway"
        )
    discord.http.Route.BASE = base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway


def reset_endpoints() -> None:
    """Restore discord.py's defaults (Discord's own REST API and gateway)."""
    discord.http.Route.BASE = _DEFAULT_API_BASE
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = _DEFAULT_GATEWAY


def current_endpoints() -> tuple[str, str]:
    """The REST base and gateway URL discord.py will use now."""
    return discord.http.Route.BASE, str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
