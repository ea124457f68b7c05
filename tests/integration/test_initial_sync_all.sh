#!/usr/bin/env bash
# `ctl initial-sync --all` refusals, before anything is published: a dependency cycle (exit 2 naming
# the maps), a map whose master table is not in DW_CAPTURE_TABLES (exit 2 naming the map; the
# maps are resolved in dependency order, not name order), --all together with --from or TABLE.
# The run itself (every map, nothing rewritten the second time) is checked by the headless demo
# (tests/run.sh, docs/demo.md). Prints TAP lines. Needs DW_BUILD, DW_KAFKA_BROKERS, DW_PG_DSN.
set -uo pipefail
ctl="${DW_BUILD:-build/release}/bin/ctl"
out=$(mktemp)
errf=$(mktemp)
maps=$(mktemp -d)
trap 'rm -rf "$out" "$errf" "$maps"' EXIT

. "$(dirname "$0")/../lib/tap.sh"

# A copy of the accounts map under another name, with dependencies.
map_as() { # NAME DEPENDENCIES-JSON-ARRAY
	python3 - "$1" "$2" "$maps/$1.json" <<'PY'
import json, sys
m = json.load(open("schemas/maps/accounts.json"))
m["name"] = sys.argv[1]
deps = json.loads(sys.argv[2])
if deps:
    m["dependencies"] = deps
else:
    m.pop("dependencies", None)
json.dump(m, open(sys.argv[3], "w"))
PY
}

echo "1..5"
map_as alpha '["zeta"]'
map_as zeta '["alpha"]'
check "a dependency cycle exits 2 naming the maps" 2 "cycle.*(alpha.*zeta|zeta.*alpha)" \
	env DW_MAPS_DIR="$maps" DW_CAPTURE_TABLES="account@accounts:accountnumber" "$ctl" initial-sync --all
grep -q "initial sync:" "$out" && not_ok "nothing is synced when the maps are refused" ||
	ok "nothing is synced when the maps are refused"

map_as zeta '[]'
check "a missing master table exits 2 naming the first map in dependency order" 2 \
	"map zeta \(master ce\).*not in DW_CAPTURE_TABLES" \
	env DW_MAPS_DIR="$maps" DW_CAPTURE_TABLES="CustomersV3@mserp_custcustomerv3entity:dataAreaId+CustomerAccount" \
	"$ctl" initial-sync --all
check "--all with --from is a usage error" 2 "--all takes neither" "$ctl" initial-sync --all --from ce
check "--all with a TABLE is a usage error" 2 "--all takes neither" "$ctl" initial-sync --all account
[ "$failed" -eq 0 ]
