"""Readable text summaries of snapshots (pure: messages in, text out)."""

from __future__ import annotations

from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract import STATES, state_label

__all__ = [
    "RUN_LINE_HEADER",
    "STATE_COLUMNS",
    "format_node_details",
    "format_run_line",
    "format_summary",
    "state_label",
]

#: Count columns, in state number order (the one state table's order).
STATE_COLUMNS = STATES


def _seconds(d: object) -> str:
    ns = d.ToNanoseconds()  # type: ignore[attr-defined]
    return f"{ns / 1e9:.2f}s"


def _row(name: str, c: db.StateCounts) -> str:
    return f"  {name:<10}" + "".join(f"{getattr(c, s):>10}" for s in STATE_COLUMNS) + f"{c.total:>10}"


#: Column headings of :func:`format_run_line`.
RUN_LINE_HEADER = f"{'RUN':<36} {'STATE':<9} {'STARTED (UTC)':<20} {'DURATION':>9}  NODES"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def format_node_details(snap: db.DashboardSnapshot) -> list[str]:
    """Lines for the selected asset's nodes and attempts ([] when nothing is selected)."""
    if not snap.node_details:
        return []
    sel = snap.selection
    lines = [f"  nodes of {sel.pipeline_id}/{sel.asset_id}:"]
    for node in snap.node_details:
        lines.append(f"    {node.node_id} ({node.stage_id}): {state_label(node.state)}")
        for a in node.attempts:
            text = f"      attempt {a.attempt_id}: {state_label(a.state)}"
            if a.HasField("duration"):
                text += f" in {_seconds(a.duration)}"
            if a.HasField("exit_code"):
                text += f", exit {a.exit_code}"
            if a.error.error_class:
                text += f", {a.error.error_class}: {a.error.detail}"
            if a.attributes.get("skip_reason"):
                text += f" ({a.attributes['skip_reason']})"
            if a.stale:
                text += " (stale)"
            lines.append(text)
            cmd = a.command.command_line or a.command.action
            if cmd:
                lines.append(f"        $ {cmd}")
    return lines


def format_run_line(item: db.RunListItem) -> str:
    """One line per run for ``vfo-otel runs``."""
    h, s = item.run, item.summary
    start = h.start_time.ToDatetime().isoformat(timespec="seconds") if h.HasField("start_time") else "-"
    dur = _seconds(h.duration) if h.HasField("duration") else "-"
    return (
        f"{h.run_id:<36} {state_label(h.state):<9} {start:<20} {dur:>9}  "
        f"{s.nodes.complete} complete, {s.nodes.failed} failed, {s.nodes.skipped} skipped, "
        f"{s.nodes.running} running"
    )


def format_summary(snap: db.DashboardSnapshot) -> str:
    """The run summary: header, counts per state, stage totals, pipelines, selected node details."""
    h = snap.run
    lines = [
        f"run {h.run_id}: {state_label(h.state)} (revision {snap.revision}, schema v{snap.schema_version})"
    ]
    if h.HasField("duration"):
        lines[0] += f" in {_seconds(h.duration)}"
    if h.error.error_class:
        lines.append(f"  error: {h.error.error_class}: {h.error.detail}")
    lines.append("")
    lines.append("  " + f"{'counts':<10}" + "".join(f"{s:>10}" for s in STATE_COLUMNS) + f"{'total':>10}")
    for name in ("pipelines", "assets", "nodes", "attempts"):
        lines.append(_row(name, getattr(snap.summary, name)))
    lines.append("")
    lines.append(
        f"  {'stage':<12}{'nodes':>7}{'complete':>10}{'failed':>8}{'skipped':>9}{'total time':>12}"
        f"{'max time':>10}"
    )
    for st in snap.stage_totals:
        c = st.counts
        lines.append(
            f"  {st.stage_id:<12}{c.total:>7}{c.complete:>10}{c.failed:>8}{c.skipped:>9}"
            f"{_seconds(st.total_duration):>12}{_seconds(st.max_duration):>10}"
        )
    lines.append("")
    for p in snap.pipelines:
        # the snapshot holds one page of the asset list; the counts cover every asset
        failed = list(dict.fromkeys(a.asset_id for a in p.assets if a.state == ev.STATE_FAILED))
        more = p.asset_counts.failed - len(failed)
        if failed:
            note = f" (failed: {', '.join(failed)}" + (f" and {more} more" if more > 0 else "") + ")"
        elif more > 0:
            note = f" ({more} failed, listed on other pages of the asset list: --json or the dashboard)"
        else:
            note = ""
        lines.append(
            f"  pipeline {p.pipeline_id}: {state_label(p.state)}, {_plural(p.asset_counts.total, 'asset')}"
            + note
        )
    details = format_node_details(snap)
    if details:
        lines += ["", *details]
    return "\n".join(lines)
