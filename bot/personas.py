"""Personas: who the bot is in a channel, declared in the config and switched by rules or ``/persona``.

::

    [personas.helper]
    system_prompt = "You are a patient helper."
    model = "fast"                       # optional: a [models.NAME]
    options = { temperature = 0.2 }      # optional: merged over the model's
    kb = "profiles/rules.sqlite"         # optional: this persona answers from that knowledge base

    [[persona_rules]]                    # first match wins
    channels = [123]                     # or channel_name = "help-*", or regex = "(?i)^sql"
    persona = "helper"

A channel's ``/persona NAME`` beats the rules; without either, the bot's own system prompt applies.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.choices import ChannelChoices
from bot.options import SettingsError, id_list, text

__all__ = ["Persona", "PersonaRule", "PersonaSet", "parse_persona_rules", "parse_personas"]

_PERSONA_KEYS = frozenset({"system_prompt", "model", "options", "kb"})
_RULE_KEYS = frozenset({"channels", "channel_name", "regex", "persona"})


@dataclass(frozen=True, slots=True)
class Persona:
    name: str
    system_prompt: str
    model: str | None = None
    options: Mapping[str, Any] | None = None
    kb: Path | None = None


@dataclass(frozen=True, slots=True)
class PersonaRule:
    persona: str
    channels: frozenset[int] = frozenset()
    channel_name: str | None = None
    regex: re.Pattern[str] | None = None

    def matches(self, channel: int | None, channel_name: str | None, question: str) -> bool:
        if self.channels and channel not in self.channels:
            return False
        if self.channel_name is not None and not (
            channel_name and fnmatch.fnmatchcase(channel_name, self.channel_name)
        ):
            return False
        return self.regex is None or self.regex.search(question) is not None


def _table(where: str, value: Any, known: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SettingsError(f"{where}: expected a table")
    extra = sorted(set(value) - known)
    if extra:
        raise SettingsError(f"{where}: unknown key {extra[0]!r}")
    return value


def parse_personas(name: str, value: Any) -> dict[str, Persona]:
    if not isinstance(value, Mapping):
        raise SettingsError(f"{name}: expected [personas.NAME] tables")
    out: dict[str, Persona] = {}
    for persona_name, raw in value.items():
        where = f"personas.{persona_name}"
        table = _table(where, raw, _PERSONA_KEYS)
        if "system_prompt" not in table:
            raise SettingsError(f"{where}: 'system_prompt' is missing")
        options = table.get("options")
        if options is not None and not isinstance(options, Mapping):
            raise SettingsError(f"{where}.options: expected a table")
        kb = table.get("kb")
        out[persona_name] = Persona(
            name=persona_name,
            system_prompt=text(allow_empty=True)(f"{where}.system_prompt", table["system_prompt"]),
            model=None if table.get("model") is None else text()(f"{where}.model", table["model"]),
            options=dict(options) if options is not None else None,
            kb=None if kb is None else Path(text()(f"{where}.kb", kb)),
        )
    return out


def parse_persona_rules(name: str, value: Any) -> tuple[PersonaRule, ...]:
    if not isinstance(value, list):
        raise SettingsError(f"{name}: expected [[persona_rules]] tables")
    rules: list[PersonaRule] = []
    for index, raw in enumerate(value):
        where = f"{name}[{index}]"
        table = _table(where, raw, _RULE_KEYS)
        if "persona" not in table:
            raise SettingsError(f"{where}: 'persona' is missing")
        pattern = table.get("regex")
        try:
            regex = None if pattern is None else re.compile(text()(f"{where}.regex", pattern))
        except re.error as exc:
            raise SettingsError(f"{where}.regex: not a regular expression ({exc})") from None
        glob = table.get("channel_name")
        channels = frozenset(id_list(f"{where}.channels", table.get("channels", [])))
        if regex is None and glob is None and not channels:
            raise SettingsError(f"{where}: a rule needs channels, channel_name or regex")
        rules.append(
            PersonaRule(
                persona=text()(f"{where}.persona", table["persona"]),
                channels=channels,
                channel_name=None if glob is None else text()(f"{where}.channel_name", glob),
                regex=regex,
            )
        )
    return tuple(rules)


@dataclass(slots=True)
class PersonaSet:
    """The personas, the rules and each channel's own choice (``/persona NAME``)."""

    personas: Mapping[str, Persona]
    rules: tuple[PersonaRule, ...] = ()
    choices: ChannelChoices = field(default_factory=ChannelChoices)

    def __iter__(self) -> Iterator[Persona]:
        return iter(self.personas.values())

    def __contains__(self, name: object) -> bool:
        return name in self.personas

    def names(self) -> list[str]:
        return list(self.personas)

    def channel_persona(self, channel: int, parent: int | None = None) -> Persona | None:
        """The channel's own choice, else (in a thread) its parent channel's."""
        name = self.choices.first("persona", channel, parent)
        return None if name is None else self.personas.get(name)

    def set_channel_persona(self, channel: int, name: str | None) -> None:
        if name is not None and name not in self.personas:
            raise KeyError(name)
        self.choices.set("persona", channel, name)

    def pick(
        self,
        channel: int | None,
        channel_name: str | None,
        question: str,
        parent: int | None = None,
        parent_name: str | None = None,
    ) -> Persona | None:
        """The channel's choice, else the first rule that matches, else none. In a thread
        (``parent`` is its channel) the parent's choice and rules apply too, the thread's first."""
        if channel is not None:
            chosen = self.channel_persona(channel, parent)
            if chosen is not None:
                return chosen
        for rule in self.rules:
            if rule.matches(channel, channel_name, question) or (
                parent is not None and rule.matches(parent, parent_name, question)
            ):
                return self.personas[rule.persona]
        return None
