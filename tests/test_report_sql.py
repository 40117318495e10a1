"""R3: the response-time report computed in DuckDB equals the straightforward definition
(a Python walk over each (customer, thread) in time order), on random threads with ties,
orphan answers, questions before the period and business hours across a DST change."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from mailops.reports import Scope
from mailops.reports.activity import business_hours_between, business_hours_vector, response_times
from mailops.store import Store

BASE = datetime(2026, 3, 16, 6, 0)  # a Monday; Europe/Berlin changes to summer time on 29 March


def reference(acts: pd.DataFrame, since, until, hours_fn) -> list[tuple[Any, ...]]:
    """The definition, walked in Python: the first outbound after inbound mail answers the
    earliest inbound since the previous outbound."""
    out = []
    acts = acts.sort_values(["customer_id", "thread", "occurred_at", "direction", "message_id"])
    for (_c, _t), group in acts.groupby(["customer_id", "thread"], sort=False):
        pending = None
        first = True
        for row in group.itertuples(index=False):
            if row.direction == "inbound":
                if pending is None:
                    pending = row
            elif pending is not None:
                out.append(
                    (
                        row.customer_id,
                        row.thread,
                        pending.subject,
                        pending.occurred_at,
                        row.occurred_at,
                        row.user_id,
                        round(hours_fn(pending.occurred_at, row.occurred_at), 3),
                        first,
                    )
                )
                pending, first = None, False
    return sorted(
        r for r in out if (since is None or r[3] >= since) and (until is None or r[3] < until)
    )


@pytest.fixture(scope="module")
def random_store(tmp_path_factory):
    rng = random.Random(20261201)
    store = Store(str(tmp_path_factory.mktemp("rsql") / "r.duckdb"))
    rows, msgs = [], []
    for c in range(12):
        store.execute("INSERT INTO customers (id, name) VALUES (?, ?)", [f"c{c}", f"Customer {c}"])
        for t in range(rng.randint(1, 5)):
            root = f"t{c}-{t}@x.test"
            when = BASE + timedelta(hours=rng.randint(0, 24 * 20))
            for i in range(rng.randint(1, 9)):
                mid = root if i == 0 else f"m{c}-{t}-{i}@x.test"
                if rng.random() > 0.3:  # ties happen: same minute, both directions
                    when += timedelta(minutes=rng.choice([0, 7, 95, 60 * 26, 60 * 75]))
                direction = rng.choice(["inbound", "inbound", "outbound"])
                refs = [] if i == 0 else [root]
                msgs.append((mid, f"subject {mid}", refs))
                rows.append((mid, f"c{c}", f"u{c % 3}", direction, when))
    store.executemany('INSERT INTO messages (id, subject, "references") VALUES (?, ?, ?)', msgs)
    store.executemany(
        "INSERT INTO activities (message_id, customer_id, user_id, direction, occurred_at)"
        " VALUES (?, ?, ?, ?, ?)",
        rows,
    )
    acts = pd.DataFrame(
        rows, columns=["message_id", "customer_id", "user_id", "direction", "occurred_at"]
    )
    acts["subject"] = [f"subject {m}" for m in acts["message_id"]]
    roots = {m: (refs[0] if refs else m) for m, _s, refs in msgs}
    acts["thread"] = [roots[m] for m in acts["message_id"]]
    yield store, acts
    store.close()


def _got(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    return sorted(
        (
            r.customer_id,
            r.thread,
            r.subject,
            r.asked_at.to_pydatetime(),
            r.answered_at.to_pydatetime(),
            r.user_id,
            r.hours,
            bool(r.first_response),
        )
        for r in df.itertuples(index=False)
    )


PERIODS = {
    "R3-all-time": (None, None),
    "R3-period-cuts-questions": (BASE + timedelta(days=5), BASE + timedelta(days=12)),
    "R3-open-ended": (BASE + timedelta(days=9), None),
}


@pytest.mark.parametrize("period", list(PERIODS), ids=list(PERIODS))
def test_R3_response_times_sql_equals_definition(random_store, period):
    store, acts = random_store
    since, until = PERIODS[period]
    scope = Scope(store, since=since, until=until)
    expected = reference(acts, since, until, lambda a, b: (b - a).total_seconds() / 3600)
    assert expected, "the random data must hold responses"
    assert _got(response_times(scope)) == expected


def test_R3_business_hours_sql_equals_definition_across_dst(random_store):
    store, acts = random_store
    scope = Scope(store)
    kw = {"day_start": 8, "day_end": 18, "tz": "Europe/Berlin"}
    expected = reference(acts, None, None, lambda a, b: business_hours_between(a, b, **kw))
    assert _got(response_times(scope, business_hours=True, **kw)) == expected


@pytest.mark.parametrize(
    "start,end,kw",
    [
        (datetime(2026, 3, 27, 15), datetime(2026, 3, 31, 9), {"tz": "Europe/Berlin"}),
        (datetime(2026, 3, 21, 10), datetime(2026, 3, 22, 10), {}),  # a weekend: zero
        (datetime(2026, 3, 16, 20), datetime(2026, 3, 17, 3), {"day_end": 24}),
        (datetime(2026, 3, 18, 12), datetime(2026, 3, 18, 11), {}),  # reversed: zero
        (datetime(2026, 1, 1), datetime(2026, 12, 31), {"tz": "America/New_York"}),
    ],
    ids=["R3-dst-weekend", "R3-weekend", "R3-day-end-24", "R3-reversed", "R3-a-year"],
)
def test_R3_business_hours_vector_equals_scalar(start, end, kw):
    got = business_hours_vector(pd.Series([start]), pd.Series([end]), **kw).iloc[0]
    assert got == pytest.approx(business_hours_between(start, end, **kw), abs=1e-9)
