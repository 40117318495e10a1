"""F1: the follow-up assistant -- waiting threads, template and model drafts, outcomes."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sync_support import append, days_ago, make_msg, utcnow
from timeline_support import Team, make_team

from mailops.cli import main
from mailops.followup import (
    detect_language,
    draft_waiting,
    suggestions,
    usefulness,
    waiting_threads,
)
from mailops.sync import sync_mailbox

pytestmark = pytest.mark.server


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def team(store, settings, mailserver, password_mailbox) -> Team:
    t = make_team(store, settings, mailserver, password_mailbox)
    t.customer("c-3", "Jürgen Schmidt", "u-anna")
    c1, c3, mb = t.address("c-1"), t.address("c-3"), t.mailbox.address
    append(
        mailserver,
        mb,
        t.password,
        [
            make_msg(  # A: Carla asked, nobody answered (ours to answer)
                c1,
                mb,
                subject="Question about the balcony",
                date=days_ago(10),
                msgid="<a1@cust.test>",
                body="Hello Anna, is the balcony south facing? My neighbour Dora Other"
                " (dora@elsewhere.test) says so.\nRegards, Carla\n",
            ),
            make_msg(  # C: asked and answered below: not waiting
                c1, mb, subject="Parking", date=days_ago(9), msgid="<c1@cust.test>"
            ),
            make_msg(  # E: Jürgen asked in German (ours to answer)
                c3,
                mb,
                subject="Frage zur Wohnung",
                date=days_ago(10),
                msgid="<e1@cust.test>",
                body="Guten Tag, ich habe eine Frage zu der Wohnung. Ist sie noch frei? Vielen Dank"
                " und mit freundlichen Grüßen, Jürgen\n",
            ),
            make_msg(  # D: just now: not waiting yet
                c3,
                mb,
                subject="Just now",
                date=utcnow() - timedelta(minutes=1),
                msgid="<d1@cust.test>",
            ),
        ],
    )
    append(
        mailserver,
        mb,
        t.password,
        [
            make_msg(  # B: our offer, no answer from the customer
                mb, c1, subject="Offer for B-204", date=days_ago(10), msgid="<b1@us.test>"
            ),
            make_msg(
                mb,
                c1,
                subject="Re: Parking",
                date=utcnow() - timedelta(hours=1),  # answered just now: nobody waits yet
                msgid="<c2@us.test>",
                extra_headers="In-Reply-To: <c1@cust.test>\r\nReferences: <c1@cust.test>",
            ),
        ],
        folder="Sent",
    )
    sync_mailbox(store, settings, t.mailbox)
    return t


def test_F1_waiting_threads_both_ways(team):
    df = waiting_threads(team.store, "u-anna", reply_hours=8, customer_days=3)
    got = sorted(zip(df["kind"], df["last_subject"], strict=True))
    assert got == [
        ("customer_reply", "Offer for B-204"),
        ("our_reply", "Frage zur Wohnung"),
        ("our_reply", "Question about the balcony"),
    ]
    assert set(df["customer_id"]) == {"c-1", "c-3"}
    # P1: Bob owns neither the mailbox nor these customers
    assert waiting_threads(team.store, "u-bob").empty
    # thresholds: nothing waits 1,000 business hours
    assert waiting_threads(team.store, "u-anna", reply_hours=1000, customer_days=1000).empty


def test_F1_template_drafts_without_a_model_are_saved_never_sent(team, capsys, mailserver):
    before = len(mailserver.smtp_messages)
    code, out, err = run(capsys, "followup", "list", "--as", "u-anna", "--json")
    assert code == 0, err
    assert len(json.loads(out)) == 3
    code, out, err = run(capsys, "followup", "draft", "--all", "--user", "u-anna")
    assert code == 0, err
    assert out.count("suggestion ") == 3 and "template" in out
    drafts = team.store.query(
        "SELECT customer_id, subject, body_text, reply_to_message_id, deal_id FROM drafts ORDER BY subject"
    )
    by_subject = {r.subject: r for r in drafts.itertuples()}
    balcony = by_subject["Re: Question about the balcony"]
    assert balcony.body_text.startswith("Dear Carla,")
    assert (
        "unit B-204 at Harbour View" in balcony.body_text and "Anna Lindqvist" in balcony.body_text
    )
    assert balcony.reply_to_message_id == "a1@cust.test" and balcony.deal_id == "d-1"
    offer = by_subject["Re: Offer for B-204"]
    assert "follow up on my email" in offer.body_text and "10 days ago" in offer.body_text
    german = by_subject["Re: Frage zur Wohnung"]
    assert (
        german.body_text.startswith("Guten Tag Jürgen Schmidt,")
        and "Frage zur Wohnung" in german.body_text
    )
    # deterministic: the same facts give the same text
    from mailops.followup import template_draft, thread_facts

    row = waiting_threads(team.store, "u-anna").iloc[0]
    assert template_draft(thread_facts(team.store, row)) == template_draft(
        thread_facts(team.store, row)
    )
    # never sent, nothing queued; a second run drafts nothing new
    assert len(mailserver.smtp_messages) == before
    assert team.store.scalar("SELECT count(*) FROM outbox") == 0
    code, out, _ = run(capsys, "followup", "draft", "--all", "--user", "u-anna")
    assert "nothing to draft" in out
    code, out, _ = run(capsys, "followup", "list", "--as", "u-anna")
    assert out.count("pending") == 3


@pytest.mark.parametrize(
    "text,lang",
    [
        ("Thank you for the offer, is the flat still available?", "en"),
        ("Vielen Dank, ist die Wohnung noch frei? Mit freundlichen Grüßen", "de"),
        ("Gracias por la oferta, ¿está disponible la vivienda? Saludos", "es"),
        ("Bonjour, merci pour votre offre. Cordialement", "fr"),
        ("Dzień dobry, czy mieszkanie jest wolne? Pozdrawiam", "pl"),
        ("", "en"),
    ],
)
def test_F1_thread_language(text, lang):
    assert detect_language(text) == lang


class _Stub(BaseHTTPRequestHandler):
    requests: list[dict] = []
    status = 200

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        if type(self).status != 200:
            self.send_response(type(self).status)
            self.end_headers()
            return
        reply = {
            "choices": [
                {"message": {"role": "assistant", "content": "Dear Carla,\n\nSTUB DRAFT.\n\nAnna"}}
            ]
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):  # quiet
        pass


@pytest.fixture
def stub_llm():
    _Stub.requests, _Stub.status = [], 200
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1", _Stub
    finally:
        srv.shutdown()
        srv.server_close()


def test_F1_model_draft_from_a_stub_endpoint_sees_only_the_thread(team, stub_llm):
    from mailops.followup import LLM_KEY_REF
    from mailops.secrets import SecretStore

    url, stub = stub_llm
    SecretStore(team.settings).put(LLM_KEY_REF, "sk-test-123")
    s = dataclasses.replace(team.settings, llm_url=url, llm_model="stub-model")
    made = draft_waiting(team.store, s, "u-anna", customer="c-1")
    assert {m.model for m in made} == {"llm:stub-model"}
    assert all(m.body.startswith("Dear Carla,\n\nSTUB DRAFT.") for m in made)
    assert len(stub.requests) == 2
    req = next(r for r in stub.requests if "balcony" in json.dumps(r["body"]))
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test-123"
    assert req["body"]["model"] == "stub-model"
    sent = json.dumps(req["body"], ensure_ascii=False)
    assert "south facing" in sent  # the thread's own text
    assert "Dora Other" not in sent and "dora@elsewhere.test" not in sent  # another customer's data
    assert "[other customer]" in sent and "[address]" in sent
    assert "Frage zur Wohnung" not in sent and "Parking" not in sent  # other threads
    assert "sk-test-123" not in json.dumps(
        team.store.query("SELECT * FROM followup_suggestions").astype(str).values.tolist()
    )
    # the endpoint fails: the template draft instead, said so
    stub.status = 500
    made = draft_waiting(team.store, s, "u-anna", customer="c-3")
    assert [m.model for m in made] == ["template"] and "model failed" in made[0].note


def test_F1_outcomes_sent_as_is_edited_discarded_and_the_measure(team, capsys, mailserver):
    from mailops.send import drafts

    made = {
        m.customer_id + ":" + m.kind: m for m in draft_waiting(team.store, team.settings, "u-anna")
    }
    assert len(made) == 3
    as_is, edited, dropped = (
        made["c-1:our_reply"],
        made["c-1:customer_reply"],
        made["c-3:our_reply"],
    )
    drafts.send_draft(team.store, team.settings, as_is.draft_id, user_id="u-anna")
    drafts.edit(team.store, edited.draft_id, body_text="Dear Carla, a shorter note of my own.\n")
    drafts.send_draft(team.store, team.settings, edited.draft_id, user_id="u-anna")
    code, out, err = run(capsys, "followup", "discard", str(dropped.id), "--as", "u-anna")
    assert code == 0, err
    assert team.store.scalar("SELECT count(*) FROM drafts WHERE id = ?", [dropped.draft_id]) == 0
    log = suggestions(team.store, "u-anna")
    outcome = dict(zip(log["id"], log["outcome"], strict=True))
    assert outcome == {as_is.id: "sent_as_is", edited.id: "edited", dropped.id: "discarded"}
    u = usefulness(log)
    assert (u["sent_as_is"], u["edited"], u["discarded"], u["decided"]) == (1, 1, 1, 3)
    assert u["sent_as_is_rate"] == pytest.approx(1 / 3)
    code, out, _ = run(capsys, "followup", "suggestions", "--as", "u-anna")
    assert (
        "3 suggested: 1 sent as is, 1 edited, 1 discarded, 0 pending; sent as is: 33% of decided"
        in out
    )
    # the sent follow-ups are replies in their threads: Carla no longer waits on us there
    df = waiting_threads(team.store, "u-anna")
    assert "Question about the balcony" not in set(df["last_subject"])
    code, _, err = run(capsys, "followup", "discard", str(as_is.id), "--as", "u-anna")
    assert code != 0 and "suggestion_done" in err


@pytest.mark.notebook
def test_F1_followups_notebook_lists_waiting_threads_and_the_measure(team, settings, tmp_path):
    from dataclasses import replace

    from report_support import notebooks_path, scraps

    from mailops.notebook import run_report

    team.store.close()
    s = replace(
        settings, reports_dir=str(tmp_path / "reports"), notebooks_dir=str(notebooks_path())
    )
    res = run_report("followups", {"VIEWER": "u-anna", "DRAFT": True}, settings=s)
    got = scraps(res.ipynb_path)
    assert got["missing"] == []
    assert (got["waiting_for_us"], got["waiting_for_customer"]) == (2, 1)
    assert got["usefulness"]["suggested"] == 3 and got["usefulness"]["pending"] == 3
    html = res.html_path.read_text()
    assert "Question about the balcony" in html and "3 suggested" in html
