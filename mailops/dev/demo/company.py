"""The demo company's CRM directory: staff, customers (households, languages, addresses), deals.

Everything comes from one ``random.Random(seed)`` and a reference day ``now`` (UTC midnight),
so the same seed on the same day gives the same company.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

COMPANY = "Northwind Homes"
DOMAIN = "northwind-homes.test"

# (id, name, role, team); the sales people and the manager get mailboxes on the devserver
STAFF: list[tuple[str, str, str, str]] = [
    ("u-anna", "Anna Lindqvist", "sales", "harbour"),
    ("u-jonas", "Jonas Bäcker", "sales", "harbour"),
    ("u-sofia", "Sofía Ortega", "sales", "harbour"),
    ("u-liam", "Liam O'Brien", "sales", "city"),
    ("u-mei", "Mei Chen", "sales", "city"),
    ("u-margaret", "Margaret Okafor", "manager", "city"),
    ("u-ravi", "Ravi Patel", "it", ""),
]

PROJECTS = [
    ("Harbour View", "HV"),
    ("Linden Park", "LP"),
    ("Riverside Lofts", "RL"),
    ("Old Town Residences", "OT"),
    ("Seaview Terraces", "ST"),
]
STAGES = ["lead", "viewing", "offer", "reservation", "contract", "won", "lost"]

# language -> (female first names, male first names, last names)
NAMES: dict[str, tuple[list[str], list[str], list[str]]] = {
    "en": (
        ["Emma", "Charlotte", "Amelia", "Isla", "Grace", "Chloe", "Olivia", "Ruby"],
        ["Oliver", "James", "Harry", "Jack", "Noah", "Liam", "George", "Samuel"],
        ["Smith", "Taylor", "Brown", "Wilson", "Evans", "Roberts", "Walker", "O'Connor", "Hughes"],
    ),
    "de": (
        ["Zoë", "Lena", "Käthe", "Anna-Lena", "Jördis", "Sophie", "Hannah", "Marie"],
        ["Jürgen", "Jörg", "Felix", "Lukas", "Maximilian", "Sören", "Matthias", "Tobias"],
        ["Müller", "Schäfer", "Weiß", "Böhm", "Krüger", "Hoffmann", "Schröder", "Groß", "Köhler"],
    ),
    "es": (
        ["María", "Begoña", "Lucía", "Sofía", "Nuria", "Inés", "Carmen", "Ángela"],
        ["José", "Íñigo", "Ramón", "Álvaro", "Andrés", "Jesús", "Martín", "Joaquín"],
        ["Núñez", "García", "Muñoz", "Peña", "Fernández", "Ibáñez", "Gómez", "Castaño", "Ruiz"],
    ),
    "pl": (
        ["Zofia", "Małgorzata", "Agnieszka", "Katarzyna", "Ewa", "Joanna", "Magdalena", "Anna"],
        ["Łukasz", "Paweł", "Krzysztof", "Wojciech", "Bartłomiej", "Piotr", "Michał", "Tomasz"],
        [
            "Wiśniewski",
            "Kowalczyk",
            "Wójcik",
            "Zieliński",
            "Nowak",
            "Lewandowski",
            "Dąbrowski",
            "Woźniak",
        ],
    ),
    "fr": (
        ["Amélie", "Hélène", "Céline", "Chloé", "Maëlle", "Océane", "Élodie", "Léa"],
        ["François", "Loïc", "Jérôme", "Noël", "Stéphane", "Hervé", "Théo", "Gaëtan"],
        ["Lefèvre", "Dubois", "Moreau", "Girard", "Bonnet", "Fontaine", "Leclère", "Rousseau"],
    ),
}
LANGUAGE_WEIGHTS = {"en": 40, "de": 20, "es": 15, "pl": 13, "fr": 12}
PERSONAL_DOMAINS = [
    "mailpost.test",
    "netmail.test",
    "inbox-mail.test",
    "webpost.test",
    "home-mail.test",
]
WORK_DOMAINS = [
    "nordbank.test",
    "lindqvist-law.test",
    "stadtwerke-nord.test",
    "university-harbour.test",
    "medcenter.test",
    "logistics-group.test",
]
_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae", "đ": "d"})


def ascii_fold(text: str) -> str:
    """'Łukasz Wiśniewski' -> 'Lukasz Wisniewski' (for the local part of addresses)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _local(*parts: str) -> str:
    return ".".join("".join(ch for ch in ascii_fold(p).lower() if ch.isalnum()) for p in parts if p)


@dataclass
class Staff:
    id: str
    name: str
    role: str
    team: str
    email: str

    @property
    def first(self) -> str:
        return self.name.split()[0]


@dataclass
class Customer:
    id: str
    first: str
    last: str
    language: str
    owner_user_id: str
    email: str  # the current primary address
    primary_since: datetime | None = None  # set for a primary change inside the demo period
    old_email: str | None = None  # the primary address before that change
    additional: list[str] = field(default_factory=list)
    never_log: bool = False
    partner_id: str | None = None

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    @property
    def addresses(self) -> list[str]:
        return [self.email, *self.additional, *([self.old_email] if self.old_email else [])]


@dataclass
class Deal:
    id: str
    name: str
    owner_user_id: str
    project: str
    unit: str
    price: int
    stage: str
    created_at: datetime
    expected_close: datetime
    customer_ids: list[str]


@dataclass
class Company:
    seed: int
    now: datetime
    staff: list[Staff]
    customers: list[Customer]
    deals: list[Deal]

    @property
    def sales(self) -> list[Staff]:
        return [s for s in self.staff if s.role == "sales"]

    def staff_by_id(self, user_id: str) -> Staff:
        return next(s for s in self.staff if s.id == user_id)

    def customer(self, customer_id: str) -> Customer:
        return next(c for c in self.customers if c.id == customer_id)

    def deals_of(self, customer_id: str) -> list[Deal]:
        return [d for d in self.deals if customer_id in d.customer_ids]

    @property
    def snapshot_day(self) -> datetime:
        """The day of the earlier CRM export (before every primary change)."""
        return self.now - timedelta(days=62)

    # -- the CRM exports ----------------------------------------------------------------------
    def users_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "id": s.id,
                    "email": s.email,
                    "name": s.name,
                    "role": s.role,
                    "team": s.team,
                    "can_send": "true" if s.role in ("sales", "manager") else "false",
                }
                for s in self.staff
            ]
        )

    def customers_frame(self, *, earlier: bool = False) -> pd.DataFrame:
        """The customers export; EARLIER = as exported before the primary-address changes."""
        rows = []
        for c in self.customers:
            changed = earlier and c.old_email is not None
            email = c.old_email if changed else c.email
            additional = [a for a in c.additional if a != email]
            rows.append(
                {
                    "id": c.id,
                    "name": c.name,
                    "owner_user_id": c.owner_user_id,
                    "email": email,
                    "primary_since": ""
                    if changed or c.primary_since is None
                    else c.primary_since.isoformat(),
                    "additional_emails": ";".join(additional),
                    "never_log": "true" if c.never_log else "",
                }
            )
        return pd.DataFrame(rows)

    def deals_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "id": d.id,
                    "name": d.name,
                    "owner_user_id": d.owner_user_id,
                    "project": d.project,
                    "unit": d.unit,
                    "price": d.price,
                    "currency": "EUR",
                    "stage": d.stage,
                    "created_at": d.created_at.isoformat(),
                    "expected_close": d.expected_close.date().isoformat(),
                    "customer_ids": ";".join(d.customer_ids),
                }
                for d in self.deals
            ]
        )

    def write_csvs(self, folder: str | Path) -> dict[str, Path]:
        """users.csv, customers.csv, deals.csv (today's export) and customers-<day>.csv (the
        earlier export, before the primary-address changes)."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "users": out / "users.csv",
            "customers": out / "customers.csv",
            "deals": out / "deals.csv",
            "customers_earlier": out / f"customers-{self.snapshot_day:%Y-%m-%d}.csv",
        }
        self.users_frame().to_csv(paths["users"], index=False)
        self.customers_frame().to_csv(paths["customers"], index=False)
        self.deals_frame().to_csv(paths["deals"], index=False)
        self.customers_frame(earlier=True).to_csv(paths["customers_earlier"], index=False)
        return paths


def reference_now() -> datetime:
    """Today, 00:00 UTC (naive): the demo's data is relative to it."""
    from mailops.store.directory import utcnow

    return utcnow().replace(hour=0, minute=0, second=0, microsecond=0)


def build_company(seed: int = 2026, customers: int = 200, now: datetime | None = None) -> Company:
    rng = random.Random(seed)
    now = now or reference_now()
    staff = [
        Staff(uid, name, role, team, f"{_local(*name.split())}@{DOMAIN}")
        for uid, name, role, team in STAFF
    ]
    sales = [s for s in staff if s.role == "sales"]
    people: list[Customer] = []
    used: set[str] = {s.email for s in staff}

    def address(first: str, last: str, domain: str) -> str:
        shapes = [(first, last), (first[0], last), (last, first), (first + last,)]
        parts = rng.choice(shapes)
        local = _local(*parts)
        candidate = f"{local}@{domain}"
        n = 2
        while candidate in used:
            candidate = f"{local}{n}@{domain}"
            n += 1
        used.add(candidate)
        return candidate

    def person(language: str, female: bool, last: str | None, owner: str) -> Customer:
        women, men, lasts = NAMES[language]
        first = rng.choice(women if female else men)
        surname = last or rng.choice(lasts)
        if language == "pl" and female and surname.endswith("ski"):
            surname = surname[:-1] + "a"
        cid = f"c-{len(people) + 1:04d}"
        cust = Customer(
            cid,
            first,
            surname,
            language,
            owner,
            address(first, surname, rng.choice(PERSONAL_DOMAINS)),
        )
        people.append(cust)
        return cust

    languages = list(LANGUAGE_WEIGHTS)
    weights = list(LANGUAGE_WEIGHTS.values())
    while len(people) < customers:
        language = rng.choices(languages, weights)[0]
        owner = rng.choice(sales).id
        female = rng.random() < 0.5
        first = person(language, female, None, owner)
        if len(people) < customers and rng.random() < 0.3:  # a couple: partners buy together
            same_name = rng.random() < 0.6
            last = first.last
            if language == "pl" and last.endswith("ska"):
                last = last[:-1] + "i"
            partner = person(language, not female, last if same_name else None, owner)
            first.partner_id, partner.partner_id = partner.id, first.id

    # additional (non-primary) addresses: work addresses and second personal ones (S3)
    for c in rng.sample(people, max(1, len(people) * 15 // 100)):
        c.additional.append(address(c.first, c.last, rng.choice(WORK_DOMAINS)))
    # a few primary-address changes inside the last two months (S3); the old one is kept
    # as an additional address for half of them
    for i, c in enumerate(rng.sample(people, max(1, len(people) // 50))):
        c.old_email = c.email
        c.email = address(c.first, c.last, rng.choice(PERSONAL_DOMAINS))
        c.primary_since = now - timedelta(
            days=rng.randint(10, 50), hours=rng.randint(7, 18), minutes=rng.randint(0, 59)
        )
        if i % 2 == 0:
            c.additional.append(c.old_email)
    rng.choice(people).never_log = True  # S9 example

    deals: list[Deal] = []
    units: set[tuple[str, str]] = set()
    buyers = rng.sample(people, len(people))
    for c in buyers:
        if len(deals) >= max(1, round(customers * 0.3)):
            break
        if c.partner_id and any(c.partner_id in d.customer_ids for d in deals):
            continue
        members = [c.id] + ([c.partner_id] if c.partner_id else [])
        if not c.partner_id and rng.random() < 0.1:  # co-buyer without being a couple
            other = rng.choice(people)
            if other.id != c.id:
                members.append(other.id)
        project, _code = rng.choice(PROJECTS)
        while True:
            unit = f"{rng.choice('ABCD')}-{rng.randint(1, 9)}{rng.randint(1, 12):02d}"
            if (project, unit) not in units:
                units.add((project, unit))
                break
        created = now - timedelta(days=rng.randint(20, 120), hours=rng.randint(0, 23))
        deals.append(
            Deal(
                id=f"d-{len(deals) + 1:03d}",
                name=f"{project} {unit} – {c.last}",
                owner_user_id=c.owner_user_id,
                project=project,
                unit=unit,
                price=rng.randrange(180_000, 1_250_000, 500),
                stage=rng.choices(STAGES, [10, 20, 25, 15, 12, 10, 8])[0],
                created_at=created,
                expected_close=now + timedelta(days=rng.randint(10, 200)),
                customer_ids=members,
            )
        )
    return Company(seed, now, staff, people, deals)
