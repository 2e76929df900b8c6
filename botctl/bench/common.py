"""Pieces every benchmark shares: interleaved rounds, medians, a Zipf sampler, the machine.

Nothing here imports the bot, discord or aiohttp, so the pure parts are cheap to test.
"""

from __future__ import annotations

import bisect
import gc
import itertools
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = [
    "ZipfSampler",
    "gc_paused",
    "interleaved",
    "machine",
    "median",
    "ratio",
    "rotated",
]

T = TypeVar("T")


def median(values: Sequence[float]) -> float:
    """The median, or ``nan`` for no values (a row that measured nothing shows as such)."""
    return float(statistics.median(values)) if values else float("nan")


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; ``nan`` rather than an exception when the denominator is 0."""
    if denominator == 0 or denominator != denominator:
        return float("nan")
    return numerator / denominator


def rotated(items: Sequence[T], round_index: int) -> list[T]:
    """``items`` rotated by the round, so each variant takes every position in turn.

    Running variants always in the same order would give the first one a colder (or warmer) cache
    and the same slice of any periodic background load, every round.
    """
    if not items:
        return []
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


def interleaved(
    variants: Sequence[tuple[str, Callable[[], float]]], rounds: int
) -> dict[str, list[float]]:
    """Run every variant once per round, in a rotating order; each call returns one sample."""
    samples: dict[str, list[float]] = {name: [] for name, _ in variants}
    for r in range(rounds):
        for name, run in rotated(variants, r):
            samples[name].append(run())
    return samples


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection inside a timed section (as ``timeit`` does): a collection landing in
    one variant's window and not another's would be noise, not a property of either."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class ZipfSampler:
    """Ranks ``0..n-1`` drawn with probability proportional to ``1 / (rank + 1) ** s``.

    Reproducible from ``seed``; draws are O(log n) by bisection over the cumulative weights.
    """

    def __init__(self, n: int, s: float = 1.0, seed: int = 0) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n!r}")
        if not s > 0:
            raise ValueError(f"s must be > 0, got {s!r}")
        self.n = n
        self.s = s
        self._cum: list[float] = list(
            itertools.accumulate(1.0 / math.pow(k + 1, s) for k in range(n))
        )
        self._rng = random.Random(seed)

    @property
    def total(self) -> float:
        return self._cum[-1]

    def probability(self, rank: int) -> float:
        return (1.0 / math.pow(rank + 1, self.s)) / self.total

    def sample(self, k: int) -> list[int]:
        cum, total, rnd = self._cum, self._cum[-1], self._rng.random
        last = self.n - 1
        # min(): a draw of exactly `total` (rounding) must not index past the end.
        return [min(bisect.bisect_right(cum, rnd() * total), last) for _ in range(k)]


def machine() -> dict[str, Any]:
    """What the figures were measured on: they are ratios, but the reader should know."""
    load: list[float] | None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(terse=True),
        "loadavg": load,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
