"""Which files a ``kb add`` takes, how they are named in the KB, and how their text is read.

Names: a path under the current directory is stored relative to it with ``/`` separators (so a
source prints as ``docs/guide.md``), any other path absolutely. Text: the known document suffixes
and every ``text/*`` type, plus anything that decodes as UTF-8 and holds no NUL byte; binary and
empty (or blank) files are skipped with the reason, never silently.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MAX_FILE_BYTES", "Candidate", "Decoded", "decode", "is_under", "key_for", "walk"]

TEXT_SUFFIXES = frozenset(
    {".md", ".markdown", ".mdx", ".rst", ".rest", ".txt", ".text", ".html", ".htm", ".py", ".pyi"}
)
# Folders nobody means to index when they add a project: VCS data, environments, caches.
_SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "site-packages"})
_SNIFF_BYTES = 8192
# Past this a file is a dump or a log, not a document; reading it whole would cost its size in RAM.
MAX_FILE_BYTES = 50_000_000


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file to consider: where it is on disk and its name in the KB."""

    path: Path
    key: str


@dataclass(frozen=True, slots=True)
class Decoded:
    """A file's text, or why it was skipped (``text`` is then ``None``)."""

    text: str | None
    skipped: str | None = None


def key_for(path: str | os.PathLike[str], cwd: str | None = None) -> str:
    """The KB's name for ``path``: relative to ``cwd`` with ``/`` when under it, else absolute."""
    base = os.path.abspath(cwd if cwd is not None else os.getcwd())
    absolute = os.path.abspath(path)
    if is_under(absolute, base):
        relative = os.path.relpath(absolute, base)
        return "." if relative == "." else relative.replace(os.sep, "/")
    return absolute.replace(os.sep, "/") if os.sep != "/" else absolute


def is_under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def walk(paths: Iterable[Path], exclude: Iterable[Path] = ()) -> Iterator[Candidate | str]:
    """Files under ``paths`` (folders recursively, sorted, hidden ones and caches left out), or
    a one-line note for a path that does not exist. ``exclude``: files never taken (the KB)."""
    excluded = {os.path.abspath(p) for p in exclude}
    seen: set[str] = set()
    for given in paths:
        if given.is_dir():
            for root, dirs, files in os.walk(given):
                dirs[:] = sorted(
                    d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS
                )
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    found = Path(root, name)
                    absolute = os.path.abspath(found)
                    if absolute in excluded or absolute in seen or not found.is_file():
                        continue
                    seen.add(absolute)
                    yield Candidate(found, key_for(found))
        elif given.is_file():
            absolute = os.path.abspath(given)
            if absolute not in excluded and absolute not in seen:
                seen.add(absolute)
                yield Candidate(given, key_for(given))
        elif given.exists():
            yield f"{given}: not a regular file"
        else:
            yield f"{given}: no such file or folder"


def decode(name: str, data: bytes) -> Decoded:
    """The text of a file named ``name`` holding ``data``, or why it is skipped."""
    if not data.strip():
        return Decoded(None, "empty")
    if b"\x00" in data[:_SNIFF_BYTES]:
        return Decoded(None, "binary")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        if not _declared_text(name):
            return Decoded(None, "binary (not UTF-8 text)")
        # A text file in a legacy encoding: keep what is readable rather than drop it.
        text = data.decode("utf-8", errors="replace")
    if "\x00" in text:
        return Decoded(None, "binary")
    return Decoded(text)


def _declared_text(name: str) -> bool:
    suffix = os.path.splitext(name)[1].lower()
    if suffix in TEXT_SUFFIXES:
        return True
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed is not None and guessed.startswith("text/")
