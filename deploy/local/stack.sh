#!/usr/bin/env bash
# The local stack without Docker: a KRaft Kafka broker and a PostgreSQL 15 cluster on loopback,
# state under a git-ignored folder.
#   stack.sh up     start everything (idempotent) and write $DW_STATE_DIR/stack.env
#   stack.sh down   stop everything (safe to run twice)
# DW_STATE_DIR (default .state) and DW_PORT_BASE (default 19000) let a second stack run beside the
# first: `make test` uses .state/test and 29000. Ports: Kafka BASE+92 (controller BASE+93),
# PostgreSQL BASE+432.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
export DW_STATE_DIR=${DW_STATE_DIR:-$top/.state}
base=${DW_PORT_BASE:-19000}
kafka_port=$((base + 92))
pg_port=$((base + 432))

up() {
	mkdir -p "$DW_STATE_DIR"
	"$here/postgres.sh" start "$pg_port"
	"$here/kafka.sh" start "$kafka_port"
	local env="$DW_STATE_DIR/stack.env"
	(
		umask 077
		cat >"$env.tmp" <<ENV
# Written by deploy/local/stack.sh up; source it: . $env
export DW_KAFKA_BROKERS=127.0.0.1:$kafka_port
export DW_PG_DSN='postgresql://dualwrite:$(cat "$DW_STATE_DIR/pg.password")@127.0.0.1:$pg_port/dualwrite?connect_timeout=5'
export DW_STACK_STATE_DIR='$DW_STATE_DIR'
ENV
		mv "$env.tmp" "$env"
	)
	echo "stack: up; settings in $env"
}

down() {
	"$here/kafka.sh" stop
	"$here/postgres.sh" stop
	rm -f "$DW_STATE_DIR/stack.env"
	echo "stack: down"
}

case "${1:-}" in
up) up ;;
down) down ;;
*) echo "usage: stack.sh up | down" >&2; exit 2 ;;
esac
