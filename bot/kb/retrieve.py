"""One retrieval for one question, as the bot makes it: hybrid when it can, lexical otherwise.

:func:`retrieve` embeds the question (when the KB has vectors and an embedder is given), runs the
synchronous search and reports what it did (mode, hit count, latency) for the metrics — never the
question or the text. When hybrid search cannot run, it says why in ``note``; the caller shows
that once, not per question.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal

from bot.kb.embed import Embedder, EmbedError
from bot.kb.store import Hit, KnowledgeBase

__all__ = ["Retrieval", "embedder_for", "retrieve"]


@dataclass(frozen=True, slots=True)
class Retrieval:
    hits: list[Hit]
    mode: Literal["lexical", "hybrid"]
    latency_ms: float
    note: str | None = None  # why it is lexical although the KB has vectors

    def metrics(self) -> dict[str, Any]:
        """The figures a ``retrieval`` metrics event may carry (no text, no sources)."""
        return {"mode": self.mode, "hits": len(self.hits), "latency_ms": round(self.latency_ms, 3)}


def embedder_for(
    kb: KnowledgeBase, url: str | None = None, api: str | None = None
) -> Embedder | None:
    """An embedder for the KB's own model, at ``url`` or where the KB was embedded; ``None``
    when the KB has no vectors."""
    model = kb.embed_model
    if model is None:
        return None
    where = url or kb.meta("embed_url")
    if not where:
        return None
    return Embedder(where, model, api or kb.meta("embed_api") or "auto")


async def retrieve(
    kb: KnowledgeBase,
    question: str,
    k: int = 5,
    embedder: Embedder | None = None,
    *,
    in_thread: bool = False,
) -> Retrieval:
    """The top ``k`` chunks for ``question``. ``in_thread`` runs the SQLite part in a worker
    thread (worth it on large KBs; a search costs about a millisecond, see the README)."""
    started = time.perf_counter()
    vector: list[float] | None = None
    note: str | None = None
    if embedder is not None:
        note = kb.vectors_unavailable()
        if note is None:
            try:
                vector = (await embedder.embed([question]))[0]
            except EmbedError as exc:
                note = f"lexical search only: {exc}"
    if in_thread:
        hits = await asyncio.to_thread(kb.search, question, k, vector)
    else:
        hits = kb.search(question, k, vector)
    mode: Literal["lexical", "hybrid"] = "hybrid" if vector is not None else "lexical"
    return Retrieval(hits, mode, (time.perf_counter() - started) * 1000.0, note)
