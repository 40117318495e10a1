"""The demo company: a reproducible real-estate sales team, its CRM directory and mailboxes.

``build_company(seed)`` and ``build_messages(company)`` are pure (seeded ``random.Random``);
``seed_demo(store, devserver_dir)`` puts them on the running devserver (IMAP MULTIAPPEND)
and into the store (the real CSV directory import).
"""

from mailops.dev.demo.company import Company, build_company
from mailops.dev.demo.mail import SeedMessage, build_messages
from mailops.dev.demo.seed import (
    MANIFEST,
    SeedReport,
    demo_password,
    load_manifest,
    seed_demo,
)

__all__ = [
    "MANIFEST",
    "Company",
    "SeedMessage",
    "SeedReport",
    "build_company",
    "build_messages",
    "demo_password",
    "load_manifest",
    "seed_demo",
]
