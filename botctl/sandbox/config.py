"""The sandbox's settings, declared once: the CLI options of ``botctl run``, the TOML keys of a
``[sandbox]`` table, and the JSON the sandbox process is started with all come from here."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import orjson

from bot.options import boolean, number, option, ratio

_PANEL = "Sandbox (used when no token is given)"


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    users: int = option(20, "Simulated users.", number(int, minimum=1), panel=_PANEL)
    channels: int = option(10, "Channels.", number(int, minimum=1), panel=_PANEL)
    rate: float = option(
        5.0, "Messages per second.", number(float, minimum=0, strict=True), panel=_PANEL
    )
    duplicate_ratio: float = option(
        0.3,
        "Share of messages that repeat a question another user is asking at the same time.",
        ratio,
        panel=_PANEL,
    )
    seed: int = option(0, "Random seed of the simulated traffic.", number(int), panel=_PANEL)
    llm: bool = option(True, "Serve the sandbox LLM.", boolean, flag="")
    llm_latency: float = option(
        0.2, "Sandbox LLM: seconds to the first token.", number(float, minimum=0), flag=""
    )
    llm_tokens_per_second: float = option(
        50.0, "Sandbox LLM: tokens per second (0: all at once).", number(float, minimum=0), flag=""
    )
    llm_answer_chars: int = option(
        300, "Sandbox LLM: characters of a plain answer.", number(int, minimum=1), flag=""
    )

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> SandboxConfig:
        return cls(**orjson.loads(text))
