"""A ``redis-server`` of our own on 127.0.0.1, for ``botctl run --processes N`` without ``--redis``.

Debian's ``redis-server`` (``apt-get install redis-server``) or Valkey's ``valkey-server``, on a free
port, keeping nothing on disk (``--save "" --appendonly no``); stopped with the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time

from botctl.child import stop_child
from botctl.errors import BotctlError

__all__ = ["RedisServer", "find_redis_server"]

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def find_redis_server() -> str:
    for name in ("redis-server", "valkey-server"):
        path = shutil.which(name)
        if path:
            return path
    raise BotctlError(
        "--processes needs Redis: install it (apt-get install redis-server) or pass --redis URL"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """``async with RedisServer() as server: server.url``"""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> RedisServer:
        binary = find_redis_server()
        self._proc = await asyncio.create_subprocess_exec(
            binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly",
            "no", "--protected-mode", "yes",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the bot, which stops this in order
        )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                break
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return self
        await self.stop()
        raise BotctlError(f"{binary} did not start on 127.0.0.1:{self.port}")

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        await stop_child(proc, STOP_TIMEOUT)
