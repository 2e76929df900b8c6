"""``botctl sandbox llm --real``: llama.cpp's server with a real model, in the foreground.

The server runs in a child process (:class:`~botctl.sandbox.local_model.LocalModelProcess`), the
same one ``botctl run --local-model`` starts; this command prints where it listens and waits for
Ctrl-C (exit 0) or for the child to end on its own (one line, exit 1).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from botctl.console import console
from botctl.errors import BotctlError
from botctl.sandbox.local_model import LocalModelProcess


async def serve_real(port: int, gguf: Path | None) -> None:
    model = LocalModelProcess(gguf=gguf, port=port, echo=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers before the start: a Ctrl-C during the load still stops the child in order.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        url = await model.start()
        if stop.is_set():  # Ctrl-C while it loaded: no banner for a server about to stop
            return
        info = model.info
        threads = int(str(info["threads"]))
        console.print(
            f"Local model [bold]{model.model}[/] served by llama.cpp (OpenAI-compatible API) "
            f"on [bold]{url}[/]",
            soft_wrap=True,
        )
        console.print(
            f"  {Path(str(info['gguf'])).name}, loaded in {float(str(info['load_s'])):.1f} s; "
            f"{threads} CPU thread{'s' if threads != 1 else ''}, {info['parallel']} answers at a "
            f"time, {info['predict']} tokens at most unless a request sets max_tokens",
            highlight=False,
            soft_wrap=True,
        )
        console.print("Point OpenAI-compatible clients at it:")
        console.print(f"  export OPENAI_BASE_URL={url}", highlight=False, soft_wrap=True)
        console.print(f"  botctl run --llm-url {url}", highlight=False, soft_wrap=True)
        console.print("Press Ctrl-C to stop.")
        stopped = asyncio.ensure_future(stop.wait())
        ended = asyncio.ensure_future(model.wait())
        await asyncio.wait({stopped, ended}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stopped, ended):
            task.cancel()
        if not stop.is_set():
            raise BotctlError(model.exit_reason())
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await model.stop()
    console.print("Stopped.")
