"""The one percentile the project reports: nearest rank, so every figure is an observed value.

The run summary, the sandbox users, ``botctl metrics summary`` and the benchmarks all use it, so the
same latencies give the same p50/p95/p99 wherever they are printed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile of already sorted values by nearest rank; ``None`` when empty.

    Nearest rank: the smallest value with at least ``q`` % of the values less than or equal to it,
    ``sorted_values[ceil(q / 100 * n) - 1]``. No interpolation: a latency report shows latencies
    that happened.
    """
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(q / 100.0 * n))
    return sorted_values[min(rank, n) - 1]
