"""The sandbox's parameters, declared once: ``botctl run``'s sandbox options, the sandbox process and
the benchmarks all read :class:`SandboxConfig`.

Each field is a :func:`bot.options.option`: its help text, check, CLI flag and help panel travel with
it, and the CLI builds ``botctl run``'s sandbox options from these fields (the default shown in the
help is the field's own). ``flag=""`` keeps a field off the command line: the bench and tests set it.
The config crosses to the sandbox's child process as JSON (:meth:`SandboxConfig.to_json`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from bot.options import boolean, build, number, option, ratio

__all__ = ["SANDBOX_PANEL", "SandboxConfig"]

SANDBOX_PANEL = "Sandbox"

_positive_int = number(int, minimum=1)
_seconds = number(float, minimum=0)


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """What the sandbox simulates: its guilds and people, their traffic, Discord's limits, the LLM."""

    users: int = option(
        20,
        "Simulated users who post questions (each speaks as rarely as the rate allows).",
        _positive_int,
        panel=SANDBOX_PANEL,
    )
    channels: int = option(
        10,
        "Text channels the simulated users post in, spread over the guilds.",
        _positive_int,
        panel=SANDBOX_PANEL,
    )
    guilds: int = option(
        1,
        "Guilds (servers) in the sandbox; with shards, each guild's events reach one shard.",
        _positive_int,
        panel=SANDBOX_PANEL,
    )
    rate: float = option(
        5.0,
        "Messages per second the simulated users post, on average (Poisson arrivals).",
        number(float, minimum=0, strict=True),
        panel=SANDBOX_PANEL,
    )
    duplicate_ratio: float = option(
        0.3,
        "Share of messages that repeat a question another user is asking at the same moment "
        "(what request deduplication merges); from 0 to 1, at most 0.75 takes effect.",
        ratio,
        panel=SANDBOX_PANEL,
    )
    seed: int = option(
        0,
        "Random seed of the simulated traffic: the same seed posts the same questions at the "
        "same moments.",
        number(int),
        panel=SANDBOX_PANEL,
    )
    rate_limits: bool = option(
        True,
        "Turn off Discord's rate limits in the sandbox (50 requests/s per bot, 5 messages per "
        "5 s per channel), for raw load tests.",
        boolean,
        flag="--no-rate-limits",
        negate=True,
        panel=SANDBOX_PANEL,
    )
    reply_depth: int = option(
        0,
        "Simulated users who reply to the bot: each question continues one of a set of reply "
        "chains this many messages deep, built before the load starts (0: plain mentions).",
        number(int, minimum=0),
        flag="",
    )
    gateway_shards: int = option(
        1,
        "Shards the sandbox's GET /gateway/bot recommends to an auto-sharded bot.",
        _positive_int,
        flag="",
    )
    llm: bool = option(
        True,
        "Serve the sandbox's own Ollama-compatible LLM (off when the bot uses a real one).",
        boolean,
        flag="",
    )
    llm_latency: float = option(
        0.2,
        "Seconds the sandbox's LLM takes to its first token.",
        _seconds,
        flag="",
    )
    llm_tokens_per_second: float = option(
        50.0,
        "Tokens per second the sandbox's LLM streams after the first (0: the whole answer at once).",
        _seconds,
        flag="",
    )
    llm_answer_chars: int = option(
        300,
        "Length in characters of the sandbox LLM's answers.",
        _positive_int,
        flag="",
    )

    @classmethod
    def from_values(cls, values: Mapping[str, Any], *, where: str = "") -> SandboxConfig:
        """A config from raw values (a TOML table, flags, JSON), each checked by its declaration;
        ``None`` means not given. Raises ``bot.options.SettingsError`` with one line."""
        return build(cls, values, where=where)

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> SandboxConfig:
        return cls.from_values(orjson.loads(text), where="the sandbox's JSON")
