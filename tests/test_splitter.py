from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.splitter import split_message


def test_short_text_is_one_part() -> None:
    assert split_message("hello") == ["hello"]
    assert split_message("") == []


def test_splits_on_lines_and_rejoins() -> None:
    lines = [f"line {i} " + "x" * 40 for i in range(120)]
    text = "\n".join(lines)
    parts = split_message(text)
    assert len(parts) >= 3
    assert all(len(p) <= 2000 for p in parts)
    assert "\n".join(parts) == text  # cut on line breaks only


def test_splits_on_words_when_no_line_break() -> None:
    text = " ".join(["word"] * 1000)
    parts = split_message(text)
    assert all(len(p) <= 2000 for p in parts)
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in parts)
    assert " ".join(parts) == text


def test_hard_cut_when_no_space() -> None:
    text = "x" * 4500
    parts = split_message(text)
    assert [len(p) for p in parts] == [1996, 1996, 508]
    assert "".join(parts) == text


def test_code_block_is_closed_and_reopened() -> None:
    text = "intro\n```python\n" + "print('hi')\n" * 300 + "```\nafter"
    parts = split_message(text)
    assert len(parts) >= 2
    for part in parts:
        assert len(part) <= 2000
        assert part.count("```") % 2 == 0, "every part renders its code block on its own"
    assert parts[1].startswith("```python\n")


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab \n`"), max_size=6000))
def test_parts_always_fit(text: str) -> None:
    parts = split_message(text)
    assert all(0 < len(p) <= 2000 for p in parts)
    # Prefix-stable: splitting a longer text never changes the earlier full parts.
    longer = split_message(text + "tail " * 500)
    assert longer[: max(0, len(parts) - 1)] == parts[: max(0, len(parts) - 1)]
