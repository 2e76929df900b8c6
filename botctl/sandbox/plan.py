"""The simulated users' schedule: which question, how many askers at once, and when, from a seed.

A share ``duplicate_ratio`` of the messages repeat a question another user is asking at that very
moment: a *burst* of 2-4 identical questions from different users, all posted at once. The schedule
is an endless, reproducible iterator of :class:`Burst`; ``users.py`` posts it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_QUESTIONS",
    "MAX_DUPLICATE_RATIO",
    "Burst",
    "burst_shape",
    "plan_counts",
    "plan_traffic",
]

DEFAULT_QUESTIONS: tuple[str, ...] = (
    "What is the capital of France?",
    "How do I reverse a list in Python?",
    "Explain recursion in one paragraph.",
    "What is the difference between a process and a thread?",
    "Give me three tips for writing clear commit messages.",
    "What does HTTP status 429 mean?",
    "How does a hash map work?",
    "What is a race condition?",
    "Summarise the rules of chess in a few sentences.",
    "Why is the sky blue?",
    "What is the time complexity of binary search?",
    "How do I read a file line by line in Python?",
    "What is an LRU cache?",
    "Explain what a websocket is.",
    "What are Python's asyncio tasks for?",
    "How do I center a div in CSS?",
    "What is the difference between TCP and UDP?",
    "Write a haiku about debugging.",
    "What is a closure in JavaScript?",
    "How many bytes are in a kilobyte?",
    "What is dependency injection?",
    "Explain Big O notation briefly.",
    "What is a good name for a pet robot?",
    "How do I undo the last git commit?",
    "What is the boiling point of water at sea level?",
    "What does idempotent mean for an API?",
    "How does garbage collection work in Python?",
    "What is the Pythagorean theorem?",
    "Suggest a quick vegetarian dinner.",
    "What is the difference between a list and a tuple?",
    "Explain what a mutex does.",
    "What is JSON Lines?",
    "How do I profile a slow Python program?",
    "What is a flamegraph?",
    "What is exponential backoff?",
    "Why are unit tests useful?",
    "What is the speed of light?",
    "How do I make a good cup of tea?",
    "What is a deadlock?",
    "What does SHA-256 do?",
)

# The first asker of a burst is not a duplicate; with at most 4 askers, 3 in 4 is the ceiling.
MAX_DUPLICATE_RATIO = 0.75


@dataclass(frozen=True, slots=True)
class Burst:
    """``size`` users ask ``question`` at once, ``delay`` seconds after the previous burst."""

    delay: float
    question: str
    size: int  # 1: a single question; 2-4: one question and its duplicates

    @property
    def duplicates(self) -> int:
        return self.size - 1


def burst_shape(duplicate_ratio: float) -> tuple[float, tuple[int, ...], tuple[float, ...]]:
    """(probability that an arrival is a burst, burst sizes, their weights) giving ``duplicate_ratio``.

    With burst sizes uniform over 2, 3, 4 (mean 3) and burst probability ``p``, duplicates are
    ``2p / (1 + 2p)`` of all messages, so ``p = r / (2 (1 - r))``. Above 2/3 every arrival is a burst
    and sizes 3 and 4 are mixed to mean ``1 / (1 - r)``, up to the 0.75 ceiling.
    """
    r = duplicate_ratio
    if not 0.0 <= r <= 1.0 or math.isnan(r):
        raise ValueError(f"duplicate_ratio must be between 0 and 1, not {duplicate_ratio}")
    if r == 0.0:
        return 0.0, (1,), (1.0,)
    if r <= 2.0 / 3.0:
        return r / (2.0 * (1.0 - r)), (2, 3, 4), (1.0, 1.0, 1.0)
    mean = 4.0 if r >= MAX_DUPLICATE_RATIO else 1.0 / (1.0 - r)
    p4 = min(1.0, mean - 3.0)
    return 1.0, (3, 4), (1.0 - p4, p4)


def plan_traffic(
    *,
    seed: int,
    rate: float,
    duplicate_ratio: float,
    questions: Sequence[str] = DEFAULT_QUESTIONS,
) -> Iterator[Burst]:
    """The endless, reproducible schedule of bursts for ``seed``.

    Gaps are Gamma(size, 1/rate): a burst of ``size`` messages is followed by the time ``size``
    Poisson arrivals would take, so messages (not bursts) average ``rate`` per second.
    """
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"rate must be a positive number of messages per second, not {rate}")
    if not questions:
        raise ValueError("questions must not be empty")
    p_burst, sizes, weights = burst_shape(duplicate_ratio)
    rng = random.Random(seed)
    scale = 1.0 / rate
    while True:
        size = rng.choices(sizes, weights)[0] if rng.random() < p_burst else 1
        delay = rng.gammavariate(size, scale)
        yield Burst(delay, rng.choice(questions), size)


def plan_counts(
    *,
    seed: int,
    duplicate_ratio: float,
    messages: int,
    rate: float = 1.0,
    questions: Sequence[str] = DEFAULT_QUESTIONS,
) -> tuple[int, int]:
    """(messages, duplicates) that a generator stopped at ``messages`` posts for ``seed``."""
    sent = duplicates = 0
    for burst in plan_traffic(
        seed=seed, rate=rate, duplicate_ratio=duplicate_ratio, questions=questions
    ):
        if sent >= messages:
            break
        size = min(burst.size, messages - sent)
        sent += size
        duplicates += size - 1
    return sent, duplicates
