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

# @demo:sync@ (issue 4: sync every demo mailbox, print stored / skipped by reason)

step "send: a template offer, a reply to a synced customer email, a note (E1-E3)"
$MO demo send
$MO outbox list

# @demo:reports@ (issue 6: run all notebooks, print the HTML report paths)

printf '\nDone. Store: %s\nThe devserver keeps running; stop it with: %s devserver stop\n' "$MAILOPS_DB" "$MO"
