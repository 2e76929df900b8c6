"""The knowledge bases the bot answers from: opened once, searched once per distinct question.

Identical questions asked at the same moment (or within the dedup window) share one retrieval, so
they get the same sources, hence identical requests that the deduplicator merges into one LLM call.
Each retrieval is one ``retrieval`` metrics event (mode, hits, latency; never the question or the
text). A KB that cannot be opened is a start-up error (``open_all``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from bot.dedup import RequestDeduplicator
from bot.kb import KnowledgeBase, Retrieval, embedder_for, retrieve
from bot.kb.embed import Embedder
from bot.tally import Tally

__all__ = ["Knowledge"]

TOP_K = 5


class Knowledge:
    def __init__(self, tally: Tally, *, window: float = 5.0) -> None:
        self._tally = tally
        self._bases: dict[Path, tuple[KnowledgeBase, Embedder | None]] = {}
        self._retrievals = RequestDeduplicator(window=window)
        self._noted: set[Path] = set()

    def open_all(self, paths: Iterable[Path]) -> None:
        """Open every KB now (read-only), so a missing or corrupt one stops the start-up."""
        for path in paths:
            if path not in self._bases:
                base = KnowledgeBase.open(path)
                self._bases[path] = (base, embedder_for(base))

    def __bool__(self) -> bool:
        return bool(self._bases)

    async def lookup(self, path: Path, question: str) -> Retrieval:
        base, embedder = self._bases[path]
        key = hashlib.sha256(f"{path}\0{question}".encode()).hexdigest()

        async def search() -> Retrieval:
            found = await retrieve(base, question, TOP_K, embedder, in_thread=embedder is not None)
            event = {"kb": path.name, **found.metrics()}
            if found.note and path not in self._noted:
                self._noted.add(path)
                event["note"] = found.note
            self._tally.metrics.log_event("retrieval", event)
            return found

        return await self._retrievals.deduplicate(key, search)

    async def close(self) -> None:
        for base, embedder in self._bases.values():
            if embedder is not None:
                await embedder.close()
            base.close()
        self._bases.clear()
