"""D1: the statements of the lease rows in PostgreSQL (``mailops.lease.PgLeases`` runs them
through psycopg on the lake's catalog database, not through DuckDB). The table is made when
missing, under an advisory lock so two first workers do not race the CREATE.

``CLAIM`` is the compare-and-swap: the row is taken when it is new, expired, or already this
claim's (a retried statement); PostgreSQL locks a conflicting row and re-checks the WHERE on
its newest version, so of two claims at once exactly one gets a row back. Every time is the
database's ``now()``.
"""

from __future__ import annotations

#: per connection: no statement (a claim waiting for a locked row included) runs past ttl/3
TIMEOUT = "SELECT set_config('statement_timeout', %s, false)"

CREATE_LOCK = "SELECT pg_advisory_xact_lock(hashtext('mailops.sync_leases'))"

CREATE = """
CREATE TABLE IF NOT EXISTS sync_leases (
    mailbox_id BIGINT PRIMARY KEY,
    holder     TEXT NOT NULL,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    purpose    TEXT NOT NULL DEFAULT 'sync',
    since      TIMESTAMPTZ NOT NULL DEFAULT now(),
    renewed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
)"""

CLAIM = """
INSERT INTO sync_leases AS l (mailbox_id, holder, host, pid, purpose, expires_at)
VALUES (%(id)s, %(holder)s, %(host)s, %(pid)s, %(purpose)s,
        now() + make_interval(secs => %(ttl)s))
ON CONFLICT (mailbox_id) DO UPDATE SET
    holder = excluded.holder, host = excluded.host, pid = excluded.pid,
    purpose = excluded.purpose,
    since = CASE WHEN l.holder = excluded.holder THEN l.since ELSE now() END,
    renewed_at = now(), expires_at = excluded.expires_at
WHERE l.expires_at < now() OR l.holder = excluded.holder
RETURNING since, expires_at"""

RENEW = """
UPDATE sync_leases SET renewed_at = now(), expires_at = now() + make_interval(secs => %s)
WHERE holder = ANY(%s) RETURNING holder, expires_at"""

RELEASE = "DELETE FROM sync_leases WHERE mailbox_id = %s AND holder = %s"

HOLDER = (
    "SELECT pid, host, since, purpose FROM sync_leases"
    " WHERE mailbox_id = %s AND expires_at >= now()"
)

HELD = "SELECT mailbox_id FROM sync_leases WHERE expires_at >= now()"
