"""The benchmark's tables, and README.md's performance figures generated from them.

    python bench/readme.py            # README.md's bench block from bench/results/latest.json
    python bench/readme.py --check    # exit 1 when README.md is not what the results give

The block sits between the markers ``<!-- bench:results -->`` and ``<!-- /bench:results -->``
inside README's performance section; the text around it is written by hand and kept.
``render(result)`` is also what bench/run.py writes to bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "latest.json"
README = ROOT / "README.md"
BEGIN = "<!-- bench:results -->"
END = "<!-- /bench:results -->"

#: the columns of the acceptance table, in order (sync_bench's tool names)
PEER_COLUMNS = ("mbsync", "imap-tools", "IMAPClient BODY.PEEK[] floor")


def secs(v: float | None) -> str:
    if v is None:
        return ""
    return f"{v:.3f}" if v < 1 else f"{v:.2f}"


def mb(v: float | None) -> str:
    return "" if v is None else f"{v:,.0f}"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def when(section: dict[str, Any]) -> str:
    return str(section["started"]).replace("T", " ").removesuffix("+00:00") + " UTC"


def load(section: dict[str, Any]) -> str:
    before, after = section.get("load_before"), section.get("load_after")
    if not before:
        return "load average not recorded"
    return f"load average {before[0]:.1f} before, {after[0]:.1f} after" if after else ""


def render_sync(sync: dict[str, Any]) -> str:
    v = sync.get("versions", {})
    head = (
        f"**Sync** ({sync['runs']} runs of every case, interleaved, each step a fresh process;"
        f" medians of wall time; {when(sync)}, {sync['cores']} cores, {load(sync)};"
        f" {v.get('mbsync', 'mbsync')}, imap-tools {v.get('imap-tools', '?')},"
        f" Python {v.get('python', '?')}, DuckDB {v.get('duckdb', '?')})"
    )
    lines = [
        head,
        "",
        "| case | mailops s | mbsync s | imap-tools s | IMAPClient floor s |"
        " mailops ÷ mbsync | ÷ imap-tools | ÷ floor | goal | |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for case in sync["cases"]:
        tools, ratios = case["tools"], case["ratios"]
        cells = [
            secs(tools[t]["median_s"]) if t in tools else "–" for t in ("mailops", *PEER_COLUMNS)
        ]
        rat = [f"{ratios[t]:.2f}×" if t in ratios else "–" for t in PEER_COLUMNS]
        lines.append(
            f"| {case['title']} | {' | '.join(cells)} | {' | '.join(rat)} |"
            f" {case['goal_text']} | {verdict(case['met'])} |"
        )
    lines += [
        "",
        "| case | tool | median s | min–max s | CPU s | in-process s | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for case in sync["cases"]:
        for tool, t in case["tools"].items():
            lines.append(
                f"| {case['title']} | {tool} | {secs(t['median_s'])} |"
                f" {secs(t['min_s'])}–{secs(t['max_s'])} | {secs(t['cpu_s'])} |"
                f" {secs(t['in_process_s'])} | {mb(t['rss_mb'])} |"
            )
    return "\n".join(lines)


def render_reports(reports: dict[str, Any]) -> str:
    sizes = reports["sizes"]
    head = (
        f"**Reports** (every query {reports['runs']} times, medians; {when(reports)},"
        f" {reports['cores']} cores, {load(reports)}; goal: every query"
        f" < {reports['goal']['query_max_s']:g} s and the whole notebook"
        f" < {reports['goal']['notebook_max_s']:g} s at the largest store:"
        f" queries {verdict(reports['queries_met'])}, notebook {verdict(reports['notebook_met'])})"
    )
    cols = " | ".join(f"{s['activities']:,} activities: s" for s in sizes)
    lines = [
        head,
        "",
        f"| report query | {cols} | rows at {sizes[-1]['activities']:,} |",
        "|---|" + "---:|" * (len(sizes) + 1),
    ]
    for k, q in enumerate(sizes[-1]["queries"]):
        cells = " | ".join(secs(s["queries"][k]["median_s"]) for s in sizes)
        lines.append(f"| {q['name']} | {cells} | {q['rows']:,} |")
    if any("notebook" in s for s in sizes):
        cells = " | ".join(
            f"{s['notebook']['wall_s']:.1f} ({mb(s['notebook']['rss_mb'])} MB)"
            if "notebook" in s
            else "–"
            for s in sizes
        )
        lines.append(f"| whole activity_report notebook (papermill), s (peak RSS) | {cells} | |")
    peer = sizes[0].get("peer")
    if peer:
        sql = next(q for q in sizes[0]["queries"] if q["name"] == "response times (30 d)")
        lines += [
            "",
            f"The peer, {peer['name']} (all activities into pandas, a Python loop per"
            f" (customer, thread)), on {sizes[0]['activities']:,} activities:"
            f" {secs(peer['median_s'])} s, {peer['median_s'] / sql['median_s']:.0f}× the SQL.",
        ]
    return "\n".join(lines)


def render(result: dict[str, Any]) -> str:
    """The markdown of a bench/run.py result: what ran, then the sync and report tables."""
    runs = []
    for name in ("sync", "reports"):
        section = result.get(name) or {}
        runs.append(
            f"{name}: `{section.get('command', result['command'])}`"
            f" at commit {section.get('commit', result['commit'])}"
        )
    parts = [
        "Generated by `python bench/readme.py` from bench/results/latest.json, written by "
        + "; ".join(runs)
        + "."
    ]
    if result.get("sync"):
        parts.append(render_sync(result["sync"]))
    if result.get("reports"):
        parts.append(render_reports(result["reports"]))
    return "\n\n".join(parts)


def update(text: str, block: str) -> str:
    """TEXT with what stands between the bench markers replaced by BLOCK."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"README.md needs exactly one {BEGIN} and one {END}")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    if end < start:
        raise ValueError(f"{END} comes before {BEGIN}")
    return text[:start] + "\n" + block.strip() + "\n" + text[end:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--readme", default=str(README))
    ap.add_argument("--check", action="store_true", help="exit 1 when README.md is stale")
    args = ap.parse_args()
    result = json.loads(Path(args.results).read_text())
    readme = Path(args.readme)
    old = readme.read_text()
    new = update(old, render(result))
    if args.check:
        if new != old:
            print(f"{readme} is not what {args.results} gives: run python bench/readme.py")
            sys.exit(1)
        return
    if new != old:
        readme.write_text(new)
        print(f"{readme}: performance figures from {args.results}")


if __name__ == "__main__":
    main()
