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
