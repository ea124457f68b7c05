#!/usr/bin/env bash
# `make valgrind`: runs the long-running programs (release build) under valgrind through
# integration scenarios on a private stack (.state/valgrind, port base DW_TEST_PORT_BASE, default
# 29000):
#   capture: webhooks + change tracking together, ended by SIGTERM (test_capture_ce's
#            test_webhook_and_delta_one_id_and_txn_unit; DW_VALGRIND_CAPTURE picks others);
#   apply:   both workers of the accounts map through creates, updates, deletes, echoes, dead
#            letters, parking and its timeout, an atomic unit and a same-field conflict on both sides
#            (conflict waits, pending notes) (test_apply scenarios; DW_VALGRIND_APPLY, a list of
#            cmocka patterns, picks others), each run ended by SIGTERM.
# valgrind runs with --leak-check=full --error-exitcode=1, so any error or definite/indirect leak
# makes the program exit 1, which the suites' exit-status checks report as a failure. Each
# process's report is kept in .state/valgrind/logs/valgrind.<pid>.log; the summaries are printed.
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
vg="valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1 --log-file=$logs/valgrind.%p.log"
rc=0

DW_TEST_FILTER=${DW_VALGRIND_CAPTURE:-test_webhook_and_delta_one_id_and_txn_unit} DW_TEST_CAPTURE_WRAPPER="$vg" \
	"$DW_BUILD"/tests/integration/test_capture_ce 2>"$logs/capture.stderr" || rc=1
apply_scenarios=${DW_VALGRIND_APPLY:-"test_round_trip_echoes_write_nothing test_validation_error_goes_to_dlq_with_target_body test_missing_lookup_parks_then_redrives_in_order test_parked_too_long_goes_to_dlq test_unit_of_four_parts_appears_all_at_once test_same_field_both_sides_decided_by_field_times test_recording_connection_lost_loses_nothing"}
for s in $apply_scenarios; do
	DW_TEST_FILTER=$s DW_TEST_APPLY_WRAPPER="$vg" \
		"$DW_BUILD"/tests/integration/test_apply 2>>"$logs/apply.stderr" || rc=1
done

for f in "$logs"/valgrind.*.log; do
	[ -f "$f" ] || continue
	echo "$(basename "$f"): $(grep -h 'ERROR SUMMARY' "$f" | sed 's/^==[0-9]*== //')"
	grep -h -E 'definitely lost:|indirectly lost:' "$f" | sed 's/^==[0-9]*== /    /'
done
[ "$rc" -eq 0 ] && echo "capture and apply under valgrind: clean" || echo "under valgrind: FAILED (see $logs)"
exit "$rc"
