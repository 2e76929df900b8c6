"""The chat engine: what the bot does with a question, free of any chat transport (no discord).

One async generator, :meth:`ChatEngine.answer`, is the whole path of an answer: it builds the
request (system prompt, the conversation's history, the question — nothing per user or per moment,
so the same question asked at once in fresh conversations is one request), keys it, leads or joins
its flight, yields the text as it arrives, and in one ``finally`` logs the ``llm_call`` event and
records the exchange in the history once the answer is complete. The transport below it knows
nothing of dedup or metrics; the delivery above it knows nothing of the LLM.

``take_message``, ``log_reply``, ``log_command`` and ``log_error`` are the other metrics events,
which never carry message text or model output (lengths and counts only).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from bot.dedup import RequestDeduplicator
from bot.history import ChatHistoryManager
from bot.llm.errors import LLMError, LLMResponseError
from bot.llm.types import ChatRequest, Chunk, Done
from bot.metrics import MetricsService
from bot.models import Model, ModelSet, Traits
from bot.percentile import percentile
from bot.settings import DEFAULT_SYSTEM_PROMPT

__all__ = ["ChatEngine", "Question"]

# Reply latencies kept for the end-of-run percentiles: the most recent ones, bounded.
_LATENCY_SAMPLES = 100_000


@dataclass(frozen=True, slots=True)
class Question:
    """A question to answer: the conversation it belongs to and its text (mention removed)."""

    conversation: str
    text: str
    channel: int | None = None

    def traits(self) -> Traits:
        return Traits(self.text, self.channel, tokens=estimate_tokens(self.text))


def estimate_tokens(text: str) -> int:
    """About four characters a token (English prose with common tokenizers)."""
    return (len(text) + 3) // 4


class ChatEngine:
    """Builds requests from history, routes them, streams answers through the flights, logs."""

    def __init__(
        self,
        models: ModelSet,
        history: ChatHistoryManager,
        metrics: MetricsService,
        flights: RequestDeduplicator,
        *,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        dedup: bool = True,
    ) -> None:
        self.models = models
        self.history = history
        self.metrics = metrics
        self.flights = flights
        self.system_prompt = system_prompt
        self.dedup = dedup
        self._system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        self._messages = 0
        self._commands = 0
        self._replies: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._llm_roles: Counter[str] = Counter()
        self._llm_errors = 0
        self._reply_latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)

    # -- the conversation ----------------------------------------------------------------------

    def build_messages(self, question: Question) -> list[dict[str, Any]]:
        """The system prompt, the conversation's history, then the question."""
        messages: list[dict[str, Any]] = [
            *self._system,
            *self.history.get_history(question.conversation),
        ]
        messages.append({"role": "user", "content": question.text})
        return messages

    async def answer(self, question: Question) -> AsyncIterator[str]:
        """The answer's text as it arrives; raises :class:`LLMError` when the LLM fails.

        The route's models are tried in order while each fails before its first token; each try
        is one ``llm_call`` event (``route`` says why that model: default, channel, rule, fallback).
        """
        messages = self.build_messages(question)
        route = self.models.route(question.traits())
        parts: list[str] = []
        last = len(route.models) - 1
        for attempt, model in enumerate(route.models):
            request = ChatRequest(model.spec.model, messages, model.spec.options)
            reason = route.reason if attempt == 0 else "fallback"
            started = time.perf_counter()
            first: float | None = None
            done: Done | None = None
            error: BaseException | None = None
            chunks: AsyncIterator[Chunk]
            role: str
            if self.dedup:
                key = request.key(model.spec.api, model.transport.base_url)
                subscription = self.flights.join(key, partial(model.stream, request))
                chunks, role = subscription, subscription.role
            else:
                chunks, role = model.stream(request), "off"
            try:
                async for chunk in chunks:
                    if type(chunk) is str:
                        if first is None:
                            first = time.perf_counter()
                        parts.append(chunk)
                        yield chunk
                    elif isinstance(chunk, Done):
                        done = chunk
                if done is None:
                    raise LLMResponseError("the stream ended before its final chunk")
            except LLMError as exc:
                error = exc
                if first is None and attempt < last:
                    continue  # nothing shown yet: the next model of the route answers instead
                raise
            except BaseException as exc:
                error = exc
                raise
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
                self._llm_call(model, reason, role, started, first, done, error)
            self.history.add_message(question.conversation, "user", question.text)
            self.history.add_message(question.conversation, "assistant", "".join(parts))
            return

    def _llm_call(
        self,
        model: Model,
        route: str,
        role: str,
        started: float,
        first: float | None,
        done: Done | None,
        error: BaseException | None,
    ) -> None:
        ended = time.perf_counter()
        status = "ok"
        if error is None:
            self._llm_roles[role] += 1
        elif isinstance(error, GeneratorExit | asyncio.CancelledError):
            status = "cancelled"  # the caller left (a stop, a reply given up): not the LLM's fault
        else:
            status = "error"
            self._llm_errors += 1
            self.log_error("llm", error)
        model.calls[status] += 1
        self.metrics.log_event(
            "llm_call",
            {
                "model": model.name,
                "route": route,
                "api": model.spec.api,
                "latency_ms": round((ended - started) * 1000, 3),
                "ttft_ms": None if first is None else round((first - started) * 1000, 3),
                "tokens_in": done.tokens_in if done is not None else None,
                "tokens_out": done.tokens_out if done is not None else None,
                "dedup": role,
                "status": status,
                "error": None if status == "ok" else type(error).__name__,
            },
        )

    def reset(self, conversation: str) -> bool:
        """Forget the conversation's history; ``True`` if there was one."""
        return self.history.clear(conversation)

    # -- events (never any text) ---------------------------------------------------------------

    def take_message(self, channel: str, user: str, text: str, *, source: str = "mention") -> None:
        """A user message was taken: logs its length, never its text."""
        self._messages += 1
        self.metrics.log_event(
            "message", {"channel": channel, "user": user, "length": len(text), "source": source}
        )

    def log_reply(
        self, channel: str, *, latency_ms: float, parts: int, chars: int, edits: int, status: str
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
        which may quote the user's text or the model's output); an LLM error adds its URL."""
        data: dict[str, Any] = {"where": where, "error": type(exc).__name__}
        if isinstance(exc, LLMError):
            data["detail"] = detail or exc.detail
            data["url"] = exc.url
        else:
            data["detail"] = detail or "unexpected error"
        self._errors[where] += 1
        self.metrics.log_event("error", data)

    # -- figures -------------------------------------------------------------------------------

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
            "reply_latency_ms": {q: percentile(latencies, n) for q, n in _QUANTILES},
        }

    def summary(self) -> dict[str, Any]:
        """``metrics.get_summary()`` (dedup, history and batch figures), whether dedup is on, and
        the calls of each model by status."""
        summary = self.metrics.get_summary()
        summary["dedup_enabled"] = self.dedup
        summary["models"] = {model.name: dict(model.calls) for model in self.models}
        return summary


_QUANTILES = (("p50", 50), ("p95", 95), ("p99", 99))
