"""The knowledge base: documents in one SQLite file, searched by BM25 (and vectors), with sources.

Writing: :func:`add_paths` / :func:`remove_keys` (``botctl kb``). Reading, as the bot does:
``KnowledgeBase.open(path)``, :func:`retrieve` (or ``kb.search``) once per distinct question,
:func:`prompt_block` for the request and :func:`sources_footer` for the reply. Nothing here
imports discord or botctl.
"""

from bot.kb.cite import (
    CITE_INSTRUCTION,
    PromptBlock,
    cited_numbers,
    estimate_tokens,
    prompt_block,
    sources_footer,
    sources_lines,
)
from bot.kb.db import KBError
from bot.kb.embed import Embedder, EmbedError
from bot.kb.ingest import AddReport, add_paths, remove_keys
from bot.kb.retrieve import Retrieval, embedder_for, retrieve
from bot.kb.store import FileInfo, Hit, KBStats, KnowledgeBase

__all__ = [
    "CITE_INSTRUCTION",
    "AddReport",
    "EmbedError",
    "Embedder",
    "FileInfo",
    "Hit",
    "KBError",
    "KBStats",
    "KnowledgeBase",
    "PromptBlock",
    "Retrieval",
    "add_paths",
    "cited_numbers",
    "embedder_for",
    "estimate_tokens",
    "prompt_block",
    "remove_keys",
    "retrieve",
    "sources_footer",
    "sources_lines",
]
