"""``botctl run --processes N``: one bot as N shard processes sharing a Redis, tried locally.

It starts a ``redis-server`` of its own (unless ``--redis`` is given) and, without a token, the
sandbox with N shards; then N ``botctl run`` children, shard ``i`` of ``N`` each, all pointed at the
same Discord, LLM and Redis, each writing its own metrics file (``…shard<i>.jsonl``). The sandbox's
users start once every shard has identified. A stop (signal or ``--duration``) stops the users, then
each child with SIGTERM (each flushes its metrics), then the sandbox and Redis; the summary is read
from the children's metrics files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bot.settings import Settings
from botctl.errors import BotctlError
from botctl.run.llm import LLMChoice
from botctl.run.redis_server import RedisServer
from botctl.sandbox.client import SandboxProcess
from botctl.sandbox.config import SandboxConfig

__all__ = ["ProcessesReport", "run_processes", "shard_metrics_file"]

SANDBOX_TOKEN = "sandbox-token"  # the sandbox accepts any token; this one is not a secret
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


@dataclass(slots=True)
class ProcessesReport:
    metrics_files: list[Path]
    exit_codes: list[int]
    errors: list[str]
    elapsed_s: float


def shard_metrics_file(path: Path, shard: int) -> Path:
    """``profiles/metrics.jsonl`` -> ``profiles/metrics.shard0.jsonl``."""
    return path.with_name(f"{path.stem}.shard{shard}{path.suffix or '.jsonl'}")


async def run_processes(
    settings: Settings,
    config: SandboxConfig,
    count: int,
    child_args: list[str],
    llm: LLMChoice,
    stop: asyncio.Event,
    say: Callable[[str], None],
) -> ProcessesReport:
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        redis_url = settings.redis
        if redis_url is None:
            redis_url = (await stack.enter_async_context(RedisServer())).url
        token = settings.token or SANDBOX_TOKEN
        api, gateway, llm_url = settings.discord_api, settings.discord_gateway, llm.url
        sandbox: SandboxProcess | None = None
        if settings.sandbox:
            shaped = replace(config, gateway_shards=count, llm=llm.url is None and llm.needed)
            sandbox = await stack.enter_async_context(SandboxProcess(shaped))
            assert sandbox.endpoints is not None
            api, gateway = sandbox.endpoints.api_base, sandbox.endpoints.gateway_url
            llm_url = llm_url or sandbox.endpoints.llm_url
        files = [shard_metrics_file(settings.metrics_file, i) for i in range(count)]
        args = list(child_args)
        for flag, value in (("--discord-api", api), ("--discord-gateway", gateway)):
            if value:
                args += [flag, value]
        if llm_url and llm.needed:
            args += ["--llm-url", llm_url]
        if sandbox is not None and not config.rate_limits:
            args.append("--no-write-pacing")  # the sandbox answers every write at once
        if settings.sandbox and settings.cooldown is None:
            # The children see a token (the sandbox's): without this they would take Discord's
            # cooldown, not the sandbox's, whose users are load.
            args += ["--cooldown", f"{settings.effective_cooldown:g}"]
        env = dict(os.environ)
        env["DISCORD_TOKEN"] = token  # never on a command line, where ps shows it
        children = []
        for i in range(count):
            shard = ["--shard-count", str(count), "--shard-ids", str(i), "--redis", redis_url]
            children.append(await _spawn([*args, *shard, "--metrics-file", str(files[i])], env))
        try:
            if sandbox is not None:
                await _wait_sessions(sandbox, count, children)
                await sandbox.start_traffic()
            waiters = [asyncio.ensure_future(child.wait()) for child in children]
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait([stopper, *waiters], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
        finally:
            if sandbox is not None:
                with contextlib.suppress(Exception):
                    await sandbox.stop_traffic()
            codes, errors = await _stop_all(children)
    return ProcessesReport(files, codes, errors, time.monotonic() - started)


async def _spawn(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "botctl",
        "run",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def _wait_sessions(
    sandbox: SandboxProcess, count: int, children: list[asyncio.subprocess.Process]
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if any(child.returncode is not None for child in children):
            return  # one stopped already: its error is reported at the end
        stats = await sandbox.stats()
        if int(stats.get("sessions", 0)) >= count:
            return
        await asyncio.sleep(0.2)
    raise BotctlError(
        f"the {count} shard processes did not all connect within {READY_TIMEOUT:.0f} s"
    )


async def _stop_all(children: list[asyncio.subprocess.Process]) -> tuple[list[int], list[str]]:
    """SIGTERM to every child at once (each flushes), then their exit codes and last words."""
    for child in children:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
    codes: list[int] = []
    errors: list[str] = []
    for i, child in enumerate(children):
        try:
            _out, err = await asyncio.wait_for(child.communicate(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            _out, err = await child.communicate()
        code = child.returncode if child.returncode is not None else -9
        codes.append(code)
        if code != 0:
            last = (err or b"").decode("utf-8", "replace").strip().splitlines()[-1:]
            errors.append(f"shard {i} exited {code}: {last[0] if last else 'no message'}")
    return codes, errors
