"""Which conversation a Discord message belongs to, and its context.

- A reply (``message_reference``): the chain of replies it belongs to, the bot's own answers as
  ``assistant``, from :class:`~bot.chains.Chains`, fetched through discord.py when not remembered
  (at most ``max_fetches`` a message). A deleted message is left out with a note (and never
  fetched again), a chain that loops is cut with a note. Works after ``/reset`` and after the
  channel's history was evicted; :meth:`ConversationResolver.forget` takes a MESSAGE_DELETE.
- A message in a thread started from a message: the thread's own history, first seeded with that
  message's conversation (its chain, and the bot's answer to it: after a restart, found in one
  page of the channel's history after the starter).
- Anything else: the channel's history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import discord

from bot.chains import GONE, Chains
from bot.history import ChatHistoryManager

__all__ = ["Context", "ConversationResolver", "answer_text"]

MAX_FETCHES = 5
ANSWER_SCAN = 10  # messages after a thread's starter searched for the bot's answer to it
NOTES = "\n\n-# Left out: "  # the line the chat cog ends a reply with: for the user, not the model


def answer_text(content: str) -> str:
    """The bot's answer as the model said it: without the front end's ``-# Left out:`` line."""
    head, mark, _notes = content.rpartition(NOTES)
    return head if mark else content


@dataclass(slots=True)
class Context:
    conversation: str
    chain: tuple[dict[str, str], ...] | None = None  # a reply's context, oldest first
    parent: int | None = None
    notes: list[str] = field(default_factory=list)


class ConversationResolver:
    def __init__(
        self,
        chains: Chains,
        history: ChatHistoryManager,
        *,
        limit: int,
        bot_id: int,
        max_fetches: int = MAX_FETCHES,
    ) -> None:
        self.chains = chains
        self.history = history
        self.limit = limit
        self.bot_id = bot_id
        self.max_fetches = max_fetches
        # With a space on either side: a mention mid-sentence leaves one space, not two.
        self._mention = re.compile(rf" ?<@!?{bot_id}> ?")

    def text_of(self, message: discord.Message) -> str:
        return self._mention.sub(" ", message.content).strip()

    def _remember(self, message: discord.Message, *, fetched: bool) -> None:
        parent = message.reference.message_id if message.reference is not None else None
        if message.author.id == self.bot_id:
            role, text = "assistant", answer_text(message.content)
        else:
            role, text = "user", self.text_of(message)
        self.chains.remember(message.id, role, text, parent, fetched=fetched)

    async def resolve(self, message: discord.Message) -> Context:
        channel = message.channel
        reference = message.reference
        if reference is not None and reference.message_id is not None:
            return await self._reply(message, reference)
        context = Context(str(channel.id))
        if isinstance(channel, discord.Thread):
            await self._seed_thread(channel, context.notes)
        return context

    async def _reply(
        self, message: discord.Message, reference: discord.MessageReference
    ) -> Context:
        parent = reference.message_id
        assert parent is not None
        resolved = reference.resolved
        if isinstance(resolved, discord.DeletedReferencedMessage):
            # Discord says the message replied to is gone: out of the bot's memory too (a
            # tombstone: the walk steps over it to what it replied to, when that is known).
            self.chains.forget(parent)
        elif isinstance(resolved, discord.Message) and self.chains.get(parent) is None:
            self._remember(resolved, fetched=False)  # discord.py gave it with the reply
        context = Context(str(message.channel.id), parent=parent)
        chain = await self._walk(message.channel, parent, context.notes)
        context.chain = tuple(chain)
        return context

    async def _walk(
        self, channel: discord.abc.Messageable, start: int, notes: list[str]
    ) -> list[dict[str, str]]:
        fetches = 0
        while True:
            found = self.chains.trace(start, self.limit)
            missing = found.missing
            if missing is not None and fetches >= self.max_fetches:
                notes.append("an older part of the reply chain was left out")
                missing = None
            elif missing is not None:
                fetches += 1
                try:
                    fetched = await channel.fetch_message(missing)
                except discord.NotFound:
                    self.chains.forget(missing)  # never fetched again; the next trace notes it
                    continue
                except discord.HTTPException:
                    notes.append("a message of the reply chain could not be read")
                    missing = None
                else:
                    self._remember(fetched, fetched=True)
                    continue
            if found.gone:
                notes.append(
                    "a deleted message of the reply chain"
                    if found.gone == 1
                    else f"{found.gone} deleted messages of the reply chain"
                )
            if found.looped:
                notes.append("the reply chain loops back on itself: cut where it repeats")
            return found.messages

    async def _seed_thread(self, thread: discord.Thread, notes: list[str]) -> None:
        """A thread's first question continues its starter message's conversation: the starter's
        chain (fetched as a reply's is, when not remembered) and the bot's answer to it."""
        key = str(thread.id)
        if key in self.history:
            return
        starter = thread.id  # a thread started from a message has that message's id
        parent = thread.parent
        where = parent if isinstance(parent, discord.abc.Messageable) else None
        if self.chains.get(starter) is None:
            if where is None:
                return
            try:
                found = await where.fetch_message(starter)
            except discord.HTTPException:
                return  # a thread made without a starter message, or the starter is gone
            self._remember(found, fetched=True)
        if where is not None:
            chain = await self._walk(where, starter, notes)
        else:
            chain = self.chains.trace(starter, self.limit).messages
        answer = self.chains.answer_to(starter)
        if answer is None and where is not None and self._asked(starter):
            answer = await self._find_answer(where, starter)
        if answer is not None:
            link = self.chains.get(answer)
            if link is not None and link.role != GONE:
                chain.append({"role": link.role, "content": link.content})
        for item in chain:
            self.history.add_message(key, item["role"], item["content"])

    def _asked(self, message_id: int) -> bool:
        link = self.chains.get(message_id)
        return link is not None and link.role == "user"

    async def _find_answer(self, channel: discord.abc.Messageable, question: int) -> int | None:
        """The bot's answer to ``question`` when it is not remembered (the bot restarted since):
        one page of the channel's history after the question (``ANSWER_SCAN`` messages)."""
        parts: list[discord.Message] = []
        try:
            async for found in channel.history(
                limit=ANSWER_SCAN, after=discord.Object(id=question), oldest_first=True
            ):
                reference = found.reference
                if (
                    found.author.id == self.bot_id
                    and reference is not None
                    and reference.message_id == question
                ):
                    parts.append(found)
        except discord.HTTPException:
            return None
        if not parts:
            return None
        text = answer_text("\n".join(part.content for part in parts))
        for part in parts:
            self.chains.remember(part.id, "assistant", text, question, fetched=True)
        return parts[-1].id

    def forget(self, message_id: int) -> None:
        """A message was deleted (MESSAGE_DELETE): its text leaves the bot's memory."""
        self.chains.forget(message_id, known_only=True)

    def remember_question(self, message: discord.Message, text: str, parent: int | None) -> None:
        self.chains.remember(message.id, "user", text, parent)

    def remember_answer(self, ids: list[int], text: str, question_id: int) -> None:
        text = answer_text(text)
        for message_id in ids:
            self.chains.remember(message_id, "assistant", text, question_id)
