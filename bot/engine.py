"""The chat engine: what the bot does with a question, free of any chat transport (no discord).

One async generator, :meth:`ChatEngine.answer`, is the whole path of an answer. It picks the
persona and the route of models, retrieves sources once per distinct question when a knowledge base
applies, builds the request inside the model's context (folding the oldest turns into a summary
when the conversation outgrew it), keys it, leads or joins its flight, yields the text as it
arrives, and for each try logs one ``llm_call`` event in a ``finally``; once the answer is complete
it records the exchange and yields the sources line. Nothing in the request varies per user or per
moment, so the same question asked at once in fresh conversations is one request. The transports
below know nothing of dedup or metrics; the delivery above knows nothing of the LLM.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bot.context import (
    SUMMARY_PREFIX,
    Summaries,
    answer_room,
    count_tokens,
    estimate_tokens,
    fold_count,
    summary_request,
)
from bot.dedup import RequestDeduplicator
from bot.history import ChatHistoryManager
from bot.kb import PromptBlock, prompt_block, sources_footer
from bot.knowledge import Knowledge
from bot.llm.errors import LLMError, LLMResponseError
from bot.llm.types import ChatRequest, Chunk, Done
from bot.metrics import MetricsService
from bot.models import Model, ModelSet, Route, Traits
from bot.personas import Persona, PersonaSet
from bot.settings import DEFAULT_SYSTEM_PROMPT
from bot.tally import Tally

__all__ = ["ChatEngine", "Question"]

Message = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Question:
    """A question to answer. ``context`` (a reply chain, oldest first) replaces the
    conversation's history; ``images`` are base64; ``files`` are attachment names (for rules)."""

    conversation: str
    text: str
    channel: int | None = None
    channel_name: str | None = None
    context: tuple[Message, ...] | None = None
    images: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    # Asked in a thread: its channel, whose persona and model choices and rules apply there too.
    parent: int | None = None
    parent_name: str | None = None

    def traits(self) -> Traits:
        return Traits(
            self.text,
            self.channel,
            len(self.images),
            self.files,
            estimate_tokens(self.text),
            self.parent,
        )


@dataclass(frozen=True, slots=True)
class Plan:
    persona: Persona | None
    route: Route
    sources: PromptBlock | None
    messages: list[Message]


class ChatEngine(Tally):
    """Routes questions, streams answers through the flights, keeps conversations, logs events."""

    def __init__(
        self,
        models: ModelSet,
        history: ChatHistoryManager,
        metrics: MetricsService,
        flights: RequestDeduplicator,
        *,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        dedup: bool = True,
        context_tokens: int = 4096,
        personas: PersonaSet | None = None,
        knowledge: Knowledge | None = None,
        kb: Path | None = None,
        summaries: Summaries | None = None,
    ) -> None:
        super().__init__(metrics)
        self.models = models
        self.history = history
        self.flights = flights
        self.system_prompt = system_prompt
        self.dedup = dedup
        self.context_tokens = context_tokens
        self.personas = personas or PersonaSet({})
        self.knowledge = knowledge
        self.kb = kb
        self.summaries = summaries if summaries is not None else Summaries()
        self.history_limit = history.get_stats()["max_messages"]

    # -- the answer ----------------------------------------------------------------------------

    def persona_for(self, question: Question) -> Persona | None:
        return self.personas.pick(
            question.channel,
            question.channel_name,
            question.text,
            question.parent,
            question.parent_name,
        )

    async def answer(self, question: Question) -> AsyncIterator[str]:
        """The answer's text as it arrives; raises :class:`LLMError` when the LLM fails.

        The route's models are tried in order while each fails before its first token; each try
        is one ``llm_call`` event (``route`` says why that model: default, channel, rule, fallback).
        """
        plan = await self.plan(question)
        persona, route, block, messages = plan.persona, plan.route, plan.sources, plan.messages
        parts: list[str] = []
        last = len(route.models) - 1
        for attempt, model in enumerate(route.models):
            options = _merged(model.spec.options, persona.options if persona else None)
            request = ChatRequest(model.spec.model, messages, options)
            reason = route.reason if attempt == 0 else "fallback"
            started = time.perf_counter()
            first: float | None = None
            done: Done | None = None
            error: BaseException | None = None
            chunks, role = self._open(model, request)
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
                await _close(chunks)
                # The role read now: across processes a caller learns it leads or follows a moment later.
                role = getattr(chunks, "role", role)
                self._llm_call(model, reason, role, started, first, done, error, persona=persona)
            text = "".join(parts)
            if question.context is None:
                self.history.add_message(question.conversation, "user", question.text)
                self.history.add_message(question.conversation, "assistant", text)
            if block is not None:
                footer = sources_footer(text, block.hits)
                if footer:
                    yield f"\n\n{footer}"
            return

    async def plan(self, question: Question) -> Plan:
        """Persona, route, sources and the messages an answer to ``question`` sends now (folding
        the oldest turns into the summary first when the conversation outgrew its budget)."""
        persona = self.persona_for(question)
        route = self.models.route(question.traits(), preferred=persona.model if persona else None)
        first_model = route.models[0]
        options = _merged(first_model.spec.options, persona.options if persona else None)
        budget = self._budget(first_model, options)
        block = await self._sources(question, persona, budget)
        messages = await self._prompt(question, persona, block, first_model, budget)
        return Plan(persona, route, block, messages)

    def text_room(self, question: Question) -> int:
        """Characters of attached text ``question`` may still carry inside its model's budget."""
        text = question.text
        persona = self.persona_for(question)
        model = self.models.route(
            question.traits(), preferred=persona.model if persona else None
        ).models[0]
        options = _merged(model.spec.options, persona.options if persona else None)
        system = persona.system_prompt if persona is not None else self.system_prompt
        used = estimate_tokens(system) + estimate_tokens(text) + 64  # margin: message overheads
        return max(0, 4 * (self._budget(model, options) - used))

    def _open(self, model: Model, request: ChatRequest) -> tuple[AsyncIterator[Chunk], str]:
        payload = model.transport.payload(request)
        if not self.dedup:
            return model.send(payload), "off"
        subscription = self.flights.join(model.transport.key(payload), partial(model.send, payload))
        return subscription, subscription.role

    def _budget(self, model: Model, options: Mapping[str, Any] | None) -> int:
        context = model.spec.context_tokens or self.context_tokens
        return context - answer_room(context, options)

    async def _sources(
        self, question: Question, persona: Persona | None, budget: int
    ) -> PromptBlock | None:
        path = persona.kb if persona is not None and persona.kb is not None else self.kb
        if path is None or self.knowledge is None:
            return None
        found = await self.knowledge.lookup(path, question.text)
        block = prompt_block(found.hits, budget // 3)
        return block if block.hits else None

    async def _prompt(
        self,
        question: Question,
        persona: Persona | None,
        block: PromptBlock | None,
        model: Model,
        budget: int,
    ) -> list[Message]:
        """System prompt, sources, summary, history, question — inside ``budget`` tokens."""
        system = persona.system_prompt if persona is not None else self.system_prompt
        head: list[Message] = [{"role": "system", "content": system}] if system else []
        if block is not None:
            head.append({"role": "system", "content": block.text})
        user: dict[str, Any] = {"role": "user", "content": question.text}
        if question.images:
            user["images"] = list(question.images)
        conversation = question.conversation
        if question.context is not None:
            history: list[Message] = list(question.context)
            summary = None
        else:
            await self.history.load(conversation)
            history = list(self.history.get_history(conversation))
            summary = self.summaries.get(conversation)

        def assemble() -> list[Message]:
            shown = [{"role": "system", "content": SUMMARY_PREFIX + summary}] if summary else []
            return [*head, *shown, *history, user]

        messages = assemble()
        used = count_tokens(messages)
        if used <= budget:
            return messages  # the common case: one count, nothing to fold
        if question.context is None:
            fold = fold_count(len(history))
            if fold:
                summary = await self._summarize(conversation, summary, history[:fold], model)
                self.history.trim(conversation, fold, history[0])
                history = history[fold:]
                messages = assemble()
                used = count_tokens(messages)
        while used > budget and history:
            history = history[2:]  # still too long (huge messages): the oldest exchange goes
            messages = assemble()
            used = count_tokens(messages)
        over = used - budget
        if over > 0 and estimate_tokens(question.text) > over:
            # The question's own text is too long (an inlined file): its end goes, as a last
            # resort. (Images over the budget are the server's to refuse: cutting text won't help.)
            user["content"] = question.text[: max(0, len(question.text) - 4 * over - 16)]
            messages = assemble()
        return messages

    async def _summarize(
        self, conversation: str, previous: str | None, turns: Sequence[Message], model: Model
    ) -> str | None:
        """One summary call (deduplicated like any request); ``previous`` kept if it fails."""
        request = ChatRequest(
            model.spec.model, summary_request(previous, turns), model.spec.options
        )
        started = time.perf_counter()
        first: float | None = None
        done: Done | None = None
        error: BaseException | None = None
        parts: list[str] = []
        chunks, role = self._open(model, request)
        try:
            async for chunk in chunks:
                if type(chunk) is str:
                    first = first or time.perf_counter()
                    parts.append(chunk)
                elif isinstance(chunk, Done):
                    done = chunk
        except LLMError as exc:
            error = exc
        except BaseException as exc:
            error = exc
            raise
        finally:
            await _close(chunks)
            role = getattr(chunks, "role", role)
            self._llm_call(model, "default", role, started, first, done, error, purpose="summary")
        text = "".join(parts).strip()
        if error is not None or not text:
            return previous
        self.summaries.set(conversation, text)
        return text

    def _llm_call(
        self,
        model: Model,
        route: str,
        role: str,
        started: float,
        first: float | None,
        done: Done | None,
        error: BaseException | None,
        *,
        persona: Persona | None = None,
        purpose: str = "answer",
    ) -> None:
        ended = time.perf_counter()
        status = "ok"
        if error is None:
            self.count_llm(role)
        elif isinstance(error, GeneratorExit | asyncio.CancelledError):
            status = "cancelled"  # the caller left (a stop, a reply given up): not the LLM's fault
        else:
            status = "error"
            self.count_llm(None, failed=True)
            self.log_error("llm", error)
        model.calls[status] += 1
        self.metrics.log_event(
            "llm_call",
            {
                "model": model.name,
                "route": route,
                "api": model.spec.api,
                "purpose": purpose,
                "persona": persona.name if persona is not None else None,
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
        """Forget the conversation's history and summary; ``True`` if there was a history."""
        self.summaries.clear(conversation)
        return self.history.clear(conversation)

    def summary(self) -> dict[str, Any]:
        """``metrics.get_summary()`` (dedup, history and batch figures), whether dedup is on, and
        the calls of each model by status."""
        summary = self.metrics.get_summary()
        summary["dedup_enabled"] = self.dedup
        summary["models"] = {model.name: dict(model.calls) for model in self.models}
        return summary


def _merged(
    base: Mapping[str, Any] | None, extra: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    if not extra:
        return base
    return {**(base or {}), **extra}


async def _close(chunks: AsyncIterator[Chunk]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
