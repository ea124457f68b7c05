#!/usr/bin/env bash
# The demo (docs/demo.md): the local stack, both emulators seeded, capture on both sides, one apply
# worker per map and direction, initial sync, a scripted scenario and a per-map table.
#   demo.sh run      everything above; leaves the stack and the workers running
#   demo.sh stop     stops the demo's capture and apply processes (safe when none run)
#   demo.sh down     stop, then the stack itself (what `make down` runs)
# Settings: DW_STATE_DIR (default .state), DW_PORT_BASE (default 19000), DW_BUILD (default
# build/release), DW_DEMO_ROWS (seed rows per company and business table, default 100),
# DW_DEMO_HEADLESS=1 (plain output, no hints; what `make test` runs), DW_DEMO_MAPS_DIR (default
# schemas/maps).
# Processes, pid files and logs live in $DW_STATE_DIR/demo/. Ports: the stack's (stack.sh), capture
# ce/fo on BASE+100/BASE+101, apply workers from BASE+110 on.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"
export DW_STATE_DIR=${DW_STATE_DIR:-$top/.state}
export DW_PORT_BASE=${DW_PORT_BASE:-19000}
build=${DW_BUILD:-build/release}
case "$build" in /*) ;; *) build="$top/$build" ;; esac
export DW_BUILD=$build
demo="$DW_STATE_DIR/demo"
rows=${DW_DEMO_ROWS:-100}
headless=${DW_DEMO_HEADLESS:-0}
base=$DW_PORT_BASE

if [ -t 1 ] && [ "$headless" != 1 ]; then
	bold=$'\e[1m' dim=$'\e[2m' off=$'\e[0m'
else
	bold='' dim='' off=''
fi
say() { printf '%s==>%s %s\n' "$bold" "$off" "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# Stops one process of ours by its pid file: TERM, then KILL after 15 s.
stop_pidfile() {
	local pidf=$1 pid
	[ -f "$pidf" ] || return 0
	pid=$(cat "$pidf")
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		local deadline=$((SECONDS + 15))
		while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pidf"
}

stop_workers() {
	local f
	[ -d "$demo" ] || return 0
	for f in "$demo"/*.pid; do
		[ -e "$f" ] || continue
		stop_pidfile "$f"
	done
}

# Waits until URL answers 200; the process behind PIDFILE must stay alive.
wait_ready() {
	local url=$1 pidf=$2 log=$3 deadline=$((SECONDS + 60))
	until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ]; do
		kill -0 "$(cat "$pidf")" 2>/dev/null || { tail -5 "$log" >&2; die "$(basename "$pidf" .pid) exited; log: $log"; }
		[ $SECONDS -lt $deadline ] || die "$(basename "$pidf" .pid) not ready after 60 s; log: $log"
		sleep 0.2
	done
}

# Starts a program in the background with its pid file and log under $demo.
spawn() {
	local name=$1
	shift
	nohup "$@" >"$demo/$name.log" 2>&1 </dev/null &
	echo $! >"$demo/$name.pid"
}

admin() { # side method path [body]
	local url
	if [ "$1" = ce ]; then url=$DW_CE_URL; else url=$DW_FO_URL; fi
	curl -sf -X "$2" -H 'Content-Type: application/json' "$url/_emulator/$3" ${4:+-d "$4"}
}

run() {
	local t0=$SECONDS
	for b in ctl capture apply dw-emulator dw-demo; do
		[ -x "$build/bin/$b" ] || die "$build/bin/$b is not built (run make)"
	done
	stop_workers
	mkdir -p "$demo"
	rm -f "$demo"/*.log
	say "stack: Kafka, PostgreSQL, both emulators ($DW_STATE_DIR, ports $((base + 92)), $((base + 432)), $((base + 81)), $((base + 82)))"
	"$top/deploy/local/stack.sh" up >"$demo/stack-up.log" 2>&1 || { cat "$demo/stack-up.log"; die "stack failed"; }
	# shellcheck disable=SC1091
	. "$DW_STATE_DIR/stack.env"

	# A fresh database and topic prefix per run, so a second run starts from a clean slate.
	local run_id
	run_id=$(date +%s)
	local dsn_db=${DW_PG_DSN%%\?*}
	local dsn_q=${DW_PG_DSN#"$dsn_db"}
	local demo_dsn="${dsn_db%/*}/dw_demo$dsn_q"
	psql -q "$DW_PG_DSN" -c 'DROP DATABASE IF EXISTS dw_demo WITH (FORCE)' -c 'CREATE DATABASE dw_demo' >/dev/null 2>"$demo/psql.log" ||
		{ cat "$demo/psql.log"; die "cannot create database dw_demo"; }
	local hookkey
	hookkey=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
	(
		umask 077
		cat >"$demo/demo.env" <<ENV
# Written by deploy/demo/demo.sh; source it to run ctl against the demo: . $demo/demo.env
. '$DW_STATE_DIR/stack.env'
export DW_PG_DSN='$demo_dsn'
export DW_TOPIC_PREFIX=demo$run_id
export DW_ENV=demo$run_id
export DW_MAPS_DIR='${DW_DEMO_MAPS_DIR:-$top/schemas/maps}'
export DW_DEMO_STATE='$demo'
export DW_DEMO_HOOK_KEY='$hookkey'
ENV
	)
	# shellcheck disable=SC1091
	. "$demo/demo.env"

	say "seed: $rows rows per company and table on both sides, reference data on both"
	admin ce POST reset >/dev/null && admin fo POST reset >/dev/null || die "emulator reset failed"
	local body="{\"n\":$rows,\"seed\":1,\"side\":\"both\"}"
	printf '    ce: %s\n    fo: %s\n' "$(admin ce POST seed "$body")" "$(admin fo POST seed "$body")"

	# What the maps need: capture tables, topics, workers (dw-demo reads schemas/maps).
	local plan
	plan=$("$build/bin/dw-demo" plan) || die "dw-demo plan failed"
	eval "$plan"
	export DW_TABLES=$DEMO_TOPICS
	printf '    maps: %s\n' "$DEMO_MAPS"

	say "migrate, topics"
	"$build/bin/ctl" migrate >"$demo/migrate.log" 2>&1 || { cat "$demo/migrate.log"; die "migrate failed"; }
	"$build/bin/ctl" topics create >"$demo/topics.log" 2>&1 || { cat "$demo/topics.log"; die "topics failed"; }

	say "capture: ce on :$((base + 100)), fo on :$((base + 101)); webhooks registered"
	local side port tables
	for side in ce fo; do
		if [ $side = ce ]; then port=$((base + 100)) tables=$DEMO_CE_TABLES; else port=$((base + 101)) tables=$DEMO_FO_TABLES; fi
		DW_CAPTURE_TABLES=$tables DW_HTTP_ADDR=127.0.0.1 DW_HTTP_PORT=$port DW_CAPTURE_POLL_INTERVAL=1s \
			DW_CAPTURE_WEBHOOK_KEY=$DW_DEMO_HOOK_KEY DW_CAPTURE_TRANSACTIONAL_ID="dw-demo-capture-$side-$run_id" \
			spawn "capture-$side" "$build/bin/capture" --side $side
	done
	for side in ce fo; do
		if [ $side = ce ]; then port=$((base + 100)); else port=$((base + 101)); fi
		wait_ready "http://127.0.0.1:$port/readyz" "$demo/capture-$side.pid" "$demo/capture-$side.log"
	done
	"$build/bin/dw-demo" hooks "http://127.0.0.1:$((base + 100))/webhook/ce" "http://127.0.0.1:$((base + 101))/webhook/fo" \
		>"$demo/hooks.log" 2>&1 || { cat "$demo/hooks.log"; die "webhook registration failed"; }

	say "apply: one worker per map and direction"
	: >"$demo/workers"
	local i=0 w map to
	for w in $DEMO_WORKERS; do
		map=${w%:*} to=${w#*:}
		port=$((base + 110 + i))
		DW_HTTP_ADDR=127.0.0.1 DW_HTTP_PORT=$port DW_APPLY_STATE_CHECK_MS=1000 DW_APPLY_BACKOFF_MIN_MS=200 \
			DW_APPLY_BACKOFF_MAX_MS=2000 DW_APPLY_BATCH_WAIT_MS=5 \
			spawn "apply-$map-to-$to" "$build/bin/apply" --map "$map" --to "$to"
		echo "$map $to $port" >>"$demo/workers"
		i=$((i + 1))
	done
	while read -r map to port; do
		wait_ready "http://127.0.0.1:$port/readyz" "$demo/apply-$map-to-$to.pid" "$demo/apply-$map-to-$to.log"
		printf '    %-24s -> %s  :%s\n' "$map" "$to" "$port"
	done <"$demo/workers"

	say "initial sync: every map in dependency order, from its master side"
	DW_CAPTURE_TABLES="$DEMO_CE_TABLES $DEMO_FO_TABLES" "$build/bin/ctl" initial-sync --all 2>"$demo/initial-sync.log" |
		sed 's/^/    /'
	[ "${PIPESTATUS[0]}" -eq 0 ] || { tail -5 "$demo/initial-sync.log"; die "initial sync failed"; }

	local rc=0
	DW_CAPTURE_TABLES="$DEMO_CE_TABLES $DEMO_FO_TABLES" DW_DEMO_CTL="$build/bin/ctl" "$build/bin/dw-demo" scenario || rc=$?
	printf '\nwall time: %d s\n' $((SECONDS - t0))
	if [ "$headless" != 1 ]; then
		cat <<EOF

The stack and the workers keep running. Look around:
  . $demo/demo.env
  $build/bin/ctl status
  curl -s \$DW_CE_URL/_emulator/stats     # Dataverse emulator: $DW_CE_URL
  curl -s \$DW_FO_URL/_emulator/stats     # F&O emulator:       $DW_FO_URL
  logs and pid files: $demo/
Stop everything: make down
EOF
	fi
	return $rc
}

case "${1:-}" in
run) run ;;
stop) stop_workers ;;
down)
	stop_workers
	"$top/deploy/local/stack.sh" down
	;;
*) echo "usage: demo.sh run | stop | down" >&2; exit 2 ;;
esac
