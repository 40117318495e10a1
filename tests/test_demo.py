"""The demo company (issue 2, item 5): deterministic, seeded through IMAP, directory imported."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import imapclient
import pytest

from mailops.cli import main
from mailops.dev.demo import build_company, build_messages, load_manifest, seed_demo
from mailops.dev.demo.mail import FOLDERS
from mailops.store import Store
from mailops.store import directory as q

NOW = datetime(2026, 11, 26)
SMALL = {"seed": 7, "customers": 20, "messages": 200}


def test_demo_generator_is_deterministic() -> None:
    a = build_messages(build_company(7, 20, NOW), 200)
    b = build_messages(build_company(7, 20, NOW), 200)
    assert [(m.mailbox, m.folder, m.flags, m.date, m.raw) for m in a] == [
        (m.mailbox, m.folder, m.flags, m.date, m.raw) for m in b
    ]
    other = build_messages(build_company(8, 20, NOW), 200)
    assert {m.message_id for m in a} != {m.message_id for m in other}


def test_demo_company_shape() -> None:
    company = build_company(2026, 200, NOW)
    assert [s.role for s in company.staff].count("sales") == 5
    assert len(company.customers) == 200
    assert 50 <= len(company.deals) <= 70
    assert any(len(d.customer_ids) > 1 for d in company.deals)  # co-customers
    assert any(not c.name.isascii() for c in company.customers)
    assert all(c.email.isascii() and c.email == c.email.lower() for c in company.customers)
    assert sum(1 for c in company.customers if c.additional) >= 20
    changed = [c for c in company.customers if c.old_email]
    assert changed and all(
        NOW - timedelta(days=60) < c.primary_since < NOW for c in changed if c.primary_since
    )
    emails = [c.email for c in company.customers]
    assert len(emails) == len(set(emails))


def test_demo_messages_cover_the_sync_cases() -> None:
    company = build_company(2026, 60, NOW)
    mail = build_messages(company, 600)
    assert 560 <= len(mail) <= 640
    kinds = Counter(m.kind for m in mail)
    for kind in (
        "customer_in",
        "customer_out",
        "additional",
        "old_address",
        "shared",
        "internal",
        "newsletter",
        "system",
        "junk",
        "draft",
        "malformed",
    ):
        assert kinds[kind] > 0, kind
    assert {m.folder for m in mail} == set(FOLDERS)
    assert all("\\Draft" in m.flags for m in mail if m.folder == "Drafts")  # S6
    assert any(m.date < (NOW - timedelta(days=31)).replace(tzinfo=UTC) for m in mail)  # S2
    shared = [m for m in mail if m.kind == "shared"]
    places: dict[str | None, set[tuple[str, str]]] = {}
    for m in shared:
        places.setdefault(m.message_id, set()).add((m.mailbox, m.folder))
    # S8: one message in two mailboxes, and one also in two folders of the same mailbox
    assert all(len({mb for mb, _ in p}) == 2 for p in places.values())
    assert any(len(p) == 3 for p in places.values())
    staff = {s.email for s in company.staff}
    for m in shared:  # sent to the team list: no mailbox address in the headers (S5)
        head = message_from_bytes(m.raw, policy=policy.default)
        assert [a.addr_spec for a in head["To"].addresses] == ["sales@northwind-homes.test"]
        assert head["Cc"] is None and head["From"].addresses[0].addr_spec not in staff
    parsed = [
        message_from_bytes(m.raw, policy=policy.default) for m in mail if m.kind != "malformed"
    ]
    assert all(p["Message-ID"] and p["Date"] and not p.defects for p in parsed)
    assert any(p.get_content_type() == "multipart/alternative" for p in parsed)
    assert any(any(True for _ in p.iter_attachments()) for p in parsed)
    assert any(not str(p["Subject"]).isascii() for p in parsed)
    replies = [p for p in parsed if p["In-Reply-To"]]
    assert replies and all(p["In-Reply-To"] in p["References"] for p in replies)
    assert any(p["Cc"] for p in parsed if p["From"].addresses[0].domain != "northwind-homes.test")
    malformed = [m.raw for m in mail if m.kind == "malformed"]
    assert any(b"\r\nDate:" not in r for r in malformed) and any(
        b"\r\nMessage-ID:" not in r for r in malformed
    )


# -- against the real devserver -----------------------------------------------------------------
@pytest.fixture(scope="module")
def seeded(mailserver, tmp_path_factory) -> Iterator[tuple[object, Path]]:
    """The small demo company seeded once into the session's devserver."""
    folder = tmp_path_factory.mktemp("demo")
    db = folder / "demo.duckdb"
    with Store(db) as store:
        # the manifest goes beside the store, not into the session server's directory (where
        # `mailops demo connect` tests would find it)
        report = seed_demo(store, mailserver.state, **SMALL, manifest_dir=folder, progress=False)
    assert not report.skipped
    yield report, db


def imap_inventory(mailserver, address: str) -> dict[str, list[tuple[str, tuple[bytes, ...]]]]:
    password = mailserver.state.users()[address]
    ctx = ssl.create_default_context(cafile=mailserver.ca_file)
    out: dict[str, list[tuple[str, tuple[bytes, ...]]]] = {}
    with imapclient.IMAPClient(
        "127.0.0.1", port=mailserver.imaps_port, ssl_context=ctx, timeout=30
    ) as c:
        c.login(address, password)
        for folder in FOLDERS:
            c.select_folder(folder, readonly=True)
            uids = c.search()
            got = c.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
            out[folder] = sorted(
                (
                    v[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode().partition(":")[2].strip(),
                    tuple(f for f in v[b"FLAGS"] if f != b"\\Recent"),
                )
                for v in got.values()
            )
    return out


def test_demo_seed_lands_in_folders_with_flags(seeded, mailserver) -> None:
    report, _ = seeded
    manifest = report.manifest
    assert len(manifest["mailboxes"]) == 5
    company = build_company(SMALL["seed"], SMALL["customers"])
    expected = build_messages(company, SMALL["messages"])
    assert manifest["counts"]["messages"] == len(expected)
    for entry in manifest["mailboxes"]:
        inventory = imap_inventory(mailserver, entry["address"])
        assert {f: len(v) for f, v in inventory.items()} == entry["folders"]
        want = sorted(
            (m.message_id or "", m.folder) for m in expected if m.mailbox == entry["address"]
        )
        assert sorted((mid, f) for f, items in inventory.items() for mid, _ in items) == want
        assert all(b"\\Draft" in flags for _, flags in inventory["Drafts"])  # S6
        assert not any(b"\\Draft" in flags for f in ("INBOX", "Sent") for _, flags in inventory[f])


def test_demo_seed_imports_directory_with_primary_changes(seeded) -> None:
    report, db = seeded
    assert [name for name, _ in report.imports][0].startswith("customers-")  # the earlier export
    assert report.imports[-1][1].primary_changes  # today's export changes primaries (S3)
    company = build_company(SMALL["seed"], SMALL["customers"])
    changed = next(c for c in company.customers if c.old_email)
    with Store(db) as store:
        assert q.counts(store)["customers"] == SMALL["customers"]
        assert q.counts(store)["primary_changes"] == sum(
            1 for c in company.customers if c.old_email
        )
        assert q.customer_primary_address(store, changed.id) == changed.email
        assert changed.primary_since is not None
        before = changed.primary_since - timedelta(minutes=1)
        assert q.customer_primary_address(store, changed.id, at=before) == changed.old_email
        assert len(q.users_frame(store)) == 7


def test_demo_passwords_stay_out_of_store_and_manifest(seeded, mailserver) -> None:
    report, db = seeded
    users = mailserver.state.users()
    demo_passwords = [users[m["address"]] for m in report.manifest["mailboxes"]]
    blob = Path(db).read_bytes() + report.manifest_path.read_bytes()
    assert demo_passwords and not any(pw.encode() in blob for pw in demo_passwords)


def test_demo_reseed_skips_and_force_is_deterministic(seeded, mailserver) -> None:
    report, db = seeded
    address = report.manifest["mailboxes"][0]["address"]
    before = imap_inventory(mailserver, address)
    with Store(db) as store:
        folder = report.manifest_path.parent
        again = seed_demo(store, mailserver.state, **SMALL, manifest_dir=folder, progress=False)
        assert again.skipped and again.messages == report.messages
        assert not any(r.changed for _, r in again.imports)
        assert imap_inventory(mailserver, address) == before
        forced = seed_demo(
            store, mailserver.state, **SMALL, force=True, manifest_dir=folder, progress=False
        )
    assert not forced.skipped
    assert forced.manifest["message_ids_sha256"] == report.manifest["message_ids_sha256"]
    assert imap_inventory(mailserver, address) == before  # same Message-IDs, flags, folders
    assert load_manifest(folder)["seed"] == SMALL["seed"]


# -- CLI ------------------------------------------------------------------------------------------
def test_demo_seed_without_devserver_is_one_line(settings, tmp_path: Path, capsys) -> None:
    code = main(["demo", "seed", "--dir", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 4
    assert err.count("\n") == 1 and "start it with `mailops devserver start`" in err


def test_demo_cli_seed_prints_counts(seeded, mailserver, settings, capsys) -> None:
    # a devserver directory whose state.json points at the session's server
    folder = tempfile.mkdtemp(prefix="mailops-demo-cli-", dir="/tmp")
    try:
        Path(folder, "state.json").write_text(json.dumps(asdict(mailserver.state)))
        args = ["demo", "seed", "--dir", folder, "--no-progress"]
        args += ["--seed", "7", "--customers", "20", "--messages", "200"]
        code = main(args)
        out = capsys.readouterr().out
        assert code == 0
        assert "seeded " in out or "already seeded" in out
        assert "INBOX" in out and "Drafts" in out and "total" in out
        assert "directory in the store" in out and "customers 20" in out
        assert os.path.exists(Path(folder, "demo-manifest.json"))
        code = main(args)
        assert code == 0 and "already seeded:" in capsys.readouterr().out
        code = main(["demo", "status", "--dir", folder])
        assert code == 0 and "seed 7" in capsys.readouterr().out
    finally:
        shutil.rmtree(folder, ignore_errors=True)
