#!/usr/bin/env bash
# Starts or stops a private PostgreSQL 15 cluster on loopback, state under $DW_STATE_DIR/pg.
#   postgres.sh start PORT   creates the cluster on first use (role and database "dualwrite",
#                            scram-sha-256 password in $DW_STATE_DIR/pg.password), returns once it
#                            accepts connections
#   postgres.sh stop         fast shutdown; safe when not running
# PostgreSQL refuses to run as root: as root the server runs as the unprivileged user "postgres",
# which owns the data folder.
set -euo pipefail
state=${DW_STATE_DIR:?DW_STATE_DIR is not set}
bindir=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || true)
[ -n "$bindir" ] || { echo "postgres: PostgreSQL 15 server not installed; run make deps" >&2; exit 1; }

as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# The data folder lives at $state/pg. As root, when "postgres" cannot reach the state folder (a
# checkout under /root, say), it lives under /var/tmp with $state/pg a link to it.
datadir() {
	local d="$state/pg"
	if [ "$(id -u)" -eq 0 ] && [ ! -e "$d" ] && ! runuser -u postgres -- test -x "$state"; then
		local alt
		alt="/var/tmp/dualwrite-pg-$(printf '%s' "$state" | md5sum | cut -c1-12)"
		mkdir -p "$alt"
		chown postgres: "$alt"
		ln -s "$alt" "$d"
	fi
	mkdir -p "$d"
	[ "$(id -u)" -ne 0 ] || chown postgres: "$d"
	chmod 700 "$d"
	(cd "$d" && pwd -P)
}

start() {
	local port=${1:?usage: postgres.sh start PORT}
	mkdir -p "$state"
	local d
	d=$(datadir)
	local pwfile="$state/pg.password"
	if [ ! -f "$d/PG_VERSION" ]; then
		[ -f "$pwfile" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$pwfile")
		local tmp_pw
		tmp_pw=$(mktemp)
		cat "$pwfile" >"$tmp_pw"
		[ "$(id -u)" -ne 0 ] || chown postgres: "$tmp_pw"
		as_owner "$bindir/initdb" -D "$d" -U dualwrite --pwfile="$tmp_pw" --auth=scram-sha-256 \
			-E UTF8 --locale=C.UTF-8 >"$state/pg-initdb.log" 2>&1 ||
			{ cat "$state/pg-initdb.log" >&2; exit 1; }
		rm -f "$tmp_pw"
		cat >>"$d/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
shared_buffers = 128MB
fsync = on
log_min_messages = warning
CONF
	fi
	sed -i "s/^port = .*//" "$d/postgresql.conf"
	echo "port = $port" >>"$d/postgresql.conf"
	if as_owner "$bindir/pg_ctl" -D "$d" status >/dev/null 2>&1; then
		echo "postgres: already running on 127.0.0.1:$port"
		return 0
	fi
	as_owner "$bindir/pg_ctl" -D "$d" -l "$d/server.log" -w -t 60 start >/dev/null ||
		{ tail -20 "$d/server.log" >&2; exit 1; }
	local deadline=$((SECONDS + 60))
	until PGPASSWORD=$(cat "$pwfile") psql -h 127.0.0.1 -p "$port" -U dualwrite -d postgres -qtAc 'select 1' >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || { echo "postgres: not accepting connections on 127.0.0.1:$port" >&2; exit 1; }
		sleep 0.3
	done
	PGPASSWORD=$(cat "$pwfile") psql -h 127.0.0.1 -p "$port" -U dualwrite -d postgres -qtAc \
		"select 1 from pg_database where datname = 'dualwrite'" | grep -q 1 ||
		PGPASSWORD=$(cat "$pwfile") psql -h 127.0.0.1 -p "$port" -U dualwrite -d postgres -qc 'create database dualwrite' >/dev/null
	echo "postgres: ready on 127.0.0.1:$port"
}

stop() {
	local d="$state/pg"
	[ -f "$d/PG_VERSION" ] || return 0
	if as_owner "$bindir/pg_ctl" -D "$d" status >/dev/null 2>&1; then
		as_owner "$bindir/pg_ctl" -D "$d" -m fast -w -t 60 stop >/dev/null
		echo "postgres: stopped"
	fi
}

case "${1:-}" in
start) start "${2:-}" ;;
stop) stop ;;
*) echo "usage: postgres.sh start PORT | stop" >&2; exit 2 ;;
esac
