"""The models the bot answers with, and the choice of one for a question.

A :class:`Model` is a declared model (:class:`~bot.routing.ModelSpec`) with its transport and, when
``max_concurrency`` is set, a semaphore its upstream calls wait on (taken by the flight's leader
only: followers of a shared answer cost the server nothing). :class:`ModelSet` holds them, the
channels' own choices (``/model NAME``) and routes a question: the channel's choice, else the first
matching rule, else the default; the fallbacks follow in order.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot.choices import ChannelChoices
from bot.llm.http import HTTPTransport
from bot.llm.types import Chunk
from bot.routing import ModelSpec, RoutingSpec

__all__ = ["Model", "ModelSet", "Route", "Traits"]

# Source files a code rule counts as code, besides a fenced block in the question.
CODE_SUFFIXES = frozenset(
    [
        ".py",
        ".js",
        ".ts",
        ".tsx",
        ".jsx",
        ".java",
        ".c",
        ".h",
        ".cpp",
        ".hpp",
        ".cs",
        ".go",
        ".rs",
        ".rb",
        ".php",
        ".swift",
        ".kt",
        ".scala",
        ".sh",
        ".sql",
        ".lua",
        ".r",
        ".m",
        ".pl",
        ".hs",
        ".ex",
        ".exs",
        ".clj",
        ".dart",
        ".zig",
        ".toml",
        ".yaml",
        ".yml",
        ".json",
    ]
)


@dataclass(frozen=True, slots=True)
class Traits:
    """What rules look at in a question."""

    text: str
    channel: int | None = None
    images: int = 0
    files: tuple[str, ...] = ()
    tokens: int = 0
    parent: int | None = None  # a thread's channel: its choice and rules apply in the thread

    @property
    def has_code(self) -> bool:
        return "```" in self.text or any(
            "." in name and name[name.rfind(".") :].lower() in CODE_SUFFIXES for name in self.files
        )


@dataclass(slots=True, eq=False)
class Model:
    spec: ModelSpec
    transport: HTTPTransport
    slots: asyncio.Semaphore | None = None
    calls: Counter[str] = field(default_factory=Counter)

    @property
    def name(self) -> str:
        return self.spec.name

    def send(self, payload: bytes) -> AsyncIterator[Chunk]:
        """The transport's answer, waiting for a slot first when the model's calls are capped."""
        if self.slots is None:
            return self.transport.send(payload)
        return self._limited(payload)

    async def _limited(self, payload: bytes) -> AsyncIterator[Chunk]:
        assert self.slots is not None
        async with self.slots:
            async for chunk in self.transport.send(payload):
                yield chunk


@dataclass(frozen=True, slots=True)
class Route:
    """The models to try for a question, first to last, and why the first was chosen."""

    models: tuple[Model, ...]
    reason: str  # "default" | "channel" | "rule:<when>"


class ModelSet:
    """The bot's models by name, the routing and the channels' choices."""

    def __init__(
        self,
        specs: Mapping[str, ModelSpec],
        routing: RoutingSpec,
        transport_for: Callable[[ModelSpec], HTTPTransport],
        *,
        default: str,
        choices: ChannelChoices | None = None,
    ) -> None:
        self._models: dict[str, Model] = {}
        for spec in specs.values():
            slots = asyncio.Semaphore(spec.max_concurrency) if spec.max_concurrency else None
            self._models[spec.name] = Model(spec, transport_for(spec), slots)
        self.routing = routing
        self.default = self._models[routing.default or default]
        self.choices = choices or ChannelChoices()

    def __iter__(self) -> Iterator[Model]:
        return iter(self._models.values())

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def names(self) -> list[str]:
        return list(self._models)

    @property
    def has_vision(self) -> bool:
        """Whether any model can see images."""
        return any(model.spec.vision for model in self)

    def get(self, name: str) -> Model:
        return self._models[name]

    # -- the channels' choices -----------------------------------------------------------------

    def channel_model(self, channel: int, parent: int | None = None) -> Model | None:
        """The channel's own choice, else (in a thread) its parent channel's."""
        name = self.choices.first("model", channel, parent)
        return self._models.get(name) if name is not None else None

    def set_channel_model(self, channel: int, name: str | None) -> None:
        """``name`` for the channel from now on; ``None`` goes back to the routing."""
        if name is not None and name not in self._models:
            raise KeyError(name)
        self.choices.set("model", channel, name)

    # -- routing -------------------------------------------------------------------------------

    def route(self, traits: Traits, *, preferred: str | None = None) -> Route:
        """The channel's model, else the first matching rule's, else ``preferred`` (a persona's
        model), else the default; then the fallbacks. An image goes to a vision model."""
        first: Model | None = None
        reason = "default"
        if traits.channel is not None:
            first = self.channel_model(traits.channel, traits.parent)
            reason = "channel"
        if first is None:
            for rule in self.routing.rules:
                if self._matches(rule, traits):
                    first, reason = self._models[rule.model], f"rule:{rule.label}"
                    break
        if first is None:
            first, reason = self._models.get(preferred or "", self.default), "default"
        if traits.images and not first.spec.vision:
            # An image goes to a model that can see it, whatever else chose the model.
            vision = next((model for model in self if model.spec.vision), None)
            if vision is not None:
                first, reason = vision, "rule:image"
        chain = [first]
        for name in self.routing.fallback:
            model = self._models[name]
            if model not in chain:
                chain.append(model)
        return Route(tuple(chain), reason)

    @staticmethod
    def _matches(rule: Any, traits: Traits) -> bool:
        if rule.channels and not ({traits.channel, traits.parent} & rule.channels):
            return False
        if rule.regex is not None and rule.regex.search(traits.text) is None:
            return False
        if rule.when == "image":
            return traits.images > 0
        if rule.when == "code":
            return traits.has_code
        if rule.when == "long":
            return traits.tokens > (rule.tokens or 0)
        return True

    async def start(self, session: aiohttp.ClientSession | None = None) -> None:
        for model in self:
            if session is not None:
                model.transport.use_session(session)
            await model.transport.start()

    async def close(self) -> None:
        """Close every transport, each even when another failed."""
        errors: list[BaseException] = []
        for model in self:
            try:
                await model.transport.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
