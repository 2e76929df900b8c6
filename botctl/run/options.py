"""``botctl run``'s own settings (not the bot's, not the sandbox's), declared once."""

from __future__ import annotations

from dataclasses import dataclass

from bot.options import boolean, number, option, optional

_RUN = "Run"


@dataclass(frozen=True, slots=True)
class RunOptions:
    duration: float | None = option(
        None,
        "Stop by itself after this many seconds.",
        optional(number(float, minimum=0, strict=True)),
        env="BOT_DURATION",
        panel=_RUN,
    )
    local_model: bool = option(
        False,
        "Start the real local model (llama.cpp's server with SmolLM2; `make local-model` installs "
        "it) and answer with it.",
        boolean,
        env="BOT_LOCAL_MODEL",
        panel="LLM",
    )
    processes: int | None = option(
        None,
        "Run the bot as N shard processes sharing a Redis (a redis-server of its own unless "
        "--redis is given), to try scale-out locally.",
        optional(number(int, minimum=1, maximum=64)),
        env="BOT_PROCESSES",
        panel="Scale-out",
    )
    chat: bool = option(
        False,
        "Type messages yourself instead of simulated users (sandbox only).",
        boolean,
        panel="Sandbox (used when no token is given)",
    )
