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
step "audit ledger: stored / skipped by reason (S11; export with --csv/--json/--parquet)"
$MO audit --summary

step "send: a template offer, a reply to a synced customer email, a note (E1-E3)"
$MO demo send
$MO outbox list

# @demo:reports@ (issue 6: run all notebooks, print the HTML report paths)

printf '\nDone. Store: %s\nThe devserver keeps running; stop it with: %s devserver stop\n' "$MAILOPS_DB" "$MO"
