"""URLs the bot is given: LLM server addresses read as the ollama CLI reads them, and printable."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bot.options import SettingsError

__all__ = ["normalize_llm_url", "strip_credentials"]

# A host name as URLs allow it, or an IP address (an IPv6 one without its brackets).
_HOST = re.compile(r"^[A-Za-z0-9._:-]+$")


def strip_credentials(url: str) -> str:
    """``url`` without any ``user:password@`` part, so it can be printed or logged.

    Never raises: it also serves error messages about URLs that do not parse, so it cuts the text
    itself rather than asking ``urlsplit`` for the host.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    end = len(rest)
    for stop in "/?#":
        index = rest.find(stop)
        if index != -1:
            end = min(end, index)
    authority = rest[:end]
    if "@" not in authority:
        return url
    return f"{scheme}{sep}{authority.rpartition('@')[2]}{rest[end:]}"


def normalize_llm_url(name: str, value: Any) -> str:
    """What the ollama CLI accepts in ``OLLAMA_HOST`` (``host``, ``host:port``, a URL)."""
    raw = str(value).strip()
    example = "http://127.0.0.1:11434"
    if not raw:
        raise SettingsError(f"{name}: expected a URL such as {example}")
    # The ollama CLI's rule: no scheme -> port 11434; an explicit scheme -> its usual port.
    default_port = 11434
    if "://" not in raw:
        raw = "http://" + raw
    else:
        default_port = 443 if raw.lower().startswith("https://") else 80
    shown = strip_credentials(str(value))
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:  # a bad port, an unclosed "[" of an IPv6 address
        raise SettingsError(
            f"{name}: expected an http(s) URL such as {example}, got {shown!r}"
        ) from None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not _HOST.match(host):
        raise SettingsError(f"{name}: expected an http(s) URL such as {example}, got {shown!r}")
    if host in ("0.0.0.0", "::"):  # a listen address, as OLLAMA_HOST often holds: connect locally
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port if port is not None else default_port}"
    if parts.username:
        cred = parts.username + (f":{parts.password}" if parts.password else "")
        netloc = f"{cred}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
