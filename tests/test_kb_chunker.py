"""The chunker: exact 1-based inclusive line ranges, headings, code blocks, overlap, bounds."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.kb.chunker import MAX_CHARS, Chunk, chunk_lines, kind_of, split_lines

CORPUS = Path(__file__).parent / "data" / "kb"


def chunks_of(text: str, kind: str = "markdown", max_chars: int = MAX_CHARS) -> list[Chunk]:
    return chunk_lines(split_lines(text), kind, max_chars)


def ranges(chunks: list[Chunk]) -> list[tuple[int, int]]:
    return [(c.start, c.end) for c in chunks]


def test_split_lines_numbers_lines_as_an_editor_does() -> None:
    assert split_lines("a\nb\n") == ["a", "b"]
    assert split_lines("a\nb") == ["a", "b"]
    assert split_lines("a\r\nb\r\n") == ["a", "b"]
    assert split_lines("a\n\n") == ["a", ""]
    # Form feeds and Unicode line separators stay inside a line: editors and `nl` agree.
    assert split_lines("a\x0cb\u2028c\n") == ["a\x0cb\u2028c"]


def test_kind_of_picks_rules_by_suffix() -> None:
    assert [
        kind_of(n) for n in ("a.md", "b.RST", "c.htm", "d.py", "e.txt", "f.toml", "Makefile")
    ] == [
        "markdown",
        "rst",
        "html",
        "python",
        "markdown",
        "plain",
        "plain",
    ]


def test_first_and_last_lines_are_exact_with_or_without_final_newline() -> None:
    body = "first line\nsecond line\n\nthird paragraph"
    assert ranges(chunks_of(body)) == [(1, 4)]
    assert ranges(chunks_of(body + "\n")) == [(1, 4)]
    # Leading and trailing blank lines belong to no chunk.
    assert ranges(chunks_of("\n\n  \nonly line\n\n\n")) == [(4, 4)]


def test_headings_start_chunks_and_carry_the_heading_trail() -> None:
    text = "# Title\n\nintro\n\n## Install\n\npip install x\n\n### From source\n\nmake\n\n## Use\n\nrun it\n"
    got = chunks_of(text)
    assert ranges(got) == [(1, 3), (5, 7), (9, 11), (13, 15)]
    assert [c.title for c in got] == [
        "Title",
        "Title › Install",
        "Title › Install › From source",
        "Title › Use",
    ]


def test_a_heading_followed_by_a_subheading_stays_with_the_content() -> None:
    got = chunks_of("# Book\n## Chapter\n\ntext\n")
    assert ranges(got) == [(1, 4)]
    assert got[0].title == "Book › Chapter"


def test_a_comment_inside_a_fence_is_not_a_heading() -> None:
    text = "## Install\n\n```sh\n# not a heading\nmake install\n```\n\nafter\n"
    assert ranges(chunks_of(text)) == [(1, 8)]


def test_corpus_line_ranges_are_exact() -> None:
    def of(name: str) -> list[tuple[int, int]]:
        return ranges(chunks_of((CORPUS / name).read_text("utf-8"), kind_of(name)))

    # guide.md: the fenced block (lines 11-16, with a blank line inside) stays whole.
    assert of("guide.md") == [(1, 4), (6, 16), (18, 22), (24, 27)]
    # rst: overlined title, underlined sections, a `::` literal block, a directive at the end.
    assert of("faq.rst") == [(1, 9), (11, 15), (17, 32)]
    assert of("community/api.html") == [(1, 7), (8, 9), (11, 18), (20, 23)]
    assert of("cooldown.py") == [(1, 7), (10, 22), (25, 28)]
    assert of("community/cafe.md") == [(1, 4), (6, 8), (10, 12)]


def test_a_code_block_is_never_cut_when_it_fits() -> None:
    prose = "word " * 150  # ~750 characters
    code = "\n".join(f"x{i} = {i}" for i in range(60))  # ~500 characters over 60 lines
    text = f"{prose}\n\n```python\n{code}\n```\n\n{prose}\n"
    got = chunks_of(text)
    fence_start, fence_end = 3, 3 + 61
    for chunk in got:
        inside = fence_start <= chunk.start <= fence_end or fence_start <= chunk.end <= fence_end
        if inside:
            assert chunk.start <= fence_start and chunk.end >= fence_end, ranges(got)
    assert any(c.start <= fence_start and c.end >= fence_end for c in got)


def test_a_code_block_longer_than_the_bound_is_cut_at_lines_with_overlap() -> None:
    code = "\n".join(f"value_{i:03d} = compute({i})" for i in range(200))  # ~5,000 characters
    lines = split_lines(f"```\n{code}\n```\n")
    got = chunk_lines(lines, "markdown", 1200)
    assert len(got) >= 4
    assert got[0].start == 1 and got[-1].end == len(lines)
    for before, after in itertools.pairwise(got):
        assert after.start == before.end  # one line repeated across the cut
    for chunk in got:
        assert len("\n".join(lines[chunk.start - 1 : chunk.end])) <= 1200


def test_a_section_split_for_size_repeats_its_last_prose_lines() -> None:
    paragraphs = [
        f"paragraph {i} " + "lorem ipsum " * 40 + f"\nend of paragraph {i}." for i in range(4)
    ]
    text = "## Long\n\n" + "\n\n".join(paragraphs) + "\n"
    lines = split_lines(text)
    got = chunk_lines(lines, "markdown", 1200)
    assert len(got) >= 2
    for before, after in itertools.pairwise(got):
        repeated = set(range(after.start, after.end + 1)) & set(range(before.start, before.end + 1))
        assert 1 <= len(repeated) <= 2
        assert all(lines[n - 1].strip() for n in repeated)
    assert all(c.title == "Long" for c in got)


def test_a_single_line_longer_than_the_bound_is_its_own_chunk() -> None:
    long_line = "x" * 5000
    got = chunks_of(f"intro\n\n{long_line}\n\noutro\n")
    assert (3, 3) in ranges(got)


def test_html_headings_pre_blocks_and_block_tags() -> None:
    text = (
        "<h1>API</h1>\n<p>intro</p>\n<h2>Stats</h2>\n<p>counts</p>\n<pre>\na\n\nb\n</pre>\n"
        "<h2>Health</h2>\n<p>ok</p>\n"
    )
    got = chunks_of(text, "html")
    assert ranges(got) == [(1, 2), (3, 9), (10, 11)]
    assert got[1].title == "API › Stats"


def test_python_top_level_definitions_with_decorators_are_headings() -> None:
    text = '"""Doc."""\n\nimport x\n\n\n@decorator\ndef first():\n    return 1\n\n\nclass Second:\n    def method(self):\n        pass\n'
    got = chunks_of(text, "python")
    assert ranges(got) == [(1, 3), (6, 8), (11, 13)]
    assert [c.title for c in got] == ["", "first", "Second"]


def test_unicode_is_intact_and_counted_in_characters() -> None:
    text = "# 東京\n\n" + "☕" * 1000 + "\n\n" + "é" * 300 + "\n"
    lines = split_lines(text)
    got = chunk_lines(lines, "markdown", 1200)
    assert ranges(got) == [(1, 3), (5, 5)]
    assert got[0].title == "東京"


# Markdown-ish documents: headings, fences, prose, blank lines, long lines.
_line = st.one_of(
    st.just(""),
    st.just("```"),
    st.just("~~~"),
    st.builds(lambda n, t: "#" * n + " " + t, st.integers(1, 4), st.text("abc é東", max_size=12)),
    st.text("abc dé東\t-=*#`", max_size=90),
    st.text("xyz", min_size=300, max_size=1500),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_line, max_size=80), st.sampled_from(["markdown", "rst", "html", "python", "plain"])
)
def test_chunks_cover_every_line_in_order_within_bounds(raw: list[str], kind: str) -> None:
    lines = split_lines("\n".join(raw))
    got = chunk_lines(lines, kind, 400)
    covered: set[int] = set()
    previous_start = 0
    for chunk in got:
        assert 1 <= chunk.start <= chunk.end <= len(lines)
        assert chunk.start >= previous_start  # in order
        previous_start = chunk.start
        assert lines[chunk.start - 1].strip() and lines[chunk.end - 1].strip()
        if chunk.end > chunk.start:  # only a heading kept with its block goes past the bound
            assert len("\n".join(lines[chunk.start - 1 : chunk.end])) <= 2 * 400
        covered.update(range(chunk.start, chunk.end + 1))
    assert {n for n in range(1, len(lines) + 1) if lines[n - 1].strip()} <= covered
