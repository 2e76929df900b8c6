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
    chat: bool = option(
        False,
        "Type messages yourself instead of simulated users (sandbox only).",
        boolean,
        panel="Sandbox (used when no token is given)",
    )
