"""The short summary each report opens with (R6): 3-5 key figures from the report's own
frames (pure pandas, no query of its own, so it always agrees with the detail below)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = [
    "KeyFigure",
    "Summary",
    "accounts_summary",
    "activity_summary",
    "audit_summary",
    "followups_summary",
    "job_summary",
]


@dataclass(frozen=True)
class KeyFigure:
    label: str
    value: str
    note: str = ""


class Summary:
    """Key figures shown as cards in the notebook and the HTML report."""

    def __init__(self, figures: list[KeyFigure]) -> None:
        self.figures = figures

    def _repr_html_(self) -> str:
        from mailops.reports.html import figures_html

        return figures_html([(f.label, f.value, f.note) for f in self.figures])

    def __repr__(self) -> str:
        return "\n".join(
            f"{f.label}: {f.value}" + (f" ({f.note})" if f.note else "") for f in self.figures
        )

    def data(self) -> dict[str, str]:
        """{label: value}, for glue()."""
        return {f.label: f.value for f in self.figures}


def _n(value: Any) -> str:
    return f"{int(value):,}"


def _hours(value: Any) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{float(value):.1f} h"


def _sum(df: pd.DataFrame, col: str) -> int:
    return int(df[col].sum()) if col in df and not df.empty else 0


def activity_summary(
    per_person: pd.DataFrame,
    per_customer: pd.DataFrame,
    responses: pd.DataFrame,
    waiting: pd.DataFrame,
    deals: pd.DataFrame,
    *,
    waiting_days: float,
    business_hours: bool = False,
) -> Summary:
    inbound, outbound = _sum(per_person, "inbound"), _sum(per_person, "outbound")
    firsts = responses[responses["first_response"].astype(bool)] if not responses.empty else None
    median_first = firsts["hours"].median() if firsts is not None and len(firsts) else None
    oldest = waiting["waiting_days"].max() if not waiting.empty else None
    figures = [
        KeyFigure("emails", _n(inbound + outbound), f"{inbound:,} in · {outbound:,} out"),
        KeyFigure(
            "customers in touch",
            _n(len(per_customer)),
            f"{_n(len(per_person))} sales people",
        ),
        KeyFigure(
            "median first response",
            _hours(median_first),
            ("business hours" if business_hours else "clock hours")
            + f", {len(firsts) if firsts is not None else 0:,} threads",
        ),
        KeyFigure(
            f"waiting > {waiting_days:g} days",
            _n(len(waiting)),
            f"longest {float(oldest):.0f} days" if oldest is not None and pd.notna(oldest) else "",
        ),
    ]
    if not deals.empty:
        top = deals.iloc[0]
        figures.append(
            KeyFigure("most active deal", str(top.get("deal") or top["deal_id"]), f"{int(top['total']):,} emails")
        )
    return Summary(figures)


def audit_summary(runs: pd.DataFrame, by_reason: pd.DataFrame, recon: pd.DataFrame) -> Summary:
    failed = int((runs["status"] != "ok").sum()) if not runs.empty else 0
    stored = int(by_reason.loc[by_reason["decision"] == "stored", "messages"].sum()) if not by_reason.empty else 0
    skipped = int(by_reason.loc[by_reason["decision"] != "stored", "messages"].sum()) if not by_reason.empty else 0
    examined = stored + skipped
    skips = by_reason[by_reason["decision"] != "stored"] if not by_reason.empty else by_reason
    top_skip = skips.sort_values("messages", ascending=False).iloc[0] if not skips.empty else None
    flagged = int(recon["flagged"].sum()) if not recon.empty else 0
    figures = [
        KeyFigure("sync runs", _n(len(runs)), f"{failed:,} failed" if failed else "none failed"),
        KeyFigure("messages examined", _n(examined), f"{stored:,} stored · {skipped:,} skipped"),
        KeyFigure(
            "stored",
            f"{100 * stored / examined:.0f} %" if examined else "–",
            "of the messages examined",
        ),
        KeyFigure(
            "top skip reason",
            str(top_skip["reason"]) if top_skip is not None else "–",
            f"{int(top_skip['messages']):,} messages" if top_skip is not None else "",
        ),
        KeyFigure(
            "days flagged",
            _n(flagged),
            "server count and ledger disagree" if flagged else "every message accounted for",
        ),
    ]
    return Summary(figures)


def accounts_summary(
    states: pd.DataFrame, problems: pd.DataFrame, events: pd.DataFrame
) -> Summary:
    by_state = dict(zip(states.get("state", []), states.get("mailboxes", []), strict=False))
    total = int(sum(by_state.values()))
    longest = problems.sort_values("days_problematic", ascending=False).iloc[0] if not problems.empty else None
    figures = [
        KeyFigure("mailboxes", _n(total), f"{int(by_state.get('connected', 0)):,} connected"),
        KeyFigure(
            "problematic",
            _n(len(problems)),
            ", ".join(sorted({str(c) for c in problems["code"].dropna()})) if not problems.empty else "none",
        ),
        KeyFigure(
            "longest problematic",
            f"{float(longest['days_problematic']):.1f} days" if longest is not None else "–",
            str(longest["mailbox"]) if longest is not None else "",
        ),
        KeyFigure("state changes", _n(len(events)), "in the period"),
    ]
    return Summary(figures)


def job_summary(runs: pd.DataFrame, by_reason: pd.DataFrame, problems: pd.DataFrame) -> Summary:
    failed = int((runs["status"] != "ok").sum()) if not runs.empty else 0
    stored = _sum(runs, "stored")
    skipped = _sum(runs, "skipped")
    return Summary(
        [
            KeyFigure("mailboxes synced", _n(len(runs)), f"{failed:,} failed" if failed else "none failed"),
            KeyFigure("stored", _n(stored), "new customer emails"),
            KeyFigure("skipped", _n(skipped), f"{len(by_reason[by_reason['decision'] != 'stored']) if not by_reason.empty else 0} reasons"),
            KeyFigure("problematic mailboxes", _n(len(problems)), "need IT or a reconnect" if len(problems) else "none"),
        ]
    )


def followups_summary(waiting: pd.DataFrame, usefulness: dict[str, Any]) -> Summary:
    """F1: threads waiting each way, the longest wait, and how the suggestions fared."""
    kinds = waiting["kind"] if "kind" in waiting else pd.Series(dtype=str)
    longest = waiting.sort_values("business_hours", ascending=False).iloc[0] if len(waiting) else None
    rate = usefulness.get("sent_as_is_rate")
    figures = [
        KeyFigure("waiting for us", _n((kinds == "our_reply").sum()), "the customer wrote last"),
        KeyFigure("waiting for the customer", _n((kinds == "customer_reply").sum()), "we wrote last"),
        KeyFigure(
            "longest wait",
            f"{float(longest['business_days']):.1f} business days" if longest is not None else "–",
            str(longest["customer"]) if longest is not None else "",
        ),
        KeyFigure(
            "follow-ups suggested",
            _n(usefulness.get("suggested", 0)),
            f"{int(usefulness.get('pending', 0)):,} pending",
        ),
        KeyFigure(
            "sent as drafted",
            "–" if rate is None else f"{rate:.0%}",
            f"of {int(usefulness.get('decided', 0)):,} decided"
            f" ({int(usefulness.get('edited', 0)):,} edited, {int(usefulness.get('discarded', 0)):,} discarded)",
        ),
    ]
    return Summary(figures)
