"""``botctl bench``: measure, on this machine, each row of the performance table the bot was built
to win, with the seed's claim beside each figure and the budgets as pass/fail lines.

The measuring is in ``botctl.bench``, the rendering in ``botctl.reporters.bench``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from botctl.bench.suite import Plan, run_suite
from botctl.console import console, err_console, print_json
from botctl.reporters import bench as report


def bench(
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            "-q",
            help="Fewer rounds and sizes and a short end-to-end pair, without the protocol, "
            "chain, realistic and local-model rows: under 30 s. The output says what was left out.",
        ),
    ] = False,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON object (rows, figures, budgets) and nothing else."
        ),
    ] = False,
) -> None:
    """Measure the bot's performance claims on this machine: LLM calls with and without dedup,
    the history LRU against a list LRU, metrics writes per event, sandbox messages per second
    against a bare discord.py bot (and on uvloop), the OpenAI protocol against Ollama's, reply
    chains against channel history, the bot under Discord's rate limits with a streaming LLM,
    and the local model's time to first token (when `make local-model` installed it).

    Figures are medians of interleaved runs, compared as ratios measured in the same run.
    Budgets are reported as pass/fail lines; they do not change the exit code.

    [dim]botctl bench --quick[/]
    """
    plan = Plan.quick_plan() if quick else Plan.full_plan()
    with report.progress(err_console) as progress:
        result = run_suite(plan, progress=progress)
    if json_output:
        print_json(report.report_json(result))
    else:
        report.print_report(console, result)
