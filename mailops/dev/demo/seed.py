"""``mailops demo seed``: accounts on the devserver, mail through IMAP MULTIAPPEND, the
directory through the real CSV import, and a non-secret manifest for the connect step."""

from __future__ import annotations

import hashlib
import json
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mailops.dev.demo.company import COMPANY, DOMAIN, Company, build_company
from mailops.dev.demo.mail import FOLDERS, GENERATOR_VERSION, SeedMessage, build_messages
from mailops.dev.devserver import DevServerState
from mailops.dev.devserver import status as devserver_status
from mailops.directory import ImportResult, import_csv
from mailops.errors import DevServerError
from mailops.store import Store
from mailops.store import directory as dirstore

MANIFEST = "demo-manifest.json"
MANIFEST_FORMAT = 1
BATCH = 500  # messages per MULTIAPPEND command


@dataclass
class SeedReport:
    skipped: bool
    manifest_path: Path
    manifest: dict[str, Any]
    imports: list[tuple[str, ImportResult]] = field(default_factory=list)
    directory_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def messages(self) -> int:
        return int(self.manifest["counts"]["messages"])


def demo_password(seed: int, address: str) -> str:
    """The devserver password of a demo account (deterministic; the server's users file is
    where it lives, never the store)."""
    return "demo-" + hashlib.sha256(f"northwind:{seed}:{address}".encode()).hexdigest()[:12]


def running_devserver(root: str) -> DevServerState:
    state = devserver_status(root)
    if state is None:
        raise DevServerError(
            f"the devserver is not running in {root}",
            code="devserver_not_running",
            guidance="start it with `mailops devserver start`",
        )
    return state


def load_manifest(root: str | Path) -> dict[str, Any] | None:
    path = Path(root, MANIFEST)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None


def server_counts(state: DevServerState, address: str) -> dict[str, int]:
    """Messages per folder of a mailbox, as Dovecot reports them."""
    out = state.doveadm("mailbox", "status", "-u", address, "messages", "*")
    counts: dict[str, int] = {}
    for line in out.splitlines():
        name, _, rest = line.rpartition(" messages=")
        if name:
            counts[name] = int(rest)
    return counts


def _mailbox_entries(company: Company, messages: list[SeedMessage]) -> list[dict[str, Any]]:
    per_folder: dict[str, Counter[str]] = {s.email: Counter() for s in company.sales}
    for m in messages:
        per_folder[m.mailbox][m.folder] += 1
    return [
        {
            "address": s.email,
            "owner_user_id": s.id,
            "name": s.name,
            "role": s.role,
            "folders": {f: per_folder[s.email].get(f, 0) for f in FOLDERS},
            "messages": sum(per_folder[s.email].values()),
        }
        for s in company.sales
    ]


def _append_all(
    state: DevServerState,
    seed: int,
    messages: list[SeedMessage],
    progress: Callable[[int], None],
) -> None:
    import imapclient

    groups: dict[tuple[str, str], list[SeedMessage]] = {}
    for m in messages:
        groups.setdefault((m.mailbox, m.folder), []).append(m)
    ctx = ssl.create_default_context(cafile=state.ca_file)
    for mailbox in sorted({m.mailbox for m in messages}):
        client = imapclient.IMAPClient(
            state.host, port=state.imaps_port, ssl_context=ctx, timeout=60
        )
        try:
            client.login(mailbox, demo_password(seed, mailbox))
            existing = {name for _flags, _sep, name in client.list_folders()}
            for (owner, folder), items in sorted(groups.items()):
                if owner != mailbox:
                    continue
                if folder not in existing:
                    client.create_folder(folder)
                for i in range(0, len(items), BATCH):
                    batch = items[i : i + BATCH]
                    client.multiappend(
                        folder,
                        [{"msg": m.raw, "flags": list(m.flags), "date": m.date} for m in batch],
                    )
                    progress(len(batch))
        finally:
            try:
                client.logout()
            except Exception:  # noqa: BLE001 - best effort
                pass


def _import_directory(
    store: Store, company: Company, csv_dir: Path
) -> list[tuple[str, ImportResult]]:
    """Import the CRM exports the real way: on a fresh directory first the earlier export
    (before the primary-address changes), then today's (S3 history from two imports)."""
    paths = company.write_csvs(csv_dir)
    done: list[tuple[str, ImportResult]] = []
    from mailops.store.directory import customer_ids

    known = customer_ids(store)
    if not known & {c.id for c in company.customers}:
        at = company.snapshot_day
        result = import_csv(
            store, users=paths["users"], customers=paths["customers_earlier"], at=at
        )
        done.append((paths["customers_earlier"].name, result))
    result = import_csv(
        store, users=paths["users"], customers=paths["customers"], deals=paths["deals"]
    )
    done.append(("users.csv, customers.csv, deals.csv", result))
    return done


def seed_demo(
    store: Store,
    root: str | DevServerState,
    *,
    seed: int = 2026,
    customers: int = 200,
    messages: int = 3000,
    force: bool = False,
    csv_dir: str | Path | None = None,
    manifest_dir: str | Path | None = None,
    now: datetime | None = None,
    progress: bool = True,
) -> SeedReport:
    """Seed the demo company into the running devserver at ROOT (a devserver directory or a
    running ``DevServerState``) and its directory into STORE.

    Skips the mail when the manifest says this seed is already there and Dovecot's folders
    hold at least the seeded counts (FORCE expunges the demo mailboxes and seeds again). The directory import always
    runs (it is idempotent). The manifest (and by default the CSV exports) go to
    MANIFEST_DIR, default the devserver directory, where ``mailops demo connect`` looks."""
    from tqdm import tqdm

    started = time.monotonic()
    if isinstance(root, DevServerState):
        state, root = root, root.root
    else:
        state = running_devserver(root)
    company = build_company(seed, customers, now)
    folder = Path(manifest_dir or root)
    csv_path = Path(csv_dir) if csv_dir else folder / "demo-crm"
    manifest_path = folder / MANIFEST
    previous = load_manifest(folder)
    same = (
        previous is not None
        and previous.get("seed") == seed
        and previous.get("generator") == GENERATOR_VERSION
        and previous.get("parameters") == {"customers": customers, "messages": messages}
    )
    if same and not force and previous is not None:
        expected = {m["address"]: m["folders"] for m in previous["mailboxes"]}
        actual = {
            a: {f: n for f, n in server_counts(state, a).items() if f in FOLDERS} for a in expected
        }
        # mail that arrived after seeding (the demo's own sends, new deliveries) is fine:
        # the seed is there when every folder holds at least what was seeded
        if all(actual[a].get(f, 0) >= n for a, want in expected.items() for f, n in want.items()):
            report = SeedReport(True, manifest_path, previous)
            report.imports = _import_directory(store, company, csv_path)
            report.directory_counts = dirstore.counts(store)
            report.seconds = time.monotonic() - started
            return report

    mail = build_messages(company, messages)
    staff_accounts = [s.email for s in company.staff]
    customer_accounts = sorted({a for c in company.customers for a in c.addresses})
    state.add_users({a: demo_password(seed, a) for a in [*staff_accounts, *customer_accounts]})
    # reseeding (--force, another seed, a half-finished run): empty the demo mailboxes first
    stale = {s.email for s in company.sales} | {
        m["address"] for m in (previous or {}).get("mailboxes", [])
    }
    for address in sorted(stale):
        if address in state.users() and any(server_counts(state, address).values()):
            state.doveadm("expunge", "-u", address, "mailbox", "*", "all")

    with tqdm(
        total=len(mail), desc="seeding demo mailboxes", unit="msg", disable=not progress
    ) as bar:
        _append_all(state, seed, mail, bar.update)

    kinds = Counter(m.kind for m in mail)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "company": COMPANY,
        "domain": DOMAIN,
        "seed": seed,
        "generator": GENERATOR_VERSION,
        "parameters": {"customers": customers, "messages": messages},
        "reference_now": company.now.isoformat(),
        "seeded_at": dirstore.utcnow().replace(microsecond=0).isoformat(),
        "password_source": "devserver users file (DevServerState.users()); never stored here",
        "csv_dir": str(csv_path.resolve()),
        "mailboxes": _mailbox_entries(company, mail),
        "accounts": {
            "staff": staff_accounts,
            "customer_addresses": len(customer_accounts),
        },
        "counts": {
            "messages": len(mail),
            "kinds": dict(sorted(kinds.items())),
            "users": len(company.staff),
            "customers": len(company.customers),
            "deals": len(company.deals),
            "additional_addresses": sum(
                1 for c in company.customers for a in c.additional if a != c.old_email
            ),
            "primary_changes": sum(1 for c in company.customers if c.old_email),
        },
        "message_ids_sha256": hashlib.sha256(
            "\n".join(sorted(m.message_id or "" for m in mail)).encode()
        ).hexdigest(),
    }
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    tmp.chmod(0o644)
    tmp.replace(manifest_path)
    report = SeedReport(False, manifest_path, manifest)
    report.imports = _import_directory(store, company, csv_path)
    report.directory_counts = dirstore.counts(store)
    report.seconds = time.monotonic() - started
    return report
