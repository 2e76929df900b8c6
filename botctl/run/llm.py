"""Which LLMs ``botctl run`` uses, and the banner lines that say so honestly.

The URL given (flag, env or file) is probed for Ollama's and OpenAI's APIs (:mod:`bot.llm.probe`);
so is each ``[models.NAME]`` of the config, for the protocol it declares. Nothing given and nothing
at the default address: in the sandbox, the sandbox's own LLM; on Discord, a warning. A URL that
does not answer, or where something else answers (a web page, a server still loading its model), is
no start-up error: the banner warns, never calling it Ollama, and says what to try; the bot runs
and each question gets an error reply until the server answers.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

from bot.components import Components, LLMTarget
from bot.llm.probe import Probe, probe
from bot.routing import ModelSpec
from bot.settings import DEFAULT_LLM_URL, Settings, strip_credentials
from bot.shared import SharedState

__all__ = ["LLMChoice", "choose_llm", "make_components"]


@dataclass(frozen=True, slots=True)
class LLMChoice:
    url: str | None  # None: the sandbox LLM
    api: str  # "ollama" | "openai"
    description: str
    warning: str | None = None
    models: list[str] = field(default_factory=list)  # banner lines for [models.NAME]
    needed: bool = True  # False: routing names its default model; --llm-url is not used


def _key() -> str | None:
    return os.environ.get("BOT_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or None


async def choose_llm(settings: Settings, *, url_source: str | None = None) -> LLMChoice:
    """``url_source`` says where a given URL came from (``--llm-url``, ``OLLAMA_HOST``...)."""
    model_lines = await _probe_models(settings)
    if settings.routing.default is not None:
        description = f"model {settings.routing.default!r} by default (see [models])"
        return LLMChoice(None, "ollama", description, models=model_lines, needed=False)
    url = settings.effective_llm_url
    found = await probe(url, settings.llm_api, api_key=_key())
    if found.api is not None:
        return LLMChoice(
            found.base_url, found.api, found.description, found.warning, models=model_lines
        )
    fallback_api = "ollama" if settings.llm_api == "auto" else settings.llm_api
    if found.reachable:
        return LLMChoice(
            url,
            fallback_api,
            f"{strip_credentials(url)} (no usable LLM API there)",
            f"{found.description}: each question gets an error reply until it does; give the URL "
            "of an Ollama or OpenAI-compatible server (an OpenAI-compatible one ends in /v1), "
            "or --llm-api",
            models=model_lines,
        )
    if settings.llm_url is not None:
        source = f" (from {url_source})" if url_source else ""
        hint = "; unset it to use the sandbox LLM" if settings.sandbox and url_source else ""
        return LLMChoice(
            url,
            fallback_api,
            f"{strip_credentials(url)} (not answering yet)",
            f"{found.description}{source}: each question gets an error reply until it answers"
            f"{hint}",
            models=model_lines,
        )
    if settings.sandbox:
        return LLMChoice(
            None,
            "ollama",
            f"the sandbox LLM (no LLM answered at {DEFAULT_LLM_URL})",
            models=model_lines,
        )
    return LLMChoice(
        url,
        fallback_api,
        f"{DEFAULT_LLM_URL} (not answering)",
        f"no LLM answers at {DEFAULT_LLM_URL}; start Ollama (`ollama serve`) or pass --llm-url",
        models=model_lines,
    )


async def _probe_models(settings: Settings) -> list[str]:
    """One banner line per declared model, saying what answers at its URL (or what does not)."""
    specs = list(settings.models.values())
    found = await asyncio.gather(*(_probe_one(spec) for spec in specs))
    lines = []
    for spec, result in zip(specs, found, strict=True):
        state = result.description if result.api is not None else f"{result.description} yet"
        if result.warning:
            state += f" ({result.warning})"
        lines.append(f"{spec.name}: {spec.model} — {state}")
    return lines


async def _probe_one(spec: ModelSpec) -> Probe:
    key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
    return await probe(spec.url, spec.api, api_key=key)


def make_components(
    settings: Settings, llm: LLMChoice, url: str | None, shared: SharedState | None = None
) -> Components:
    """The bot's parts, the model given on the command line at ``url`` in the protocol found."""
    target = LLMTarget(llm.api, url) if url is not None else None
    shards = shard_ids(settings)
    fields = {"shard": shards} if shards else None
    return Components(settings, target=target, metrics_fields=fields, shared=shared)


def shard_ids(settings: Settings) -> list[int]:
    """The shards this process runs (none when it is not sharded)."""
    if settings.shard_ids:
        return list(settings.shard_ids)
    count = settings.shards or settings.shard_count
    return list(range(count)) if count else []
