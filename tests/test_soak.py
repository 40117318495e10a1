"""Issue 11 item 8: the fast subset of the soak suite (`make soak` runs the whole of it).
Real `mailops` processes killed with SIGKILL against the real devserver: nothing lost,
nothing twice, one copy per send."""

from __future__ import annotations

import os

import pytest

from mailops.dev import soak

pytestmark = pytest.mark.server


@pytest.mark.skipif(os.geteuid() != 0, reason="the soak starts its own Dovecot")
def test_S12_S14_E3_soak_fast_subset() -> None:
    lines: list[str] = []
    figures = soak.run(
        messages=300,
        kills=2,
        send_kills=0,
        send_points=("outbox.smtp_mid_data", "outbox.smtp_terminator_sent"),
        parts=("kills", "send"),
        budget=240,
        out=lines.append,
    )
    kills, send = figures["kills"], figures["send"]
    assert kills["kills"] == 2
    assert (kills["lost"], kills["duplicated"]) == (0, 0), kills
    assert kills["final_exits"] == [0]
    assert send["copies"] == {1: 2}, send  # exactly one copy per send, wherever it died
    assert send["killed_at"] == {"smtp_mid_data": 1, "smtp_terminator_sent": 1}
    assert send["how"]["activities=1"] == 2
    assert [line.split(":")[0] for line in lines] == ["kills", "send"]  # one line per part


def test_soak_compare_can_fail() -> None:
    from collections import Counter

    ref = {"messages": Counter({"a": 1, "b": 1})}
    assert soak.compare(ref, {"messages": Counter({"a": 2})})[:2] == (1, 1)
    assert soak.compare(ref, {"messages": Counter({"a": 1, "b": 1})})[:2] == (0, 0)
