"""Named, recorded migrations. Append new ones at the end; never edit an applied one.

Conventions for every table: times are naive UTC ``TIMESTAMP``; e-mail addresses are stored
lower-cased; ids coming from the CRM are ``VARCHAR``; ids made here come from sequences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Migration:
    """SQL, then optionally RUN(store) in the same transaction (data that needs Python)."""

    name: str
    sql: str
    run: Callable[[Any], None] | None = None


def _rekey_identities(store: Any) -> None:
    from mailops.store.messages import rekey_identities

    rekey_identities(store)


MIGRATIONS: list[Migration] = [
    Migration(
        "0001_directory",
        """
        CREATE TABLE users (
            id VARCHAR PRIMARY KEY,              -- CRM user id
            email VARCHAR NOT NULL,
            name VARCHAR,
            role VARCHAR NOT NULL DEFAULT 'sales', -- sales | manager | it | admin (P1)
            team VARCHAR,
            can_send BOOLEAN NOT NULL DEFAULT TRUE, -- Activities permission (E1)
            active BOOLEAN NOT NULL DEFAULT TRUE,
            updated_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP
        );
        CREATE TABLE customers (
            id VARCHAR PRIMARY KEY,              -- CRM customer id
            name VARCHAR,
            owner_user_id VARCHAR,               -- sales person responsible (nullable)
            never_log BOOLEAN NOT NULL DEFAULT FALSE, -- S9
            updated_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP
        );
        CREATE SEQUENCE customer_address_seq;
        -- S3: one row per (customer, address, role period). A primary address is valid from
        -- valid_from until valid_to (NULL = still primary). History is appended, never rewritten.
        CREATE TABLE customer_addresses (
            id BIGINT PRIMARY KEY DEFAULT nextval('customer_address_seq'),
            customer_id VARCHAR NOT NULL,
            address VARCHAR NOT NULL,
            is_primary BOOLEAN NOT NULL,
            valid_from TIMESTAMP NOT NULL,
            valid_to TIMESTAMP,
            recorded_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP
        );
        CREATE INDEX customer_addresses_address ON customer_addresses(address);
        CREATE TABLE deals (
            id VARCHAR PRIMARY KEY,
            name VARCHAR,
            owner_user_id VARCHAR,
            project VARCHAR,                     -- the development
            unit VARCHAR,                        -- unit number
            price DECIMAL(14, 2),
            currency VARCHAR DEFAULT 'EUR',
            stage VARCHAR,
            created_at TIMESTAMP,
            expected_close DATE,
            updated_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP
        );
        CREATE TABLE deal_customers (
            deal_id VARCHAR NOT NULL,
            customer_id VARCHAR NOT NULL,
            role VARCHAR DEFAULT 'buyer',
            PRIMARY KEY (deal_id, customer_id)
        );
        """,
    ),
    Migration(
        "0002_mailboxes",
        """
        CREATE SEQUENCE mailbox_seq;
        CREATE TABLE mailboxes (
            id BIGINT PRIMARY KEY DEFAULT nextval('mailbox_seq'),
            owner_user_id VARCHAR NOT NULL,
            address VARCHAR NOT NULL,
            provider VARCHAR NOT NULL,           -- microsoft | google | generic
            auth_kind VARCHAR NOT NULL,          -- password | oauth
            imap_host VARCHAR, imap_port INTEGER, imap_security VARCHAR,  -- ssl | starttls | plain
            smtp_host VARCHAR, smtp_port INTEGER, smtp_security VARCHAR,
            oauth_authority VARCHAR,             -- non-secret endpoint overrides
            ca_file VARCHAR,                     -- extra CA to trust (local servers)
            secret_ref VARCHAR,                  -- key into the encrypted secrets store, never the secret
            state VARCHAR NOT NULL DEFAULT 'connected', -- connected | problematic | disconnected (C3)
            problem_code VARCHAR,
            problem_message VARCHAR,
            problem_since TIMESTAMP,
            transient_failures INTEGER NOT NULL DEFAULT 0,
            capabilities VARCHAR,                -- space separated, recorded at connect
            sync_folders VARCHAR,                -- JSON list chosen by the user (S9); NULL = default
            backfill_days INTEGER,               -- S2 window used on first connect
            connected_at TIMESTAMP,
            disconnected_at TIMESTAMP,
            last_sync_at TIMESTAMP,
            last_good_sync_at TIMESTAMP,
            created_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP
        );
        CREATE INDEX mailboxes_address ON mailboxes(address);
        CREATE SEQUENCE mailbox_event_seq;
        CREATE TABLE mailbox_events (           -- state history (C3, R4)
            id BIGINT PRIMARY KEY DEFAULT nextval('mailbox_event_seq'),
            mailbox_id BIGINT NOT NULL,
            changed_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            from_state VARCHAR,
            to_state VARCHAR NOT NULL,
            code VARCHAR,
            message VARCHAR,
            actor_user_id VARCHAR
        );
        CREATE TABLE folder_checkpoints (
            mailbox_id BIGINT NOT NULL,
            folder VARCHAR NOT NULL,
            uidvalidity BIGINT NOT NULL,
            last_uid BIGINT NOT NULL DEFAULT 0,
            highestmodseq BIGINT,
            uidnext BIGINT,
            messages BIGINT,
            updated_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            PRIMARY KEY (mailbox_id, folder)
        );
        """,
    ),
    Migration(
        "0003_messages",
        """
        CREATE TABLE messages (                  -- one row per distinct message (S8)
            id VARCHAR PRIMARY KEY,              -- normalised Message-ID, else 'sha256:<raw hash>'
            message_id_header VARCHAR,
            subject VARCHAR,
            from_addr VARCHAR,
            from_name VARCHAR,
            to_addrs VARCHAR[],
            cc_addrs VARCHAR[],
            sent_at TIMESTAMP,                   -- Date: header (UTC)
            in_reply_to VARCHAR,
            "references" VARCHAR[],
            body_text VARCHAR,
            body_html VARCHAR,                   -- sanitized
            raw_sha256 VARCHAR,
            raw_size BIGINT,
            parse_warnings VARCHAR[],
            has_attachments BOOLEAN DEFAULT FALSE,
            first_seen_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP
        );
        CREATE TABLE message_raw (               -- raw bytes, content addressed, for re-parsing
            sha256 VARCHAR PRIMARY KEY,
            raw BLOB NOT NULL
        );
        CREATE TABLE message_places (            -- every place a message was seen (S7, S8)
            message_id VARCHAR NOT NULL,
            mailbox_id BIGINT NOT NULL,
            folder VARCHAR NOT NULL,
            uidvalidity BIGINT NOT NULL,
            uid BIGINT NOT NULL,
            flags VARCHAR,
            internaldate TIMESTAMP,
            seen_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            PRIMARY KEY (mailbox_id, folder, uidvalidity, uid)
        );
        CREATE INDEX message_places_message ON message_places(message_id);
        CREATE SEQUENCE activity_seq;
        CREATE TABLE activities (                -- message <-> customer (S4)
            id BIGINT PRIMARY KEY DEFAULT nextval('activity_seq'),
            message_id VARCHAR NOT NULL,
            customer_id VARCHAR NOT NULL,
            mailbox_id BIGINT,
            user_id VARCHAR,                     -- owner of the mailbox
            direction VARCHAR NOT NULL,          -- inbound | outbound
            occurred_at TIMESTAMP,
            match_kind VARCHAR,                  -- primary | co_customer
            deal_id VARCHAR,
            unlinked_at TIMESTAMP,               -- S9: unlinked by a user (row kept)
            unlinked_by VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            UNIQUE (message_id, customer_id)
        );
        CREATE TABLE attachment_blobs (          -- content addressed (S10)
            sha256 VARCHAR PRIMARY KEY,
            size BIGINT NOT NULL,
            content BLOB NOT NULL
        );
        CREATE TABLE attachments (
            message_id VARCHAR NOT NULL,
            part_index INTEGER NOT NULL,
            filename VARCHAR,
            content_type VARCHAR,
            size BIGINT,
            sha256 VARCHAR,                      -- NULL when skipped
            skipped_reason VARCHAR,              -- e.g. too_large (S10)
            PRIMARY KEY (message_id, part_index)
        );
        """,
    ),
    Migration(
        "0004_sync_audit",
        """
        CREATE SEQUENCE sync_run_seq;
        CREATE TABLE sync_runs (
            id BIGINT PRIMARY KEY DEFAULT nextval('sync_run_seq'),
            mailbox_id BIGINT NOT NULL,
            trigger VARCHAR,                     -- manual | schedule | demo | notebook
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            status VARCHAR NOT NULL DEFAULT 'running', -- running | ok | failed | interrupted
            examined BIGINT DEFAULT 0,
            stored BIGINT DEFAULT 0,
            skipped BIGINT DEFAULT 0,
            linked BIGINT DEFAULT 0,             -- known message seen in a new place
            error_code VARCHAR,
            error_message VARCHAR,
            duration_s DOUBLE
        );
        CREATE TABLE sync_folder_reports (       -- what the server reported, for reconciliation
            run_id BIGINT NOT NULL,
            mailbox_id BIGINT NOT NULL,
            folder VARCHAR NOT NULL,
            uidvalidity BIGINT,
            server_messages BIGINT,
            server_uidnext BIGINT,
            highestmodseq BIGINT,
            examined BIGINT DEFAULT 0,
            stored BIGINT DEFAULT 0,
            skipped BIGINT DEFAULT 0,
            reported_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            PRIMARY KEY (run_id, folder)
        );
        CREATE TABLE audit_ledger (              -- S11: one row per message examined per run
            run_id BIGINT NOT NULL,
            mailbox_id BIGINT NOT NULL,
            folder VARCHAR NOT NULL,
            uidvalidity BIGINT,
            uid BIGINT,
            message_id VARCHAR,
            decision VARCHAR NOT NULL,           -- stored | skipped
            reason VARCHAR NOT NULL,             -- reason code
            customers VARCHAR[],
            msg_date TIMESTAMP,
            from_addr VARCHAR,
            subject VARCHAR,
            examined_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP
        );
        CREATE INDEX audit_ledger_run ON audit_ledger(run_id);
        CREATE SEQUENCE never_log_seq;
        CREATE TABLE never_log (                 -- S9
            id BIGINT PRIMARY KEY DEFAULT nextval('never_log_seq'),
            kind VARCHAR NOT NULL,               -- address | customer
            value VARCHAR NOT NULL,
            user_id VARCHAR,                     -- NULL = everyone
            created_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP
        );
        """,
    ),
    Migration(
        "0005_sending",
        """
        CREATE SEQUENCE template_seq;
        CREATE TABLE templates (
            id BIGINT PRIMARY KEY DEFAULT nextval('template_seq'),
            name VARCHAR NOT NULL UNIQUE,
            subject VARCHAR NOT NULL,
            body_text VARCHAR,
            body_html VARCHAR,
            created_by VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            updated_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP
        );
        CREATE SEQUENCE draft_seq;
        CREATE TABLE drafts (
            id BIGINT PRIMARY KEY DEFAULT nextval('draft_seq'),
            user_id VARCHAR NOT NULL,
            mailbox_id BIGINT,
            customer_id VARCHAR,
            deal_id VARCHAR,
            to_addrs VARCHAR[],
            cc_addrs VARCHAR[],
            bcc_addrs VARCHAR[],
            subject VARCHAR,
            body_text VARCHAR,
            body_html VARCHAR,
            template_id BIGINT,
            reply_to_message_id VARCHAR,
            attachments VARCHAR,                 -- JSON list of {path|sha256, filename, content_type}
            created_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            updated_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            sent_outbox_id BIGINT
        );
        CREATE SEQUENCE outbox_seq;
        CREATE TABLE outbox (                    -- E3: queued -> sending -> sent | failed
            id BIGINT PRIMARY KEY DEFAULT nextval('outbox_seq'),
            user_id VARCHAR NOT NULL,
            mailbox_id BIGINT NOT NULL,
            customer_ids VARCHAR[],
            draft_id BIGINT,
            message_id_header VARCHAR NOT NULL UNIQUE, -- fixed before the first attempt
            raw BLOB NOT NULL,
            envelope_from VARCHAR,
            recipients VARCHAR[],
            state VARCHAR NOT NULL DEFAULT 'queued',
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            updated_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            sent_at TIMESTAMP
        );
        CREATE SEQUENCE notification_seq;
        CREATE TABLE notifications (             -- N1
            id BIGINT PRIMARY KEY DEFAULT nextval('notification_seq'),
            user_id VARCHAR NOT NULL,
            mailbox_id BIGINT,
            message_id VARCHAR,
            customer_id VARCHAR,
            kind VARCHAR NOT NULL DEFAULT 'new_customer_email',
            created_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            read_at TIMESTAMP
        );
        """,
    ),
    Migration(
        "0006_send_outbox_drafts",
        """
        ALTER TABLE outbox ADD COLUMN phase VARCHAR;          -- queued | connect | smtp | accepted | filed | done
        ALTER TABLE outbox ADD COLUMN error_code VARCHAR;
        ALTER TABLE outbox ADD COLUMN subject VARCHAR;
        ALTER TABLE outbox ADD COLUMN deal_id VARCHAR;
        ALTER TABLE outbox ADD COLUMN activity_plan VARCHAR;  -- JSON [[customer_id, match_kind, deal_id]]
        ALTER TABLE outbox ADD COLUMN sent_copy VARCHAR;      -- provider | appended | found
        ALTER TABLE drafts ADD COLUMN cc_customer_ids VARCHAR[];
        ALTER TABLE drafts ADD COLUMN bcc_customer_ids VARCHAR[];
        ALTER TABLE drafts ADD COLUMN reply_all BOOLEAN DEFAULT FALSE;
        """,
    ),
    Migration(
        "0040_address_owners",
        """
        -- C6: an address is linked to at most one user at a time (PRIMARY KEY = the check
        -- that holds even when two connects race). A disconnected mailbox keeps its owner;
        -- only an admin transfer (recorded in mailbox_transfers) gives it to someone else.
        CREATE TABLE address_owners (
            address VARCHAR PRIMARY KEY,
            user_id VARCHAR NOT NULL,
            since TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            by_user_id VARCHAR                   -- who made the link: the owner, or the admin of a transfer
        );
        CREATE SEQUENCE mailbox_transfer_seq;
        CREATE TABLE mailbox_transfers (
            id BIGINT PRIMARY KEY DEFAULT nextval('mailbox_transfer_seq'),
            address VARCHAR NOT NULL,
            from_user_id VARCHAR,
            to_user_id VARCHAR NOT NULL,
            by_user_id VARCHAR NOT NULL,         -- an admin
            reason VARCHAR,
            disconnected BIGINT[],               -- mailbox rows of other users disconnected by it
            transferred_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP
        );
        -- addresses linked to more than one user before C6 was enforced: found here, reported
        -- by `mailops db migrate` and `mailops mailbox conflicts`, resolved by a transfer
        CREATE TABLE address_link_conflicts (
            address VARCHAR PRIMARY KEY,
            users VARCHAR[] NOT NULL,
            mailbox_ids BIGINT[] NOT NULL,
            found_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            resolved_at TIMESTAMP,
            resolved_by_transfer BIGINT
        );
        INSERT INTO address_owners (address, user_id, since)
            SELECT lower(address), min(owner_user_id), min(created_at) FROM mailboxes
            GROUP BY lower(address) HAVING count(DISTINCT owner_user_id) = 1;
        INSERT INTO address_link_conflicts (address, users, mailbox_ids)
            SELECT lower(address), list(DISTINCT owner_user_id ORDER BY owner_user_id),
                   list(id ORDER BY id)
            FROM mailboxes GROUP BY lower(address) HAVING count(DISTINCT owner_user_id) > 1;
        """,
    ),
    Migration(
        "0060_notifications_followups",
        """
        -- N1: one notification per (user, message); why this user (mailbox_owner | deal_owner);
        -- when it went out in a digest email. Duplicates from before are folded first.
        -- (DuckDB refuses ALTER TABLE on an indexed table: drop the index first to alter it.)
        DELETE FROM notifications WHERE id NOT IN (
            SELECT min(id) FROM notifications GROUP BY user_id, message_id
        );
        ALTER TABLE notifications ADD COLUMN reason VARCHAR DEFAULT 'mailbox_owner';
        ALTER TABLE notifications ADD COLUMN digest_at TIMESTAMP;
        CREATE UNIQUE INDEX notifications_user_message ON notifications(user_id, message_id);
        -- F1: every follow-up suggestion and what the user did with it (the measure).
        CREATE SEQUENCE followup_seq;
        CREATE TABLE followup_suggestions (
            id BIGINT PRIMARY KEY DEFAULT nextval('followup_seq'),
            user_id VARCHAR NOT NULL,            -- who it was drafted for
            customer_id VARCHAR NOT NULL,
            deal_id VARCHAR,
            thread VARCHAR NOT NULL,             -- thread key (R3 definition)
            kind VARCHAR NOT NULL,               -- our_reply | customer_reply (who owes the answer)
            last_message_id VARCHAR NOT NULL,    -- the message the follow-up answers
            waiting_since TIMESTAMP,
            language VARCHAR,
            model VARCHAR NOT NULL,              -- template | llm:<model name>
            draft_id BIGINT,                     -- the draft (send/drafts.py); never sent by mailops
            subject VARCHAR,                     -- as suggested (to tell "sent as is" from "edited")
            body_sha256 VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            outcome VARCHAR NOT NULL DEFAULT 'pending', -- pending | sent_as_is | edited | discarded
            outcome_at TIMESTAMP
        );
        """,
    ),
    Migration(
        "0030_mailbox_probes",
        """
        -- C4: a mailbox problematic for a transient reason is probed with backoff; one row
        -- per such mailbox (deleted when it recovers or its problem waits for the user)
        CREATE TABLE mailbox_probes (
            mailbox_id BIGINT PRIMARY KEY,
            attempts INTEGER NOT NULL DEFAULT 0,  -- failed probes since it turned problematic
            last_probe_at TIMESTAMP,
            next_probe_at TIMESTAMP NOT NULL,
            last_code VARCHAR,
            last_message VARCHAR
        );
        """,
    ),
    Migration(
        "0020_identity",
        """
        -- S13: one Message-ID, another content = another message. messages.id stays the
        -- normalised Message-ID for the first content seen, 'mid#<fp16>' for another one,
        -- 'sha256:<content_fp>' without a usable Message-ID (the Python step re-keys those).
        ALTER TABLE messages ADD COLUMN message_id VARCHAR;  -- usable normalised Message-ID
        ALTER TABLE messages ADD COLUMN content_fp VARCHAR;  -- identity fingerprint (NULL: not yet computed)
        ALTER TABLE attachments ADD COLUMN content_id VARCHAR; -- for cid: images (A1)
        ALTER TABLE audit_ledger ADD COLUMN identity VARCHAR;  -- new | linked | variant (stored rows)
        """,
        run=_rekey_identities,
    ),
    Migration(
        "0010_blob_files",
        """
        -- S12: large raw messages / attachments live in the blob folder beside the store
        -- (store/blobs.py); the row stays as their catalog entry, without the bytes.
        ALTER TABLE message_raw ALTER COLUMN raw DROP NOT NULL;
        ALTER TABLE message_raw ADD COLUMN size BIGINT;
        ALTER TABLE message_raw ADD COLUMN in_file BOOLEAN DEFAULT FALSE;
        UPDATE message_raw SET size = octet_length(raw), in_file = FALSE;
        ALTER TABLE attachment_blobs ALTER COLUMN content DROP NOT NULL;
        ALTER TABLE attachment_blobs ADD COLUMN in_file BOOLEAN DEFAULT FALSE;
        UPDATE attachment_blobs SET in_file = FALSE;
        """,
    ),
    Migration(
        "0011_message_errors",
        """
        -- S15: a message that could not be fetched, parsed or stored (its ledger row says
        -- decision='error'); retried on later runs up to a bound, then given up.
        CREATE TABLE message_errors (
            mailbox_id BIGINT NOT NULL,
            folder VARCHAR NOT NULL,
            uidvalidity BIGINT NOT NULL,
            uid BIGINT NOT NULL,
            reason VARCHAR NOT NULL,             -- fetch_failed | parse_failed | store_failed
            error VARCHAR,                       -- one line, no secrets
            attempts INTEGER NOT NULL DEFAULT 1,
            state VARCHAR NOT NULL DEFAULT 'retrying', -- retrying | given_up | resolved
            first_run_id BIGINT,
            last_run_id BIGINT,
            first_failed_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            last_failed_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP,
            resolved_at TIMESTAMP,
            PRIMARY KEY (mailbox_id, folder, uidvalidity, uid)
        );
        -- S15: consecutive runs in which a folder failed (reset by a good run of it).
        CREATE TABLE folder_failures (
            mailbox_id BIGINT NOT NULL,
            folder VARCHAR NOT NULL,
            consecutive INTEGER NOT NULL DEFAULT 0,
            error_code VARCHAR,
            error VARCHAR,
            last_run_id BIGINT,
            last_failed_at TIMESTAMP,
            PRIMARY KEY (mailbox_id, folder)
        );
        ALTER TABLE mailboxes ADD COLUMN failed_runs INTEGER DEFAULT 0; -- consecutive (S15)
        ALTER TABLE sync_runs ADD COLUMN errors BIGINT DEFAULT 0;          -- decision = 'error' rows
        """,
    ),
    Migration(
        "0012_folder_accounting",
        """
        -- S11: every folder of every run is accounted for: examined, unchanged (nothing new
        -- since the checkpoint), not examined (why), or failed; and how many messages the
        -- server holds before the backfill window.
        ALTER TABLE sync_folder_reports ADD COLUMN state VARCHAR DEFAULT 'examined';
        ALTER TABLE sync_folder_reports ADD COLUMN not_examined_reason VARCHAR;
        ALTER TABLE sync_folder_reports ADD COLUMN special_use VARCHAR;
        ALTER TABLE sync_folder_reports ADD COLUMN before_window BIGINT;
        ALTER TABLE sync_folder_reports ADD COLUMN window_start TIMESTAMP;
        ALTER TABLE sync_folder_reports ADD COLUMN errors BIGINT DEFAULT 0;
        ALTER TABLE sync_folder_reports ADD COLUMN error VARCHAR;
        ALTER TABLE folder_checkpoints ADD COLUMN before_window BIGINT;
        """,
    ),
    Migration(
        "0041_visibility_and_policy",
        """
        -- P2: what others see of a mailbox's mail, chosen by its owner; NULL = company policy
        ALTER TABLE mailboxes ADD COLUMN visibility VARCHAR;  -- everything | subject | metadata
        -- company-wide settings decided by an admin, each change recorded (P2, S9)
        CREATE TABLE company_policy (
            key VARCHAR PRIMARY KEY,
            value VARCHAR NOT NULL,
            set_by VARCHAR,
            set_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP
        );
        CREATE SEQUENCE policy_change_seq;
        CREATE TABLE policy_changes (
            id BIGINT PRIMARY KEY DEFAULT nextval('policy_change_seq'),
            scope VARCHAR NOT NULL,              -- company | mailbox:<id>
            key VARCHAR NOT NULL,
            old_value VARCHAR,
            new_value VARCHAR,
            by_user_id VARCHAR,
            changed_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP
        );
        """,
    ),
    Migration(
        "0042_never_log_unlink_erasure",
        """
        -- S9: who listed a never-log entry (kinds: address | domain | customer)
        ALTER TABLE never_log ADD COLUMN created_by VARCHAR;
        -- S9: a stored message unlinked from / linked back to a customer (admins relink)
        CREATE SEQUENCE link_change_seq;
        CREATE TABLE link_changes (
            id BIGINT PRIMARY KEY DEFAULT nextval('link_change_seq'),
            message_id VARCHAR NOT NULL,
            customer_id VARCHAR NOT NULL,
            action VARCHAR NOT NULL,             -- unlink | relink
            by_user_id VARCHAR NOT NULL,
            reason VARCHAR,
            changed_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP
        );
        -- G1: what an erasure removed, without personal data (hashes and counts only)
        CREATE SEQUENCE erasure_seq;
        CREATE TABLE erasure_receipts (
            id BIGINT PRIMARY KEY DEFAULT nextval('erasure_seq'),
            target_kind VARCHAR NOT NULL,        -- address | customer
            target_sha256 VARCHAR NOT NULL,      -- sha256 of the address / customer id
            counts VARCHAR NOT NULL,             -- JSON {table: rows removed}
            content_sha256 VARCHAR[],            -- sha256 of each removed message's raw bytes
            by_user_id VARCHAR NOT NULL,
            erased_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP
        );
        -- G1: erased addresses, so no later sync or import brings them back
        CREATE TABLE erasure_blocks (
            address_sha256 VARCHAR PRIMARY KEY,
            receipt_id BIGINT NOT NULL,
            blocked_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP
        );
        CREATE TABLE erased_customers (
            customer_sha256 VARCHAR PRIMARY KEY,
            receipt_id BIGINT NOT NULL
        );
        """,
    ),
    Migration(
        "0043_ledger_headers",
        """
        -- X1: To/Cc, INTERNALDATE and flags of each examined message, so a proposed rule
        -- change can be replayed on the ledger without the server (a dry run)
        ALTER TABLE audit_ledger ADD COLUMN to_addrs VARCHAR[];
        ALTER TABLE audit_ledger ADD COLUMN cc_addrs VARCHAR[];
        ALTER TABLE audit_ledger ADD COLUMN internaldate TIMESTAMP;
        ALTER TABLE audit_ledger ADD COLUMN flags VARCHAR;
        """,
    ),
]
