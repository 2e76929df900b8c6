"""Several models: the config's tables, each routing rule, fallback, max_concurrency, dedup per model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _llm import RecordingMetrics, running_llm

from bot.config import load_settings
from bot.dedup import RequestDeduplicator
from bot.engine import ChatEngine, Question
from bot.history import ChatHistoryManager
from bot.llm import transport_for
from bot.llm.errors import LLMStreamError
from bot.models import ModelSet, Traits
from bot.options import SettingsError
from bot.routing import ModelSpec, parse_models, parse_routing
from botctl.sandbox.llm_server import LLMServer, answer_for


def specs(url: str, **extra: dict[str, Any]) -> dict[str, ModelSpec]:
    tables: dict[str, Any] = {
        "fast": {"api": "ollama", "url": url, "model": "small"},
        "coder": {"api": "openai", "url": url, "model": "coder-7b"},
        "vision": {"api": "ollama", "url": url, "model": "llava", "vision": True},
        "big": {"api": "openai", "url": url, "model": "big", "max_concurrency": 2},
    }
    for name, table in extra.items():
        tables[name] = table
    return parse_models("models", tables)


def model_set(url: str, routing: dict[str, Any], **extra: dict[str, Any]) -> ModelSet:
    return ModelSet(
        specs(url, **extra),
        parse_routing("routing", routing),
        lambda spec: transport_for(spec.api, spec.url, timeout=5.0),
        default="fast",
    )


# -- the declarations --------------------------------------------------------------------------


def test_an_openai_model_url_is_its_v1_base() -> None:
    parsed = specs("http://127.0.0.1:8080")
    assert parsed["coder"].url == "http://127.0.0.1:8080/v1"
    assert parsed["fast"].url == "http://127.0.0.1:8080"
    assert parsed["big"].max_concurrency == 2 and parsed["vision"].vision


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('[models.a]\napi = "grpc"\nurl = "http://h:1"\nmodel = "m"\n', "models.a.api: expected"),
        ('[models.a]\nurl = "http://h:1"\n', "models.a: 'model' is missing"),
        ('[models.a]\nurl = "http://h:1"\nmodel = "m"\ncolour = 1\n', "unknown key 'colour'"),
        (
            '[models.a]\nurl = "http://h:1"\nmodel = "m"\n[routing]\ndefault = "b"\n',
            "routing: no model named 'b'",
        ),
        (
            '[models.a]\nurl = "http://h:1"\nmodel = "m"\n[routing]\n'
            'rules = [{ when = "image", model = "nope" }]\n',
            "no model named 'nope'",
        ),
        (
            '[models.a]\nurl = "http://h:1"\nmodel = "m"\n[routing]\n'
            'rules = [{ when = "smell", model = "a" }]\n',
            "when: expected one of image, code, long",
        ),
        ('[routing]\nrules = [{ regex = "(", model = "x" }]\n', "not a regular expression"),
        (
            '[models.a]\nurl = "http://h:1"\nmodel = "m"\napi_key_env = "NO_SUCH_KEY_VAR"\n',
            "the environment variable NO_SUCH_KEY_VAR is not set",
        ),
    ],
)
def test_bad_model_tables_are_one_line(tmp_path: Path, toml: str, needle: str) -> None:
    path = tmp_path / "bot.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert needle in str(info.value) and "\n" not in str(info.value)


# -- choosing a model --------------------------------------------------------------------------


def test_each_rule_and_the_channel_choice() -> None:
    models = model_set(
        "http://127.0.0.1:9",
        {
            "default": "fast",
            "fallback": ["big"],
            "rules": [
                {"when": "code", "model": "coder"},
                {"when": "long", "tokens": 100, "model": "big"},
                {"regex": "(?i)\\bdraw\\b", "model": "vision"},
                {"channels": [42], "model": "coder"},
            ],
        },
    )

    def pick(traits: Traits) -> tuple[str, str, list[str]]:
        route = models.route(traits)
        return route.models[0].name, route.reason, [m.name for m in route.models]

    assert pick(Traits("hello")) == ("fast", "default", ["fast", "big"])
    assert pick(Traits("fix ```x = 1```")) == ("coder", "rule:code", ["coder", "big"])
    assert pick(Traits("see this", files=("main.rs",)))[:2] == ("coder", "rule:code")
    assert pick(Traits("x" * 500, tokens=125))[:2] == ("big", "rule:long")
    assert pick(Traits("x" * 500, tokens=125))[2] == ["big"]  # no fallback to itself
    assert pick(Traits("please DRAW a cat"))[:2] == ("vision", "rule:regex")
    assert pick(Traits("hello", channel=42))[:2] == ("coder", "rule:channels")
    assert pick(Traits("what is this?", images=1))[:2] == ("vision", "rule:image")
    models.set_channel_model(7, "big")
    assert pick(Traits("hello", channel=7))[:2] == ("big", "channel")
    models.set_channel_model(7, None)
    assert pick(Traits("hello", channel=7))[:2] == ("fast", "default")
    with pytest.raises(KeyError):
        models.set_channel_model(7, "nope")
    # A thread (9) of channel 42 follows its channel's rule, and of channel 7 its choice, unless
    # the thread chose for itself.
    assert pick(Traits("hello", channel=9, parent=42))[:2] == ("coder", "rule:channels")
    models.set_channel_model(7, "big")
    assert pick(Traits("hello", channel=9, parent=7))[:2] == ("big", "channel")
    models.set_channel_model(9, "vision")
    assert pick(Traits("hello", channel=9, parent=7))[:2] == ("vision", "channel")
    assert pick(Traits("hello", channel=8, parent=None))[:2] == ("fast", "default")


# -- answering through several models ----------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[LLMServer]:
    async with running_llm(latency=0.05) as llm_server:
        yield llm_server


def engine_for(models: ModelSet, tmp_path: Path) -> ChatEngine:
    return ChatEngine(
        models,
        ChatHistoryManager(),
        RecordingMetrics(tmp_path / "m.jsonl"),
        RequestDeduplicator(),
        system_prompt="",
    )


async def text_of(
    engine: ChatEngine, conversation: str, text: str, channel: int | None = None
) -> str:
    return "".join([d async for d in engine.answer(Question(conversation, text, channel))])


def calls(engine: ChatEngine) -> list[dict[str, Any]]:
    assert isinstance(engine.metrics, RecordingMetrics)
    return engine.metrics.of("llm_call")


@pytest.mark.integration
async def test_a_model_that_fails_before_its_first_token_falls_back(
    server: LLMServer, tmp_path: Path
) -> None:
    assert server.url is not None
    engine = engine_for(model_set(server.url, {"default": "coder", "fallback": ["fast"]}), tmp_path)
    server.add_fault("status", status=404, model="coder-7b", message="model not found")
    try:
        text = await text_of(engine, "c", "hello there")
    finally:
        await engine.models.close()
    assert text == answer_for([{"role": "user", "content": "hello there"}])
    assert [(c["model"], c["route"], c["status"]) for c in calls(engine)] == [
        ("coder", "default", "error"),
        ("fast", "fallback", "ok"),
    ]
    assert calls(engine)[0]["api"] == "openai" and calls(engine)[1]["api"] == "ollama"


@pytest.mark.integration
async def test_an_error_after_the_first_token_is_not_retried_elsewhere(
    server: LLMServer, tmp_path: Path
) -> None:
    assert server.url is not None
    server.tokens_per_second = 500.0
    engine = engine_for(model_set(server.url, {"default": "fast", "fallback": ["coder"]}), tmp_path)
    server.add_fault("stream_error", after_chunks=3, model="small")
    try:
        with pytest.raises(LLMStreamError):
            await text_of(engine, "c", "hello there")
    finally:
        await engine.models.close()
    assert [(c["model"], c["status"]) for c in calls(engine)] == [("fast", "error")]


@pytest.mark.integration
async def test_max_concurrency_is_honoured(server: LLMServer, tmp_path: Path) -> None:
    assert server.url is not None
    server.tokens_per_second = 200.0  # each answer streams about 0.4 s
    engine = engine_for(model_set(server.url, {"default": "big"}), tmp_path)
    try:
        await asyncio.gather(*(text_of(engine, f"c{i}", f"question {i}") for i in range(6)))
    finally:
        await engine.models.close()
    assert server.calls_total == 6 and server.max_in_flight == 2


@pytest.mark.integration
async def test_dedup_never_shares_an_answer_across_two_models(
    server: LLMServer, tmp_path: Path
) -> None:
    assert server.url is not None
    models = model_set(
        server.url, {"default": "fast", "rules": [{"channels": [2], "model": "coder"}]}
    )
    engine = engine_for(models, tmp_path)
    try:
        answers = await asyncio.gather(
            *(text_of(engine, f"c{i}", "same question", channel=i % 3) for i in range(6))
        )
    finally:
        await engine.models.close()
    # Channels 0 and 1 share the default model's flight; channel 2 asks the coder: two calls.
    assert dict(server.calls_by_model) == {"small": 1, "coder-7b": 1}
    assert len(set(answers)) == 1  # the sandbox answers by the text: the same words, two calls
    roles = sorted((c["model"], c["dedup"]) for c in calls(engine))
    assert roles.count(("fast", "leader")) == 1 and roles.count(("coder", "leader")) == 1
