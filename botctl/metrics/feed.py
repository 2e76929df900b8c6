"""The events of several metrics files as they land, for live views (``metrics top``).

:class:`Feed` polls one :class:`~botctl.metrics.follow.Follower` per file (so it waits for files
that do not exist yet and survives truncation and rotation, as ``tail -F`` does) and turns complete
lines into :class:`~botctl.metrics.events.Record`\\ s; :meth:`Feed.first` reads what the files hold
already and keeps the runs asked for, exactly as ``metrics tail`` and ``summary`` choose them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from botctl.metrics.events import Reading, Record, merge, parse_line, select_runs
from botctl.metrics.follow import Follower


class Feed:
    """Complete, parsed lines of ``paths`` as they land; :attr:`skipped` counts the others."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self.followers = [Follower(path) for path in self.paths]
        self.skipped = 0

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for follower in self.followers:
            follower.close()

    def missing(self) -> list[Path]:
        """The files not opened yet (they do not exist, or cannot be read)."""
        return [f.path for f in self.followers if f.position == 0 and not f.path.is_file()]

    def poll(self) -> list[Record]:
        """What landed in every file since the last call, merged by time."""
        per_file: list[list[Record]] = []
        for index, follower in enumerate(self.followers):
            records: list[Record] = []
            for raw in follower.poll():
                event = parse_line(raw)
                if event is None:
                    self.skipped += 1
                else:
                    records.append(Record(event, raw, index))
            per_file.append(records)
        return merge(per_file)

    def first(self, run: str | None = None, everything: bool = False) -> list[Record]:
        """The first poll, reduced to the runs asked for (the latest of each file by default).

        A ``run`` that is not in the files yet is no error here: a live view waits for it.
        """
        records = self.poll()
        if not records or (run is not None and not any(r.run == run for r in records)):
            return []
        return select_runs(Reading(self.paths, records, 0), run, everything).records
