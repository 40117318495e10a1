"""R3: activity volumes, response times, unanswered customers, most active deals.

Definitions (documented in the README, tested by hand-computed examples):

- An *activity* is one stored message linked to one customer (S4); unlinked ones (S9) are
  left out. Volumes per sales person and per week count distinct messages; per customer
  and per deal they count the messages of that customer / deal.
- A *thread* is the first Message-ID of ``References``, else ``In-Reply-To``, else the
  message itself.
- A *response*: within one (customer, thread), the first outbound message after one or
  more inbound ones answers the earliest of them. Its time is ``answered_at - asked_at``,
  in wall-clock hours or, optionally, business hours (Mon-Fri, a day window, a time zone).
  The *first response* of a thread is its earliest response.
- A customer is *waiting* when inbound mail came after our last outbound message to him;
  waiting since the first such inbound message.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from mailops.permissions import Access
from mailops.reports import Scope, where

__all__ = [
    "business_hours_between",
    "business_hours_vector",
    "most_active_deals",
    "response_summary",
    "response_times",
    "unanswered",
    "volumes",
]

DIMENSIONS = {
    # by: (key columns, label column, count expression)
    "sales_person": ("a.user_id", "coalesce(u.name, a.user_id)", "count(DISTINCT a.message_id)"),
    "customer": ("a.customer_id", "coalesce(c.name, a.customer_id)", "count(*)"),
    "deal": (
        "coalesce(a.deal_id, dc.deal_id)",
        "coalesce(d.name, a.deal_id, dc.deal_id)",
        "count(DISTINCT a.message_id)",
    ),
    "week": (
        "date_trunc('week', a.occurred_at)::DATE",
        "strftime(date_trunc('week', a.occurred_at), '%G-W%V')",
        "count(DISTINCT a.message_id)",
    ),
}


def _access(scope: Scope) -> Access:
    return scope.access(
        "activity",
        user="a.user_id",
        customer_owner="c.owner_user_id",
        owner="mb.owner_user_id",
        level="mb.visibility",
    )


def _activity_scope(scope: Scope) -> tuple[str, list[Any]]:
    acc = _access(scope)
    return where(
        ("a.unlinked_at IS NULL", []),
        (acc.where, acc.params),
        scope.mailbox_filter("a.mailbox_id", "mb.address"),
    )


_FROM = (
    " FROM activities a LEFT JOIN customers c ON c.id = a.customer_id"
    " LEFT JOIN users u ON u.id = a.user_id"
    " LEFT JOIN mailboxes mb ON mb.id = a.mailbox_id"
)


def _volumes_sql(scope: Scope, by: str) -> tuple[str, list[Any]]:
    if by not in DIMENSIONS:
        from mailops.errors import ReportError

        raise ReportError(f"unknown dimension {by!r}; one of {', '.join(DIMENSIONS)}")
    key, label, count = DIMENSIONS[by]
    sql, params = where(_activity_scope(scope), scope.period("a.occurred_at"))
    deal_join = ""
    if by == "deal":
        # the activity's deal, else every deal the customer is on (S4): one join of the
        # activities in the period (a UNION over every activity of the store cost 0.5 s at 1M)
        # (an activity with its own deal meets its customer's deals too: the distinct count
        # makes those rows one)
        deal_join = (
            " LEFT JOIN deal_customers dc ON dc.customer_id = a.customer_id"
            " LEFT JOIN deals d ON d.id = coalesce(a.deal_id, dc.deal_id)"
        )
        sql += " AND coalesce(a.deal_id, dc.deal_id) IS NOT NULL"
    inbound = f"{count} FILTER (WHERE a.direction = 'inbound')"
    outbound = f"{count} FILTER (WHERE a.direction = 'outbound')"
    return (
        f"SELECT {key} AS {by}_id, {label} AS {by}, {inbound} AS inbound, {outbound} AS outbound,"
        f" {count} AS total"
        f"{_FROM}{deal_join} WHERE {sql} GROUP BY ALL",
        params,
    )


def volumes(scope: Scope, by: str = "sales_person") -> pd.DataFrame:
    """Emails per BY (sales_person | customer | deal | week): inbound, outbound, total."""
    sql, params = _volumes_sql(scope, by)
    df = scope.store.query(f"{sql} ORDER BY {'1' if by == 'week' else 'total DESC, 1'}", params)
    for col in ("inbound", "outbound", "total"):
        df[col] = df[col].astype("int64")
    if by == "week" and len(df) > 1:
        df = _fill_weeks(df)
    return df


def _fill_weeks(df: pd.DataFrame) -> pd.DataFrame:
    """Weeks without email appear with zeros (a chart without gaps lies less)."""
    start, end = pd.Timestamp(df["week_id"].min()), pd.Timestamp(df["week_id"].max())
    weeks = pd.date_range(start, end, freq="7D")
    full = pd.DataFrame({"week_id": [w.date() for w in weeks]})
    full["week"] = [w.strftime("%G-W%V") for w in weeks]
    df = df.assign(week_id=[pd.Timestamp(w).date() for w in df["week_id"]])
    out = full.merge(df.drop(columns=["week"]), on="week_id", how="left")
    for col in ("inbound", "outbound", "total"):
        out[col] = out[col].fillna(0).astype("int64")
    return out


def _responses_sql(scope: Scope) -> tuple[str, list[Any]]:
    """One row per response, computed in DuckDB (see the module doc).

    Within a (customer, thread), the inbound rows between two outbound ones form one
    question; the outbound that closes it is the answer and the earliest inbound the time it
    was asked. ``k`` numbers those intervals: the count of outbound rows before a row. Threads
    without an inbound row in the period are dropped before the window functions run.
    """
    sql, params = _activity_scope(scope)
    period, period_params = scope.period("a.occurred_at")
    # only threads with a question asked in the period can have a response in it; without a
    # period every thread may (a thread without inbound mail finds no question below), and
    # the semi join would only cost (acts materialized twice: 0.4 s of 1.5 s CPU at 1M)
    asked = (
        " asked_threads AS (SELECT DISTINCT customer_id, thread FROM acts a"
        f"  WHERE a.direction = 'inbound' AND {period}),"
        if period_params
        else ""
    )
    semi = (
        "  SEMI JOIN asked_threads t ON t.customer_id = acts.customer_id AND t.thread = acts.thread"
        if period_params
        else ""
    )
    return (
        "WITH acts AS (SELECT a.customer_id, coalesce(c.name, a.customer_id) AS customer,"
        " a.user_id, coalesce(u.name, a.user_id) AS sales_person, a.direction, a.occurred_at,"
        f" a.message_id, {_access(scope).subject('msg.subject', 'subject')},"
        ' coalesce(msg."references"[1], msg.in_reply_to, msg.id) AS thread'
        f"{_FROM} JOIN messages msg ON msg.id = a.message_id"
        f" WHERE {sql} AND a.occurred_at IS NOT NULL),"
        f"{asked}"
        " numbered AS (SELECT acts.*, coalesce(sum(CASE WHEN direction = 'outbound' THEN 1 END)"
        "  OVER (PARTITION BY acts.customer_id, acts.thread ORDER BY occurred_at, direction,"
        "  message_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS k"
        f"  FROM acts{semi}),"
        " questions AS (SELECT customer_id, thread, k, min(occurred_at) AS asked_at,"
        "  arg_min(subject, (occurred_at, message_id)) AS subject FROM numbered"
        "  WHERE direction = 'inbound' GROUP BY ALL)"
        " SELECT o.customer_id, o.customer, o.thread, q.subject, q.asked_at,"
        " o.occurred_at AS answered_at, o.user_id, o.sales_person,"
        " row_number() OVER (PARTITION BY o.customer_id, o.thread ORDER BY o.occurred_at, o.k)"
        " = 1 AS first_response"
        " FROM numbered o JOIN questions q"
        " ON q.customer_id = o.customer_id AND q.thread = o.thread AND q.k = o.k"
        " WHERE o.direction = 'outbound'",
        [*params, *period_params],
    )


def business_hours_between(
    start: datetime,
    end: datetime,
    *,
    day_start: int = 9,
    day_end: int = 17,
    tz: str = "UTC",
) -> float:
    """Hours of [START, END) (naive UTC) that fall Mon-Fri between DAY_START and DAY_END
    o'clock in time zone TZ."""
    if end <= start:
        return 0.0
    zone = ZoneInfo(tz)
    utc = ZoneInfo("UTC")
    lo = start.replace(tzinfo=utc).astimezone(zone)
    hi = end.replace(tzinfo=utc).astimezone(zone)
    total = 0.0
    day = lo.replace(hour=0, minute=0, second=0, microsecond=0)
    while day <= hi:
        if day.weekday() < 5:
            open_ = day.replace(hour=day_start)
            close = day.replace(hour=day_end) if day_end < 24 else day + timedelta(days=1)
            a, b = max(lo, open_), min(hi, close)
            if b > a:
                total += (b - a).total_seconds()
        day = (day + timedelta(days=1, hours=2)).replace(hour=0)  # DST-safe step
    return total / 3600.0


def business_hours_vector(
    start: pd.Series,
    end: pd.Series,
    *,
    day_start: int = 9,
    day_end: int = 17,
    tz: str = "UTC",
) -> pd.Series:
    """``business_hours_between`` for whole columns: the business seconds up to END minus
    those up to START, each counted on the local wall clock of TZ."""

    def upto(ts: pd.Series) -> np.ndarray:
        local = pd.to_datetime(ts).dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None)
        day = local.dt.normalize()
        # whole weekdays since a Monday (1970-01-05), then the part of this day
        days = ((day - pd.Timestamp("1970-01-05")) // pd.Timedelta(days=1)).to_numpy()
        weeks, rest = np.divmod(days, 7)
        per_day = (min(day_end, 24) - day_start) * 3600.0
        before = (weeks * 5 + np.minimum(rest, 5)) * per_day
        into = ((local - day) / pd.Timedelta(seconds=1)).to_numpy() - day_start * 3600.0
        today = np.where(rest < 5, np.clip(into, 0.0, per_day), 0.0)
        return before + today

    if start.empty:
        return pd.Series([], dtype="float64", index=start.index)
    secs = np.maximum(upto(end) - upto(start), 0.0)
    return pd.Series(secs / 3600.0, index=start.index)


RESPONSE_COLUMNS = [
    "customer_id",
    "customer",
    "thread",
    "subject",
    "asked_at",
    "answered_at",
    "user_id",
    "sales_person",
    "hours",
    "first_response",
]


def response_times(
    scope: Scope,
    *,
    business_hours: bool = False,
    day_start: int = 9,
    day_end: int = 17,
    tz: str = "UTC",
) -> pd.DataFrame:
    """One row per response (see the module doc) whose question was asked in the period."""
    sql, params = _responses_sql(scope)
    period, period_params = scope.period("r.asked_at")
    df = scope.store.query(
        "SELECT r.*, round((epoch(r.answered_at) - epoch(r.asked_at)) / 3600.0, 3) AS hours"
        f" FROM ({sql}) r WHERE {period}"
        " ORDER BY r.customer_id, r.thread, r.answered_at",
        [*params, *period_params],
    )
    if business_hours and not df.empty:
        hours = business_hours_vector(
            df["asked_at"], df["answered_at"], day_start=day_start, day_end=day_end, tz=tz
        )
        df["hours"] = hours.round(3)
    if df.empty:
        return pd.DataFrame(columns=RESPONSE_COLUMNS)
    df["first_response"] = df["first_response"].astype(bool)
    return df[RESPONSE_COLUMNS].reset_index(drop=True)


def response_summary(responses: pd.DataFrame) -> pd.DataFrame:
    """Per sales person: responses, average and median hours, average first-response hours."""
    cols = [
        "user_id",
        "sales_person",
        "responses",
        "avg_hours",
        "median_hours",
        "avg_first_response_hours",
    ]
    if responses.empty:
        return pd.DataFrame(columns=cols)
    g = responses.groupby(["user_id", "sales_person"], dropna=False)
    df = g.agg(
        responses=("hours", "size"), avg_hours=("hours", "mean"), median_hours=("hours", "median")
    )
    firsts = responses[responses["first_response"]].groupby(
        ["user_id", "sales_person"], dropna=False
    )
    df["avg_first_response_hours"] = firsts["hours"].mean()
    df = df.reset_index().round(2)
    return df[cols].sort_values("avg_hours").reset_index(drop=True)


def unanswered(scope: Scope, *, days: float = 3) -> pd.DataFrame:
    """Customers waiting for our reply for more than DAYS days (as of ``scope.now``)."""
    sql, params = _activity_scope(scope)
    df = scope.store.query(
        "WITH act AS (SELECT a.*, c.name AS customer_name, c.owner_user_id AS customer_owner,"
        f" {_access(scope).subject_ok} AS subject_ok"
        f"{_FROM} WHERE {sql} AND a.occurred_at IS NOT NULL),"
        " last_out AS (SELECT customer_id, max(occurred_at) AS t FROM act"
        "  WHERE direction = 'outbound' GROUP BY 1),"
        " waiting AS (SELECT act.customer_id, any_value(act.customer_name) AS customer,"
        "  any_value(act.customer_owner) AS owner, min(act.occurred_at) AS waiting_since,"
        "  max(act.occurred_at) AS last_inbound, count(*) AS inbound_waiting,"
        "  arg_max(CASE WHEN act.subject_ok THEN msg.subject END, act.occurred_at) AS last_subject,"
        "  arg_max(mb.address, act.occurred_at) AS mailbox, max(lo.t) AS last_outbound"
        "  FROM act LEFT JOIN last_out lo ON lo.customer_id = act.customer_id"
        "  JOIN messages msg ON msg.id = act.message_id"
        "  LEFT JOIN mailboxes mb ON mb.id = act.mailbox_id"
        "  WHERE act.direction = 'inbound' AND (lo.t IS NULL OR act.occurred_at > lo.t)"
        "  GROUP BY 1)"
        " SELECT w.customer_id, coalesce(w.customer, w.customer_id) AS customer,"
        " coalesce(u.name, w.owner) AS owner, w.waiting_since, w.last_inbound, w.inbound_waiting,"
        " w.last_subject, w.mailbox, w.last_outbound,"
        " round((epoch(?::TIMESTAMP) - epoch(w.waiting_since)) / 86400.0, 1) AS waiting_days"
        " FROM waiting w LEFT JOIN users u ON u.id = w.owner"
        " WHERE w.waiting_since < ?::TIMESTAMP - to_seconds(?::DOUBLE * 86400)"
        " ORDER BY w.waiting_since",
        [*params, scope.now, scope.now, float(days)],
    )
    df["inbound_waiting"] = df["inbound_waiting"].astype("int64")
    return df


def most_active_deals(scope: Scope, *, top: int = 10) -> pd.DataFrame:
    """Deals by number of emails in the period (the activity's deal, else the customer's);
    the TOP of them, cut in SQL."""
    sql, params = _volumes_sql(scope, "deal")
    df = scope.store.query(
        f"WITH vol AS ({sql} ORDER BY total DESC, deal_id LIMIT ?)"
        " SELECT vol.*, d.project, d.unit, d.stage, d.owner_user_id AS owner,"
        " (SELECT count(*) FROM deal_customers dc WHERE dc.deal_id = vol.deal_id) AS customers"
        " FROM vol LEFT JOIN deals d ON d.id = vol.deal_id ORDER BY vol.total DESC, vol.deal_id",
        [*params, int(top)],
    )
    for col in ("inbound", "outbound", "total", "customers"):
        df[col] = df[col].astype("int64")
    return df
