"""``botctl sandbox``: run the sandbox's servers on their own — ``llm``, an LLM speaking Ollama's
API and the OpenAI-compatible one, or with ``--real`` a real model (llama.cpp's server, SmolLM2).

Only Typer is imported at module level (``botctl --help`` must not import aiohttp); the server
loads inside the command.
"""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="sandbox",
    help="Run the sandbox's loopback servers on their own, for development and load tests.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    no_args_is_help=True,
)


class Api(StrEnum):
    ollama = "ollama"
    openai = "openai"
    both = "both"


_LLM_HELP = (
    "Serve a sandbox LLM on 127.0.0.1 until Ctrl-C, speaking Ollama's API and the "
    "OpenAI-compatible API on one port.\n\n"
    "Ollama: [bold]/api/chat[/] (streamed or not), [bold]/api/embed[/], [bold]/api/tags[/], "
    "[bold]/api/version[/], [bold]/api/show[/]; set [bold]OLLAMA_HOST[/] to the URL it prints. "
    "OpenAI: [bold]/v1/chat/completions[/] (SSE streaming or not), [bold]/v1/models[/], "
    "[bold]/v1/embeddings[/]; use the [bold]/v1[/] URL it prints as the base URL. Answers are "
    "deterministic text, the same on both, so any client of either API can be developed and "
    "load-tested against it.\n\n"
    "Ask [bold]!long N[/] for an N-character answer, [bold]!echo TEXT[/] for TEXT verbatim, "
    "[bold]!cite[/] for an answer citing [1].\n\n"
    "With [bold]--real[/], serve a real model instead: llama.cpp's own OpenAI-compatible server "
    "with the SmolLM2-135M-Instruct that [bold]make local-model[/] installs, or [bold]--gguf FILE[/]. "
    "Offline, one CPU thread; answers are slow and poor (a 135M model) but real."
)

# Ports when --port is not given: Ollama's for the canned LLM, llama.cpp server's for --real.
_CANNED_PORT = 11434
_REAL_PORT = 8080


@app.command("llm", help=_LLM_HELP)
def llm(
    ctx: typer.Context,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            min=0,
            max=65535,
            show_default=False,
            help="Port on 127.0.0.1 ([bold]0[/] picks a free one). Default 11434 (Ollama's), "
            "8080 with [bold]--real[/] (llama.cpp server's).",
        ),
    ] = None,
    latency: Annotated[
        float,
        typer.Option("--latency", min=0.0, help="Seconds before the first token of each answer."),
    ] = 0.2,
    tokens_per_second: Annotated[
        float,
        typer.Option(
            "--tokens-per-second",
            min=0.0,
            help="Tokens (about 4 characters each) per second after the first; 0 = all at once.",
        ),
    ] = 50.0,
    api: Annotated[
        Api,
        typer.Option(
            "--api",
            help="Which API to serve: [bold]both[/], or only one (the other's routes answer 404, "
            "as llama.cpp's server does for [bold]/api/*[/]).",
        ),
    ] = Api.both,
    real: Annotated[
        bool,
        typer.Option(
            "--real",
            help="Serve a real model (llama.cpp's server; OpenAI-compatible API only) instead of "
            "canned answers. Needs [bold]make local-model[/].",
        ),
    ] = False,
    gguf: Annotated[
        Path | None,
        typer.Option(
            "--gguf",
            dir_okay=False,
            help="With [bold]--real[/]: the GGUF model file to serve (default: the packaged "
            "SmolLM2-135M-Instruct).",
        ),
    ] = None,
) -> None:
    """Serve a sandbox LLM (Ollama and OpenAI-compatible APIs) on 127.0.0.1 until Ctrl-C."""
    import asyncio

    from botctl.errors import BotctlError

    if real:
        # By the enum's name: Typer ships its own copy of click, whose ParameterSource is private.
        shaped = [
            flag
            for flag, param in (
                ("--latency", "latency"),
                ("--tokens-per-second", "tokens_per_second"),
            )
            if getattr(ctx.get_parameter_source(param), "name", "DEFAULT") != "DEFAULT"
        ]
        if shaped:
            raise BotctlError(
                f"--real runs the model at its own speed; drop {' and '.join(shaped)}"
            )
        if api is Api.ollama:
            raise BotctlError(
                "--real speaks the OpenAI-compatible API only (llama.cpp's server has no /api/*); "
                "drop --api ollama"
            )
        from botctl.commands.sandbox_real import serve_real

        asyncio.run(serve_real(_REAL_PORT if port is None else port, gguf))
        return
    if gguf is not None:
        raise BotctlError("--gguf needs --real (the canned LLM serves no model file)")
    if math.isnan(latency) or math.isnan(tokens_per_second):
        raise BotctlError("--latency and --tokens-per-second must be numbers")
    apis = ("ollama", "openai") if api is Api.both else (api.value,)
    asyncio.run(_serve(_CANNED_PORT if port is None else port, latency, tokens_per_second, apis))


async def _serve(
    port: int, latency: float, tokens_per_second: float, apis: tuple[str, ...]
) -> None:
    import asyncio
    import errno
    import signal

    from botctl.console import console
    from botctl.errors import BotctlError
    from botctl.sandbox.llm_server import LLMServer

    server = LLMServer(port=port, latency=latency, tokens_per_second=tokens_per_second, apis=apis)
    try:
        url = await server.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise BotctlError(f"port {port} is in use; pick another with --port") from None
        if exc.errno == errno.EACCES:
            raise BotctlError(
                f"no permission to listen on port {port}; pick one above 1023 with --port"
            ) from None
        raise BotctlError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror})") from None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if tokens_per_second in (0, math.inf):
            speed = "the rest all at once"
        else:
            speed = f"then {tokens_per_second:g} tokens/s"
        names = " and ".join(
            {"ollama": "Ollama", "openai": "OpenAI-compatible"}[name] for name in server.apis
        )
        console.print(f"Sandbox LLM ({names} API) listening on [bold]{url}[/]")
        console.print(
            f"  models: {', '.join(server.models)}; {latency:g} s to the first token, {speed}",
            highlight=False,
        )
        if "ollama" in server.apis:
            console.print("Point Ollama clients at it:")
            console.print(f"  export OLLAMA_HOST={url}", highlight=False, soft_wrap=True)
            console.print(f"  botctl run --llm-url {url}", highlight=False, soft_wrap=True)
        if "openai" in server.apis:
            console.print("Point OpenAI-compatible clients at it:")
            console.print(f"  export OPENAI_BASE_URL={url}/v1", highlight=False, soft_wrap=True)
            console.print(f"  botctl run --llm-url {url}/v1", highlight=False, soft_wrap=True)
        console.print("Press Ctrl-C to stop.")
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await server.stop()
        by_api = ", ".join(f"{server.calls_by_api[name]} {name}" for name in server.apis)
        console.print(f"Stopped after {server.calls_total} chat call(s) ({by_api}).")
