#!/usr/bin/env bash
# `make valgrind`: runs the capture program (release build) under valgrind through integration
# scenarios of test_capture_ce on a private stack (.state/valgrind, port base DW_TEST_PORT_BASE,
# default 29000). Default scenario: webhooks + change tracking together, ended by SIGTERM
# (test_webhook_and_delta_one_id_and_txn_unit); DW_TEST_FILTER picks others (cmocka pattern).
# valgrind runs with --leak-check=full --error-exitcode=1, so any error or definite/indirect leak
# makes capture exit 1, which the scenario's exit-status check reports as a failure. Each run's
# valgrind report is kept in .state/valgrind/logs/valgrind.<pid>.log; the summaries are printed.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
export DW_BUILD=build/release
export DW_STATE_DIR="$top/.state/valgrind"
logs="$DW_STATE_DIR/logs"
rm -rf "$logs"
mkdir -p "$logs"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
export DW_PORT_BASE=${DW_TEST_PORT_BASE:-29000}
trap 'deploy/local/stack.sh down >"$logs/stack-down.log" 2>&1' EXIT
if ! deploy/local/stack.sh up >"$logs/stack-up.log" 2>&1; then
	cat "$logs/stack-up.log"
	echo "stack failed to start"
	exit 1
fi
# shellcheck disable=SC1091
. "$DW_STATE_DIR/stack.env"
export CMOCKA_MESSAGE_OUTPUT=TAP
export DW_TEST_FILTER=${DW_TEST_FILTER:-test_webhook_and_delta_one_id_and_txn_unit}
export DW_TEST_CAPTURE_WRAPPER="valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1 --log-file=$logs/valgrind.%p.log"
"$DW_BUILD"/tests/integration/test_capture_ce 2>"$logs/suite.stderr"
rc=$?
for f in "$logs"/valgrind.*.log; do
	[ -f "$f" ] || continue
	echo "$(basename "$f"): $(grep -h 'ERROR SUMMARY' "$f" | sed 's/^==[0-9]*== //')"
	grep -h -E 'definitely lost:|indirectly lost:' "$f" | sed 's/^==[0-9]*== /    /'
done
[ "$rc" -eq 0 ] && echo "capture under valgrind: clean" || echo "capture under valgrind: FAILED (see $logs)"
exit "$rc"
