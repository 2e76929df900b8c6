"""The bot's settings: one frozen :class:`Settings` built from defaults < TOML file < env < flags.

Each field is declared once (:func:`bot.options.option`): its TOML key is its name, its environment
variables, CLI flag, help and check come from the declaration, and ``botctl run`` builds its options
from these fields. The TOML file holds the keys flat or under a ``[bot]`` table (``botctl`` also
reads its sandbox and run keys from the same file). A bad value raises :class:`SettingsError` with
one line naming the setting and the form expected.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from bot.checks import choice, discord_url, path, redis_url, token
from bot.options import (
    SettingsError,
    boolean,
    declared,
    id_list,
    number,
    option,
    optional,
    text,
)
from bot.personas import Persona, PersonaRule, parse_persona_rules, parse_personas
from bot.routing import ModelSpec, RoutingSpec, parse_models, parse_routing
from bot.urls import normalize_llm_url, strip_credentials

__all__ = [
    "DEFAULT_LLM_URL",
    "DEFAULT_MODEL",
    "DEFAULT_SYSTEM_PROMPT",
    "Settings",
    "SettingsError",
    "normalize_llm_url",
    "strip_credentials",
]

DEFAULT_LLM_URL = "http://127.0.0.1:11434"
DEFAULT_MODEL = "llama3.2"
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant in a Discord server. Answer clearly and concisely."
)
_LLM, _DISCORD, _HISTORY, _METRICS = "LLM", "Discord", "History", "Metrics"
_SCALE = "Scale-out"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything that changes what the bot does. Built by :func:`bot.config.load_settings`, never mutated."""

    token: str | None = option(
        None,
        "Discord bot token (prefer the env var: a flag shows in ps). Without one the bot runs in the sandbox.",
        token,
        env="DISCORD_TOKEN",
        panel=_DISCORD,
        repr=False,
    )
    discord_api: str | None = option(
        None,
        "REST base of a Discord-compatible server, such as http://127.0.0.1:8080/api/v10.",
        discord_url(("http", "https"), "http://127.0.0.1:8080/api/v10"),
        env="DISCORD_API_BASE",
        panel=_DISCORD,
    )
    discord_gateway: str | None = option(
        None,
        "Gateway URL of a Discord-compatible server, such as ws://127.0.0.1:8080/gateway.",
        discord_url(("ws", "wss"), "ws://127.0.0.1:8080/gateway"),
        env="DISCORD_GATEWAY_URL",
        panel=_DISCORD,
    )
    reply_channels: tuple[int, ...] = option(
        (),
        "Channel ids answered without a mention (needs the message-content intent).",
        id_list,
        env="BOT_REPLY_CHANNELS",
        flag="",
        panel=_DISCORD,
    )
    write_pacing: bool = option(
        True,
        "Do not pace the bot's writes to Discord's documented limits (50 requests/s, 5 message "
        "writes per channel per 5 s): for servers without them.",
        boolean,
        env="BOT_NO_WRITE_PACING",
        flag="--no-write-pacing",
        negate=True,
        panel=_DISCORD,
    )
    cooldown: float | None = option(
        None,
        "Seconds between two questions of one user.",
        optional(number(float, minimum=0)),
        env="BOT_COOLDOWN",
        panel=_DISCORD,
        default_text="2 on Discord, 0 in the sandbox",
    )
    llm_url: str | None = option(
        None,
        "URL of the LLM server (Ollama or OpenAI-compatible).",
        normalize_llm_url,
        env=("OLLAMA_URL", "OLLAMA_HOST"),
        panel=_LLM,
        default_text=DEFAULT_LLM_URL,
    )
    llm_api: str = option(
        "auto",
        "Protocol of the LLM server: auto (ask it), ollama or openai.",
        choice("auto", "ollama", "openai"),
        env="BOT_LLM_API",
        panel=_LLM,
    )
    model: str = option(DEFAULT_MODEL, "Model name.", text(), env="OLLAMA_MODEL", panel=_LLM)
    llm_timeout: float = option(
        120.0,
        "Seconds before an LLM call is given up.",
        number(float, minimum=0, strict=True),
        env="BOT_LLM_TIMEOUT",
        panel=_LLM,
    )
    system_prompt: str = option(
        DEFAULT_SYSTEM_PROMPT,
        "System prompt sent first in every request.",
        text(allow_empty=True),
        env="BOT_SYSTEM_PROMPT",
        panel=_LLM,
        default_text="a short helpful-assistant prompt",
    )
    dedup: bool = option(
        True,
        "Send every request upstream (no deduplication).",
        boolean,
        env="BOT_NO_DEDUP",
        flag="--no-dedup",
        negate=True,
        panel=_LLM,
    )
    dedup_window: float = option(
        5.0,
        "Seconds a finished answer is reused for an identical request (0 = in flight only).",
        number(float, minimum=0),
        env="BOT_DEDUP_WINDOW",
        panel=_LLM,
    )
    history_limit: int = option(
        20,
        "Messages kept per conversation.",
        number(int, minimum=1),
        env="BOT_HISTORY_LIMIT",
        panel=_HISTORY,
    )
    history_channels: int = option(
        1000,
        "Conversations kept in the history LRU.",
        number(int, minimum=1),
        env="BOT_HISTORY_CHANNELS",
        panel=_HISTORY,
    )
    metrics_file: Path = option(
        Path("profiles/metrics.jsonl"),
        "JSON Lines metrics file.",
        path,
        env="BOT_METRICS_FILE",
        panel=_METRICS,
    )
    batch_size: int = option(
        50,
        "Write metrics every N events...",
        number(int, minimum=1),
        env="BOT_BATCH_SIZE",
        panel=_METRICS,
    )
    batch_interval: float = option(
        60.0,
        "...or every N seconds, whichever comes first.",
        number(float, minimum=0, strict=True),
        env="BOT_BATCH_INTERVAL",
        panel=_METRICS,
    )
    models: Mapping[str, ModelSpec] = option(
        dict,
        "Models by name ([models.NAME] tables: api, url, model, options, max_concurrency, "
        "api_key_env, vision, context_tokens).",
        parse_models,
        flag="",
        panel=_LLM,
    )
    routing: RoutingSpec = option(
        RoutingSpec(),
        "How a question picks its model ([routing]: default, fallback, rules).",
        parse_routing,
        flag="",
        panel=_LLM,
    )
    context_tokens: int = option(
        4096,
        "Tokens a request may hold (system prompt, summary, history, sources, question); older "
        "turns become a summary beyond it.",
        number(int, minimum=256),
        env="BOT_CONTEXT_TOKENS",
        panel=_HISTORY,
    )
    kb: Path | None = option(
        None,
        "Knowledge base (botctl kb add) to answer from, citing its sources.",
        optional(path),
        env="BOT_KB",
        panel=_LLM,
    )
    personas: Mapping[str, Persona] = option(
        dict,
        "Personas by name ([personas.NAME]: system_prompt, model, options, kb).",
        parse_personas,
        flag="",
        panel=_LLM,
    )
    persona_rules: tuple[PersonaRule, ...] = option(
        (),
        "Rules switching persona ([[persona_rules]]: channels, channel_name, regex, persona).",
        parse_persona_rules,
        flag="",
        panel=_LLM,
    )
    allow_users: tuple[int, ...] = option(
        (),
        "Only these users may use the bot.",
        id_list,
        env="BOT_ALLOW_USERS",
        flag="",
        panel=_DISCORD,
    )
    allow_roles: tuple[int, ...] = option(
        (),
        "...or members with one of these roles.",
        id_list,
        env="BOT_ALLOW_ROLES",
        flag="",
        panel=_DISCORD,
    )
    allow_channels: tuple[int, ...] = option(
        (),
        "Only in these channels (DMs aside).",
        id_list,
        env="BOT_ALLOW_CHANNELS",
        flag="",
        panel=_DISCORD,
    )
    block_users: tuple[int, ...] = option(
        (), "Never these users.", id_list, env="BOT_BLOCK_USERS", flag="", panel=_DISCORD
    )
    shards: int | None = option(
        None,
        "Run this many shards in this one process (discord.py's AutoShardedBot).",
        optional(number(int, minimum=1)),
        env="BOT_SHARDS",
        panel=_SCALE,
    )
    shard_count: int | None = option(
        None,
        "Shards of the whole bot, when several processes share it (with --shard-ids).",
        optional(number(int, minimum=1)),
        env="BOT_SHARD_COUNT",
        panel=_SCALE,
    )
    shard_ids: tuple[int, ...] = option(
        (),
        "The shards this process runs, such as 0,1 (with --shard-count).",
        id_list,
        env="BOT_SHARD_IDS",
        panel=_SCALE,
    )
    redis: str | None = option(
        None,
        "Redis (or Valkey) URL where processes share dedup, history, cooldowns and channel "
        "settings, such as redis://127.0.0.1:6379/0.",
        optional(redis_url),
        env="BOT_REDIS_URL",
        panel=_SCALE,
    )
    admins: tuple[int, ...] = option(
        (),
        "User ids allowed /model and /persona besides members with Manage Server.",
        id_list,
        env="BOT_ADMINS",
        flag="",
        panel=_DISCORD,
    )
    metrics_port: int | None = option(
        None,
        "Serve Prometheus metrics at http://127.0.0.1:PORT/metrics.",
        optional(number(int, minimum=1, maximum=65535)),
        env="BOT_METRICS_PORT",
        panel=_METRICS,
    )
    stats_interval: float = option(
        30.0,
        "Seconds between two `stats` snapshots in the metrics file.",
        number(float, minimum=0, strict=True),
        env="BOT_STATS_INTERVAL",
        panel=_METRICS,
    )

    @property
    def sandbox(self) -> bool:
        """True when the bot runs against the embedded sandbox (no Discord token)."""
        return not self.token

    @property
    def effective_cooldown(self) -> float:
        if self.cooldown is not None:
            return self.cooldown
        return 0.0 if self.sandbox else 2.0

    @property
    def effective_llm_url(self) -> str:
        return self.llm_url or DEFAULT_LLM_URL

    def __repr__(self) -> str:
        # A generated repr would show an LLM URL's user:password; tracebacks and logs print reprs.
        shown = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"Settings({shown})"

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data with the token masked and URL credentials cut."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "token":
                value = "***" if value else None
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, str) and "://" in value:
                value = strip_credentials(value)
            elif f.name == "models":
                value = {k: strip_credentials(v.url) for k, v in value.items()}
            elif f.name in ("personas", "persona_rules"):
                value = sorted(value) if f.name == "personas" else len(value)
            elif f.name == "routing":
                value = {"default": value.default, "fallback": list(value.fallback)}
            out[f.name] = value
        return out

    def check(self, environ: Mapping[str, str] | None = None) -> Settings:
        """Rules across fields; returns ``self``."""
        if self.token and (self.discord_api is None) != (self.discord_gateway is None):
            # Pointing only one of the two at a proxy would send the token to the real Discord.
            raise SettingsError("discord_api and discord_gateway: give both, or neither")
        if self.shard_ids and not self.shard_count:
            raise SettingsError("shard_ids: give --shard-count too (the shards of the whole bot)")
        if self.shards and self.shard_count:
            raise SettingsError("shards and shard_count: give one (--shards N in one process)")
        for shard in self.shard_ids:
            if self.shard_count is not None and not 0 <= shard < self.shard_count:
                raise SettingsError(
                    f"shard_ids: {shard} is not a shard of {self.shard_count} (0 to "
                    f"{self.shard_count - 1})"
                )
        env = os.environ if environ is None else environ
        for name in sorted(self.routing.names()):
            if name not in self.models and not (name == self.model and not self.models):
                known = ", ".join(sorted(self.models)) or "none: add [models.NAME] tables"
                raise SettingsError(f"routing: no model named {name!r} (models: {known})")
        for rule in self.persona_rules:
            if rule.persona not in self.personas:
                raise SettingsError(f"persona_rules: no persona named {rule.persona!r}")
        for persona in self.personas.values():
            if persona.model is not None and persona.model not in self.models:
                raise SettingsError(
                    f"personas.{persona.name}.model: no model named {persona.model!r}"
                )
        for spec in self.models.values():
            if spec.api_key_env and not env.get(spec.api_key_env):
                raise SettingsError(
                    f"models.{spec.name}.api_key_env: the environment variable "
                    f"{spec.api_key_env} is not set"
                )
        return self

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with validated ``changes``."""
        known = {f.name: meta for f, meta in declared(Settings)}
        return replace(self, **{k: known[k].check(k, v) for k, v in changes.items()})


SETTING_NAMES = frozenset(f.name for f, _ in declared(Settings))
