"""The local model as a child process, from the caller's side (``botctl run --local-model``, the
CLI, tests).

``async with LocalModelProcess() as model:`` checks the runtime, spawns ``python -m
botctl.sandbox.local_model``, reads its one ready line within a bound and gives ``model.url`` (the
``/v1`` base); leaving the block stops it: SIGTERM, then SIGKILL after a bound. A child of its own
keeps llama.cpp out of the bot's profile and a crash of llama.cpp out of the bot.

The child's stderr (llama.cpp's log, errors only) is read into a short tail, quoted in start-up
errors and by :meth:`LocalModelProcess.exit_reason`; once ready it can also be echoed to a stream.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sys
from pathlib import Path
from typing import TextIO

import orjson

from botctl.child import stop_child
from botctl.sandbox.local_model.runtime import LocalModelError, find_gguf, require_runtime

__all__ = ["READY_TIMEOUT", "STOP_TIMEOUT", "LocalModelProcess"]

# The model loads in ~0.5 s; a cold page cache (98 MB) and two busy cores can make it much slower.
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0
_TAIL_LINES = 40


def _error_lines(lines: collections.deque[str]) -> list[str]:
    """llama.cpp's error lines (level `` E ``), without their timestamps."""
    found = []
    for line in lines:
        head, sep, rest = line.partition(" E ")
        if sep and head.replace(".", "").isdigit():
            found.append(" ".join(rest.split()))
    return found


class LocalModelProcess:
    """llama.cpp's OpenAI-compatible server with a GGUF model, in a child process on 127.0.0.1.

    ``gguf``: a model file, else the SmolLM2 that ``make local-model`` installs. ``port``: a port
    on 127.0.0.1, else a free one. ``echo``: a stream that gets the child's log lines once it is
    ready (the CLI passes ``sys.stderr``; the bot keeps them in the tail only).
    """

    def __init__(
        self,
        gguf: str | Path | None = None,
        port: int | None = None,
        *,
        threads: int = 1,
        echo: TextIO | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self.gguf = gguf
        self.port = port
        self.threads = threads
        self.echo = echo
        self.ready_timeout = ready_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, object] = {}
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._ready = False
        self._drain: asyncio.Task[None] | None = None

    # -- what the caller uses ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL, ``http://127.0.0.1:PORT/v1``."""
        return self._field("url")

    @property
    def base_url(self) -> str:
        """The server's root, ``http://127.0.0.1:PORT`` (``/health``, ``/v1/...``)."""
        return self._field("base_url")

    @property
    def model(self) -> str:
        """The name the model is served under (``smollm2`` for the packaged one)."""
        return self._field("model")

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> int | None:
        """None while the child runs (or before it started)."""
        return None if self.proc is None else self.proc.returncode

    def log_tail(self) -> list[str]:
        """The child's last stderr lines (llama.cpp's errors, or a crash's last words)."""
        return list(self._tail)

    def exit_reason(self) -> str:
        """One line on why the child ended: its exit code or signal, and llama.cpp's last error."""
        code = self.returncode
        if code is None:
            return "the local model is running"
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        errors = _error_lines(self._tail)
        return f"the local model stopped ({how})" + (f": {errors[-1]}" if errors else "")

    async def wait(self) -> int:
        """Until the child ends (a crash while the bot runs shows here); its exit code."""
        if self.proc is None:
            raise LocalModelError("the local model was not started")
        code = await self.proc.wait()
        if self._drain is not None:
            # The log's last lines arrive just after the exit: let the tail catch them (bounded).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._drain), 1.0)
        return code

    def _field(self, name: str) -> str:
        value = self.info.get(name)
        if not isinstance(value, str):
            raise LocalModelError("the local model is not running")
        return value

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> LocalModelProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> str:
        """Spawn the child and wait for its ready line; the ``/v1`` URL. Errors are one line."""
        # Checked here first, cheaply: no child is spawned for a missing install or a bad path.
        require_runtime()
        find_gguf(self.gguf)
        args = ["--port", str(self.port or 0), "--threads", str(self.threads)]
        if self.gguf is not None:
            args += ["--gguf", str(self.gguf)]
        env = dict(os.environ)
        env.pop("DISCORD_TOKEN", None)  # the model server never needs it
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "botctl.sandbox.local_model",
            *args,
            stdin=asyncio.subprocess.PIPE,  # its end closing stops the child if we die
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # a Ctrl-C reaches us only; we stop the child in order
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._drain = asyncio.create_task(self._read_log(self.proc.stderr))
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), self.ready_timeout)
        except TimeoutError:
            await self.stop()
            raise LocalModelError(
                f"the local model did not start within {self.ready_timeout:g} s"
            ) from None
        except BaseException:
            await self.stop()
            raise
        data = self._parse_ready(line)
        if data is None:  # died before a word on stdout: a crash, not one of its own errors
            await self.stop()
            raise LocalModelError(self.exit_reason().replace("stopped", "exited at start-up", 1))
        if "error" in data:
            await self.stop()
            message = str(data["error"])
            # At start-up the first error is the cause; the ones after it are its consequences.
            errors = _error_lines(self._tail)
            raise LocalModelError(f"{message}: {errors[0]}" if errors else message)
        self.info = data
        self._ready = True
        return self.url

    @staticmethod
    def _parse_ready(line: bytes) -> dict[str, object] | None:
        """The ready (``url``) or error line; None for anything else (no line: it died)."""
        try:
            data = orjson.loads(line) if line.strip() else None
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or not ("url" in data or "error" in data):
            return None
        return data

    async def _read_log(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip()
            self._tail.append(text)
            if self._ready and self.echo is not None:
                print(text, file=self.echo, flush=True)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT`; idempotent, always bounded."""
        proc = self.proc
        await stop_child(proc, STOP_TIMEOUT)
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
        drain, self._drain = self._drain, None
        if drain is not None:
            # The pipe ends with the child; bound it anyway (a grandchild could hold it open).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(drain, 1.0)
        self._ready = False
