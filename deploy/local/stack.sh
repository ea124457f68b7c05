#!/usr/bin/env bash
# The local stack without Docker: a KRaft Kafka broker and a PostgreSQL 15 cluster on loopback,
# state under a git-ignored folder.
#   stack.sh up     start everything (idempotent) and write $DW_STATE_DIR/stack.env
#   stack.sh down   stop everything (safe to run twice)
# DW_STATE_DIR (default .state) and DW_PORT_BASE (default 19000) let a second stack run beside the
# first: `make test` uses .state/test and 29000. Ports: Kafka BASE+92 (controller BASE+93),
# PostgreSQL BASE+432, emulators BASE+81 (Dataverse flavour) and BASE+82 (FO flavour).
# The emulators are started from $DW_BUILD/bin/dw-emulator (default build/release) when it is built;
# their settings (DW_CE_URL, DW_CE_TOKEN_URL, DW_CE_CLIENT_ID, DW_CE_CLIENT_SECRET, DW_CE_SCOPE and
# the same five DW_FO_*) are added to stack.env.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
export DW_STATE_DIR=${DW_STATE_DIR:-$top/.state}
base=${DW_PORT_BASE:-19000}
kafka_port=$((base + 92))
pg_port=$((base + 432))
ce_port=$((base + 81))
fo_port=$((base + 82))
emu_bin=${DW_BUILD:-build/release}/bin/dw-emulator
case "$emu_bin" in /*) ;; *) emu_bin="$top/$emu_bin" ;; esac

# Starts one emulator flavour unless it already runs; waits until its token endpoint answers.
emu_start() {
	local flavour=$1 port=$2 dsn=$3
	local pidf="$DW_STATE_DIR/emu-$flavour.pid"
	if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
		echo "emulator $flavour: already running on 127.0.0.1:$port"
		return 0
	fi
	DW_PG_DSN="$dsn" DW_EMU_CLIENT_SECRET_FILE="$DW_STATE_DIR/emu.secret" \
		nohup "$emu_bin" --flavour "$flavour" --port "$port" \
		--schema "$top/tests/emulators/schemas/$flavour.json" --db "dw_emu_$flavour" \
		>"$DW_STATE_DIR/emu-$flavour.log" 2>&1 </dev/null &
	echo $! >"$pidf"
	local deadline=$((SECONDS + 30))
	until curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/x/oauth2/v2.0/token" | grep -q 400; do
		if ! kill -0 "$(cat "$pidf")" 2>/dev/null; then
			echo "emulator $flavour: exited; log:" >&2
			tail -5 "$DW_STATE_DIR/emu-$flavour.log" >&2
			return 1
		fi
		[ $SECONDS -lt $deadline ] || { echo "emulator $flavour: not answering on 127.0.0.1:$port" >&2; return 1; }
		sleep 0.2
	done
	echo "emulator $flavour: ready on 127.0.0.1:$port"
}

emu_stop() {
	local flavour=$1
	local pidf="$DW_STATE_DIR/emu-$flavour.pid"
	[ -f "$pidf" ] || return 0
	local pid
	pid=$(cat "$pidf")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		local deadline=$((SECONDS + 10))
		while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pidf"
}

up() {
	mkdir -p "$DW_STATE_DIR"
	"$here/postgres.sh" start "$pg_port"
	"$here/kafka.sh" start "$kafka_port"
	local env="$DW_STATE_DIR/stack.env"
	local dsn
	dsn="postgresql://dualwrite:$(cat "$DW_STATE_DIR/pg.password")@127.0.0.1:$pg_port/dualwrite?connect_timeout=5"
	local emu_env=""
	if [ -x "$emu_bin" ]; then
		[ -f "$DW_STATE_DIR/emu.secret" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DW_STATE_DIR/emu.secret")
		emu_start ce "$ce_port" "$dsn"
		emu_start fo "$fo_port" "$dsn"
		local secret
		secret=$(cat "$DW_STATE_DIR/emu.secret")
		local f p
		for f in CE FO; do
			if [ $f = CE ]; then p=$ce_port; else p=$fo_port; fi
			emu_env+="export DW_${f}_URL=http://127.0.0.1:$p
export DW_${f}_TOKEN_URL=http://127.0.0.1:$p/dualwrite/oauth2/v2.0/token
export DW_${f}_CLIENT_ID=dw-emulator
export DW_${f}_CLIENT_SECRET='$secret'
export DW_${f}_SCOPE=http://127.0.0.1:$p/.default
"
		done
	else
		echo "stack: $emu_bin not built; emulators not started (run make first)"
	fi
	(
		umask 077
		cat >"$env.tmp" <<ENV
# Written by deploy/local/stack.sh up; source it: . $env
export DW_KAFKA_BROKERS=127.0.0.1:$kafka_port
export DW_PG_DSN='$dsn'
export DW_STACK_STATE_DIR='$DW_STATE_DIR'
${emu_env}
ENV
		mv "$env.tmp" "$env"
	)
	echo "stack: up; settings in $env"
}

down() {
	emu_stop ce
	emu_stop fo
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
