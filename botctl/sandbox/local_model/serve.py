"""llama.cpp's OpenAI-compatible server in this process, through ``xllamacpp`` (the child's job).

``xllamacpp.Server(params)`` loads the model and serves HTTP from its own threads; it returns once
the socket listens. Releasing the object stops the server, but with a stream in flight its
destructor can hang (xllamacpp 2026.10), so the child ends by exiting its process instead: there is
no ``stop`` here on purpose. Nothing here is async: the child's main thread only waits for a
signal, so llama.cpp has the process to itself.
"""

from __future__ import annotations

import errno
import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from botctl.sandbox.local_model.runtime import INSTALL_HINT, LocalModelError, ServerParams

__all__ = ["HEALTH_TIMEOUT", "LlamaServer", "import_xllamacpp"]

HEALTH_TIMEOUT = 20.0


def _check_port(port: int) -> None:
    """A clear error for a taken port: llama.cpp only says "Failed to init server" (its log says
    why, but errors must be one line). It binds with SO_REUSEADDR, so the check does too."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LocalModelError(f"port {port} is in use; pick another with --port") from None
            if exc.errno == errno.EACCES:
                raise LocalModelError(
                    f"no permission to listen on port {port}; pick one above 1023 with --port"
                ) from None
            raise LocalModelError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror})") from None


def import_xllamacpp() -> Any:
    try:
        import xllamacpp
    except ImportError as exc:
        # Installed but not loadable here (an old glibc, a broken install): say so in one line.
        reason = " ".join(str(exc).split())[:200]
        raise LocalModelError(
            f"llama.cpp's server (xllamacpp) cannot be loaded ({reason}): {INSTALL_HINT}"
        ) from None
    return xllamacpp


def _common_params(xllamacpp: Any, params: ServerParams) -> Any:
    p = xllamacpp.CommonParams()
    p.model.path = str(params.gguf)
    p.model_alias = {params.alias}
    p.hostnames = ["127.0.0.1"]  # loopback only, whatever the caller asks
    p.port = params.port
    p.n_ctx = params.ctx
    p.n_parallel = params.parallel
    p.n_predict = params.predict
    p.cpuparams.n_threads = params.threads
    p.cpuparams_batch.n_threads = params.threads
    p.offline = True  # never reach for a model hub
    p.verbosity = params.verbosity
    return p


def _wait_healthy(base_url: str, timeout: float) -> None:
    """Until ``/health`` answers 200: the server reports ready only once requests can be served."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise LocalModelError(f"llama.cpp's server did not answer /health within {timeout:g} s")
        time.sleep(0.05)


class LlamaServer:
    """A started llama.cpp server, serving until its process exits."""

    def __init__(self, params: ServerParams, health_timeout: float = HEALTH_TIMEOUT) -> None:
        _check_port(params.port)
        xllamacpp = import_xllamacpp()
        started = time.monotonic()
        try:
            self._server: Any = xllamacpp.Server(_common_params(xllamacpp, params))
        except RuntimeError:
            # Its log (stderr, errors only) says why; the parent quotes its last error line.
            raise LocalModelError(f"llama.cpp's server could not load {params.gguf.name}") from None
        self.params = params
        self.base_url = str(self._server.listening_address).rstrip("/")
        _wait_healthy(self.base_url, health_timeout)
        self.load_s = time.monotonic() - started
        self.version = str(getattr(xllamacpp, "__version__", "unknown"))

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (what clients and ``--llm-url`` take)."""
        return f"{self.base_url}/v1"

    def ready_line(self, pid: int) -> str:
        """The one JSON line the child prints once it serves."""
        return json.dumps(
            {
                "url": self.url,
                "base_url": self.base_url,
                "model": self.params.alias,
                "gguf": str(self.params.gguf),
                "pid": pid,
                "load_s": round(self.load_s, 3),
                "threads": self.params.threads,
                "parallel": self.params.parallel,
                "ctx": self.params.ctx,
                "predict": self.params.predict,
                "xllamacpp": self.version,
            }
        )
