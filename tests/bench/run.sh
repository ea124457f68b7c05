#!/usr/bin/env bash
# Runs every benchmark binary ($DW_BUILD/tests/bench/bench_*) against a stack with the emulators.
# Reuses a running stack when $DW_STATE_DIR/stack.env (default .state/bench) names live emulators;
# otherwise starts a private one (port base DW_BENCH_PORT_BASE, default 28000) and stops it after.
# Measure with the release build (`make bench`).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
export DW_BUILD=${DW_BUILD:-build/release}
export DW_STATE_DIR=${DW_STATE_DIR:-$top/.state/bench}
mkdir -p "$DW_STATE_DIR"
started=0
alive() {
	[ -f "$DW_STATE_DIR/stack.env" ] || return 1
	# shellcheck disable=SC1091
	. "$DW_STATE_DIR/stack.env"
	[ -n "${DW_CE_URL:-}" ] && curl -s -o /dev/null -X POST "$DW_CE_URL/x/oauth2/v2.0/token"
}
if ! alive; then
	export DW_PORT_BASE=${DW_BENCH_PORT_BASE:-28000}
	deploy/local/stack.sh up >"$DW_STATE_DIR/stack-up.log" 2>&1 || { cat "$DW_STATE_DIR/stack-up.log"; exit 1; }
	started=1
	trap 'deploy/local/stack.sh down >"$DW_STATE_DIR/stack-down.log" 2>&1' EXIT
	# shellcheck disable=SC1091
	. "$DW_STATE_DIR/stack.env"
fi
rc=0
for b in "$DW_BUILD"/tests/bench/bench_*; do
	[ -x "$b" ] || continue
	echo "== $(basename "$b")"
	"$b" || rc=1
done
[ $started -eq 1 ] && echo "(private stack stopped)"
exit $rc
