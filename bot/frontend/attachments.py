"""A message's attachments for the model: text files inlined with their name, images for a vision
model, and a short note for anything left out (never a silent drop).

Read with the bot's one HTTP session, all of a message's files at once, each bounded in time and
bytes (the size Discord announces is checked first, then the bytes actually read); a file that
cannot be read (an HTTP error, a timeout) is left out with a note saying why.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import aiohttp
import discord

__all__ = ["MAX_IMAGES", "Attached", "read_attachments"]

MAX_TEXT_BYTES = 64 * 1024
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGES = 4
READ_TIMEOUT = 10.0
MIN_CUT_CHARS = 200  # a text file cut shorter than this is left out instead
_TEXT_SUFFIXES = frozenset(
    [
        ".txt",
        ".md",
        ".markdown",
        ".rst",
        ".py",
        ".json",
        ".csv",
        ".tsv",
        ".log",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".xml",
        ".html",
        ".htm",
        ".css",
        ".js",
        ".ts",
        ".sql",
        ".sh",
        ".c",
        ".h",
        ".cpp",
        ".java",
        ".go",
        ".rs",
        ".rb",
        ".php",
        ".kt",
        ".swift",
        ".lua",
        ".r",
        ".tex",
    ]
)
_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


@dataclass(slots=True)
class Attached:
    texts: list[str] = field(default_factory=list)  # "[file NAME]\n…" blocks for the question
    images: list[str] = field(default_factory=list)  # base64, for a vision model
    names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was left out, and why


def _kind(attachment: discord.Attachment) -> str:
    name = attachment.filename.lower()
    content_type = (attachment.content_type or mimetypes.guess_type(name)[0] or "").split(";")[0]
    if content_type in _IMAGE_TYPES:
        return "image"
    if content_type.startswith("text/") or PurePosixPath(name).suffix in _TEXT_SUFFIXES:
        return "text"
    return "other"


async def _read(session: aiohttp.ClientSession, url: str, cap: int) -> bytes | None:
    """The bytes at ``url``, or ``None`` past ``cap`` bytes; raises on a failure or a timeout."""
    async with asyncio.timeout(READ_TIMEOUT), session.get(url) as response:
        if response.status != 200:
            raise aiohttp.ClientResponseError(
                response.request_info, (), status=response.status, message="not found"
            )
        body = bytearray()
        async for piece in response.content.iter_chunked(64 * 1024):
            body += piece
            if len(body) > cap:
                return None
        return bytes(body)


def _failure(name: str, error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientResponseError):
        return f"{name}: could not be downloaded (HTTP {error.status})"
    if isinstance(error, TimeoutError):
        return f"{name}: could not be downloaded within {READ_TIMEOUT:g} s"
    return f"{name}: could not be downloaded"


async def read_attachments(
    session: aiohttp.ClientSession,
    attachments: Sequence[discord.Attachment],
    *,
    vision: bool,
    max_text_chars: int | None = None,
) -> Attached:
    """What the model gets of ``attachments``, in their order. The files are read at once, each
    within ``READ_TIMEOUT``: a message waits for its slowest attachment, not for their sum.

    ``max_text_chars``: the room the question has in the model's context, in characters; text
    files past it are cut (their beginning kept) or left out, with a note."""
    out = Attached()
    notes: list[str | None] = []  # per attachment: why it is left out, or None to read it
    reads: list[tuple[int, str, Awaitable[bytes | None]]] = []
    images = 0
    for attachment in attachments:
        name = attachment.filename
        out.names.append(name)
        kind = _kind(attachment)
        cap = MAX_IMAGE_BYTES if kind == "image" else MAX_TEXT_BYTES
        if kind == "other":
            notes.append(f"{name}: not a text file or an image")
        elif kind == "image" and not vision:
            notes.append(f"{name}: no model here can see images")
        elif kind == "image" and images >= MAX_IMAGES:
            notes.append(f"{name}: at most {MAX_IMAGES} images a message")
        elif attachment.size > cap:
            notes.append(f"{name}: larger than {cap // 1024} KB")
        else:
            images += kind == "image"
            reads.append((len(notes), kind, _read(session, attachment.url, cap)))
            notes.append(None)
    results = await asyncio.gather(*(read for _, _, read in reads), return_exceptions=True)
    texts: dict[int, str] = {}
    for (index, kind, _), result in zip(reads, results, strict=True):
        name = out.names[index]
        cap = MAX_IMAGE_BYTES if kind == "image" else MAX_TEXT_BYTES
        if isinstance(result, aiohttp.ClientError | OSError | TimeoutError):
            notes[index] = _failure(name, result)
        elif isinstance(result, BaseException):
            raise result
        elif result is None:
            notes[index] = f"{name}: larger than {cap // 1024} KB"
        elif kind == "image":
            out.images.append(base64.b64encode(result).decode("ascii"))
        elif b"\x00" in result:
            notes[index] = f"{name}: not a text file"
        else:
            try:
                texts[index] = f"[file {name}]\n{result.decode('utf-8')}"
            except UnicodeDecodeError:
                notes[index] = f"{name}: not UTF-8 text"
    room = max_text_chars
    for index in sorted(texts):
        block = texts[index]
        if room is not None and len(block) > room:
            name = out.names[index]
            kept = room - len(f"[file {name}]\n")
            if kept < MIN_CUT_CHARS:
                notes[index] = f"{name}: no room left for it in the model's context"
                continue
            block = block[:room]
            notes[index] = (
                f"{name}: cut to its first {kept:,} characters to fit the model's context"
            )
        out.texts.append(block)
        if room is not None:
            room -= len(block)
    out.notes = [note for note in notes if note is not None]
    return out
