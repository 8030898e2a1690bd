#!/usr/bin/env bash
# barvault quick start: build the release binary, import the sample daily bars into a fresh
# store, then list, verify, check health and export a few rows. Needs only the Rust toolchain.
#
#   bash examples/quickstart.sh
set -euo pipefail

cd "$(dirname "$0")/.."
STORE=target/quickstart-store
BIN=target/release/barvault

step() { printf '\n==> %s\n' "$*"; }

step "building the release binary (cargo build --release -p barvault-cli)"
cargo build --release -p barvault-cli

step "starting from an empty store in $STORE"
rm -rf "$STORE"

run() {
  printf '$ barvault %s\n' "$*"
  "$BIN" --data-dir "$STORE" "$@"
}

step "importing tests/data/daily (each file's name is its symbol: NVDA, ORCL)"
run import --type stock --period 1d tests/data/daily

step "listing the stored series"
run list

step "verifying every file against its checksum and the other copy"
run verify --all

step "checking the store's health"
run health || echo "(health exit code $?: see docs/OPERATIONS.md)"

step "exporting the last days of 2014 for NVDA as CSV"
run export --type stock --symbol NVDA --period 1d --from 2014-12-24 --to 2014-12-31

step "describing the series"
run info --type stock --symbol NVDA --period 1d

step "done: the store is in $STORE; try '$BIN --data-dir $STORE --help'"
