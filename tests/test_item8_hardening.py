"""Issue 12 item 8: the OAuth redirect listener (state, first matching request, Host), the
devserver token service's secret, templates and deals."""

from __future__ import annotations

import http.client

import pytest

from mailops.auth.oauth import LocalRedirect


def _get(port: int, path: str, host: str | None = None) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.putrequest("GET", path, skip_host=True)
    c.putheader("Host", host or f"127.0.0.1:{port}")
    c.endheaders()
    status = c.getresponse().status
    c.close()
    return status


def test_C2_redirect_listener_keeps_the_first_matching_request_and_checks_host_and_state():
    with LocalRedirect() as r:
        r.expect("s-123")
        port = r.port
        assert _get(port, "/?code=evil&state=s-123", host=f"attacker.test:{port}") == 400
        assert _get(port, "/?code=evil&state=s-123", host="localhost") == 400
        assert _get(port, "/?code=forged&state=other") == 400  # another sign-in's state
        assert _get(port, "/?code=nostate") == 400
        assert _get(port, "/elsewhere?code=x&state=s-123") == 400
        assert _get(port, "/?code=good&state=s-123") == 200
        assert _get(port, "/?code=late&state=s-123") == 400  # the first one wins
        assert r.wait(1)["code"] == "good"
        assert r.refused == 6


def test_C2_redirect_listener_without_an_expected_state_takes_nothing():
    from mailops.errors import ConnectionProblem

    with LocalRedirect() as r:
        assert _get(r.port, "/?code=x&state=anything") == 400
        with pytest.raises(ConnectionProblem):
            r.wait(0.2)


def test_C5_devserver_token_helpers_require_the_secret_from_a_0600_file(mailserver):
    import json
    import os
    import stat
    import urllib.error
    import urllib.parse
    import urllib.request

    from mailops.dev.devserver import ADMIN_HEADER, ADMIN_SECRET_FILE, read_admin_secret

    path = os.path.join(mailserver.root, ADMIN_SECRET_FILE)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    users = os.path.join(mailserver.root, "users")
    assert stat.S_IMODE(os.stat(users).st_mode) == 0o600  # plain passwords: not world-readable
    address, _ = mailserver.new_user()
    data = urllib.parse.urlencode({"username": address}).encode()
    for endpoint in ("/issue", "/config", "/fault", "/revoke", "/approve"):
        req = urllib.request.Request(mailserver.oauth_http_url + endpoint, data=data)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        assert e.value.code == 403, endpoint
        wrong = urllib.request.Request(
            mailserver.oauth_http_url + endpoint, data=data, headers={ADMIN_HEADER: "guess"}
        )
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(wrong, timeout=5)
    ok = urllib.request.Request(
        mailserver.oauth_http_url + "/issue",
        data=data,
        headers={ADMIN_HEADER: read_admin_secret(mailserver.root)},
    )
    with urllib.request.urlopen(ok, timeout=5) as r:
        assert json.load(r)["access_token"].startswith("at-")
    assert mailserver.issue_token(address)["access_token"]  # the helper sends it


def test_E2_template_refuses_a_deal_the_customer_is_not_on_and_passes_listed_fields(store):
    from decimal import Decimal

    from mailops.errors import SendRefused
    from mailops.send.templates import merge_context

    store.execute("INSERT INTO users (id, email, name) VALUES ('u-1', 'u1@corp.test', 'Sam')")
    store.execute("INSERT INTO customers (id, name) VALUES ('c-1', 'Carla'), ('c-3', 'Cora')")
    store.execute(
        "INSERT INTO deals (id, name, project, unit, price, stage) VALUES"
        " ('d-1', 'secret deal', 'Harbour', 'A-12', ?, 'offer')",
        [Decimal("450000")],
    )
    store.execute("INSERT INTO deal_customers (deal_id, customer_id) VALUES ('d-1', 'c-1')")
    with pytest.raises(SendRefused) as e:
        merge_context(store, customer_id="c-3", user_id="u-1", deal_id="d-1")
    assert e.value.code == "deal_not_of_customer"
    ctx = merge_context(store, customer_id="c-1", user_id="u-1", deal_id="d-1")
    assert ctx["deal"]["unit"] == "A-12" and "name" not in ctx["deal"]  # not a listed field
    assert "updated_at" not in ctx["deal"] and "owner_user_id" not in ctx["deal"]


def test_E2_template_preview_cli_refuses_the_other_customers_deal(settings, capsys):
    from mailops.cli import main
    from mailops.store import Store

    with Store(settings.db) as s:
        s.execute("INSERT INTO users (id, email, name) VALUES ('u-1', 'u1@corp.test', 'Sam')")
        s.execute("INSERT INTO customers (id, name) VALUES ('c-1', 'Carla'), ('c-3', 'Cora')")
        s.execute("INSERT INTO deals (id, unit, price) VALUES ('d-1', 'A-12', 1)")
        s.execute("INSERT INTO deal_customers (deal_id, customer_id) VALUES ('d-1', 'c-1')")
    assert (
        main(["template", "add", "offer", "--subject", "Unit {{ deal.unit }}", "--body", "x"]) == 0
    )
    capsys.readouterr()
    code = main(
        ["template", "preview", "offer", "--customer", "c-3", "--deal", "d-1", "--user", "u-1"]
    )
    assert code != 0 and "deal_not_of_customer" in capsys.readouterr().err
