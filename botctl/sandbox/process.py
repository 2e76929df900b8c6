"""The sandbox process: a Discord-compatible server, simulated users and (if asked) an LLM, on 127.0.0.1.

It runs in its own process so that a profile of the bot shows the bot. Started as
``python -m botctl.sandbox.process CONFIG_JSON``; it prints ONE JSON line on stdout when it is
listening (``{"api_base", "gateway_url", "control_url", "llm_url"}``), then serves until SIGTERM,
SIGINT or its stdin closing (the parent died). Control goes over HTTP to ``control_url`` (the Discord
server's ``/_sandbox/...`` routes).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import Any

import orjson

from botctl.sandbox.chain_users import ReplyChainTraffic
from botctl.sandbox.config import SandboxConfig
from botctl.sandbox.discord_server import DiscordServer
from botctl.sandbox.llm_server import LLMServer
from botctl.sandbox.users import TrafficGenerator

__all__ = ["SandboxConfig", "main", "serve_sandbox"]  # SandboxConfig: its home is config.py


async def _watch_stdin(stop: asyncio.Event) -> None:
    """Stop when the parent goes away (its end of our stdin closes)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (OSError, ValueError):
        return  # no usable stdin (e.g. /dev/null): rely on signals
    with contextlib.suppress(Exception):
        while await reader.read(4096):
            pass
    stop.set()


async def serve_sandbox(config: SandboxConfig, stop: asyncio.Event) -> None:
    discord_server = DiscordServer(
        channels=config.channels,
        users=config.users,
        guilds=config.guilds,
        shards=config.gateway_shards,
        rate_limits=config.rate_limits,
    )
    llm: LLMServer | None = None
    await discord_server.start()
    try:
        traffic: TrafficGenerator
        if config.reply_depth:
            traffic = ReplyChainTraffic(
                discord_server, depth=config.reply_depth, rate=config.rate, seed=config.seed
            )
        else:
            traffic = TrafficGenerator(
                discord_server,
                rate=config.rate,
                duplicate_ratio=config.duplicate_ratio,
                seed=config.seed,
            )
        discord_server.attach_traffic(traffic)
        llm_url: str | None = None
        if config.llm:
            llm = LLMServer(
                latency=config.llm_latency,
                tokens_per_second=config.llm_tokens_per_second,
                answer_chars=config.llm_answer_chars,
            )
            llm_url = await llm.start()
            discord_server.attach_llm(llm)
        ready: dict[str, Any] = {
            "api_base": discord_server.api_base,
            "gateway_url": discord_server.gateway_url,
            "control_url": discord_server.control_url,
            "llm_url": llm_url,
        }
        sys.stdout.write(orjson.dumps(ready).decode() + "\n")
        sys.stdout.flush()
        await stop.wait()
        await traffic.stop()
    finally:
        if llm is not None:
            await llm.stop()
        await discord_server.stop()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    config = SandboxConfig.from_json(args[0]) if args else SandboxConfig()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        watcher = asyncio.create_task(_watch_stdin(stop))
        try:
            await serve_sandbox(config, stop)
        finally:
            watcher.cancel()

    asyncio.run(run())


if __name__ == "__main__":
    main()
