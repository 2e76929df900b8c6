"""``botctl sandbox``: run the sandbox's servers on their own — ``llm``, an Ollama-compatible LLM.

Only Typer is imported at module level (``botctl --help`` must not import aiohttp); the server
loads inside the command.
"""

from __future__ import annotations

import math
from typing import Annotated

import typer

app = typer.Typer(
    name="sandbox",
    help="Run the sandbox's loopback servers on their own, for development and load tests.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    no_args_is_help=True,
)


_LLM_HELP = (
    "Serve an Ollama-compatible LLM on 127.0.0.1 until Ctrl-C.\n\n"
    "It answers [bold]/api/chat[/] (streamed or not), [bold]/api/tags[/], [bold]/api/version[/] "
    "and [bold]/api/show[/] with deterministic text, so anything that speaks Ollama's API (the "
    "official [italic]ollama[/] Python client included) can be developed and load-tested against "
    "it: set [bold]OLLAMA_HOST[/] to the URL it prints.\n\n"
    "Ask [bold]!long N[/] for an N-character answer, [bold]!echo TEXT[/] for TEXT verbatim."
)


@app.command("llm", help=_LLM_HELP)
def llm(
    port: Annotated[
        int,
        typer.Option(
            "--port",
            min=0,
            max=65535,
            help="Port on 127.0.0.1 ([bold]0[/] picks a free one). Ollama's own default is 11434.",
        ),
    ] = 11434,
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
) -> None:
    """Serve an Ollama-compatible LLM on 127.0.0.1 until Ctrl-C."""
    import asyncio

    if math.isnan(latency) or math.isnan(tokens_per_second):
        from botctl.errors import BotctlError

        raise BotctlError("--latency and --tokens-per-second must be numbers")
    asyncio.run(_serve(port, latency, tokens_per_second))


async def _serve(port: int, latency: float, tokens_per_second: float) -> None:
    import asyncio
    import errno
    import signal

    from botctl.console import console
    from botctl.errors import BotctlError
    from botctl.sandbox.llm_server import LLMServer

    server = LLMServer(port=port, latency=latency, tokens_per_second=tokens_per_second)
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
        console.print(f"Sandbox LLM (Ollama-compatible) listening on [bold]{url}[/]")
        console.print(
            f"  models: {', '.join(server.models)}; {latency:g} s to the first token, {speed}",
            highlight=False,
        )
        console.print("Point Ollama clients at it:")
        console.print(f"  export OLLAMA_HOST={url}", highlight=False, soft_wrap=True)
        console.print(f"  botctl run --llm-url {url}", highlight=False, soft_wrap=True)
        console.print("Press Ctrl-C to stop.")
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await server.stop()
        console.print(f"Stopped after {server.calls_total} chat call(s).")
