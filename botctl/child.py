"""Stopping a child process of ours (the sandbox, the local model, a Redis, a shard): SIGTERM so
it stops in order, SIGKILL if it has not after ``timeout`` — always bounded, never raising for a
process that is already gone."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["stop_child"]


async def stop_child(proc: asyncio.subprocess.Process | None, timeout: float = 5.0) -> None:
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
