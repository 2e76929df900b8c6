"""The knowledge-base benchmark's own code, at toy sizes: its corpus, questions and report."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.kb.chunker import chunk_lines, kind_of, split_lines
from botctl.bench.kb import SECTIONS_PER_FILE, make_corpus, run_kb_bench, vocabulary


def test_the_synthetic_corpus_has_one_chunk_per_section(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "docs", 2 * SECTIONS_PER_FILE, questions=20)
    assert len(corpus.files) == 2
    for path in corpus.files:
        lines = split_lines(path.read_text("utf-8"))
        assert len(chunk_lines(lines, kind_of(path.name))) == SECTIONS_PER_FILE
    assert len(corpus.topic) == len(corpus.common) == 20
    rank = {w: i for i, w in enumerate(vocabulary())}
    for question in corpus.topic:
        words = question.text.removeprefix("how do I ").removesuffix("?").split()
        assert len(words) == 3 and max(rank[w] for w in words) == rank[words[0]]


@pytest.mark.integration
def test_the_benchmark_reports_every_size_and_both_budgets() -> None:
    r = run_kb_bench((SECTIONS_PER_FILE, 3 * SECTIONS_PER_FILE), questions=15)
    assert set(r["sizes"]) == {SECTIONS_PER_FILE, 3 * SECTIONS_PER_FILE}
    for size, figures in r["sizes"].items():
        assert figures["chunks"] == size
        assert figures["topic"]["found_in_top5"] >= 0.8  # the questions find their sections
        assert figures["common"]["found_in_top5"] is None
    assert [b.verdict for b in r["budgets"]] != ["not measured", "not measured"]
    assert len(r["budgets"]) == 2
