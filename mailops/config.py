"""Settings: environment ``MAILOPS_*`` > ``mailops.toml`` (cwd) > defaults. Never secrets."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mailops.errors import ConfigError


def _default_devserver_dir() -> str:
    # Dovecot's auth (user dovecot) and mail (user nobody) processes must be able to walk
    # into the directory, so it lives under /tmp (world-traversable), not under the checkout.
    return "/tmp/mailops-devserver"


@dataclass
class Settings:
    db: str = "mailops.duckdb"
    secrets_dir: str = ""  # default: "<db>.secrets" beside the store
    secret_key_file: str = ""  # a key file of your choice; else keyring, else ~/.config/mailops/key
    devserver_dir: str = field(default_factory=_default_devserver_dir)
    reports_dir: str = "reports"
    notebooks_dir: str = "notebooks"
    backfill_days: int = 30  # S2
    attachment_max_bytes: int = 50 * 1024 * 1024  # S10 (large ones live in the blob folder)
    send_max_bytes: int = 20 * 1024 * 1024  # total size of one outgoing email
    sync_interval_min: int = 10  # S1: 10-30 minutes, jittered
    sync_interval_max: int = 30
    sync_batch: int = 5000  # UIDs per header FETCH and per committed transaction (issue 14)
    socket_timeout: float = 30.0
    ca_file: str = ""  # extra CA to trust (the devserver's local CA)
    log_level: str = "WARNING"
    internal_policy: str = (
        "strict"  # S5: "strict" (default) skips mail with any ever-connected mailbox
    )
    max_message_bytes: int = 50 * 1024 * 1024  # S12: larger messages are skipped (too_large)
    sync_parallel: int = 8  # S1: mailboxes synced at once (one connection each; server-bound)
    sync_login_parallel: int = 4  # logins (TCP + TLS + LOGIN) to one server at once; 0 = no bound
    sync_retries: int = 3  # transient failures retried per sync, jittered exponential backoff
    sync_retry_base: float = 1.0  # seconds; first backoff step
    # DuckDB buffer cap while syncing (keeps RSS flat); "" = DuckDB default
    sync_memory_limit: str = "100MB"
    microsoft_client_id: str = ""  # C2: Entra app (public client) id; devserver: any value
    google_client_id: str = ""  # C2: Google OAuth "installed app" client id
    google_client_secret: str = ""  # installed-app client secret (not confidential per Google)
    connect_retry_budget: int = 3  # C4: consecutive transient failures before problematic
    sync_error_retries: int = 3  # S15: tries of a message that fails before it is given up
    sync_failure_budget: int = 3  # S15: consecutive failed runs of a folder/mailbox -> problematic
    template_timeout: float = 2.0  # E2: seconds one template part may take to render
    template_memory_mb: int = 256  # E2: memory the template renderer may use
    llm_url: str = ""  # F1: OpenAI-compatible endpoint (".../v1"); "" = template drafts
    llm_model: str = "gpt-4o-mini"  # F1: the model name sent to that endpoint
    llm_timeout: float = 20.0  # F1: seconds per request, then the template draft
    followup_reply_hours: float = 8.0  # F1: customer wrote last, no answer for N business hours
    followup_customer_days: float = 3.0  # F1: we wrote last, no answer for N business days
    heal_probe_first_s: float = 300.0  # C4: first probe of a transient-problematic mailbox
    heal_probe_cap_s: float = 6 * 3600.0  # C4: probe waits double up to this
    sync_lease_wait: float = 5.0  # S14: seconds a sync waits for another sync of a mailbox
    worker_cadence: float = 15.0  # D1: `mailops worker` syncs a mailbox every N minutes
    lease_ttl: float = 60.0  # D1: seconds a PostgreSQL lease lives unrenewed (renewed every ttl/3)

    @property
    def secrets_path(self) -> Path:
        if self.secrets_dir:
            return Path(self.secrets_dir)
        if self.db.startswith("ducklake:"):  # D1: beside the lake's data, which workers share
            from mailops.store.lake import LakeTarget

            return Path(f"{LakeTarget.parse(self.db).side_path}.secrets")
        return Path(f"{self.db}.secrets")

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        values: dict[str, Any] = {}
        toml_path = Path(os.environ.get("MAILOPS_CONFIG", "mailops.toml"))
        if toml_path.exists():
            try:
                values.update(tomllib.loads(toml_path.read_text()).get("mailops", {}))
            except tomllib.TOMLDecodeError as e:
                raise ConfigError(f"{toml_path} is not valid TOML: {e}") from None
        for f in fields(cls):
            env = os.environ.get(f"MAILOPS_{f.name.upper()}")
            if env is not None and env != "":
                values[f.name] = env
        if os.environ.get("MAILOPS_STORE"):  # D1: the store selector wins over MAILOPS_DB
            values["db"] = os.environ["MAILOPS_STORE"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name: f for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        out: dict[str, Any] = {}
        for name, value in values.items():
            default = getattr(cls(), name)
            try:
                if isinstance(default, bool):
                    out[name] = str(value).lower() in ("1", "true", "yes", "on")
                elif isinstance(default, int):
                    out[name] = int(value)
                elif isinstance(default, float):
                    out[name] = float(value)
                else:
                    out[name] = str(value)
            except ValueError:
                raise ConfigError(
                    f"setting {name}={value!r} is not a {type(default).__name__}"
                ) from None
        return cls(**out)
