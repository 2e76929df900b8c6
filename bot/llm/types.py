"""What goes to an LLM and what comes back, the same for every protocol.

A transport streams an answer as ``str`` deltas followed by one :class:`Done`. Both are plain,
serialisable values, so an answer can be shared between callers (in-process, or through Redis) and
replayed to a late joiner without knowing which protocol produced it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["Api", "ChatRequest", "Chunk", "Done"]

Api = Literal["ollama", "openai"]


@dataclass(frozen=True, slots=True)
class Done:
    """The end of an answer: token counts and the server's own timings when it reports them."""

    tokens_in: int | None = None
    tokens_out: int | None = None
    reason: str | None = None
    model: str | None = None
    # The server's time to read the prompt (its own time to first token) and its whole time, ms.
    server_prompt_ms: float | None = None
    server_total_ms: float | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    # While parsing only: text that came on the final line, and whether it was the final line.
    text: str = ""
    done: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("text", "done")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Done:
        known = set(cls.__dataclass_fields__) - {"text", "done"}
        values = {k: data[k] for k in known if k in data}
        if "tool_calls" in values:
            values["tool_calls"] = tuple(values["tool_calls"] or ())
        return cls(**values)


Chunk = str | Done


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat request as the bot builds it; ``model`` is the name the server knows."""

    model: str
    messages: Sequence[Mapping[str, Any]]
    options: Mapping[str, Any] | None = None
    format: str | Mapping[str, Any] | None = None
    tools: Sequence[Any] | None = None
