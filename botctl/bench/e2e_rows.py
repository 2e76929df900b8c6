"""The end-to-end rows of the report, from :func:`botctl.bench.e2e.run_e2e`'s and the other
sandbox benchmarks' results: the bot against the bare bot (and on uvloop), the OpenAI protocol
against Ollama's, reply chains against channel history, the realistic sandbox, the local model.

Every CPU comparison is CPU per reply (each process's own CPU seconds over the replies in the
window), medians of alternated trials: on a shared machine that is the capacity estimate that
holds whether or not a side kept up with the offered load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botctl.bench.budgets import Budget
from botctl.bench.e2e import cpu_ratio
from botctl.bench.rows import Row, ms

__all__ = [
    "CHAINS_VS_HISTORY",
    "E2E_VS_BARE",
    "OPENAI_VS_OLLAMA",
    "REALISTIC_OVERHEAD_MS",
    "chains_row",
    "e2e_rows",
    "openai_row",
    "realistic_rows",
    "ttft_row",
]

E2E_VS_BARE = 0.55  # issue 9: the bot's capacity over the bare bot's, on the bare bot's loop
OPENAI_VS_OLLAMA = 1.2  # issue 11: CPU per reply, openai path over ollama path
CHAINS_VS_HISTORY = 1.3  # issue 12: CPU per reply, cached reply chains over channel history
REALISTIC_OVERHEAD_MS = 150.0  # issue 14: final text p50 over the model's own time, at 1 q/s


def _errors(*sides: Mapping[str, Any] | None) -> str | None:
    errors = [str(e) for side in sides if side for e in side.get("errors", [])]
    return "; ".join(errors) or None


def e2e_rows(result: dict[str, Any], *, quick: bool, budget: bool = True) -> list[Row]:
    """A row per duplicate ratio, and the bot on uvloop beside the 0 % one; the 0 % row carries
    the budget (unless ``budget`` is off, for extra rows such as a deliberate overload)."""
    out = []
    for row in result["rows"]:
        bot, bare = row["bot"], row["bare"]
        dup = row["duplicate_ratio"]
        errors = [*bot["errors"], *bare["errors"]]
        if bot["replies_per_s"] is None or bare["replies_per_s"] is None:
            measured = "not measured: " + ("; ".join(str(e) for e in errors) or "no trial finished")
        else:
            measured = (
                f"at {row['rate']:g} msg/s offered: bot {bot['replies_per_s']:,.0f}/s vs bare "
                f"discord.py {bare['replies_per_s']:,.0f}/s = {row['ratio']:.2f}x; bot reply "
                f"p50/p95/p99 {ms(bot['p50_ms'])}/{ms(bot['p95_ms'])}/{ms(bot['p99_ms'])} ms"
            )
            if row.get("cpu_per_reply_ratio"):
                measured += (
                    f"; CPU per reply {bot['cpu_ms_per_reply']:.2f} vs "
                    f"{bare['cpu_ms_per_reply']:.2f} ms ({row['cpu_per_reply_ratio']:.2f}x)"
                )
                if bot.get("system_ms_per_reply") and bare.get("system_ms_per_reply"):
                    measured += (
                        f", of which in the kernel {bot['system_ms_per_reply']:.2f} vs "
                        f"{bare['system_ms_per_reply']:.2f} ms"
                    )
        notes = []
        if bare.get("kept_up"):
            notes.append(
                "the bare bot kept up with the offered rate (not saturated): its replies/s is the "
                "offered rate, so the CPU-per-reply ratio is the capacity estimate"
            )
        if quick:
            notes.append(f"--quick: one {result['duration_s']:g} s trial each")
        budgets = []
        if dup == 0.0 and budget:
            # CPU per reply, not replies/s: where the bare bot keeps up with the load its replies/s
            # is the offered rate, not its capacity, and the throughput ratio flatters the bot;
            # where both saturate the two ratios agree.
            uv = row.get("uvloop_cpu_per_reply_ratio")
            detail = ""
            if row["ratio"] is not None:
                detail = (
                    f"replies/s ratio {row['ratio']:.2f}x at {row['rate']:g} msg/s, pairs "
                    f"{row['pair_ratios']}; the bot on uvloop "
                    + (f"{uv:.2f}x" if uv else "not measured")
                )
            budgets.append(
                Budget(
                    "end to end: bot capacity over a bare discord.py bot, both on asyncio "
                    "(CPU per reply, 0 % duplicates)",
                    row.get("cpu_per_reply_ratio"),
                    ">=",
                    E2E_VS_BARE,
                    detail=detail,
                    reason="; ".join(str(e) for e in errors) or None,
                )
            )
        out.append(
            Row(
                "e2e" if dup == 0.0 else f"e2e_dup{round(dup * 100)}",
                f"Sandbox end to end, {dup:.0%} duplicates (replies/s)",
                None,
                measured,
                budgets,
                data=row,
                note="; ".join(notes) or None,
            )
        )
        if dup == 0.0 and row.get("bot_uvloop"):
            out.append(_uvloop_row(row))
    return out


def _uvloop_row(row: dict[str, Any]) -> Row:
    uv, bot, bare = row["bot_uvloop"], row["bot"], row["bare"]
    if not uv.get("cpu_ms_per_reply") or not bare.get("cpu_ms_per_reply"):
        measured = "not measured: " + (_errors(uv) or "no trial finished")
    else:
        measured = (
            f"bot on uvloop {uv['replies_per_s']:,.0f}/s, CPU per reply {uv['cpu_ms_per_reply']:.2f} "
            f"ms vs the bare bot on asyncio {bare['cpu_ms_per_reply']:.2f} ms "
            f"({row['uvloop_cpu_per_reply_ratio']:.2f}x); the bot on asyncio "
            f"{bot['cpu_ms_per_reply']:.2f} ms (uvloop/asyncio "
            f"{uv['cpu_ms_per_reply'] / bot['cpu_ms_per_reply']:.2f}x)"
        )
    return Row(
        "e2e_uvloop",
        "Sandbox end to end, the bot on uvloop (0 % duplicates)",
        None,
        measured,
        data={"bot_uvloop": uv, "uvloop_cpu_per_reply_ratio": row["uvloop_cpu_per_reply_ratio"]},
        note="informational: the budget is on the bare bot's loop (asyncio), the row above",
    )


def openai_row(row: dict[str, Any]) -> Row:
    """Issue 11: the bot on the OpenAI protocol against Ollama's, same sandbox LLM and load."""
    ollama, openai = row["bot"], row["variants"].get("bot_openai")
    figure = cpu_ratio(openai or {}, ollama) if openai else None
    calls = [e.get("llm_calls_by_api") or {} for e in (openai or {}).get("extra", [])]
    wrong = any(c.get("ollama") for c in calls) or not any(c.get("openai") for c in calls)
    if figure is None or openai is None:
        measured = "not measured: " + (_errors(ollama, openai) or "no trial finished")
    else:
        measured = (
            f"CPU per reply: openai {openai['cpu_ms_per_reply']:.3f} ms vs ollama "
            f"{ollama['cpu_ms_per_reply']:.3f} ms = {figure:.2f}x; replies/s "
            f"{openai['replies_per_s']:,.0f} vs {ollama['replies_per_s']:,.0f} at "
            f"{row['rate']:g} msg/s offered; sandbox LLM calls by protocol {calls}"
        )
    return Row(
        "openai",
        "OpenAI protocol against Ollama's (CPU per reply, same sandbox LLM)",
        None,
        measured,
        [
            Budget(
                "providers: openai path CPU per reply over the ollama path's",
                None if wrong else figure,
                "<=",
                OPENAI_VS_OLLAMA,
                detail="the sandbox LLM serves both on one port; the bot given its /v1 URL",
                reason=_errors(ollama, openai)
                or ("the openai trials did not reach /v1" if wrong else None),
            )
        ],
        data={"ollama": ollama, "openai": openai},
    )


def chains_row(row: dict[str, Any], depth: int) -> Row:
    """Issue 12: replies continuing cached chains ``depth`` deep against plain channel history."""
    plain, chains = row["bot"], row["variants"].get("bot_chains")
    figure = cpu_ratio(chains or {}, plain) if chains else None
    counted = [e.get("bot") or {} for e in (chains or {}).get("extra", [])]
    fetched = sum(bot.get("chains_fetched", 0) for bot in counted)
    taken = sum(bot.get("messages", 0) for bot in counted)
    per_message = fetched / taken if taken else None
    if figure is None or chains is None:
        measured = "not measured: " + (_errors(plain, chains) or "no trial finished")
    else:
        measured = (
            f"CPU per reply: replies in {depth}-message chains {chains['cpu_ms_per_reply']:.3f} ms "
            f"vs channel history {plain['cpu_ms_per_reply']:.3f} ms = {figure:.2f}x; Discord "
            f"fetches {fetched:,} for {taken:,} messages; replies/s {chains['replies_per_s']:,.0f} "
            f"vs {plain['replies_per_s']:,.0f} at {row['rate']:g} msg/s offered"
        )
    reason = _errors(plain, chains)
    return Row(
        "chains",
        f"Reply chains {depth} deep (cached) against channel history (CPU per reply)",
        None,
        measured,
        [
            Budget(
                f"conversations: CPU per reply, {depth}-message reply chains over channel history",
                figure,
                "<=",
                CHAINS_VS_HISTORY,
                reason=reason,
            ),
            Budget(
                "conversations: Discord fetches per message for a cached chain",
                per_message,
                "==",
                0,
                unit="",
                detail=f"{fetched:,} fetches, {taken:,} messages in the windows",
                reason=reason or ("no message was measured" if not taken else None),
            ),
        ],
        data={"history": plain, "chains": chains, "fetched": fetched, "messages": taken},
        note=(
            "plain history: the bot's default history limit (20), so channels fold their oldest "
            "turns into a summary (an extra LLM call) as they fill; chains stay under it"
        ),
    )


def _by_bucket(counts: Mapping[str, int] | None) -> str:
    return f" ({', '.join(f'{k} {v}' for k, v in counts.items())})" if counts else ""


def realistic_rows(result: dict[str, Any]) -> list[Row]:
    """Issue 14: one row per rate of the realistic sandbox."""
    out = []
    for r in result["rows"]:
        rate = r["rate"]
        title = (
            f"Realistic sandbox: {rate:g} q/s over {result['channels']} channels "
            "(Discord's limits, streaming LLM)"
        )
        if r["error"] or r["final_p50_ms"] is None:
            measured = f"not measured: {r['error'] or 'no answer'}"
        else:
            measured = (
                f"final text p50/p95 {ms(r['final_p50_ms'])}/{ms(r['final_p95_ms'])} ms vs the "
                f"model's own {ms(r['model_ms'])} ms: +{r['overhead_p50_ms']:,.0f}/"
                f"+{r['overhead_p95_ms']:,.0f} ms; REST calls per answer "
                f"{r['rest_per_answer']:.2f} (sends {r['sends_per_answer']:.2f}, edits "
                f"{r['edits_per_answer']:.2f}, typing {r['typing_per_answer']:.2f}); 429s "
                f"{r['rate_limited']}{_by_bucket(r['rate_limited_by_bucket'])}; {r['answers']} "
                "answers"
            )
            if r["unanswered"] or r["drain_timed_out"]:
                measured += f", {r['unanswered']} unanswered at the end"
        reason = r["error"] or None
        budgets = []
        if rate == 1.0:
            budgets.append(
                Budget(
                    "realistic: final text p50 over the model's own time, 1 q/s",
                    r["overhead_p50_ms"],
                    "<=",
                    REALISTIC_OVERHEAD_MS,
                    unit="ms",
                    detail=f"p95 +{ms(r['overhead_p95_ms'])} ms",
                    reason=reason,
                )
            )
        budgets.append(
            Budget(
                f"realistic: 429s the bot hit at {rate:g} q/s",
                r["rate_limited"],
                "==",
                0,
                unit="",
                detail=f"by bucket:{_by_bucket(r['rate_limited_by_bucket']) or ' none'}",
                reason=reason,
            )
        )
        out.append(Row(f"realistic_{rate:g}", title, None, measured, budgets, data=r))
    return out


def ttft_row(result: dict[str, Any], budget: Budget) -> Row:
    """Issue 11: the real local model's time to first token as the bot sees it."""
    if not result.get("available"):
        return Row(
            "ttft",
            "Local model: time to first token the bot adds",
            None,
            f"skipped: {result.get('reason')}",
            [budget],
        )
    bot, raw = result["bot"], result["raw"]
    measured = (
        f"bot TTFT p50 {bot['ttft_p50_ms']:.1f} ms, llama.cpp prompt_ms p50 "
        f"{bot['server_prompt_p50_ms']:.1f} ms: the bot adds {bot['added_p50_ms']:.1f} ms p50 "
        f"({bot['added_p95_ms']:.1f} p95); a bare aiohttp client adds {raw['added_p50_ms']:.1f} ms"
    )
    return Row(
        "ttft",
        "Local model (SmolLM2, llama.cpp): time to first token the bot adds",
        None,
        measured,
        [budget],
        data=result,
    )
