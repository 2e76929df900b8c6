"""Which LLM ``botctl run`` uses, and the banner line that says so honestly.

The given URL (flag, env or file) is probed for Ollama's and OpenAI's APIs (:mod:`bot.llm.probe`).
Nothing given and nothing at the default address: in the sandbox, the sandbox's own LLM; on Discord,
a warning. A given URL that does not answer is no start-up error: the bot runs, each question gets
an error reply until the server answers, and the banner says so and what to try.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.components import Components
from bot.llm.ollama import OllamaTransport
from bot.llm.probe import probe
from bot.settings import DEFAULT_LLM_URL, Settings, strip_credentials

__all__ = ["LLMChoice", "choose_llm", "make_components"]


@dataclass(frozen=True, slots=True)
class LLMChoice:
    url: str | None  # None: the sandbox LLM
    api: str  # "ollama" | "openai"
    description: str
    warning: str | None = None


async def choose_llm(settings: Settings, *, url_source: str | None = None) -> LLMChoice:
    """``url_source`` says where a given URL came from (``--llm-url``, ``OLLAMA_HOST``...)."""
    url = settings.effective_llm_url
    found = await probe(url, settings.llm_api)
    if found.api is not None:
        return LLMChoice(found.base_url, found.api, found.description)
    fallback_api = "ollama" if settings.llm_api == "auto" else settings.llm_api
    if settings.llm_url is not None:
        source = f" (from {url_source})" if url_source else ""
        hint = "; unset it to use the sandbox LLM" if settings.sandbox and url_source else ""
        return LLMChoice(
            url,
            fallback_api,
            f"{strip_credentials(url)} (not answering yet)",
            f"{found.description}{source}: each question gets an error reply until it answers"
            f"{hint}",
        )
    if settings.sandbox:
        return LLMChoice(None, "ollama", f"the sandbox LLM (no LLM answered at {DEFAULT_LLM_URL})")
    return LLMChoice(
        url,
        fallback_api,
        f"{DEFAULT_LLM_URL} (not answering)",
        f"no LLM answers at {DEFAULT_LLM_URL}; start Ollama (`ollama serve`) or pass --llm-url",
    )


def make_components(settings: Settings, llm: LLMChoice, url: str) -> Components:
    """The bot's parts, talking to ``url`` in the protocol that was found there."""
    transport = OllamaTransport(url, timeout=settings.llm_timeout)
    return Components(settings, transport=transport)
