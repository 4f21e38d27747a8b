"""Human-readable rendering of a batch outcome."""

from __future__ import annotations

import json

from rh_host.outcome import BatchOutcome
from rh_sdk.protocol import RunStatus

__all__ = ["render_outcome"]

_LOG_LEVELS_SHOWN_ON_FAILURE = {"WARNING", "ERROR", "CRITICAL"}


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _mib(kb: int) -> str:
    return f"{kb / 1024:.1f} MiB" if kb else "-"


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:g}"


def _short(value: object, width: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def render_outcome(outcome: BatchOutcome, show_logs: bool = False) -> str:
    lines = [
        f"batch {outcome.batch_id}: {outcome.result_count} results, "
        f"{len(outcome.handlers)} handlers, {_ms(outcome.duration_ms)}",
        "",
        f"  {'PRI':>4}  {'HANDLER':<22} {'STATUS':<15} {'WALL':>9} {'CPU':>9} {'PEAK RSS':>10}  ISOLATION",
    ]
    for run in outcome.handlers:
        lines.append(
            f"  {run.priority:>4}  {run.name:<22} {run.status.value:<15} {_ms(run.usage.wall_ms):>9} "
            f"{_ms(run.usage.cpu_ms):>9} {_mib(run.usage.peak_rss_kb):>10}  {run.isolation}"
        )
        if run.error:
            lines.append(f"  {'':>4}  └ {run.error}")
        if run.clamped_limits:
            changes = ", ".join(
                f"{k} {_number(c.requested)} -> {_number(c.effective)}" for k, c in run.clamped_limits.items()
            )
            lines.append(f"  {'':>4}  └ limits clamped to the ceilings: {changes}")
        for conn in run.egress or []:
            shown = conn["outcome"] if conn["outcome"] == "ok" else f"{conn['outcome']}: {conn['reason']}"
            times = f" (x{conn['count']})" if conn.get("count", 1) > 1 else ""  # turned away at the broker's door
            lines.append(f"  {'':>4}  ⇄ {conn['grant']} {shown}{times}")
        for record in run.logs:
            failing = run.status not in (RunStatus.OK, RunStatus.SKIPPED)
            if show_logs or (failing and record.level in _LOG_LEVELS_SHOWN_ON_FAILURE):
                origin = "[host] " if record.source == "host" else ""  # guest records cannot claim this
                lines.append(f"  {'':>4}    {record.level:<7} {origin}{record.message}")
    if outcome.output:
        lines += ["", "output:"]
        lines += [f"  {key}: {_short(value)}" for key, value in outcome.output.items()]
    if outcome.conflicts:
        lines += ["", "conflicts (lowest priority wins):"]
        lines += [f"  {c.key}: {c.winner} over {', '.join(c.overridden)}" for c in outcome.conflicts]
    failed = [r for r in outcome.handlers if r.status not in (RunStatus.OK, RunStatus.SKIPPED)]
    lines.append("")
    if outcome.success:
        lines.append("SUCCESS: every enabled handler succeeded")
    else:
        lines.append(f"FAILED: {len(failed)} of {len(outcome.handlers)} handlers did not succeed")
    return "\n".join(lines)
