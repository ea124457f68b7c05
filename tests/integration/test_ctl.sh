#!/usr/bin/env bash
# `ctl` as an operator runs it: help without any environment, usage errors (exit 2 naming the
# argument), `ctl migrate` on a fresh database (twice), `ctl topics create` (twice, then with
# other settings). Prints TAP lines. Needs DW_BUILD, DW_KAFKA_BROKERS and DW_PG_DSN (tests/run.sh).
set -uo pipefail
ctl="${DW_BUILD:-build/release}/bin/ctl"
out=$(mktemp)
errf=$(mktemp)
db="dwt_ctl_$$_$(date +%s)"
trap 'rm -f "$out" "$errf"; psql "$DW_PG_DSN" -qc "drop database if exists $db with (force)" >/dev/null 2>&1' EXIT

. "$(dirname "$0")/../lib/tap.sh"

echo "1..17"
check "ctl --help without environment" 0 "topics +create the per-table" env -i "$ctl" --help
check "ctl migrate --help without environment" 0 "--status" env -i "$ctl" migrate --help
check "ctl topics create --help without environment" 0 "default 6.*" env -i "$ctl" topics create --help
grep -q "replication factor (default 1\|default 1, for a single-broker" "$out" && ok "topics help states the defaults" ||
	not_ok "topics help states the defaults"
check "ctl with no command is a usage error" 2 "usage: ctl" env -i "$ctl"

export DW_TOPIC_PREFIX="dwt$$"
check "bad table name exits 2 naming it" 2 "ce\.Account" "$ctl" topics create ce.Account
check "bad side exits 2 naming it" 2 "xx\.account" "$ctl" topics create xx.account
check "bad --partitions exits 2 naming it" 2 "--partitions.*'zero'" "$ctl" topics create --partitions zero ce.account
check "--partitions 0 exits 2" 2 "--partitions" "$ctl" topics create --partitions 0 ce.account
check "bad --retention exits 2 naming it" 2 "--retention" "$ctl" topics create --retention 7weeks ce.account
check "no table and no DW_TABLES exits 2" 2 "DW_TABLES" env -u DW_TABLES "$ctl" topics create

# migrate on a fresh database of its own
psql "$DW_PG_DSN" -qc "create database $db" >/dev/null
dsn=$(printf '%s' "$DW_PG_DSN" | sed "s#/dualwrite?#/$db?#")
[ "$dsn" != "$DW_PG_DSN" ] || echo "# cannot point DW_PG_DSN at $db; the migrate checks below will fail"
check "ctl migrate applies the migrations" 0 "applied 001_initial.sql" env DW_PG_DSN="$dsn" "$ctl" migrate
check "ctl migrate again applies nothing" 0 "^schema is up to date \(version [0-9]+\)$" env DW_PG_DSN="$dsn" "$ctl" migrate
check "ctl migrate --status" 0 "database schema version: +[1-9]" env DW_PG_DSN="$dsn" "$ctl" migrate --status

# topics from DW_TABLES, twice, then with other settings
export DW_TABLES=" ce.account , fo.customersv3"
check "ctl topics create from DW_TABLES" 0 "created +dwt$$\.fo\.customersv3 \(partitions 2" "$ctl" topics create --partitions 2 --retention 36h
check "ctl topics create again reports exists" 0 "exists +dwt$$\.ce\.account" "$ctl" topics create --partitions 2 --retention 36h
check "other partitions: error naming topic and difference" 1 "dwt$$\.ce\.account .*partitions 2 \(asked 6\)" "$ctl" topics create --retention 36h ce.account

[ "$failed" -eq 0 ]
