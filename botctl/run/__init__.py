"""``botctl run``: the bot on Discord or in the sandbox, stopped in order, with its figures.

The modules: ``session`` (one process), ``processes`` (``--processes N``), ``sandboxed`` (the
sandbox around the bot), ``llm`` (which LLM answers), ``report`` (what a run hands the reporter).
Nothing is imported here, so that ``botctl run --help`` loads none of them.
"""
