"""Sources into the prompt within a budget, and the sources lines under an answer."""

from __future__ import annotations

import pytest

from bot.kb import (
    CITE_INSTRUCTION,
    Hit,
    cited_numbers,
    estimate_tokens,
    prompt_block,
    sources_footer,
    sources_lines,
)

HITS = [
    Hit("docs/guide.md", 10, 42, 9.5, "Install with make install."),
    Hit("docs/faq.rst", 1, 9, 7.25, "Use /reset to clear the history."),
    Hit("docs/rules.txt", 3, 4, 2.0, "Be kind."),
]


def test_the_block_numbers_sources_with_path_and_lines() -> None:
    block = prompt_block(HITS, 1000)
    assert block.hits == HITS
    assert block.text.startswith(CITE_INSTRUCTION + "\n\n[1] docs/guide.md:10-42\n")
    assert "[2] docs/faq.rst:1-9\nUse /reset to clear the history." in block.text
    assert "[3] docs/rules.txt:3-4\nBe kind." in block.text


def test_the_block_keeps_to_the_token_budget_and_renumbers_what_it_keeps() -> None:
    big = Hit("docs/big.md", 1, 80, 8.0, "x" * 4000)
    hits = [HITS[0], big, HITS[1]]
    budget = estimate_tokens(CITE_INSTRUCTION) + 40
    block = prompt_block(hits, budget)
    assert block.hits == [HITS[0], HITS[1]]  # the big one did not fit; the next one did
    assert "[2] docs/faq.rst:1-9" in block.text and "big.md" not in block.text
    assert estimate_tokens(block.text) <= budget


def test_a_first_hit_too_big_for_the_budget_is_cut_rather_than_dropped() -> None:
    big = Hit("docs/big.md", 1, 80, 8.0, "word " * 2000)
    budget = estimate_tokens(CITE_INSTRUCTION) + 100
    block = prompt_block([big], budget)
    assert block.hits == [big]
    assert block.text.endswith(" […]")
    assert estimate_tokens(block.text) <= budget


def test_no_hits_or_no_room_gives_no_block() -> None:
    assert prompt_block([], 1000).text == ""
    assert prompt_block(HITS, 5).hits == []


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Run make install [1].", [1]),
        ("See [2] and [1], and again [2].", [2, 1]),
        ("Both say so [1][3].", [1, 3]),
        ("As the docs put it [1, 3].", [1, 3]),
        ("Nothing cited here.", []),
        ("Out of range [7] and [0].", []),
        ("In code `items[1]` and ```\nrow[2]\n``` are not citations.", []),
        ("An index x[1] is not a citation either.", []),
    ],
)
def test_cited_numbers(answer: str, expected: list[int]) -> None:
    assert cited_numbers(answer, 3) == expected


def test_sources_lines_list_only_what_the_answer_cites() -> None:
    assert sources_lines("Use /reset [2].", HITS) == ["[2] docs/faq.rst:1-9"]
    assert sources_lines("[3] then [1]", HITS) == [
        "[1] docs/guide.md:10-42",
        "[3] docs/rules.txt:3-4",
    ]


def test_sources_lines_list_every_retrieved_source_when_none_is_cited() -> None:
    assert sources_lines("An answer without citations.", HITS) == [
        "[1] docs/guide.md:10-42",
        "[2] docs/faq.rst:1-9",
        "[3] docs/rules.txt:3-4",
    ]
    # A citation of a source that was not retrieved lists nothing made up.
    assert sources_lines("As [9] says.", HITS[:1]) == ["[1] docs/guide.md:10-42"]


def test_the_footer() -> None:
    assert sources_footer("Use /reset [2].", HITS) == "Sources:\n[2] docs/faq.rst:1-9"
    assert sources_footer("anything", []) == ""


def test_hit_json_shape() -> None:
    assert HITS[1].to_json() == {
        "source": "docs/faq.rst",
        "lines": [1, 9],
        "score": 7.25,
        "text": "Use /reset to clear the history.",
    }
