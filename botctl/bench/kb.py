"""The knowledge base at scale: ``kb add`` throughput and ``kb search`` latency at 1k-100k chunks.

In-process (no CLI start-up), on a synthetic corpus written to a temporary folder: markdown files
of sections (a heading and two paragraphs, one chunk each, ~750 characters) whose words follow a
Zipf law (s = 1.07) over 30,000 made-up words, as words in documentation do. The corpora are
nested: the 1k-chunk corpus is the first files of the 10k one, which are the first of the 100k
one, so every size answers the same questions.

Questions: "topic" questions, as people ask them — a section's rarest word (what it is about)
plus two other words of it, wrapped in ``how do I ... ?``; and, reported apart, questions made
only of the 200 most common words (no topic: the case that still grows with the KB). Latency is
measured per question at each size in a rotating order (so load hits every size alike), after a
warm-up pass, with the cyclic GC paused. The share of topic questions whose own section comes
back in the top 5 shows the bounded plan keeps the answers; "plain" runs the same questions
through ``bm25()`` over every match (no plan), for comparison.

Budgets: search p95 at 100k chunks within 3x of p95 at 1k; re-adding the unchanged 100k corpus
under 1/10 of its first add.
"""

from __future__ import annotations

import itertools
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.percentile import percentile
from botctl.bench.budgets import Budget
from botctl.bench.common import gc_paused, ratio, rotated

__all__ = ["KB_SIZES", "Question", "make_corpus", "run_kb_bench", "vocabulary"]

KB_SIZES = (1_000, 10_000, 100_000)
SECTIONS_PER_FILE = 100
SEARCH_P95_BUDGET = 3.0
READD_BUDGET = 0.1
_VOCABULARY = 30_000
_ZIPF_S = 1.07
_COMMON = 200
_SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ne",
    "ru",
    "ta",
    "vo",
    "shi",
    "pe",
    "zu",
    "ba",
    "gri",
    "tor",
    "fen",
    "dal",
    "mos",
    "quin",
    "el",
    "ar",
    "ix",
]


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    source: str  # the file and first line of the section it was drawn from
    start: int


@dataclass(slots=True)
class Corpus:
    folder: Path
    files: list[Path]
    topic: list[Question] = field(default_factory=list)
    common: list[Question] = field(default_factory=list)


def vocabulary(n: int = _VOCABULARY, seed: int = 1) -> list[str]:
    """``n`` distinct made-up words; the list order is their frequency rank."""
    rng = random.Random(seed)
    words: dict[str, None] = {}
    while len(words) < n:
        words.setdefault("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))), None)
    return list(words)


def make_corpus(
    folder: Path, chunks: int, questions: int = 200, seed: int = 2, asked_from: int = 1_000
) -> Corpus:
    """Files of :data:`SECTIONS_PER_FILE` sections (one chunk each) making ``chunks`` chunks, and
    questions drawn from the first ``asked_from`` sections (the smallest KB: in every size)."""
    words = vocabulary()
    rank = {w: i for i, w in enumerate(words)}
    weights = list(itertools.accumulate(1.0 / (k + 1) ** _ZIPF_S for k in range(len(words))))
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(folder, [])
    sections: list[tuple[Path, int, list[str]]] = []
    for f in range(max(1, chunks // SECTIONS_PER_FILE)):
        path = folder / f"doc{f:05d}.md"
        lines: list[str] = []
        for _ in range(SECTIONS_PER_FILE):
            heading = rng.choices(words, cum_weights=weights, k=3)
            body = [rng.choices(words, cum_weights=weights, k=45) for _ in range(2)]
            if f < max(1, asked_from // SECTIONS_PER_FILE):
                sections.append((path, len(lines) + 1, heading + body[0] + body[1]))
            lines += [
                "## " + " ".join(heading),
                "",
                " ".join(body[0]) + ".",
                "",
                " ".join(body[1]) + ".",
                "",
            ]
        path.write_text("\n".join(lines), "utf-8")
        corpus.files.append(path)
    for path, start, section in rng.sample(sections, min(questions, len(sections))):
        rarest = max(section, key=lambda w: rank[w])
        others = rng.sample([w for w in section if w != rarest], 2)
        where = path.as_posix()  # as the KB names it when the add runs in the corpus' parent
        corpus.topic.append(Question(f"how do I {rarest} {others[0]} {others[1]}?", where, start))
        common = rng.sample(words[:_COMMON], 3)
        corpus.common.append(Question(f"how do I {' '.join(common)}?", where, start))
    return corpus


def run_kb_bench(
    sizes: tuple[int, ...] = KB_SIZES,
    questions: int = 200,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Add and search figures per size, and the two budgets (see the module docstring)."""
    from bot.kb import KnowledgeBase, add_paths

    say = progress or (lambda _message: None)
    results: dict[str, Any] = {"sizes": {}, "questions": questions}
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="botctl-kb-bench-") as tmp:
        root = Path(tmp)
        os.chdir(root)  # the KB names files relative to the current directory, as `kb add` does
        say(f"writing a {max(sizes):,}-chunk synthetic corpus")
        corpus = make_corpus(Path("docs"), max(sizes), questions, asked_from=min(sizes))
        stores: dict[int, KnowledgeBase] = {}
        try:
            for size in sizes:
                say(f"kb add: {size:,} chunks")
                files = corpus.files[: max(1, size // SECTIONS_PER_FILE)]
                store = KnowledgeBase.open(root / f"kb-{size}.sqlite", create=True)
                stores[size] = store
                first = add_paths(store.conn, files)
                again = add_paths(store.conn, files)
                results["sizes"][size] = {
                    "chunks": store.stats().chunks,
                    "megabytes": first.bytes_read / 1e6,
                    "add_s": first.seconds,
                    "add_mb_per_s": ratio(first.bytes_read / 1e6, first.seconds),
                    "readd_s": again.seconds,
                    "readd_over_add": ratio(again.seconds, first.seconds),
                }
            runs = (("topic", corpus.topic), ("common", corpus.common), ("plain", corpus.topic))
            for style, asked in runs:
                say(f"kb search: {len(asked)} {style} questions at each size")
                for store in stores.values():
                    # "plain": every term gates, so bm25() ranks all matches (no plan): the baseline.
                    store.gate_rows = 10**12 if style == "plain" else KnowledgeBase.gate_rows
                latencies, found = _search_rounds(stores, asked)
                for size in sizes:
                    lat = sorted(latencies[size])
                    results["sizes"][size][style] = {
                        "p50_ms": (percentile(lat, 50) or 0.0) * 1e3,
                        "p95_ms": (percentile(lat, 95) or 0.0) * 1e3,
                        # A common-words question is not about its section: no "found" figure.
                        "found_in_top5": found[size] / len(asked) if style != "common" else None,
                    }
        finally:
            for store in stores.values():
                store.close()
            os.chdir(here)
    small, large = results["sizes"][min(sizes)], results["sizes"][max(sizes)]
    results["search_p95_ratio"] = ratio(large["topic"]["p95_ms"], small["topic"]["p95_ms"])
    results["common_p95_ratio"] = ratio(large["common"]["p95_ms"], small["common"]["p95_ms"])
    results["plain_p95_ratio"] = ratio(large["plain"]["p95_ms"], small["plain"]["p95_ms"])
    results["readd_ratio"] = large["readd_over_add"]
    results["budgets"] = kb_budgets(results, min(sizes), max(sizes))
    return results


def _search_rounds(
    stores: dict[int, Any], asked: list[Question]
) -> tuple[dict[int, list[float]], dict[int, int]]:
    latencies: dict[int, list[float]] = {size: [] for size in stores}
    found = dict.fromkeys(stores, 0)
    for question in asked:  # warm-up: page cache and statement cache, not measured
        for store in stores.values():
            store.search(question.text, 5)
    with gc_paused():
        for i, question in enumerate(asked):
            for size, store in rotated(list(stores.items()), i):
                started = time.perf_counter()
                hits = store.search(question.text, 5)
                latencies[size].append(time.perf_counter() - started)
                if any(h.source == question.source and h.start == question.start for h in hits):
                    found[size] += 1
    return latencies, found


def kb_budgets(results: dict[str, Any], small: int, large: int) -> list[Budget]:
    sizes = results["sizes"]
    return [
        Budget(
            f"kb search p95 at {large:,} chunks over p95 at {small:,} (topic questions)",
            results["search_p95_ratio"],
            "<=",
            SEARCH_P95_BUDGET,
            detail=(
                f"{sizes[large]['topic']['p95_ms']:.2f} vs {sizes[small]['topic']['p95_ms']:.2f} ms; "
                f"plain bm25 over every match: {results['plain_p95_ratio']:.1f}x; questions of "
                f"common words only: {results['common_p95_ratio']:.1f}x (no budget)"
            ),
        ),
        Budget(
            f"kb re-add of the unchanged {large:,}-chunk corpus over its first add",
            results["readd_ratio"],
            "<=",
            READD_BUDGET,
            detail=f"{sizes[large]['readd_s']:.2f} vs {sizes[large]['add_s']:.2f} s",
        ),
    ]
