"""The checks of the bot's own settings (URLs, the token, choices, paths): each takes the setting's
name and the raw value, and returns the value or raises one line naming the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.options import SettingsError, text

__all__ = ["choice", "discord_url", "path", "redis_url", "token"]


def discord_url(schemes: tuple[str, ...], example: str) -> Any:
    def check(name: str, value: Any) -> str:
        url = str(value).strip()
        try:
            parts = urlsplit(url)
            # .port raises on a port out of range; port 0 cannot be connected to.
            valid = parts.scheme in schemes and bool(parts.hostname) and parts.port != 0
        except ValueError:
            valid = False
        if not valid:
            raise SettingsError(f"{name}: expected a URL such as {example}")
        if "@" in parts.netloc:
            # discord.py authenticates with the bot token alone and refuses user:password@.
            raise SettingsError(f"{name}: remove the user:password@ part (the token is enough)")
        return url.rstrip("/")

    return check


def token(name: str, value: Any) -> str | None:
    if not isinstance(value, str):
        raise SettingsError(f"{name}: expected a string (the bot token from the Discord portal)")
    return value.strip() or None


def redis_url(name: str, value: Any) -> str:
    url = str(value).strip()
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("redis", "rediss", "unix", "valkey") and bool(
            parts.hostname or parts.path
        )
    except ValueError:
        valid = False
    if not valid:
        raise SettingsError(f"{name}: expected a URL such as redis://127.0.0.1:6379/0")
    return url


def choice(*choices: str) -> Any:
    def check(name: str, value: Any) -> str:
        word = str(value).strip().lower()
        if word not in choices:
            raise SettingsError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
        return word

    return check


def path(name: str, value: Any) -> Path:
    return Path(text()(name, str(value) if isinstance(value, Path) else value))
