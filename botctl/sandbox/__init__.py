"""The sandbox: loopback stand-ins for Discord and Ollama, and simulated users.

It runs on 127.0.0.1 only, in its own process when the bot runs against it, so that a profile of
the bot shows the bot and not the sandbox. ``llm_server`` is an Ollama-compatible LLM with set
latency and injectable faults; it imports nothing but aiohttp and orjson.
"""
