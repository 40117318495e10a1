"""Helpers for the S14 / O1 / C4 tests: seeding a mailbox, running `mailops` as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from sync_support import append, make_msg


def seed(mailserver, address: str, password: str, n: int, customer: str = "a@cust.test") -> None:
    """N messages, every third from CUSTOMER, appended in chunks."""
    msgs = [
        make_msg(customer if i % 3 == 0 else f"n{i}@n.test", address, subject=f"m{i:05d}")
        for i in range(n)
    ]
    for i in range(0, n, 1000):
        append(mailserver, address, password, msgs[i : i + 1000])


def mailops(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mailops.cli", *args],
        env=dict(os.environ, **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def finish(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def as_json(out: str) -> dict[str, Any]:
    return dict(json.loads(out))
