"""A second process of the bot for the kill test: it leads one slow flight over SharedFlights and
prints a line per chunk, until the test kills it with SIGKILL.

Usage: python _shared_leader.py URL PREFIX KEY CHUNKS
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

from bot.llm.types import Done
from bot.shared import SharedFlights, SharedState


async def main(url: str, key_prefix: str, key: str, count: int) -> None:
    state = await SharedState.connect(url, prefix=key_prefix, process_id="child")
    flights = SharedFlights(state, window=5.0, lease=1.0, publish_interval=0.01)

    async def source() -> AsyncIterator[str | Done]:
        for i in range(count):
            await asyncio.sleep(0.05)
            yield f"w{i} "
        yield Done(reason="stop")

    subscription = flights.join(key, source)
    async for _chunk in subscription:
        print(f"chunk {subscription.role}", flush=True)
    await state.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
