"""Following the metrics file like ``tail -F``, yielding only complete lines.

The bot appends in batches while we read, so a reader meets a file that does not exist yet, a last
line whose newline has not landed, a file truncated to zero, or a file rotated away (renamed and
recreated); :class:`Follower` handles each.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# Between 0.1 and 0.25 s: quick enough to feel live, slow enough to cost nothing on 2 cores.
DEFAULT_POLL_INTERVAL = 0.2

_READ_CHUNK = 1 << 20


@dataclass
class _Open:
    file: BinaryIO
    ident: tuple[int, int]  # (st_dev, st_ino): what "the same file" means across a rename
    position: int = 0
    partial: bytes = b""


class Follower:
    """Follows a file by name, like ``tail -F``, yielding only complete lines.

    - The file may not exist yet: :meth:`poll` returns nothing until it appears.
    - A last line without its newline stays buffered until the newline arrives.
    - Truncation (size below our position) reopens from the start.
    - Rotation (the path now names another inode or device, or is a new file that replaced it)
      reads what the old file still holds, then the new file from its start. A path that vanished
      without a replacement keeps the old file open, as a writer may still append to it.

    Truncation followed by a rewrite past our position before the next poll cannot be seen by
    size alone; ``tail -F`` has the same blind spot.

    Lines come back without their ``\\n`` (a ``\\r`` before it is kept: that is the raw content)
    and blank lines are dropped. :attr:`dropped` counts unterminated fragments abandoned by a
    truncation or a rotation.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> None:
        self.path = Path(path)
        self.poll_interval = poll_interval
        self.dropped = 0
        self._open: _Open | None = None

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._open is not None:
            self._open.file.close()
            self._open = None

    @property
    def position(self) -> int:
        """Bytes consumed from the current file (complete lines plus the buffered partial one)."""
        return 0 if self._open is None else self._open.position

    def poll(self) -> list[bytes]:
        """One pass: the complete lines that arrived since the last call (possibly none)."""
        lines: list[bytes] = []
        current = self._open
        if current is None:
            current = self._try_open()
            if current is None:
                return lines
        if os.fstat(current.file.fileno()).st_size < current.position:
            self._restart(current)
        lines += self._read(current)

        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return lines  # renamed away and not recreated yet: keep the old file
        if (st.st_dev, st.st_ino) != current.ident:
            # Rotated: whatever the writer put in the old file before switching comes first.
            lines += self._read(current)
            if current.partial:
                self.dropped += 1
            self.close()
            fresh = self._try_open()
            if fresh is not None:
                lines += self._read(fresh)
        return lines

    def follow(
        self, stop: threading.Event | None = None, *, idle_timeout: float | None = None
    ) -> Iterator[bytes]:
        """Yield complete lines forever, sleeping :attr:`poll_interval` when nothing is new.

        Ends when ``stop`` is set, or after ``idle_timeout`` seconds without a new line (for tests
        and scripts); Ctrl-C surfaces as ``KeyboardInterrupt`` from the sleep.
        """
        for _index, line in follow_many(
            [self], stop, idle_timeout=idle_timeout, poll_interval=self.poll_interval
        ):
            yield line

    def _try_open(self) -> _Open | None:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - kept open across polls, closed in close()
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            return None
        st = os.fstat(f.fileno())
        self._open = _Open(file=f, ident=(st.st_dev, st.st_ino))
        return self._open

    def _restart(self, current: _Open) -> None:
        if current.partial:
            self.dropped += 1
        current.file.seek(0)
        current.position = 0
        current.partial = b""

    @staticmethod
    def _read(current: _Open) -> list[bytes]:
        lines: list[bytes] = []
        while True:
            chunk = current.file.read(_READ_CHUNK)
            if not chunk:
                break
            current.position += len(chunk)
            pieces = (current.partial + chunk).split(b"\n")
            current.partial = pieces.pop()
            lines.extend(piece for piece in pieces if piece.strip())
        return lines


def follow_many(
    followers: Sequence[Follower],
    stop: threading.Event | None = None,
    *,
    idle_timeout: float | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
) -> Iterator[tuple[int, bytes]]:
    """:meth:`Follower.follow` over several files: ``(index of the file, line)`` as lines land.

    Each pass polls every file in turn, so lines of one file keep their order and lines of two
    files come in the order their batches landed (within one poll interval).
    """
    idle_since = time.monotonic()
    while stop is None or not stop.is_set():
        got = [(index, line) for index, f in enumerate(followers) for line in f.poll()]
        if got:
            idle_since = time.monotonic()
            yield from got
            continue
        if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
            return
        if stop is not None:
            stop.wait(poll_interval)
        else:
            time.sleep(poll_interval)
