"""Turning a user's question into safe FTS5 queries with a bounded cost, and fusing rankings.

A question is never handed to FTS5 as syntax: quotes, ``AND``/``OR``/``NOT``/``NEAR``, ``*``,
``:`` (column filters), ``^`` and parentheses would be operators or errors. It is cut into word
tokens as the ``unicode61`` tokenizer cuts them, common English words are dropped, and each token
is quoted.

Why a plan (:func:`plan`): FTS5's ``bm25()`` scores every row the query matches and reads the whole
posting list of each term to weigh it, so a word found in most chunks makes a search cost grow
with the KB (52 ms at 100k chunks against 0.6 ms at 1k, measured here). As Elasticsearch's
``cutoff_frequency`` does, the rarest terms (together in at most :data:`GATE_ROWS` chunks) select
and rank the candidates with ``bm25()``; each other term adds to the candidates that contain it
what BM25 would give one occurrence of it: its IDF, from a document frequency estimated by a
bounded probe. A KB of up to :data:`GATE_ROWS` chunks is always ranked by plain BM25.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "GATE_ROWS",
    "MAX_TERMS",
    "RRF_K",
    "STOPWORDS",
    "Plan",
    "estimate_df",
    "idf",
    "match_expression",
    "plan",
    "rrf",
    "terms",
]

MAX_TERMS = 16
RRF_K = 60
# The candidates bm25() scores at most (unless the rarest term alone is in more chunks).
GATE_ROWS = 500

# unicode61 keeps letters and digits of every script and splits on everything else (`_` too).
_TOKEN = re.compile(r"[^\W_]+")
_COMPOUND = re.compile(r"[^\W_]+(?:[-_./][^\W_]+)+")
_MAX_PHRASES = 4

_STOPWORDS_TEXT = """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    s t d ll m re ve"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def terms(question: str) -> list[str]:
    """The question's distinct search words, in order (stop words only when nothing else is
    left), then its compounds (``self-promotion``, ``history_limit``) as phrases of their words:
    a compound the user typed is a strong hint, and a phrase ranks the chunks that hold it whole."""
    text = question.casefold()
    seen: dict[str, None] = {}
    for token in _TOKEN.findall(text):
        seen.setdefault(token, None)
    words = list(seen)
    content = [w for w in words if w not in STOPWORDS] or words
    phrases: dict[str, None] = {}
    for compound in _COMPOUND.findall(text):
        phrases.setdefault(" ".join(_TOKEN.findall(compound)), None)
    return [*content[:MAX_TERMS], *list(phrases)[:_MAX_PHRASES]]


def match_expression(words: Iterable[str]) -> str:
    """An FTS5 MATCH string: every word (or phrase) as a quoted string, any of them (``OR``)."""
    return " OR ".join('"' + word.replace('"', '""') + '"' for word in words)


def rrf(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: ids by ``sum(1 / (k + rank))`` over the lists (ranks from 1),
    best first; ties keep the order in which ids were first seen."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


@dataclass(frozen=True, slots=True)
class Plan:
    """``gate``: the terms that select and rank candidates with bm25(); ``boost``: the other
    terms with the score one occurrence adds (their IDF)."""

    gate: list[str]
    boost: list[tuple[str, float]]


def estimate_df(count: int, last_id: int, first_id: int, max_id: int, probe: int) -> float:
    """Chunks holding a term, from a probe that read its first ``count`` matches (at most
    ``probe``) in id order, the last at ``last_id``: exact when the probe ran out, else scaled by
    how far into the ids the probe had to read (ids are spread evenly over the files)."""
    if count < probe:
        return float(count)
    read = max(1, last_id - first_id + 1)
    return count * (max_id - first_id + 1) / read


def idf(df: float, total: int) -> float:
    """BM25's IDF as FTS5 computes it (floored at 1e-6, as FTS5 does)."""
    return max(1e-6, math.log((total - df + 0.5) / (df + 0.5)))


def plan(estimates: Mapping[str, float], total: int, gate_rows: int = GATE_ROWS) -> Plan:
    """Gate on the rarest terms whose chunks add up to at most ``gate_rows`` (the rarest one
    always), boost the others."""
    order = sorted(estimates, key=lambda term: estimates[term])
    gate = order[:1]
    rows = estimates[order[0]] if order else 0.0
    for term in order[1:]:
        if rows + estimates[term] > gate_rows:
            break
        gate.append(term)
        rows += estimates[term]
    boost = [(term, idf(estimates[term], total)) for term in order[len(gate) :]]
    return Plan(gate, boost)
