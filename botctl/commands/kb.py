"""``botctl kb``: the knowledge base the bot answers from — ``add``, ``search``, ``list``, ``remove``.

Only Typer and the standard library are imported at module level (``botctl --help`` stays fast);
the store (``bot.kb``) and rich rendering (``botctl.reporters.kb``) load inside the commands.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from bot.kb import KnowledgeBase, Retrieval

DEFAULT_KB = Path("profiles") / "kb.sqlite"
DEFAULT_LLM_URL = "http://127.0.0.1:11434"

app = typer.Typer(
    name="kb",
    help="The knowledge base: documents the bot answers from, with their sources "
    "([bold]path:start-end[/]).",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    no_args_is_help=True,
)

KbOption = Annotated[
    Path | None,
    typer.Option(
        "--kb",
        envvar="BOT_KB",
        help="Knowledge base file. Default: [bold]$BOT_KB[/], else profiles/kb.sqlite.",
        show_default=False,
        metavar="FILE",
    ),
]
LlmUrlOption = Annotated[
    str | None,
    typer.Option(
        "--llm-url",
        envvar=["OLLAMA_URL", "OLLAMA_HOST"],
        help="LLM server for embeddings (default: where the KB was embedded, else "
        "http://127.0.0.1:11434). An API key comes only from $BOT_LLM_API_KEY or $OPENAI_API_KEY.",
        show_default=False,
    ),
]
LlmApiOption = Annotated[
    str,
    typer.Option(
        "--llm-api",
        envvar="BOT_LLM_API",
        help="auto, ollama (/api/embed) or openai (/v1/embeddings); auto: openai when the URL "
        "ends in /v1.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON, and nothing else.")]


def _check_paths(paths: list[Path]) -> None:
    """Every path given exists, before anything is written (a typo creates no empty KB)."""
    from botctl.errors import BotctlError

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        what = "no such file or folder" if len(missing) == 1 else "no such files or folders"
        raise BotctlError(f"{what}: {', '.join(missing)}; nothing was indexed")


def _kb_path(kb: Path | None) -> Path:
    return kb if kb is not None else DEFAULT_KB


@contextmanager
def _user_errors() -> Iterator[None]:
    """The store's one-line errors as the CLI's (exit 1, no traceback)."""
    from bot.kb import EmbedError, KBError
    from bot.settings import SettingsError
    from botctl.errors import BotctlError

    try:
        yield
    except (KBError, EmbedError, SettingsError) as exc:
        raise BotctlError(str(exc)) from None


def _check_api(value: str) -> str:
    from botctl.errors import BotctlError

    if value not in ("auto", "ollama", "openai"):
        raise BotctlError(f"--llm-api must be auto, ollama or openai, not {value!r}")
    return value


@app.command()
def add(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH", help="Files or folders (recursively) to index.", show_default=False
        ),
    ],
    kb: KbOption = None,
    embed_model: Annotated[
        str | None,
        typer.Option(
            "--embed-model",
            help="Also store embeddings from this model on the LLM server (hybrid search). "
            "Recorded in the KB: search embeds questions with it, later adds embed new chunks "
            "with it; another model replaces every vector.",
            show_default=False,
        ),
    ] = None,
    llm_url: LlmUrlOption = None,
    llm_api: LlmApiOption = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=2048, help="Texts per embeddings request.")
    ] = 32,
) -> None:
    """Index documents (.md .rst .txt .html .py and other text); unchanged files cost nothing."""
    from bot.kb import KnowledgeBase, add_paths
    from bot.kb.db import load_vectors
    from botctl.console import console, err_console
    from botctl.reporters import kb as reporter

    _check_api(llm_api)
    path = _kb_path(kb)
    _check_paths(paths)
    with _user_errors(), KnowledgeBase.open(path, create=True) as store:
        vectors_loaded = store.embed_model is not None and load_vectors(store.conn) is None
        with reporter.progress(err_console, "indexing") as progress:
            report = add_paths(
                store.conn, paths, exclude=[path], vectors_loaded=vectors_loaded, progress=progress
            )
        reporter.print_add(console, path, report)
        # A KB with vectors keeps them complete: new chunks get them from the recorded model.
        model = embed_model or store.embed_model
        if model is not None:
            _embed(store, model, llm_url, llm_api, batch_size)


def _embed(store: KnowledgeBase, model: str, url: str | None, api: str, batch_size: int) -> None:
    import asyncio

    from bot.kb import Embedder, EmbedError
    from bot.kb.db import load_vectors
    from bot.kb.vectors import embed_missing
    from bot.settings import normalize_llm_url, strip_credentials
    from botctl.console import console, err_console
    from botctl.reporters import kb as reporter

    why = load_vectors(store.conn)
    if why is not None:
        reporter.warn(err_console, f"embeddings skipped: {why}; the knowledge base works lexically")
        return
    where = normalize_llm_url("llm_url", url or store.meta("embed_url") or DEFAULT_LLM_URL)

    async def run() -> None:
        async with Embedder(where, model, api, batch_size=batch_size) as embedder:
            with reporter.progress(err_console, f"embedding with {model}") as progress:
                result = await embed_missing(
                    store.conn,
                    embedder,
                    None if progress is None else lambda d, t: progress(d, t, ""),
                )
            reporter.print_embed(console, model, strip_credentials(where), result)

    try:
        asyncio.run(run())
    except EmbedError as exc:
        reporter.warn(
            err_console,
            f"embeddings incomplete: {exc}; search stays lexical for the chunks without one "
            f"(run `botctl kb add` again with --embed-model {model} to finish)",
        )


@app.command()
def search(
    query: Annotated[
        str, typer.Argument(metavar="QUERY", help="The question, as a user would ask it.")
    ],
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=100, help="How many chunks.")] = 5,
    kb: KbOption = None,
    json_output: JsonOption = False,
    llm_url: LlmUrlOption = None,
    llm_api: Annotated[
        str | None,
        typer.Option(
            "--llm-api",
            envvar="BOT_LLM_API",
            help="auto, ollama or openai (default: as the KB was embedded).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """The chunks that best answer QUERY, best first, with [bold]source[/], [bold]lines[/] and
    [bold]score[/] (BM25; fused with vector ranks when the KB has embeddings)."""
    import asyncio

    from bot.kb import KnowledgeBase, embedder_for, retrieve
    from bot.settings import normalize_llm_url
    from botctl.console import console, err_console, print_json
    from botctl.reporters import kb as reporter

    if llm_api is not None:
        _check_api(llm_api)
    with _user_errors(), KnowledgeBase.open(_kb_path(kb)) as store:
        embedder = embedder_for(
            store, normalize_llm_url("llm_url", llm_url) if llm_url else None, llm_api
        )

        async def run() -> Retrieval:
            if embedder is None:
                return await retrieve(store, query, k)
            async with embedder:
                return await retrieve(store, query, k, embedder)

        result = asyncio.run(run())
    if result.note:
        reporter.warn(err_console, result.note)
    if json_output:
        print_json([hit.to_json() for hit in result.hits])
    else:
        reporter.print_hits(console, result.hits, result.mode)


@app.command("list")
def list_(kb: KbOption = None, json_output: JsonOption = False) -> None:
    """The indexed files with their chunks and sizes, and the embedding model if any."""
    from bot.kb import KnowledgeBase
    from botctl.console import console, print_json
    from botctl.reporters import kb as reporter

    with _user_errors(), KnowledgeBase.open(_kb_path(kb)) as store:
        stats = store.stats()
    if json_output:
        print_json(reporter.stats_json(stats))
    else:
        reporter.print_stats(console, stats)


@app.command()
def remove(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH",
            help="Files or folders as added (they need not exist any more).",
            show_default=False,
        ),
    ],
    kb: KbOption = None,
) -> None:
    """Drop files (or every file under a folder) from the knowledge base."""
    from bot.kb import KnowledgeBase, remove_keys
    from bot.kb.db import load_vectors
    from bot.kb.sources import key_for
    from botctl.console import console, err_console
    from botctl.errors import BotctlError
    from botctl.reporters import kb as reporter

    path = _kb_path(kb)
    with _user_errors(), KnowledgeBase.open(path, create=False, readonly=False) as store:
        loaded = store.embed_model is not None and load_vectors(store.conn) is None
        removed, chunks, unmatched = remove_keys(
            store.conn, [key_for(p) for p in paths], vectors_loaded=loaded
        )
    if not removed:
        raise BotctlError(
            f"nothing in {path} matches {', '.join(paths)}; see `botctl kb list` for its files"
        )
    for key in unmatched:
        reporter.warn(err_console, f"nothing in the knowledge base matches {key}")
    reporter.print_removed(console, removed, chunks)
