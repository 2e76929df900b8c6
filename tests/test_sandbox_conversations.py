"""Conversations in the sandbox, as discord.py sees them: replies, fetches, threads, attachments, roles."""

from __future__ import annotations

import asyncio
import base64

import aiohttp
import discord
import pytest
from _sandbox import WAIT, Inbox, connected, make_bot, sandbox

from botctl.sandbox.client import SandboxProcess
from botctl.sandbox.config import SandboxConfig
from botctl.sandbox.discord_server import NewAttachment

pytestmark = pytest.mark.integration

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


async def test_a_reply_to_the_bot_carries_the_chain_and_pings_it() -> None:
    async with sandbox() as server:
        client = make_bot()
        inbox = Inbox()
        client.add_listener(inbox.on_message, "on_message")
        async with connected(client):
            cid, user = server.channel_ids[0], server.user_ids[1]
            first = server.post_message(cid, user, "what is a mutex?")
            (question,) = await inbox.wait_for(1)
            answer = await question.reply("a lock", mention_author=False)

            follow = server.post_message(
                cid, user, "and a semaphore?", reply_to=answer.id, mention_bot=False
            )
            message = (await inbox.wait_for(2))[-1]  # the bot's own sends are not dispatched
            assert message.id == int(follow) and message.content == "and a semaphore?"
            assert message.type is discord.MessageType.reply
            ref = message.reference
            assert ref is not None and ref.message_id == answer.id and ref.channel_id == int(cid)
            assert isinstance(ref.resolved, discord.Message)
            assert ref.resolved.content == "a lock" and ref.resolved.author == client.user
            assert client.user in message.mentions  # the reply pings the bot: a mention

            # The chain can be walked back with fetches: the bot's answer points at the question.
            channel = client.get_channel(int(cid))
            assert isinstance(channel, discord.TextChannel)
            fetched = await channel.fetch_message(answer.id)
            assert fetched.reference is not None and fetched.reference.message_id == int(first)
            root = await channel.fetch_message(int(first))
            assert root.content.endswith("what is a mutex?")

            # A deleted message: MESSAGE_DELETE, a reply to it has no resolved message, a fetch 404s.
            deleted = asyncio.ensure_future(client.wait_for("raw_message_delete", timeout=WAIT))
            assert server.delete_message(first)
            assert (await deleted).message_id == int(first)
            server.post_message(cid, user, "still there?", reply_to=first)
            orphan = (await inbox.wait_for(3))[-1]
            assert orphan.reference is not None and orphan.reference.message_id == int(first)
            assert isinstance(orphan.reference.resolved, discord.DeletedReferencedMessage)
            with pytest.raises(discord.NotFound) as info:
                await channel.fetch_message(int(first))
            assert info.value.code == 10008
            assert not server.delete_message(first)


async def test_threads_reach_discord_py_and_carry_their_messages() -> None:
    async with sandbox(channels=2) as server:
        client = make_bot()
        inbox = Inbox()
        client.add_listener(inbox.on_message, "on_message")
        async with connected(client):
            cid, user = server.channel_ids[1], server.user_ids[0]
            starter = server.post_message(cid, user, "let us talk about queues")
            await inbox.wait_for(1)
            created = asyncio.ensure_future(client.wait_for("thread_create", timeout=WAIT))
            tid = server.start_thread(starter, "queues")
            thread = await created
            assert tid == starter and thread.id == int(tid)  # as on Discord: the message's id
            assert thread.name == "queues" and thread.parent_id == int(cid)
            assert thread.owner_id == int(user)
            assert thread.guild.get_thread(thread.id) is thread

            server.post_message(tid, user, "FIFO or LIFO?")
            message = (await inbox.wait_for(2))[-1]
            assert message.channel == thread and message.guild == thread.guild
            reply = await message.reply("FIFO", mention_author=False)
            assert reply.channel == thread
            sent = server.all_sends[-1]
            assert sent.channel_id == tid and sent.reply_to == str(message.id)

            # The thread continues its starter: the starter is fetched by the thread's id.
            parent = thread.parent
            assert isinstance(parent, discord.TextChannel)
            assert (await parent.fetch_message(thread.id)).content.endswith("about queues")
            history = [m async for m in thread.history(limit=10, oldest_first=True)]
            assert history[0].type is discord.MessageType.thread_starter_message
            assert history[0].reference is not None
            assert history[0].reference.message_id == int(starter)
            assert [m.content for m in history[1:]] == [message.content, "FIFO"]

            # The bot may start a thread from a message too.
            other = server.post_message(cid, user, "another topic")
            question = (await inbox.wait_for(3))[-1]
            own = await question.create_thread(name="bot thread")
            assert own.id == int(other) and own.parent_id == int(cid)
            assert server.world.channels[other]["owner_id"] == server.bot_user_id


async def test_attachments_are_served_over_http_with_their_metadata() -> None:
    async with sandbox() as server:
        client = make_bot()
        inbox = Inbox()
        client.add_listener(inbox.on_message, "on_message")
        async with connected(client):
            files = [
                NewAttachment("notes.md", b"# Title\nbody\n", "text/markdown"),
                NewAttachment("dot.png", PNG, "image/png"),
                NewAttachment("gone.txt", b"x", "text/plain", fault="404"),
                NewAttachment("slow.png", PNG, "image/png", fault="hang"),
            ]
            server.post_message(server.channel_ids[0], server.user_ids[0], "see", attachments=files)
            (message,) = await inbox.wait_for(1)
            notes, dot, gone, slow = message.attachments
            assert (notes.filename, notes.size, notes.content_type) == (
                "notes.md",
                13,
                "text/markdown",
            )
            assert notes.url.startswith(server.base_url + "/attachments/")
            assert await notes.read() == b"# Title\nbody\n"
            assert dot.content_type == "image/png" and await dot.read() == PNG
            with pytest.raises(discord.NotFound):
                await gone.read()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(slow.read(), 0.3)


async def test_roles_and_manage_server_reach_discord_py() -> None:
    async with sandbox() as server:
        intents = discord.Intents.default()
        intents.members = True
        client = make_bot(intents=intents)
        inbox = Inbox()
        client.add_listener(inbox.on_message, "on_message")
        async with connected(client):
            guild = client.get_guild(int(server.guild_id))
            assert guild is not None
            names = {r.name: r for r in guild.roles}
            assert names["moderator"].permissions.manage_guild
            assert not names["member"].permissions.manage_guild
            assert not guild.default_role.permissions.manage_guild
            assert guild.owner_id == int(server.owner_id)

            cid = server.channel_ids[0]
            server.post_message(cid, server.moderator_id, "may I?")
            server.post_message(cid, server.user_ids[0], "and I?")
            moderator, plain = await inbox.wait_for(2)
            assert isinstance(moderator.author, discord.Member)
            assert moderator.author.guild_permissions.manage_guild
            assert [r.name for r in moderator.author.roles] == ["@everyone", "moderator"]
            assert isinstance(plain.author, discord.Member)
            assert not plain.author.guild_permissions.manage_guild

            updated = asyncio.ensure_future(client.wait_for("member_update", timeout=WAIT))
            server.set_roles(server.user_ids[0], ["member"])
            _, after = await updated
            assert [r.name for r in after.roles] == ["@everyone", "member"]
            server.post_message(cid, server.user_ids[0], "now?")
            again = (await inbox.wait_for(3))[-1]
            assert isinstance(again.author, discord.Member)
            assert names["member"] in again.author.roles
            with pytest.raises(KeyError):
                server.set_roles(server.user_ids[0], ["no such role"])


async def test_the_sandbox_process_client_drives_conversations() -> None:
    config = SandboxConfig(users=3, channels=2, llm=False)
    async with SandboxProcess(config) as sandbox_process, aiohttp.ClientSession() as http:
        world = await sandbox_process.world()
        (guild,) = world["guilds"]
        cid, user = guild["channel_ids"][0], world["user_ids"][1]
        assert {r["name"] for r in guild["roles"]} == {"@everyone", "moderator", "member"}

        first = await sandbox_process.say("hello", cid, user)
        reply = await sandbox_process.say(
            "with a file", cid, user, reply_to=first, attachment=("a.txt", b"abc", "text/plain")
        )
        payload = await sandbox_process.message(reply)
        assert payload is not None
        assert payload["message_reference"]["message_id"] == first
        assert payload["referenced_message"]["id"] == first
        (attachment,) = payload["attachments"]
        assert (attachment["filename"], attachment["size"]) == ("a.txt", 3)
        async with http.get(attachment["url"]) as response:
            assert await response.read() == b"abc"

        tid = await sandbox_process.start_thread(first, "talk")
        in_thread = await sandbox_process.say("in the thread", tid, user)
        payload = await sandbox_process.message(in_thread)
        assert payload is not None and payload["channel_id"] == tid
        assert tid in (await sandbox_process.world())["guilds"][0]["thread_ids"]

        await sandbox_process.set_roles(user, ["moderator"])
        moderator_role = next(r["id"] for r in guild["roles"] if r["name"] == "moderator")
        payload = await sandbox_process.message(await sandbox_process.say("now", cid, user))
        assert payload is not None and payload["member"]["roles"] == [moderator_role]

        assert await sandbox_process.delete_message(first)
        assert not await sandbox_process.delete_message(first)
        assert await sandbox_process.message(first) is None
        dm = await sandbox_process.dm("psst", user)
        payload = await sandbox_process.message(dm)
        assert payload is not None and "guild_id" not in payload
        stats = await sandbox_process.stats()
        assert stats["rate_limits"] is True and stats["messages_posted"] == 5
