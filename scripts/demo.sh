#!/usr/bin/env bash
# `make demo`: start the local mail server, seed the demo company, and run the main job on it.
# Safe to re-run: every step is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
MO=".venv/bin/mailops"
export MAILOPS_DB="${MAILOPS_DB:-$PWD/mailops.duckdb}"

step() { printf '\n== %s\n' "$*"; }

step "local mail server"
$MO devserver start

step "demo company (directory + mailboxes)"
$MO demo seed

step "connect every demo mailbox (one through Microsoft sign-in: MSAL device code + XOAUTH2)"
$MO demo connect

# @demo:sync@
step "sync every connected demo mailbox: headers first, customer mail stored, the rest skipped with a reason (S1-S12)"
$MO sync --all
step "audit ledger: stored / skipped by reason (S11; export with --output FILE.csv|.json|.parquet)"
$MO audit --summary

step "send: a template offer, a reply to a synced customer email, a note (E1-E3)"
$MO demo send
$MO outbox list

# @demo:day@
step "push (S1): the watching sync keeps IMAP IDLE on every INBOX; two customers write now, through SMTP"
$MO sync --watch --for 30 >"$MAILOPS_DB.watch.log" 2>&1 &
WATCH=$!
for _ in $(seq 1 60); do  # until every demo mailbox is under IDLE
  [ "$(grep -c '^IDLE on' "$MAILOPS_DB.watch.log" 2>/dev/null || true)" -ge 5 ] && break
  sleep 0.5
done
$MO demo inbound --count 2 --user u-anna --wait 20
kill "$WATCH" 2>/dev/null || true
wait "$WATCH" 2>/dev/null || true
step "notifications (N1): Anna's unread ones (the seeded mail is backfill: it notifies nobody)"
$MO notifications list --unread --as u-anna
CUSTOMER=$($MO notifications list --unread --as u-anna --json | .venv/bin/python -c 'import json,sys; r=json.load(sys.stdin); print(r[0]["customer_id"] if r else "")')
if [ -n "$CUSTOMER" ]; then
  step "the customer's timeline (A1): both ways, newest first; open the newest email"
  $MO activities "$CUSTOMER" --as u-anna --limit 8
  NEWEST=$($MO activities "$CUSTOMER" --as u-anna --json --limit 1 --no-sync | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["message_id"])')
  $MO message show "$NEWEST" --as u-anna
fi
step "follow-up assistant (F1): threads waiting for Anna or for her customers; drafts (never sent)"
$MO followup list --as u-anna --limit 10
$MO followup draft --all --user u-anna --limit 5
$MO followup suggestions --as u-anna --limit 5

# @demo:reports@
step "reports: every notebook under papermill -> reports/NAME/<timestamp>.ipynb + .html (R2-R5)"
$MO report --all -p TRIGGER demo
step "the activity report as manager Margaret Okafor may see it (P1: her team only)"
$MO report activity_report -p VIEWER u-margaret
step "the same queries on the command line"
$MO stats response-times --as u-margaret
$MO stats problematic
printf '\nOpen the .html reports above in a browser (no kernel needed).\nJupyterLab on the notebooks, mailops kernel ready: make lab\n'

printf '\nDone. Store: %s\nThe devserver keeps running; stop it with: %s devserver stop\n' "$MAILOPS_DB" "$MO"
