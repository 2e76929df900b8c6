"""Splitting a document into chunks that know their exact 1-based, inclusive line range.

A chunk's text is always exactly the lines ``start..end`` of its file, so ``path:start-end`` in a
reply points at what the model read. Splitting goes: headings (markdown ``#`` and setext, rst
underlines, html ``<h1-6>``, top-level ``def``/``class`` in Python) start a new chunk; within a
section, paragraphs (blank-line separated) are packed greedily up to :data:`MAX_CHARS`; a fenced
code block (or rst literal block, or html ``<pre>``) is never cut unless it alone is longer than
the bound; when a section is split for size, the next chunk repeats the last line or two of prose
(:data:`OVERLAP_LINES`) so that a sentence cut at the boundary is still found whole.

Why 1,200 characters at most: about 300 tokens, so five sources fit a 2k-token prompt budget with
room for the question; small enough that BM25 scores a passage rather than a whole page, large
enough to keep a paragraph with its code example (most of a README's sections fit whole).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_CHARS", "OVERLAP_LINES", "Chunk", "chunk_lines", "kind_of", "split_lines"]

MAX_CHARS = 1200
OVERLAP_LINES = 2
_OVERLAP_MAX_CHARS = 300

_KINDS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".txt": "markdown",
    ".text": "markdown",
    ".rst": "rst",
    ".rest": "rst",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".py": "python",
    ".pyi": "python",
}

_MD_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT_MD = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_RST_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}[ \t]*$")
_HTML_HEADING = re.compile(r"^\s*<h([1-6])\b[^>]*>(.*?)(?:</h\1\s*>|$)", re.IGNORECASE)
_HTML_BLOCK = re.compile(
    r"^\s*<(?:p|div|section|article|ul|ol|li|table|tr|blockquote|dl|dt|dd|header|footer|h[1-6])\b",
    re.IGNORECASE,
)
_HTML_PRE_OPEN = re.compile(r"^\s*<pre\b", re.IGNORECASE)
_HTML_PRE_CLOSE = re.compile(r"</pre\s*>", re.IGNORECASE)
_RST_DIRECTIVE = re.compile(r"^\s*\.\. [\w:-]+::")
_PY_HEADING = re.compile(r"^(?:async[ \t]+def|def|class)[ \t]+(\w+)")
_TAG = re.compile(r"<[^>]*>")


@dataclass(frozen=True, slots=True)
class Chunk:
    """Lines ``start..end`` (1-based, inclusive) and the heading trail they sit under."""

    start: int
    end: int
    title: str


@dataclass(slots=True)
class _Block:
    start: int  # 0-based, inclusive
    end: int  # 0-based, inclusive
    kind: str  # "heading", "code" or "para"
    level: int = 0
    title: str = ""


def kind_of(name: str) -> str:
    """The splitting rules for a file name: markdown, rst, html, python or plain."""
    dot = name.rfind(".")
    return _KINDS.get(name[dot:].lower(), "plain") if dot != -1 else "plain"


def split_lines(text: str) -> list[str]:
    """Lines as an editor numbers them: split on ``\\n`` only, a final newline ends the last
    line rather than starting an empty one, and a ``\\r`` before it is dropped."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def chunk_lines(lines: list[str], kind: str, max_chars: int = MAX_CHARS) -> list[Chunk]:
    """Chunks covering every non-blank line of ``lines`` (see the module docstring)."""
    blocks = _blocks(lines, kind)
    return _pack(lines, blocks, max_chars)


def _blocks(lines: list[str], kind: str) -> list[_Block]:
    blocks: list[_Block] = []
    rst_styles: list[tuple[str, bool]] = []
    n = len(lines)
    i = 0
    while i < n:
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if kind in ("markdown", "rst"):
            block = _heading_or_fence(lines, i, kind, rst_styles)
            if block is not None:
                blocks.append(block)
                i = block.end + 1
                continue
        elif kind == "html":
            heading = _HTML_HEADING.match(line)
            if heading:
                title = _clean_title(heading.group(2))
                blocks.append(_Block(i, i, "heading", int(heading.group(1)), title))
                i += 1
                continue
            if _HTML_PRE_OPEN.match(line):
                end = i
                while end < n and not _HTML_PRE_CLOSE.search(lines[end]):
                    end += 1
                blocks.append(_Block(i, _last_nonblank(lines, min(end, n - 1)), "code"))
                i = end + 1
                continue
        elif kind == "python":
            block = _python_heading(lines, i)
            if block is not None:
                blocks.append(block)
                i = block.end + 1
                continue
        end = _paragraph_end(lines, i, kind)
        if kind == "rst" and _RST_DIRECTIVE.match(line):
            # A directive (``.. code-block::``) and its indented body are one block, never cut.
            end = max(end, _rst_literal_end(lines, end, _indent(line)))
            blocks.append(_Block(i, end, "code"))
        else:
            blocks.append(_Block(i, end, "para"))
            if kind == "rst" and lines[end].rstrip().endswith("::"):
                literal_end = _rst_literal_end(lines, end, _indent(line))
                if literal_end > end:
                    blocks.append(_Block(_next_nonblank(lines, end + 1), literal_end, "code"))
                    end = literal_end
        i = end + 1
    return blocks


def _heading_or_fence(
    lines: list[str], i: int, kind: str, rst_styles: list[tuple[str, bool]]
) -> _Block | None:
    line = lines[i]
    n = len(lines)
    if kind == "markdown":
        fence = _FENCE.match(line)
        if fence:
            marker = fence.group(1)
            close = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
            end = i + 1
            while end < n and not close.match(lines[end]):
                end += 1
            return _Block(i, _last_nonblank(lines, min(end, n - 1)), "code")
        heading = _MD_HEADING.match(line)
        if heading:
            return _Block(i, i, "heading", len(heading.group(1)), (heading.group(2) or "").strip())
        if i + 1 < n and line.strip() and _SETEXT_MD.match(lines[i + 1]):
            level = 1 if lines[i + 1].strip()[0] == "=" else 2
            return _Block(i, i + 1, "heading", level, line.strip())
        return None
    # rst: an optional overline, the title, an underline of one repeated character.
    over = _RST_ADORNMENT.match(line)
    if over and i + 2 < n and lines[i + 1].strip() and lines[i + 2].strip() == line.strip():
        return _rst_heading(i, i + 2, lines[i + 1], (line.strip()[0], True), rst_styles)
    under = _RST_ADORNMENT.match(lines[i + 1]) if i + 1 < n else None
    if under and len(lines[i + 1].rstrip()) >= len(line.rstrip()) and not over:
        return _rst_heading(i, i + 1, line, (lines[i + 1].strip()[0], False), rst_styles)
    return None


def _rst_heading(
    start: int, end: int, title: str, style: tuple[str, bool], styles: list[tuple[str, bool]]
) -> _Block:
    # rst levels are the order in which adornment styles first appear in the document.
    if style not in styles:
        styles.append(style)
    return _Block(start, end, "heading", styles.index(style) + 1, title.strip())


def _python_heading(lines: list[str], i: int) -> _Block | None:
    end = i
    while end < len(lines) and lines[end].startswith("@"):
        end += 1
    if end >= len(lines):
        return None
    match = _PY_HEADING.match(lines[end])
    if match is None:
        return None
    # The signature is part of the heading; the body follows as paragraphs.
    return _Block(i, end, "heading", 1, match.group(1))


def _paragraph_end(lines: list[str], i: int, kind: str) -> int:
    end = i
    n = len(lines)
    while end + 1 < n and lines[end + 1].strip():
        following = lines[end + 1]
        if kind == "markdown" and (_FENCE.match(following) or _MD_HEADING.match(following)):
            break
        if kind == "html" and (_HTML_BLOCK.match(following) or _HTML_PRE_OPEN.match(following)):
            break
        if kind == "python" and _python_heading(lines, end + 1) is not None:
            break
        if (
            kind == "rst"
            and end + 2 < n
            and _RST_ADORNMENT.match(lines[end + 2])
            and len(lines[end + 2].rstrip()) >= len(following.rstrip())
        ):
            break  # the next line is a section title
        if kind == "markdown" and end + 2 < n and _SETEXT_MD.match(lines[end + 2]):
            break
        end += 1
        if kind == "rst" and lines[end].rstrip().endswith("::"):
            break
    return end


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _rst_literal_end(lines: list[str], marker: int, base: int) -> int:
    """The last line indented deeper than ``base`` after ``marker`` (or ``marker`` itself)."""
    end = marker
    j = marker + 1
    while j < len(lines):
        line = lines[j]
        if line.strip():
            if _indent(line) <= base:
                break
            end = j
        j += 1
    return end


def _last_nonblank(lines: list[str], i: int) -> int:
    while i > 0 and not lines[i].strip():
        i -= 1
    return i


def _next_nonblank(lines: list[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _clean_title(raw: str) -> str:
    return _TAG.sub("", raw).strip()


def _pack(lines: list[str], blocks: list[_Block], max_chars: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    trail: list[tuple[int, str]] = []
    start: int | None = None  # first line of the chunk being built (0-based)
    end = -1
    headings_only = True
    title = ""
    last_prose: _Block | None = None

    cumulative = [0]
    for line in lines:
        cumulative.append(cumulative[-1] + len(line) + 1)

    def size(a: int, b: int) -> int:  # characters of lines a..b joined by newlines
        return cumulative[b + 1] - cumulative[a] - 1

    def flush() -> None:
        nonlocal start
        if start is not None:
            chunks.append(Chunk(start + 1, end + 1, title))
        start = None

    for block in blocks:
        if block.kind == "heading":
            if start is not None and (not headings_only or size(start, block.end) > max_chars):
                flush()
            trail[:] = [(lvl, t) for lvl, t in trail if lvl < block.level]
            trail.append((block.level, block.title))
            if start is None:
                start, headings_only = block.start, True
            title = _trail_text(trail)  # the innermost heading before the chunk's content
            end, last_prose = block.end, None
            continue
        if start is not None and headings_only:
            if size(block.start, block.end) <= max_chars:
                # A heading stays with its first block, even if that goes past the bound a little.
                end, headings_only = block.end, False
                last_prose = block if block.kind == "para" else None
                continue
            block, start = _Block(start, block.end, block.kind), None  # headings lead its split
        elif start is not None and size(start, block.end) > max_chars:
            overlap = _overlap_start(lines, last_prose, end)
            flush()
            if overlap is not None and size(overlap, block.end) <= max_chars:
                start, title = overlap, _trail_text(trail)
        if start is None and size(block.start, block.end) > max_chars:
            _split_long(lines, block, max_chars, chunks, _trail_text(trail))
            end, last_prose = block.end, block if block.kind == "para" else None
            continue
        if start is None:
            start, title = block.start, _trail_text(trail)
        end, headings_only = block.end, False
        last_prose = block if block.kind == "para" else None
    flush()
    return chunks


def _trail_text(trail: list[tuple[int, str]]) -> str:
    return " › ".join(t for _, t in trail if t)


def _overlap_start(lines: list[str], prose: _Block | None, end: int) -> int | None:
    """Where the next chunk starts to repeat the last lines of prose, if they are short."""
    if prose is None or prose.end != end:
        return None
    first = max(prose.start, end - OVERLAP_LINES + 1)
    while first <= end and sum(len(lines[k]) for k in range(first, end + 1)) > _OVERLAP_MAX_CHARS:
        first += 1
    return first if first <= end else None


def _split_long(
    lines: list[str],
    block: _Block,
    max_chars: int,
    chunks: list[Chunk],
    title: str,
) -> None:
    """A block longer than the bound alone, cut at line boundaries (a line is never cut)."""
    first = block.start
    while first <= block.end:
        while first < block.end and not lines[first].strip():
            first += 1  # a window starts on text, never on blank lines inside the block
        last = first
        total = len(lines[first])
        while last + 1 <= block.end and total + 1 + len(lines[last + 1]) <= max_chars:
            last += 1
            total += 1 + len(lines[last])
        chunks.append(Chunk(first + 1, _last_nonblank(lines, last) + 1, title))
        if last >= block.end:
            break
        # Windows of a cut block overlap by a line, so a statement at the cut is seen whole.
        overlap = last > first and lines[last].strip() and len(lines[last]) <= _OVERLAP_MAX_CHARS
        first = last if overlap else last + 1
