"""A1: the customer's timeline, one message, its attachments; S1 on demand before it."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sync_support import append, days_ago, make_msg, utcnow
from timeline_support import Team, make_team, message

from mailops.cli import main
from mailops.store import mailboxes
from mailops.sync import sync_mailbox

pytestmark = pytest.mark.server


@pytest.fixture
def team(store, settings, mailserver, password_mailbox) -> Team:
    return make_team(store, settings, mailserver, password_mailbox)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _seed(team: Team) -> None:
    c1 = team.address("c-1")
    mb = team.mailbox.address
    append(
        team.mailserver,
        mb,
        team.password,
        [
            make_msg(c1, mb, subject="First question", date=days_ago(3), body="Is B-204 free?\n"),
            message(
                c1,
                mb,
                "Plans attached",
                "See the plans.\n",
                date=days_ago(1),
                attachments=(("../../etc/passwd", b"root:x:0:0"), ("..\\..\\evil.exe", b"MZ")),
            ).as_bytes(),
        ],
    )
    append(
        team.mailserver,
        mb,
        team.password,
        [make_msg(mb, c1, subject="Re: First question", date=days_ago(2), body="Yes it is.\n")],
        folder="Sent",
    )
    append(
        team.mailserver,
        mb,
        team.password,
        [make_msg(team.address("c-2"), mb, subject="Other customer", date=days_ago(1))],
    )
    sync_mailbox(team.store, team.settings, team.mailbox)


def test_A1_timeline_both_ways_newest_first_with_deal_preview_attachments(team, capsys):
    _seed(team)
    code, out, err = run(capsys, "activities", "c-1", "--as", "u-anna", "--json", "--no-sync")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["subject"] for r in rows] == [
        "Plans attached",
        "Re: First question",
        "First question",
    ]
    assert [r["direction"] for r in rows] == ["inbound", "outbound", "inbound"]
    assert {r["deal"] for r in rows} == {"Harbour View B-204"}
    assert rows[0]["attachments"] == 2 and rows[1]["attachments"] == 0
    assert rows[2]["preview"] == "Is B-204 free?"
    assert all(r["mailbox"] == team.mailbox.address for r in rows)
    # by address and by (part of) the name: the same customer
    for ref in (team.address("c-1").upper(), "carla"):
        code, out2, _ = run(capsys, "activities", ref, "--as", "u-anna", "--json", "--no-sync")
        assert code == 0 and json.loads(out2) == rows
    code, out, _ = run(capsys, "activities", "Carla Buyer", "--as", "u-anna", "--no-sync")
    assert "Carla Buyer (c-1): 3 email(s)" in out and "Plans attached" in out


def test_A1_timeline_goes_through_the_permission_check(team, capsys):
    _seed(team)
    # Bob owns neither the mailbox nor the customer: nothing of c-1 shows
    code, out, _ = run(capsys, "activities", "c-1", "--as", "u-bob", "--json", "--no-sync")
    assert code == 0 and json.loads(out) == []
    mid = team.store.scalar("SELECT id FROM messages WHERE subject = 'First question'")
    code, _, err = run(capsys, "message", "show", mid, "--as", "u-bob")
    assert code == 6 and "permission" in err
    # IT sees that the mail exists, never what it says
    code, out, _ = run(capsys, "activities", "c-1", "--as", "u-it", "--json", "--no-sync")
    rows = json.loads(out)
    assert len(rows) == 3 and {r["preview"] for r in rows} == {""}
    code, out, _ = run(capsys, "message", "show", mid, "--as", "u-it")
    assert code == 0 and "Is B-204 free" not in out and "metadata only" in out
    code, _, err = run(capsys, "attachment", "save", mid, "--as", "u-it")
    assert code == 6
    code, _, err = run(capsys, "activities", "nobody-like-this", "--as", "u-anna")
    assert code != 0 and err.strip().startswith("error [unknown_customer]")


def test_A1_message_show_sanitized_html_with_remote_content_blocked(team, capsys):
    c1, mb = team.address("c-1"), team.mailbox.address
    html = (
        "<p>Hello <b>Anna</b></p><script>alert(1)</script>"
        '<img src="https://tracker.example/pixel.gif?u=1" width=1>'
        '<img src="cid:logo@cust.test"><a href="https://harbour.example/plan">plan</a>'
        '<p style="background:url(https://tracker.example/bg.png)">x</p>'
    )
    append(
        team.mailserver,
        mb,
        team.password,
        [message(c1, mb, "Rich", "Hello Anna", html=html).as_bytes()],
    )
    sync_mailbox(team.store, team.settings, team.mailbox)
    mid = team.store.scalar("SELECT id FROM messages WHERE subject = 'Rich'")
    code, out, _ = run(capsys, "message", "show", mid, "--as", "u-anna", "--html")
    assert code == 0
    assert "https://tracker.example" not in out and "<script" not in out and "alert(1)" not in out
    assert "[tracking image blocked: tracker.example]" in out  # A1: a placeholder names the host
    assert "https://harbour.example/plan" in out  # a link is the user's choice
    code, out, _ = run(capsys, "message", "show", mid, "--as", "u-anna")
    assert "Subject: Rich" in out and f"From: {c1}" in out and "Hello Anna" in out


def test_A1_attachment_save_uses_safe_names_and_never_overwrites(team, capsys, tmp_path):
    _seed(team)
    mid = team.store.scalar("SELECT id FROM messages WHERE subject = 'Plans attached'")
    code, out, _ = run(capsys, "message", "show", mid, "--as", "u-anna")
    assert f"{mid}#0" in out and f"{mid}#1" in out
    dest = tmp_path / "out"
    code, out, err = run(
        capsys, "attachment", "save", f"{mid}#0", "--as", "u-anna", "--to", str(dest)
    )
    assert code == 0, err
    saved = Path(out.strip())
    assert saved == dest / "passwd" and saved.read_bytes() == b"root:x:0:0"
    code, out, _ = run(capsys, "attachment", "save", mid, "--as", "u-anna", "--to", str(dest))
    names = sorted(p.name for p in dest.iterdir())
    assert names == ["evil.exe", "passwd", "passwd (1)"]
    assert all(p.parent == dest for p in dest.iterdir())
    assert not (tmp_path / "etc").exists()
    code, _, err = run(
        capsys, "attachment", "save", f"{mid}#7", "--as", "u-anna", "--to", str(dest)
    )
    assert code != 0 and "unknown_attachment" in err


@pytest.mark.parametrize(
    "name,expected",
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\evil.exe", "evil.exe"),
        ("..", "attachment-0"),
        ("", "attachment-0"),
        (None, "attachment-0"),
        (".bashrc", "bashrc"),
        ("con.txt", "_con.txt"),
        ("a\x00b\r\n.pdf", "a_b__.pdf"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
        ("Grundriss Wohnung ä.pdf", "Grundriss Wohnung ä.pdf"),
    ],
)
def test_A1_safe_basename(name, expected):
    from mailops.filenames import safe_basename

    assert safe_basename(name, fallback="attachment-0") == expected


def test_A1_on_demand_sync_before_the_timeline_when_last_sync_is_old(team, capsys):
    _seed(team)
    old = utcnow() - timedelta(minutes=10)
    mailboxes.update(team.store, team.mailbox.id, last_sync_at=old)
    c1, mb = team.address("c-1"), team.mailbox.address
    append(team.mailserver, mb, team.password, [make_msg(c1, mb, subject="Arrived just now")])
    code, out, err = run(capsys, "activities", "c-1", "--as", "u-anna", "--json")
    assert code == 0 and "note:" not in err
    assert json.loads(out)[0]["subject"] == "Arrived just now"
    # fresh now: a second look does not sync again
    runs = team.store.scalar("SELECT count(*) FROM sync_runs")
    run(capsys, "activities", "c-1", "--as", "u-anna", "--json")
    assert team.store.scalar("SELECT count(*) FROM sync_runs") == runs


def _silent_server() -> tuple[socket.socket, int]:
    """A TCP server that accepts and never says a word (a hung IMAP server)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conns.append(c)

    threading.Thread(target=accept, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_A1_slow_server_shows_stored_mail_within_the_bound_and_says_so(team, capsys):
    _seed(team)
    srv, port = _silent_server()
    try:
        mailboxes.update(
            team.store, team.mailbox.id, imap_port=port, last_sync_at=utcnow() - timedelta(hours=1)
        )
        t0 = time.monotonic()
        code, out, err = run(
            capsys, "activities", "c-1", "--as", "u-anna", "--json", "--sync-timeout", "2"
        )
        took = time.monotonic() - t0
    finally:
        srv.close()
    assert code == 0
    assert len(json.loads(out)) == 3  # what is stored
    assert "note:" in err and "showing stored mail" in err
    assert took < 8, f"took {took:.1f}s; the bound is 2 s wait + one 2 s socket timeout"


def test_A1_unreachable_server_shows_stored_mail_and_says_so(team, capsys):
    from mailops.dev.devserver import free_port

    _seed(team)
    mailboxes.update(team.store, team.mailbox.id, imap_port=free_port(), last_sync_at=None)
    code, out, err = run(
        capsys, "activities", "c-1", "--as", "u-anna", "--json", "--sync-timeout", "3"
    )
    assert code == 0 and len(json.loads(out)) == 3
    assert "could not reach" in err and team.mailbox.address in err


def _run_nb(settings, tmp_path, name, params):
    from dataclasses import replace

    from report_support import notebooks_path, scraps

    from mailops.notebook import run_report

    s = replace(
        settings, reports_dir=str(tmp_path / "reports"), notebooks_dir=str(notebooks_path())
    )
    res = run_report(name, params, settings=s)
    return res, scraps(res.ipynb_path), res.html_path.read_text()


@pytest.mark.notebook
def test_A1_customer_activity_notebook_headless(team, settings, tmp_path):
    _seed(team)
    team.deliver("c-1", "Unread one")
    time.sleep(0.5)
    sync_mailbox(team.store, team.settings, team.mailbox)
    team.store.close()
    params = {"USER_ID": "u-anna", "CUSTOMER": "Carla", "MODE": "headless", "SYNC": False}
    res, got, html = _run_nb(settings, tmp_path, "customer_activity", params)
    assert got["missing"] == [] and got["timeline_rows"] == 4
    assert "4 unread notification(s)" in html and "Unread one" in html  # appended after connecting
    assert "Plans attached" in html and "Harbour View B-204" in html
    assert html.count("Other customer") == 1  # a notification, never a row of Carla's timeline


def test_A1_panel_pick_open_reply_follow_up(team, capsys):
    from mailops.activity_widgets import ActivityPanel

    _seed(team)
    team.store.close()
    p = ActivityPanel(team.settings, "u-anna", sync=False)
    assert {v for _, v in p.customer.options} == {"c-1", "c-2"}  # Anna's mailbox and customers
    p.customer.value = "c-1"
    assert "Plans attached" in p.timeline.value and "Other customer" not in p.timeline.value
    p.message.value = p.message.options[-1][1]  # the oldest: "First question"
    p.on_open()
    assert "Is B-204 free?" in p.last
    p.on_reply()
    assert p.compose_panel.reply_to.value == p.message.value
    assert p.compose_panel.subject.value == "Re: First question"
    p.message.value = p.message.options[0][1]  # "Plans attached": Carla waits for us
    p.on_follow_up()
    panel = p.compose_panel
    assert panel.body.value.startswith("Dear Carla,")
    panel.on_send()  # sends that very draft, unchanged
    assert "sent" in panel.last
    from mailops.followup import suggestions
    from mailops.store import Store

    with Store(team.settings.db) as s:
        log = suggestions(s, "u-anna")
    assert log["outcome"].tolist() == ["sent_as_is"]


def test_A1_S14_timeline_does_not_wait_for_a_sync_running_elsewhere(team, capsys):
    from mailops.lease import leases_for

    _seed(team)
    mailboxes.update(team.store, team.mailbox.id, last_sync_at=utcnow() - timedelta(hours=1))
    lease = leases_for(team.store.path).acquire(team.mailbox.id)  # e.g. `sync --watch`
    try:
        t0 = time.monotonic()
        code, out, err = run(capsys, "activities", "c-1", "--as", "u-anna", "--json")
        took = time.monotonic() - t0
    finally:
        lease.release()
    assert code == 0 and len(json.loads(out)) == 3
    assert "being synced by another process" in err and took < 5


def test_A1_big_attachment_saved_whole_too_large_one_refused_no_message_id_opens(
    team, capsys, tmp_path
):
    import dataclasses

    c1, mb = team.address("c-1"), team.mailbox.address
    big = bytes(range(256)) * (20 * 1024 * 1024 // 256)  # 20 MB (a blob file, S12)
    capped = dataclasses.replace(team.settings, attachment_max_bytes=4 * 1024 * 1024)
    huge = b"x" * (5 * 1024 * 1024)  # over that cap (S10)
    no_id = make_msg(c1, mb, subject="no id").replace(b"Message-ID:", b"X-Old-Id:")
    for raw, s in (
        (
            message(c1, mb, "Big plans", "see", attachments=(("plans.bin", big),)).as_bytes(),
            team.settings,
        ),
        (message(c1, mb, "Huge scan", "see", attachments=(("scan.tif", huge),)).as_bytes(), capped),
        (no_id, team.settings),
    ):
        append(team.mailserver, mb, team.password, [raw])
        sync_mailbox(team.store, s, team.mailbox)
    ids = dict(team.store.rows("SELECT subject, id FROM messages"))
    code, out, err = run(
        capsys, "attachment", "save", ids["Big plans"], "--as", "u-anna", "--to", str(tmp_path)
    )
    assert code == 0, err
    assert Path(out.strip()).read_bytes() == big
    code, _, err = run(
        capsys, "attachment", "save", ids["Huge scan"], "--as", "u-anna", "--to", str(tmp_path)
    )
    assert code != 0 and err.count("\n") == 1 and "too_large" in err
    assert ids["no id"].startswith("sha256:")
    code, out, _ = run(capsys, "message", "show", ids["no id"], "--as", "u-anna")
    assert code == 0 and "Subject: no id" in out
