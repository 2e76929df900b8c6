"""The chat engine: what the bot does with a message, free of any chat transport (no discord).

The front end (Discord, the sandbox, tests) hands it text and reads back string deltas:

- :meth:`ChatEngine.build_messages` — ``[system] + channel history + [user text]``, with nothing per
  user or per moment, so the same question asked at the same time in fresh channels is one request
  and the deduplicator merges it;
- :meth:`ChatEngine.ask` — streams the answer, records the exchange in the channel's history once
  the answer is complete, and logs an ``error`` event when the LLM fails (then re-raises);
- ``take_message``, ``log_reply``, ``log_command``, ``log_error`` — the metrics events, which
  never carry message text or model output (lengths and counts only).
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from bot.history import ChatHistoryManager
from bot.llm_errors import LLMError
from bot.metrics import MetricsService
from bot.ollama import ChatResult, ChatStream, DedupRole, OllamaService
from bot.percentile import percentile

__all__ = ["DEFAULT_SYSTEM_PROMPT", "Answer", "ChatEngine"]

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant in a Discord server. Answer clearly and concisely."
)
# Reply latencies kept for the end-of-run percentiles: the most recent ones, bounded.
_LATENCY_SAMPLES = 100_000


class Answer:
    """One answer as string deltas (empty chunks skipped).

    ``role`` says how the LLM call was served (leader/follower/window/off); ``result`` is the
    :class:`ChatResult` once the answer is complete; ``text`` is what has arrived so far.
    """

    __slots__ = ("_channel", "_engine", "_parts", "_question", "_recorded", "_stream")

    def __init__(self, engine: ChatEngine, channel: str, question: str, stream: ChatStream) -> None:
        self._engine = engine
        self._channel = channel
        self._question = question
        self._stream = stream
        self._parts: list[str] = []
        self._recorded = False

    @property
    def role(self) -> DedupRole:
        return self._stream.role

    @property
    def result(self) -> ChatResult | None:
        return self._stream.result

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def __aiter__(self) -> Answer:
        return self

    async def __anext__(self) -> str:
        while True:
            try:
                chunk = await self._stream.__anext__()
            except LLMError as exc:
                self._engine._llm_failed(exc)
                raise
            if chunk.done:
                self._record()
            if chunk.content:
                self._parts.append(chunk.content)
                return chunk.content

    def _record(self) -> None:
        result = self._stream.result
        if self._recorded or result is None:
            return
        self._recorded = True
        self._engine._answered(self._channel, self._question, result)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def collect(self) -> str:
        """Read the whole answer and return its text."""
        try:
            async for _ in self:
                pass
        finally:
            await self.aclose()
        return self.text


class ChatEngine:
    """Builds requests from history, streams answers, keeps history and logs events."""

    def __init__(
        self,
        llm: OllamaService,
        history: ChatHistoryManager,
        metrics: MetricsService,
        *,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        model: str | None = None,
    ) -> None:
        self.llm = llm
        self.history = history
        self.metrics = metrics
        self.system_prompt = system_prompt
        self.model = model
        self._messages = 0
        self._commands = 0
        self._replies: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._llm_roles: Counter[str] = Counter()
        self._llm_errors = 0
        self._reply_latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)

    # the conversation

    def build_messages(self, channel: str, text: str) -> list[dict[str, str]]:
        """What the LLM is sent: the system prompt, the channel's history, then ``text``."""
        messages: list[dict[str, str]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.extend(self.history.get_history(channel))
        messages.append({"role": "user", "content": text})
        return messages

    def ask(self, channel: str, text: str) -> Answer:
        """Stream the answer to ``text`` in ``channel``; raises :class:`LLMError` on failure.

        Needs a running event loop (the LLM call may start at once, shared with identical ones).
        """
        stream = self.llm.chat_stream(self.build_messages(channel, text), model=self.model)
        return Answer(self, channel, text, stream)

    def reset(self, channel: str) -> bool:
        """Forget the channel's history; ``True`` if there was one."""
        return self.history.clear(channel)

    def _answered(self, channel: str, question: str, result: ChatResult) -> None:
        self.history.add_exchange(channel, question, result.content)
        self._llm_roles[result.dedup] += 1

    def _llm_failed(self, exc: LLMError) -> None:
        self._llm_errors += 1
        self.log_error("llm", exc)

    # events (never any text)

    def take_message(self, channel: str, user: str, text: str, *, source: str = "mention") -> None:
        """A user message was taken: logs its length, never its text."""
        self._messages += 1
        self.metrics.log_event(
            "message", {"channel": channel, "user": user, "length": len(text), "source": source}
        )

    def log_reply(
        self,
        channel: str,
        *,
        latency_ms: float,
        parts: int,
        chars: int,
        edits: int,
        status: str,
    ) -> None:
        self._replies[status] += 1
        self._reply_latencies.append(latency_ms)
        self.metrics.log_event(
            "reply",
            {
                "channel": channel,
                "latency_ms": round(latency_ms, 3),
                "parts": parts,
                "chars": chars,
                "edits": edits,
                "status": status,
            },
        )

    def log_command(self, name: str, channel: str, user: str) -> None:
        self._commands += 1
        self.metrics.log_event("command", {"name": name, "channel": channel, "user": user})

    def log_error(self, where: str, exc: BaseException, *, detail: str | None = None) -> None:
        """An ``error`` event. Without ``detail``, only a safe description (never ``str(exc)``,
        which may quote the user's text or the model's output)."""
        if detail is None:
            detail = exc.detail if isinstance(exc, LLMError) else "unexpected error"
        self._errors[where] += 1
        self.metrics.log_event(
            "error", {"where": where, "error": type(exc).__name__, "detail": detail}
        )

    # figures

    def counters(self) -> dict[str, Any]:
        """This engine's own counts since start, and reply latency percentiles (ms)."""
        latencies = sorted(self._reply_latencies)
        roles = self._llm_roles
        return {
            "messages": self._messages,
            "replies": sum(self._replies.values()),
            "replies_by_status": dict(self._replies),
            "commands": self._commands,
            "errors": sum(self._errors.values()),
            "errors_by_where": dict(self._errors),
            "llm_answers_by_role": dict(roles),
            "llm_upstream_answers": roles["leader"] + roles["off"],
            "llm_saved_answers": roles["follower"] + roles["window"],
            "llm_errors": self._llm_errors,
            "reply_latency_ms": {
                "p50": percentile(latencies, 50),
                "p95": percentile(latencies, 95),
                "p99": percentile(latencies, 99),
            },
        }

    def summary(self) -> dict[str, Any]:
        """``metrics.get_summary()`` with the LLM client's cache statistics."""
        summary = self.metrics.get_summary()
        llm_stats = self.llm.get_cache_stats()
        # The deduplicator the LLM client really uses, whether or not metrics was given it.
        cache = summary.setdefault("cache_stats", {})
        cache["deduplication"] = {**cache.get("deduplication", {}), **llm_stats["deduplication"]}
        summary["llm"] = llm_stats
        return summary
