"""Several models and the rules that choose between them, as the TOML config declares them.

::

    [models.fast]                      # NAME: how users (/model NAME) and rules refer to it
    api = "ollama"                     # or "openai"
    url = "http://127.0.0.1:11434"
    model = "llama3.2"
    options = { temperature = 0.7, num_predict = 512 }
    max_concurrency = 4                # calls in flight to this model at most (others wait)
    api_key_env = "OPENROUTER_API_KEY" # the variable holding its key (never the key itself)
    vision = true                      # accepts images
    context_tokens = 8192

    [routing]
    default = "fast"                   # else the model given by --model / --llm-url
    fallback = ["local"]               # tried in order when a model fails before its first token
    rules = [ { when = "image", model = "vision" }, { regex = "(?i)python", model = "coder" } ]

A rule matches when all it states holds: ``when`` (``image``: the question carries an image;
``code``: a code block or a source file; ``long``: the prompt needs more than ``tokens`` tokens),
``regex`` (searched in the question) and ``channels`` (ids); the first match wins. This module
parses and checks the declarations; :mod:`bot.models` runs them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.options import SettingsError, boolean, id_list, number, text
from bot.urls import normalize_llm_url

__all__ = ["ModelSpec", "RoutingSpec", "Rule", "parse_models", "parse_routing"]

_WHEN = ("image", "code", "long")
_MODEL_KEYS = frozenset(
    {"api", "url", "model", "options", "max_concurrency", "api_key_env", "vision", "context_tokens"}
)
_RULE_KEYS = frozenset({"when", "model", "tokens", "regex", "channels"})
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    api: str
    url: str
    model: str
    options: Mapping[str, Any] | None = None
    max_concurrency: int | None = None
    api_key_env: str | None = None
    vision: bool = False
    context_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    model: str
    when: str | None = None
    tokens: int | None = None
    regex: re.Pattern[str] | None = None
    channels: frozenset[int] = frozenset()

    @property
    def label(self) -> str:
        """How ``llm_call`` events name the rule: ``rule:<when>`` (``regex``, ``channels``)."""
        return self.when or ("regex" if self.regex is not None else "channels")


@dataclass(frozen=True, slots=True)
class RoutingSpec:
    default: str | None = None
    fallback: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = field(default=())

    def names(self) -> set[str]:
        """Every model name the routing refers to."""
        return {n for n in (self.default, *self.fallback) if n} | {r.model for r in self.rules}


def _table(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SettingsError(f"{where}: expected a table")
    return value


def _unknown(where: str, table: Mapping[str, Any], known: frozenset[str]) -> None:
    extra = sorted(set(table) - known)
    if extra:
        raise SettingsError(f"{where}: unknown key {extra[0]!r}; known: {', '.join(sorted(known))}")


def parse_models(name: str, value: Any) -> dict[str, ModelSpec]:
    """``[models.NAME]`` tables."""
    out: dict[str, ModelSpec] = {}
    for model_name, raw in _table(name, value).items():
        where = f"models.{model_name}"
        if not _NAME.match(model_name):
            raise SettingsError(f"{where}: a model's name is letters, digits, '.', '_' or '-'")
        table = _table(where, raw)
        _unknown(where, table, _MODEL_KEYS)
        for required in ("url", "model"):
            if required not in table:
                raise SettingsError(f"{where}: '{required}' is missing")
        api = str(table.get("api", "ollama")).strip().lower()
        if api not in ("ollama", "openai"):
            raise SettingsError(f"{where}.api: expected ollama or openai, got {table['api']!r}")
        options = table.get("options")
        if options is not None:
            options = dict(_table(f"{where}.options", options))
        concurrency = table.get("max_concurrency")
        context = table.get("context_tokens")
        out[model_name] = ModelSpec(
            name=model_name,
            api=api,
            url=_url(f"{where}.url", table["url"], api),
            model=text()(f"{where}.model", table["model"]),
            options=options,
            max_concurrency=None
            if concurrency is None
            else number(int, minimum=1)(f"{where}.max_concurrency", concurrency),
            api_key_env=None
            if table.get("api_key_env") is None
            else text()(f"{where}.api_key_env", table["api_key_env"]),
            vision=boolean(f"{where}.vision", table.get("vision", False)),
            context_tokens=None
            if context is None
            else number(int, minimum=256)(f"{where}.context_tokens", context),
        )
    return out


def _url(where: str, value: Any, api: str) -> str:
    url = normalize_llm_url(where, value)
    # An OpenAI-compatible base ends in /v1 (https://openrouter.ai/api/v1, http://host:8080/v1).
    if api == "openai" and not url.endswith("/v1"):
        url += "/v1"
    return url


def parse_routing(name: str, value: Any) -> RoutingSpec:
    """The ``[routing]`` table."""
    table = _table(name, value)
    _unknown(name, table, frozenset({"default", "fallback", "rules"}))
    default = table.get("default")
    if default is not None:
        default = text()(f"{name}.default", default)
    fallback = table.get("fallback", [])
    if isinstance(fallback, str):
        fallback = [fallback]
    if not isinstance(fallback, list):
        raise SettingsError(f"{name}.fallback: expected a list of model names")
    rules: list[Rule] = []
    raw_rules = table.get("rules", [])
    if not isinstance(raw_rules, list):
        raise SettingsError(f"{name}.rules: expected a list of tables")
    for index, raw in enumerate(raw_rules):
        rules.append(_rule(f"{name}.rules[{index}]", raw))
    return RoutingSpec(
        default=default,
        fallback=tuple(text()(f"{name}.fallback", item) for item in fallback),
        rules=tuple(rules),
    )


def _rule(where: str, raw: Any) -> Rule:
    table = _table(where, raw)
    _unknown(where, table, _RULE_KEYS)
    if "model" not in table:
        raise SettingsError(f"{where}: 'model' is missing")
    when = table.get("when")
    if when is not None and when not in _WHEN:
        raise SettingsError(f"{where}.when: expected one of {', '.join(_WHEN)}, got {when!r}")
    tokens = table.get("tokens")
    if when == "long" and tokens is None:
        raise SettingsError(f'{where}: when = "long" needs tokens = N')
    pattern = table.get("regex")
    regex = None
    if pattern is not None:
        try:
            regex = re.compile(text()(f"{where}.regex", pattern))
        except re.error as exc:
            raise SettingsError(f"{where}.regex: not a regular expression ({exc})") from None
    channels = frozenset(id_list(f"{where}.channels", table.get("channels", [])))
    if when is None and regex is None and not channels:
        raise SettingsError(f"{where}: a rule needs when, regex or channels")
    return Rule(
        model=text()(f"{where}.model", table["model"]),
        when=when,
        tokens=None if tokens is None else number(int, minimum=1)(f"{where}.tokens", tokens),
        regex=regex,
        channels=channels,
    )
