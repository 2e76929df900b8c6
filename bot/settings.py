"""The bot's settings: one frozen, validated object built from defaults < TOML file < environment < flags.

:func:`load_settings` takes the TOML file's path and the values that were given on the command line
or in the environment (the CLI merges those two: Typer reads each option's environment variable, and
a flag beats it) and returns a :class:`Settings`. Any bad value raises :class:`SettingsError` with one
line that names the setting and the form expected.

The TOML file uses the option names with ``_`` for ``-`` (``batch_size = 50``), flat or under a
``[bot]`` table, and sandbox options flat or under ``[sandbox]``. ``reply_channels`` lists channel
ids the bot answers in without being mentioned.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_LLM_URL = "http://127.0.0.1:11434"
DEFAULT_MODEL = "llama3.2"
DEFAULT_METRICS_FILE = "profiles/metrics.jsonl"
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant in a Discord server. Answer clearly and concisely."
)


class SettingsError(ValueError):
    """A setting has a bad value; the message is one line naming the setting and the form expected."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything that changes what the bot does. Built by :func:`load_settings`, never mutated."""

    token: str | None = field(default=None, repr=False)
    llm_url: str = DEFAULT_LLM_URL
    llm_url_given: bool = False
    model: str = DEFAULT_MODEL
    metrics_file: Path = Path(DEFAULT_METRICS_FILE)
    batch_size: int = 50
    batch_interval: float = 60.0
    stats_interval: float = 30.0
    history_limit: int = 20
    history_channels: int = 1000
    dedup_window: float = 5.0
    dedup: bool = True
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    llm_timeout: float = 120.0
    duration: float | None = None
    discord_api: str | None = None
    discord_gateway: str | None = None
    reply_channels: tuple[int, ...] = ()
    cooldown: float | None = None  # None: 2 s on Discord, 0 in the sandbox (its users are load)
    # The sandbox (used when no token is given).
    users: int = 20
    channels: int = 10
    rate: float = 5.0
    duplicate_ratio: float = 0.3
    seed: int = 0
    chat: bool = False

    @property
    def effective_cooldown(self) -> float:
        """Seconds between two questions of one user."""
        if self.cooldown is not None:
            return self.cooldown
        return 0.0 if self.sandbox else 2.0

    @property
    def sandbox(self) -> bool:
        """True when the bot runs against the embedded sandbox (no Discord token)."""
        return not self.token

    def __repr__(self) -> str:
        # The generated repr would show an LLM URL's user:password; tracebacks and logs print reprs.
        shown = ", ".join(f"{name}={value!r}" for name, value in self.redacted().items())
        return f"Settings({shown})"

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data with the token masked, for banners and reports."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "token":
                value = "***" if value else None
            elif isinstance(value, Path):
                value = str(value)
            elif f.name in ("llm_url", "discord_api", "discord_gateway") and value:
                value = strip_credentials(value)
            out[f.name] = value
        return out


def strip_credentials(url: str) -> str:
    """``url`` without any ``user:password@`` part, so it can be printed or logged.

    Never raises: it also serves the error messages about URLs that do not parse (a bad port, an
    unclosed ``[``), so it cuts the text itself rather than asking ``urlsplit`` for the host.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    end = len(rest)
    for stop in "/?#":
        index = rest.find(stop)
        if index != -1:
            end = min(end, index)
    authority = rest[:end]
    if "@" not in authority:
        return url
    host = authority.rpartition("@")[2]
    return f"{scheme}{sep}{host}{rest[end:]}"


def normalize_llm_url(value: str) -> str:
    """Accept what the ollama CLI accepts in ``OLLAMA_HOST`` (``host``, ``host:port``, a URL)."""
    raw = value.strip()
    if not raw:
        raise SettingsError("llm_url: expected a URL such as http://127.0.0.1:11434")
    # The ollama CLI's rule: no scheme -> port 11434; an explicit scheme -> its usual port.
    default_port = 11434
    if "://" not in raw:
        raw = "http://" + raw
    else:
        default_port = 443 if raw.lower().startswith("https://") else 80
    try:
        parts = urlsplit(raw)
    except ValueError:  # an unclosed "[" of an IPv6 address
        parts = urlsplit("invalid:")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"llm_url: expected an http(s) URL such as http://127.0.0.1:11434, "
            f"got {strip_credentials(value)!r}"
        )
    host = parts.hostname
    if host in ("0.0.0.0", "::"):  # a listen address, as OLLAMA_HOST often holds; connect locally
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as exc:
        raise SettingsError(f"llm_url: bad port in {strip_credentials(value)!r}") from exc
    if port is None:
        port = default_port
    netloc = host + f":{port}"
    if parts.username:
        cred = parts.username + (f":{parts.password}" if parts.password else "")
        netloc = f"{cred}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _url(name: str, schemes: tuple[str, ...], example: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = str(value).strip()
        try:
            parts = urlsplit(text)
            # .port raises on a port out of range; port 0 cannot be connected to.
            valid = parts.scheme in schemes and bool(parts.hostname) and parts.port != 0
        except ValueError:  # a bad port, an unclosed "[" of an IPv6 address
            valid = False
        if not valid:
            raise SettingsError(f"{name}: expected a URL such as {example}")
        if "@" in parts.netloc:
            # discord.py authenticates with the bot token alone and refuses user:password@.
            raise SettingsError(f"{name}: remove the user:password@ part (the token is enough)")
        return text.rstrip("/")

    return check


def _number(
    name: str, kind: type, *, minimum: float | None = None, strict_min: bool = False
) -> Callable[[Any], Any]:
    form = "a whole number" if kind is int else "a number"
    if minimum is not None:
        form += f" {'>' if strict_min else '>='} {minimum:g}"

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise SettingsError(f"{name}: expected {form}, got {value!r}")
        try:
            if kind is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                number: float = int(str(value).strip()) if isinstance(value, str) else int(value)
            else:
                number = float(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name}: expected {form}, got {value!r}") from None
        if math.isnan(number) or math.isinf(number):
            raise SettingsError(f"{name}: expected {form}, got {value!r}")
        if minimum is not None and (number <= minimum if strict_min else number < minimum):
            raise SettingsError(f"{name}: expected {form}, got {value!r}")
        return number

    return check


def _bool(name: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}: expected true or false, got {value!r}")

    return check


def _text(name: str, *, allow_empty: bool = False) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            raise SettingsError(f"{name}: expected a non-empty string")
        return value

    return check


def _optional_duration(value: Any) -> float | None:
    if value is None:
        return None
    number: float = _number("duration", float, minimum=0, strict_min=True)(value)
    return number


def _ratio(value: Any) -> float:
    number: float = _number("duplicate_ratio", float, minimum=0)(value)
    if number > 1:
        raise SettingsError(f"duplicate_ratio: expected a number from 0 to 1, got {value!r}")
    return number


def _channel_ids(value: Any) -> tuple[int, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise SettingsError("reply_channels: expected a list of channel ids such as [123, 456]")
    try:
        return tuple(int(str(item).strip()) for item in items if str(item).strip())
    except ValueError:
        raise SettingsError(
            "reply_channels: expected a list of channel ids such as [123, 456]"
        ) from None


def _token(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SettingsError("token: expected a string (the bot token from the Discord portal)")
    return value.strip() or None


_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "token": _token,
    "llm_url": normalize_llm_url,
    "model": _text("model"),
    "metrics_file": lambda v: Path(_text("metrics_file")(str(v) if isinstance(v, Path) else v)),
    "batch_size": _number("batch_size", int, minimum=1),
    "batch_interval": _number("batch_interval", float, minimum=0, strict_min=True),
    "stats_interval": _number("stats_interval", float, minimum=0, strict_min=True),
    "history_limit": _number("history_limit", int, minimum=0),
    "history_channels": _number("history_channels", int, minimum=1),
    "dedup_window": _number("dedup_window", float, minimum=0),
    "dedup": _bool("dedup"),
    "system_prompt": _text("system_prompt", allow_empty=True),
    "llm_timeout": _number("llm_timeout", float, minimum=0, strict_min=True),
    "duration": _optional_duration,
    "discord_api": _url("discord_api", ("http", "https"), "http://127.0.0.1:8080/api/v10"),
    "discord_gateway": _url("discord_gateway", ("ws", "wss"), "ws://127.0.0.1:8080/gateway"),
    "reply_channels": _channel_ids,
    "cooldown": lambda v: None if v is None else _number("cooldown", float, minimum=0)(v),
    "users": _number("users", int, minimum=1),
    "channels": _number("channels", int, minimum=1),
    "rate": _number("rate", float, minimum=0, strict_min=True),
    "duplicate_ratio": _ratio,
    "seed": _number("seed", int),
    "chat": _bool("chat"),
}
SETTING_NAMES = frozenset(_VALIDATORS)


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings held in a TOML file, flattened (``[bot]`` and ``[sandbox]`` tables merge in)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise SettingsError(f"config: no file at {p}") from None
    except OSError as exc:
        raise SettingsError(f"config: cannot read {p} ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config: {p} is not valid TOML ({exc})") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("bot", "sandbox") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    flat = {k.replace("-", "_"): v for k, v in flat.items()}
    if "no_dedup" in flat:
        flat["dedup"] = not _bool("no_dedup")(flat.pop("no_dedup"))
    unknown = sorted(set(flat) - SETTING_NAMES)
    if unknown:
        raise SettingsError(
            f"config: unknown setting {unknown[0]!r} in {p}; known: {', '.join(sorted(SETTING_NAMES))}"
        )
    if "token" in flat:
        # A token in a file that may be committed is a leak waiting to happen; env or flag only.
        raise SettingsError(f"config: put the Discord token in DISCORD_TOKEN, not in {p}")
    return flat


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults < the TOML ``config_file`` < ``overrides`` (flags and environment, None = not given)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(read_config_file(config_file))
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(given) - SETTING_NAMES)
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r}")
    values.update(given)
    checked: dict[str, Any] = {name: _VALIDATORS[name](value) for name, value in values.items()}
    if "llm_url" in checked:
        checked["llm_url_given"] = True
    settings = Settings(**checked)
    if (settings.discord_api is None) != (settings.discord_gateway is None) and settings.token:
        # Pointing only one of the two at a proxy would send the token to the real Discord.
        raise SettingsError("discord_api and discord_gateway: give both, or neither")
    return settings


def with_overrides(settings: Settings, **changes: Any) -> Settings:
    """A copy of ``settings`` with validated ``changes``."""
    checked = {name: _VALIDATORS[name](value) for name, value in changes.items()}
    return replace(settings, **checked)
