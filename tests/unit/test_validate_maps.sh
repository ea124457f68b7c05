#!/usr/bin/env bash
# `ctl validate-maps [DIR]` as an operator runs it: one line per map, exit 0 when all are valid;
# exit 1 with "<file>: <json path>: <reason>" on stderr when one is not; dependency errors across
# maps; usage errors. Also checks that schemas/map.schema.json agrees with the loader on the
# fixtures (with Debian's python3-jsonschema, which make deps installs). Prints TAP lines. No services needed.
set -uo pipefail
cd "$(dirname "$0")/../.."
ctl="${DW_BUILD:-build/release}/bin/ctl"
n=0
out=$(mktemp)
errf=$(mktemp)
tmp=$(mktemp -d)
trap 'rm -rf "$out" "$errf" "$tmp"' EXIT

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); echo "not ok $n - $1"
	sed 's/^/# stdout: /' "$out"; sed 's/^/# stderr: /' "$errf"
}
# run EXPECTED_RC COMMAND...: runs with a clean environment plus DW_MAPS_DIR if set
run() {
	local want=$1
	shift
	"$@" >"$out" 2>"$errf" </dev/null
	local rc=$?
	[ "$rc" -eq "$want" ] || { echo "# exit $rc, expected $want"; return 1; }
}
# same_as FILE TEXT: FILE holds exactly TEXT
same_as() { diff -u <(printf '%s\n' "$2") "$1" | sed 's/^/# /'; [ "${PIPESTATUS[0]}" -eq 0 ]; }

echo "1..13"

run 0 env -i "$ctl" validate-maps && same_as "$out" "ok accounts: accounts <-> CustomersV3, both, 19 fields
ok customer_assets: msdyn_customerassets <-> AssetMaintenanceAssetsV3, both, 6 fields
ok product_inventory: msdyn_productinventories <-> WarehousesOnHandV2, fo_to_ce, 8 fields
ok products: products <-> CDSReleasedDistinctProducts, fo_to_ce, 12 fields
ok purchase_order_headers: msdyn_purchaseorders <-> PurchaseOrderHeadersV2, both, 13 fields
ok purchase_order_lines: msdyn_purchaseorderproducts <-> PurchaseOrderLinesV2, both, 11 fields
6 maps valid" && [ ! -s "$errf" ] && ok "default folder schemas/maps: the six maps are valid" ||
	not_ok "default folder schemas/maps: the six maps are valid"

run 0 env -i DW_MAPS_DIR=tests/unit/maps/good "$ctl" validate-maps && same_as "$out" "ok accounts: accounts <-> CustomersV3, both, 19 fields
ok customer_assets: msdyn_customerassets <-> AssetMaintenanceAssetsV3, both, 7 fields
ok product_inventory: msdyn_productinventories <-> WarehousesOnHandV2, fo_to_ce, 6 fields
ok products: products <-> CDSReleasedDistinctProducts, fo_to_ce, 12 fields
ok purchase_order_headers: msdyn_purchaseorders <-> PurchaseOrderHeadersV2, both, 7 fields
ok purchase_order_lines: msdyn_purchaseorderproducts <-> PurchaseOrderLinesV2, both, 9 fields
6 maps valid" && ok "DW_MAPS_DIR: the issue-6 sketch maps are valid, one line each" ||
	not_ok "DW_MAPS_DIR: the issue-6 sketch maps are valid, one line each"

# a good map and a bad one: the good one is listed, the bad one named with path and reason
cp schemas/maps/accounts.json tests/unit/maps/bad/key_not_bidirectional.json "$tmp/"
run 1 env -i DW_MAPS_DIR=/nonexistent "$ctl" validate-maps "$tmp" &&
	same_as "$out" "ok accounts: accounts <-> CustomersV3, both, 19 fields" &&
	same_as "$errf" "$tmp/key_not_bidirectional.json: fo.key[1]: key field 'CustomerAccount' must be mapped in both directions in a bidirectional map (DIPV1004); fields[0] maps it fo_to_ce only
1 of 2 map files invalid" && ok "argument wins over DW_MAPS_DIR; a bad map exits 1 naming file, path and reason" ||
	not_ok "argument wins over DW_MAPS_DIR; a bad map exits 1 naming file, path and reason"

nbad=$(ls tests/unit/maps/bad/*.json | wc -l)
run 1 "$ctl" validate-maps tests/unit/maps/bad && [ ! -s "$out" ] &&
	[ "$(grep -c '^tests/unit/maps/bad/[a-z0-9_]*\.json: [^:]*: ' "$errf")" -eq "$nbad" ] &&
	tail -n 1 "$errf" | grep -qx "$nbad of $nbad map files invalid" &&
	ok "every malformed fixture is reported, one line each ($nbad)" || not_ok "every malformed fixture is reported, one line each"

run 1 "$ctl" validate-maps tests/unit/maps/sets/cycle && grep -c '^ok cycle_' "$out" | grep -qx 3 &&
	same_as "$errf" "tests/unit/maps/sets/cycle/cycle_a.json: dependencies: cycle cycle_a -> cycle_b -> cycle_c -> cycle_a
the 4 maps are each valid but do not fit together" && ok "a dependency cycle exits 1 naming the cycle" ||
	not_ok "a dependency cycle exits 1 naming the cycle"

run 1 "$ctl" validate-maps tests/unit/maps/sets/missing_dependency &&
	grep -qx "tests/unit/maps/sets/missing_dependency/orphan.json: dependencies\[0\]: no map named 'customer_groups'" "$errf" &&
	ok "a missing dependency exits 1 naming it" || not_ok "a missing dependency exits 1 naming it"

mkdir "$tmp/empty"
run 1 "$ctl" validate-maps "$tmp/empty" && same_as "$errf" "$tmp/empty: no map files (*.json)" &&
	ok "a folder without maps exits 1" || not_ok "a folder without maps exits 1"

run 1 "$ctl" validate-maps "$tmp/none" && same_as "$errf" "$tmp/none: cannot open directory: No such file or directory" &&
	ok "a missing folder exits 1" || not_ok "a missing folder exits 1"

run 2 "$ctl" validate-maps a b && grep -q "expected at most one argument" "$errf" && ok "two arguments are a usage error" ||
	not_ok "two arguments are a usage error"
run 2 "$ctl" validate-maps --strict && grep -q "usage: ctl validate-maps" "$errf" && ok "an unknown option is a usage error" ||
	not_ok "an unknown option is a usage error"
run 0 env -i "$ctl" validate-maps --help && grep -q "DW_MAPS_DIR" "$out" && ok "validate-maps --help without environment" ||
	not_ok "validate-maps --help without environment"
run 0 env -i "$ctl" --help && grep -qE "validate-maps +check the map files" "$out" && ok "ctl --help lists validate-maps" ||
	not_ok "ctl --help lists validate-maps"

# The JSON Schema and the loader agree: the schema accepts every valid map and rejects every
# fixture whose defect a schema can express (the others are listed in its description).
schema_expressible="bad_identifier format_version key_empty lookup_with_value_map lookup_without_ce missing_member
 date_with_lookup date_not_boolean
 no_fields none_both_sides none_without_default none_wrong_direction not_an_object null_default threshold_action
 threshold_count threshold_window transform_without_transform unknown_conflict_policy unknown_field_direction
 unknown_map_direction unknown_master unknown_member unknown_member_nested value_map_bad_pair
 value_map_on_plain_direction wrong_type dependency_twice"
if /usr/bin/python3 -c 'import jsonschema' 2>/dev/null; then
	if /usr/bin/python3 - "$schema_expressible" >"$out" 2>"$errf" <<'PY'
import glob, json, sys
import jsonschema
v = jsonschema.Draft202012Validator(json.load(open("schemas/map.schema.json")))
bad = 0
for f in ["schemas/maps/accounts.json"] + sorted(glob.glob("tests/unit/maps/good/*.json")):
    for e in v.iter_errors(json.load(open(f))):
        print(f"{f}: schema rejects a valid map: {e.message}"); bad += 1
for name in sys.argv[1].split():
    f = f"tests/unit/maps/bad/{name}.json"
    if not list(v.iter_errors(json.load(open(f)))):
        print(f"{f}: schema accepts it"); bad += 1
sys.exit(1 if bad else 0)
PY
	then ok "map.schema.json accepts the valid maps and rejects the schema-expressible defects"
	else not_ok "map.schema.json accepts the valid maps and rejects the schema-expressible defects"
	fi
else
	not_ok "map.schema.json check: Debian's python3-jsonschema is missing (make deps installs it)"
fi
