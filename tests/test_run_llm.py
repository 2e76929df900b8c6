"""``botctl run`` choosing its LLM: the protocol it finds, the banner, and what it refuses at start."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from botctl.sandbox.llm_server import LLMServer

pytestmark = pytest.mark.integration


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "OLLAMA_", "BOT_"))}
    out.pop("OPENAI_API_KEY", None)
    out["COLUMNS"] = "200"
    out.update(extra)
    return out


def botctl(*args: str, timeout: float = 90.0, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "botctl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(**extra),
    )


@contextmanager
def in_thread(make_app: object) -> Iterator[str]:
    """An aiohttp app served on 127.0.0.1 from a thread (the CLI under test is a subprocess)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, object] = {}

    async def serve() -> None:
        if isinstance(make_app, LLMServer):
            holder["url"] = await make_app.start()
        else:
            assert isinstance(make_app, web.Application)
            runner = web.AppRunner(make_app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            holder["runner"] = runner
            holder["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop)
    assert started.wait(10)
    try:
        yield str(holder["url"])
    finally:

        async def stop() -> None:
            if isinstance(make_app, LLMServer):
                await make_app.stop()
            else:
                runner = holder["runner"]
                assert isinstance(runner, web.AppRunner)
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def web_page() -> web.Application:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>llama.cpp UI</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    return app


def test_an_openai_only_server_is_found_and_answers(tmp_path: Path) -> None:
    """llama.cpp's case: a web page on /, /api/* 404; the bot finds /v1 and answers through it."""
    metrics = tmp_path / "m.jsonl"
    server = LLMServer(latency=0.0, tokens_per_second=0.0, apis=("openai",))
    with in_thread(server) as url:
        proc = botctl("run", "--llm-url", url, "--duration", "5", "--rate", "6",
                      "--metrics-file", str(metrics))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"OpenAI-compatible server at {url}/v1" in proc.stdout
    assert "Ollama" not in proc.stdout.split("metrics")[0]
    calls = [
        e for e in map(orjson.loads, metrics.read_bytes().splitlines()) if e["type"] == "llm_call"
    ]
    assert (
        calls and {c["api"] for c in calls} == {"openai"} and {c["status"] for c in calls} == {"ok"}
    )
    assert server.calls_by_api.get("openai", 0) >= 1 and not server.calls_by_api.get("ollama")


def test_a_web_page_is_never_called_ollama_and_the_banner_says_what_to_try(tmp_path: Path) -> None:
    metrics = tmp_path / "m.jsonl"
    with in_thread(web_page()) as url:
        proc = botctl("run", "--llm-url", url, "--duration", "3", "--rate", "5",
                      "--metrics-file", str(metrics))  # fmt: skip
    # Something answers, but no LLM API: no start-up error (it may be a server still starting),
    # a warning that says so and what to try, and an error reply to each question.
    assert proc.returncode == 0, proc.stderr
    banner = proc.stdout.split("metrics :")[0]
    assert "Ollama 0" not in banner and "OpenAI-compatible server at" not in banner
    assert "answers, but not with Ollama's API or OpenAI's" in banner
    assert "ends in /v1" in banner and "Traceback" not in proc.stderr
    replies = [
        e for e in map(orjson.loads, metrics.read_bytes().splitlines()) if e["type"] == "reply"
    ]
    assert replies and {r["status"] for r in replies} == {"error"}


def test_a_model_table_pointing_at_a_web_page_is_a_banner_line(tmp_path: Path) -> None:
    with in_thread(web_page()) as url:
        config = tmp_path / "bot.toml"
        config.write_text(
            f'[models.web]\napi = "openai"\nurl = "{url}"\nmodel = "m"\n[routing]\ndefault = "web"\n'
        )
        proc = botctl("run", "--config", str(config), "--duration", "3",
                      "--metrics-file", str(tmp_path / "m.jsonl"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # Declared OpenAI-compatible: said to be, with what its /v1/models answered.
    assert f"web: m — OpenAI-compatible server at {url}/v1 (" in proc.stdout
    assert "/v1/models did not list models: HTTP 404" in proc.stdout
    # "[models]" in the banner is text, not rich markup.
    assert "model 'web' by default (see [models])" in proc.stdout


def test_a_v1_server_that_refuses_the_key_is_openai_and_says_why(tmp_path: Path) -> None:
    """A /v1 URL is OpenAI-compatible (SPEC): a refused key is a warning and an error reply in
    words, not a refusal to start."""
    metrics = tmp_path / "m.jsonl"
    wrong = "sk-wrong-NEVER-SHOWN-5678"
    server = LLMServer(latency=0.0, tokens_per_second=0.0, apis=("openai",), api_key="sk-right")
    with in_thread(server) as url:
        proc = botctl("run", "--llm-url", f"{url}/v1", "--duration", "3", "--rate", "5",
                      "--metrics-file", str(metrics), BOT_LLM_API_KEY=wrong)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    banner = proc.stdout.split("metrics :")[0]
    assert f"OpenAI-compatible server at {url}/v1" in banner
    assert "did not list models: HTTP 401: Incorrect API key provided." in banner
    events = list(map(orjson.loads, metrics.read_bytes().splitlines()))
    calls = [e for e in events if e["type"] == "llm_call"]
    assert calls and {c["api"] for c in calls} == {"openai"}
    assert {c["status"] for c in calls} == {"error"}
    assert wrong not in proc.stdout + proc.stderr and wrong.encode() not in metrics.read_bytes()


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('[routing]\nrules = [{ when = "code", model = "coder" }]\n', "no model named 'coder'"),
        ('[models.a]\napi = "soap"\nurl = "http://127.0.0.1:9"\nmodel = "m"\n', "models.a.api"),
        (
            '[models.a]\nurl = "http://127.0.0.1:9"\nmodel = "m"\napi_key_env = "UNSET_KEY_X"\n',
            "UNSET_KEY_X is not set",
        ),
    ],
)
def test_bad_model_config_is_one_line_at_start(tmp_path: Path, toml: str, needle: str) -> None:
    config = tmp_path / "bot.toml"
    config.write_text(toml)
    proc = botctl("run", "--config", str(config), "--metrics-file", str(tmp_path / "m.jsonl"))
    assert proc.returncode == 1 and needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_the_api_key_comes_from_the_environment_and_is_never_shown(tmp_path: Path) -> None:
    metrics = tmp_path / "m.jsonl"
    key = "sk-test-NEVER-SHOWN-1234"
    server = LLMServer(latency=0.0, tokens_per_second=0.0, apis=("openai",), api_key=key)
    with in_thread(server) as url:
        proc = botctl("run", "--llm-url", f"{url}/v1", "--duration", "4", "--rate", "5",
                      "--metrics-file", str(metrics), OPENAI_API_KEY=key)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    replies = [
        e for e in map(orjson.loads, metrics.read_bytes().splitlines()) if e["type"] == "reply"
    ]
    assert replies and {r["status"] for r in replies} == {"ok"}  # the key was sent: no 401s
    assert key not in proc.stdout + proc.stderr and key.encode() not in metrics.read_bytes()
