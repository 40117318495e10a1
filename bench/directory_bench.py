"""Directory import at CRM scale: `python bench/directory_bench.py [N]` (default 20,000 customers).

Prints the time of a first import, an identical re-import (nothing changes) and an import
where every tenth customer's primary address changes (S3 history rows appended).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from mailops.directory import import_directory
from mailops.store import Store


def frames(n: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    users = pd.DataFrame(
        [{"id": f"u{i}", "email": f"u{i}@acme.test", "role": "sales"} for i in range(50)]
    )
    customers = pd.DataFrame(
        [
            {
                "id": f"c{i}",
                "name": f"Customer {i}",
                "owner_user_id": f"u{i % 50}",
                "email": f"c{i}@mail.test",
                "additional_emails": f"c{i}@work.test" if i % 7 == 0 else "",
            }
            for i in range(n)
        ]
    )
    deals = pd.DataFrame(
        [
            {
                "id": f"d{i}",
                "owner_user_id": f"u{i % 50}",
                "price": "250000",
                "customer_ids": f"c{i};c{i + 1}",
            }
            for i in range(0, n - 1, 3)
        ]
    )
    return users, customers, deals


def main(n: int) -> None:
    users, customers, deals = frames(n)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.duckdb") as store:
        for label in ("first import", "same again"):
            t = time.perf_counter()
            result = import_directory(store, users, customers, deals)
            print(f"{label:28} {time.perf_counter() - t:6.2f} s  {result.summary()}")
        changed = customers.copy()
        changed.loc[::10, "email"] = changed.loc[::10, "id"] + "@new.test"
        t = time.perf_counter()
        result = import_directory(store, customers=changed)
        print(f"{'10 % primary changes':28} {time.perf_counter() - t:6.2f} s  {result.summary()}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
