"""``botctl analyze --web``: snakeviz serving a profile on loopback, as a child process.

snakeviz serves any file path it is asked for, so it binds 127.0.0.1 only; it prints port 0 in its
URL when asked for a free one, so the port is picked here (:func:`free_port`).
"""

from __future__ import annotations

import http.client
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from typing import IO


class ServeError(Exception):
    """snakeviz could not be started or stopped answering; the message says why."""


_URL_RE = re.compile(r"(http://\S+?:(\d+)/snakeviz/\S+)")


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (another process may still take it before we do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class SnakevizServer:
    """``python -m snakeviz -s`` on loopback as a child process, started and stopped cleanly.

    The port is picked here (snakeviz prints ``:0`` when asked for port 0), and the URL is read
    from snakeviz's own output, because snakeviz silently moves to another port when the one it
    was given is taken. :meth:`start` returns only once the page answers HTTP 200.
    """

    def __init__(
        self,
        profile: str | os.PathLike[str],
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        python: str = sys.executable,
    ) -> None:
        self.profile = os.path.abspath(profile)
        self.host = host
        self.requested_port = port
        self.python = python
        self.url: str | None = None
        self.port: int | None = None
        self._process: subprocess.Popen[str] | None = None
        self._stdout: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str | None] = deque(maxlen=20)
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> SnakevizServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def start(self, timeout: float = 30.0) -> str:
        """Start snakeviz and wait (at most ``timeout`` s) until its page answers; its URL."""
        port = self.requested_port or free_port(self.host)
        command = [self.python, "-u", "-m", "snakeviz", "-s", "-H", self.host]
        command += ["-p", str(port), self.profile]
        # A session of its own: a terminal's Ctrl-C reaches botctl, which stops snakeviz quietly
        # instead of both printing their interrupt messages.
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        # Both pipes are drained for the server's whole life, or a chatty server would block.
        sinks: tuple[tuple[IO[str], Callable[[str | None], object]], ...] = (
            (self._process.stdout, self._stdout.put),
            (self._process.stderr, self._stderr.append),
        )
        for stream, sink in sinks:
            thread = threading.Thread(target=_drain, args=(stream, sink), daemon=True)
            thread.start()
            self._threads.append(thread)

        deadline = time.monotonic() + timeout
        while self.url is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise ServeError(f"snakeviz did not start within {timeout:.0f} s")
            try:
                line = self._stdout.get(timeout=min(remaining, 0.25))
            except queue.Empty:
                continue
            if line is None:  # stdout closed: snakeviz exited
                self._process.wait(timeout=5)
                raise ServeError(self._exit_reason())
            match = _URL_RE.search(line)
            if match:
                self.url, self.port = match.group(1), int(match.group(2))
        self._wait_http(deadline)
        return self.url

    def _wait_http(self, deadline: float) -> None:
        assert self.url is not None
        while True:
            if self.returncode is not None:
                raise ServeError(self._exit_reason())
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() >= deadline:
                self.stop()
                raise ServeError(f"snakeviz did not answer at {self.url}")
            time.sleep(0.1)

    def _exit_reason(self) -> str:
        for thread in self._threads:
            thread.join(timeout=1)
        tail = [line.strip() for line in self._stderr if line and line.strip()]
        last = tail[-1] if tail else "no output"
        return f"snakeviz exited with status {self.returncode} ({last})"

    def wait(self, poll: float = 0.25) -> int:
        """Block until snakeviz exits; its exit status. Ctrl-C raises ``KeyboardInterrupt``."""
        assert self._process is not None
        while True:
            try:
                return self._process.wait(timeout=poll)
            except subprocess.TimeoutExpired:
                continue

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate snakeviz (then kill it after ``timeout`` s) and reap it; idempotent."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=1)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        self._process = None


def _drain(stream: IO[str], sink: Callable[[str | None], object]) -> None:
    try:
        for line in stream:
            sink(line)
    except (OSError, ValueError):
        pass  # closed under us by stop()
    finally:
        sink(None)
