"""Report charts: matplotlib Figures (Agg, no pyplot state) wrapped in ``Chart``.

A ``Chart`` shown as the last expression of a notebook cell becomes an ``image/png`` output
whatever the kernel's matplotlib backend; nbconvert embeds it in the HTML report as a
``data:image/png;base64`` image, so the report reads without a running kernel (and without
JavaScript).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import base64  # noqa: E402
import html  # noqa: E402
import io  # noqa: E402

import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = [
    "Chart",
    "decisions_by_reason",
    "inbound_outbound",
    "label",
    "response_hours",
    "weekly_volume",
]


class Chart:
    """A figure that displays as PNG in notebooks (and so in the HTML report)."""

    def __init__(self, figure: Figure) -> None:
        self.figure = figure

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png")
        return buf.getvalue()

    @property
    def title(self) -> str:
        return self.figure.axes[0].get_title() if self.figure.axes else "chart"

    def _repr_png_(self) -> bytes:
        return self.png()

    def _repr_html_(self) -> str:
        """The same PNG as an <img> with alt text (nbconvert prefers HTML to PNG)."""
        data = base64.b64encode(self.png()).decode()
        return f'<img src="data:image/png;base64,{data}" alt="{html.escape(self.title)}">'

    def __repr__(self) -> str:
        return f"<Chart {self.title!r}>"


def label(value: object, limit: int = 40) -> str:
    """VALUE as chart text: never read as math (a CRM name like ``$\\frac{Math$`` is shown as
    written: every ``$`` escaped for mathtext), cut to LIMIT characters."""
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("$", r"\$")


INBOUND, OUTBOUND = "#4C72B0", "#DD8452"
STORED, SKIPPED = "#55A868", "#C44E52"


def _unique(names: list[str]) -> list[str]:
    """Category labels must differ (two customers both called "Anna Berg" are two bars)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _figure(height: float = 3.2, width: float = 7.5) -> Figure:
    fig = Figure(figsize=(width, height), dpi=96, layout="constrained")
    return fig


def _empty(fig: Figure, title: str) -> Figure:
    ax = fig.subplots()
    ax.set_title(title)
    ax.text(0.5, 0.5, "no data in this period", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def inbound_outbound(df: pd.DataFrame, label_col: str, title: str, top: int = 15) -> Chart:
    """Horizontal stacked bars: inbound and outbound emails per LABEL (from ``volumes``)."""
    fig = _figure(height=max(2.4, 0.35 * min(len(df), top) + 1.2))
    if df.empty:
        return Chart(_empty(fig, title))
    data = df.head(top).iloc[::-1]
    ax = fig.subplots()
    names = _unique([label(v) for v in data[label_col]])
    ax.barh(names, data["inbound"], color=INBOUND, label="inbound")
    ax.barh(names, data["outbound"], left=data["inbound"], color=OUTBOUND, label="outbound")
    ax.set_xlabel("emails")
    ax.set_title(title)
    fig.legend(loc="outside lower right", ncols=2, frameon=False)  # never over the bars
    return Chart(fig)


def weekly_volume(df: pd.DataFrame, title: str = "Emails per week") -> Chart:
    """Grouped bars per ISO week, inbound vs outbound (from ``volumes(by="week")``)."""
    fig = _figure()
    if df.empty:
        return Chart(_empty(fig, title))
    ax = fig.subplots()
    x = range(len(df))
    ax.bar([i - 0.2 for i in x], df["inbound"], width=0.4, color=INBOUND, label="inbound")
    ax.bar([i + 0.2 for i in x], df["outbound"], width=0.4, color=OUTBOUND, label="outbound")
    ax.set_xticks(list(x), [label(w) for w in df["week"]], rotation=45, ha="right")
    ax.set_ylabel("emails")
    ax.set_title(title)
    fig.legend(loc="outside lower right", ncols=2, frameon=False)  # never over the bars
    return Chart(fig)


def response_hours(summary: pd.DataFrame, title: str = "Average response time") -> Chart:
    """Average and first-response hours per sales person (from ``response_summary``)."""
    fig = _figure(height=max(2.4, 0.45 * len(summary) + 1.2))
    if summary.empty:
        return Chart(_empty(fig, title))
    ax = fig.subplots()
    names = [label(v) for v in summary["sales_person"]]
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], summary["avg_hours"], height=0.4, color=INBOUND, label="all")
    ax.barh(
        [i - 0.2 for i in y],
        summary["avg_first_response_hours"].fillna(0),
        height=0.4,
        color=OUTBOUND,
        label="first response",
    )
    ax.set_yticks(list(y), names)
    ax.set_xlabel("hours")
    ax.set_title(title)
    ax.legend(frameon=False)
    return Chart(fig)


def decisions_by_reason(df: pd.DataFrame, title: str = "Messages by decision and reason") -> Chart:
    """Bars per reason code, green for stored, red for skipped (from ``reason_counts``)."""
    fig = _figure(height=max(2.4, 0.35 * len(df) + 1.2))
    if df.empty:
        return Chart(_empty(fig, title))
    data = df.iloc[::-1]
    ax = fig.subplots()
    colors = [STORED if d == "stored" else SKIPPED for d in data["decision"]]
    ax.barh(_unique([label(r) for r in data["reason"]]), data["messages"], color=colors)
    ax.set_xlabel("messages")
    ax.set_title(title)
    return Chart(fig)
