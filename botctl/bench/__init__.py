"""``botctl bench``: measure, on this machine, the performance table the bot was built to win.

Every figure is a ratio or a count measured in one run, variants interleaved round by round and the
medians kept, so drift in CPU frequency or a noisy neighbour hits every variant alike. Budgets are
reported as pass/fail lines (:mod:`botctl.bench.budgets`), never asserted.

Modules: :mod:`~botctl.bench.dedup` (LLM calls with and without dedup), :mod:`~botctl.bench.history`
(the channel LRU against a list LRU and lru-dict), :mod:`~botctl.bench.metrics_io` (batched metrics
writes), :mod:`~botctl.bench.e2e` and :mod:`~botctl.bench.e2e_trial` (sandbox trials, a child
process each: the bot against a bare discord.py bot, on uvloop, on the OpenAI protocol, answering
reply chains), :mod:`~botctl.bench.realistic` (Discord's limits and a streaming LLM),
:mod:`~botctl.bench.local_ttft` (the real local model's time to first token),
:mod:`~botctl.bench.kb` (the knowledge base) and :mod:`~botctl.bench.suite` (the rows of
``botctl bench``, built in :mod:`~botctl.bench.seed_rows` and :mod:`~botctl.bench.e2e_rows`).
``benchmarks/`` (``make bench``) runs these with more rounds, plus the rows that need a profiler, strace or a fresh interpreter.
"""
