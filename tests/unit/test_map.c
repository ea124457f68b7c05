#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "event.h"
#include "map.h"
#include "sha256.h"

#define ACCOUNTS "schemas/maps/accounts.json"
#define GOOD "tests/unit/maps/good"
#define BAD "tests/unit/maps/bad"
#define SETS "tests/unit/maps/sets"

#define G_USMF "0a6b1c1e-0000-4000-8000-000000000001"
#define G_GROUP "0a6b1c1e-0000-4000-8000-000000000010"
#define G_USD "0a6b1c1e-0000-4000-8000-000000000020"
#define G_NET30 "0a6b1c1e-0000-4000-8000-000000000030"
#define G_PO "0a6b1c1e-0000-4000-8000-000000000040"
#define G_P100 "0a6b1c1e-0000-4000-8000-000000000050"
#define G_EA "0a6b1c1e-0000-4000-8000-000000000060"
#define G_VENDOR "0a6b1c1e-0000-4000-8000-000000000070"
#define G_CUSTOMER "0a6b1c1e-0000-4000-8000-000000000080"
#define G_UNKNOWN "0a6b1c1e-0000-4000-8000-0000000000ff"
#define G_FAILS "0a6b1c1e-0000-4000-8000-0000000000ee"
#define ACCOUNT_ID "6d81597f-0f9f-e711-8122-000d3aa2331c"

/* ---- helpers ---- */

/* JSON written with ` for " (so the C literals stay readable), as a new string. */
static char *jtext(const char *s)
{
	char *t = strdup(s);
	assert_non_null(t);
	for (char *p = t; *p; p++)
		if (*p == '`')
			*p = '"';
	return t;
}

static cJSON *J(const char *s)
{
	char *t = jtext(s);
	cJSON *j = cJSON_Parse(t);
	if (!j)
		fail_msg("test JSON does not parse: %s", t);
	free(t);
	return j;
}

static void assert_json(const cJSON *got, const char *want_text)
{
	cJSON *want = J(want_text);
	if (!cJSON_Compare(got, want, 1)) {
		char *g = got ? cJSON_PrintUnformatted(got) : strdup("(NULL)");
		char *w = cJSON_PrintUnformatted(want);
		print_error("got:  %s\nwant: %s\n", g, w);
		free(g);
		free(w);
		cJSON_Delete(want);
		fail();
	}
	cJSON_Delete(want);
}

static struct map *load(const char *path)
{
	char err[1024];
	struct map *m = NULL;
	if (map_load_file(path, &m, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	return m;
}

/* An event of the given side/entity/op with key and data in ` notation (data "null" for deletes). */
static void make_event(struct event *ev, const char *side, const char *entity, const char *op, const char *key,
		       const char *data)
{
	char *k = jtext(key), *d = jtext(data);
	size_t cap = strlen(k) + strlen(d) + 1024;
	char *buf = malloc(cap);
	assert_non_null(buf);
	snprintf(buf, cap,
		 "{\"v\":1,\"id\":\"%064d\",\"source\":{\"side\":\"%s\",\"env\":\"test\",\"entity\":\"%s\","
		 "\"entity_set\":\"%s\",\"version\":7,\"ts\":1764464400000},\"op\":\"%s\",\"key\":%s,\"data\":%s}",
		 0, side, entity, entity, op, k, d);
	char err[512];
	if (event_decode(buf, strlen(buf), 0, EVENT_SKIP_ID_CHECK, ev, err, sizeof(err)) != 0)
		fail_msg("test event does not decode: %s\n%s", err, buf);
	free(buf);
	free(k);
	free(d);
}

struct fake_row {
	const char *set, *guid, *key_field, *value;
};

struct fake {
	int calls;
};

static const struct fake_row fake_rows[] = {
	{ "cdm_companies", G_USMF, "cdm_companycode", "usmf" },
	{ "msdyn_customergroups", G_GROUP, "msdyn_groupid", "10" },
	{ "transactioncurrencies", G_USD, "isocurrencycode", "USD" },
	{ "msdyn_paymentterms", G_NET30, "msdyn_name", "Net30" },
	{ "msdyn_purchaseorders", G_PO, "msdyn_name", "00000123" },
	{ "products", G_P100, "msdyn_productnumber", "P-100" },
	{ "uoms", G_EA, "msdyn_symbol", "ea" },
	{ "accounts", G_VENDOR, "accountnumber", "V-1001" },
	{ "accounts", G_CUSTOMER, "accountnumber", "US-001" },
};

/* The map_resolver.guid side of the fake: value -> GUID from the same rows. */
static int fake_guid(void *ctx, const char *set, const char *key_field, const char *value, char out[37], char *err,
		     size_t errlen)
{
	struct fake *f = ctx;
	f->calls++;
	(void)err;
	(void)errlen;
	for (size_t i = 0; i < sizeof(fake_rows) / sizeof(fake_rows[0]); i++)
		if (strcmp(fake_rows[i].set, set) == 0 && strcmp(fake_rows[i].key_field, key_field) == 0 &&
		    strcmp(fake_rows[i].value, value) == 0) {
			snprintf(out, 37, "%s", fake_rows[i].guid);
			return MAP_OK;
		}
	return MAP_NOT_FOUND;
}

static int fake_resolve(void *ctx, enum event_side side, const char *set, const char *guid, const char *key_field,
			char *out, size_t outlen, char *err, size_t errlen)
{
	struct fake *f = ctx;
	f->calls++;
	assert_int_equal(side, EVENT_SIDE_CE);
	assert_int_equal(outlen, MAP_RESOLVED_MAX);
	if (strcmp(guid, G_FAILS) == 0) {
		snprintf(err, errlen, "HTTP 503 from the Dataverse endpoint");
		return MAP_ERR_RESOLVE;
	}
	for (size_t i = 0; i < sizeof(fake_rows) / sizeof(fake_rows[0]); i++)
		if (strcmp(fake_rows[i].set, set) == 0 && strcmp(fake_rows[i].guid, guid) == 0 &&
		    strcmp(fake_rows[i].key_field, key_field) == 0) {
			snprintf(out, outlen, "%s", fake_rows[i].value);
			return MAP_OK;
		}
	return MAP_NOT_FOUND;
}

/* A realistic F&O Customers V3 image (a few unmapped members included). */
#define FO_CUSTOMER                                                                                               \
	"{`dataAreaId`:`usmf`,`CustomerAccount`:`US-001`,`OrganizationName`:`Contoso \xc3\x9cn\xc3\xaf"           \
	"c\xc3\xb8" "d\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac`,`PartyNumber`:`000001`,`CustomerGroupId`:`O'Neil/\xc3\x9c 10`,"  \
	"`SalesCurrencyCode`:`USD`,`CreditLimit`:1500.5,`PaymentTerms`:``,`OnHoldStatus`:`Invoice`,"               \
	"`PrimaryContactEmail`:`ap@contoso.example`,`PrimaryContactPhone`:`+1 555 0100`,`AddressStreet`:`1 Main St`," \
	"`AddressCity`:`Redmond`,`AddressCounty`:null,`AddressZipCode`:`98052`,`AddressCountryRegionISOCode`:`US`,"  \
	"`PartyType`:`Organization`,`LanguageId`:`en-us`,`FullPrimaryAddress`:`1 Main St, Redmond`}"
#define FO_CUSTOMER_KEY "{`dataAreaId`:`usmf`,`CustomerAccount`:`US-001`}"

#define CE_ACCOUNT                                                                                                \
	"{`@odata.etag`:`W/\\`915244\\``,`accountid`:`" ACCOUNT_ID "`,`accountnumber`:`US-001`,`name`:`Contoso Ltd`," \
	"`msdyn_partynumber`:`000001`,`_msdyn_company_value`:`" G_USMF "`,`_msdyn_customergroupid_value`:`" G_GROUP   \
	"`,`_transactioncurrencyid_value`:`" G_USD "`,`_msdyn_paymentterm_value`:null,`creditlimit`:2500,"           \
	"`msdyn_onholdstatus`:192350002,`emailaddress1`:`ap@contoso.example`,`telephone1`:`555-0100`,"              \
	"`address1_line1`:`1 Main St`,`address1_city`:`Redmond`,`address1_postalcode`:`98052`,"                     \
	"`address1_country`:`US`,`customertypecode`:3,`address1_addresstypecode`:2,`description`:`not mapped`}"
#define CE_ACCOUNT_KEY "{`accountid`:`" ACCOUNT_ID "`}"

/* ---- loading ---- */

static void test_accounts_map_loads(void **state)
{
	(void)state;
	struct map *m = load(ACCOUNTS);
	assert_string_equal(m->name, "accounts");
	assert_string_equal(m->path, ACCOUNTS);
	assert_string_equal(m->ce.entity, "account");
	assert_string_equal(m->ce.entity_set, "accounts");
	assert_int_equal(m->ce.nkey, 2);
	assert_string_equal(m->ce.key[0], "accountnumber");
	assert_string_equal(m->ce.key[1], "msdyn_company");
	assert_string_equal(m->ce.filter_text, "customertypecode eq 3");
	assert_string_equal(m->fo.entity, "CustomersV3");
	assert_string_equal(m->fo.entity_set, "CustomersV3");
	assert_int_equal(m->fo.nkey, 2);
	assert_string_equal(m->fo.key[0], "dataAreaId");
	assert_string_equal(m->fo.key[1], "CustomerAccount");
	assert_string_equal(m->fo.filter_text, "PartyType eq 'Organization'");
	assert_non_null(m->company);
	assert_string_equal(m->company->fo, "dataAreaId");
	assert_string_equal(m->company->ce, "msdyn_company");
	assert_string_equal(m->company->ce_nav, "msdyn_company");
	assert_string_equal(m->company->ce_value, "_msdyn_company_value");
	assert_string_equal(m->company->ce_set, "cdm_companies");
	assert_string_equal(m->company->ce_key, "cdm_companycode");
	assert_int_equal(m->direction, MAP_DIR_BOTH);
	assert_string_equal(map_direction_name(m->direction), "both");
	assert_int_equal(m->conflict, MAP_CONFLICT_LATEST_WINS);
	assert_string_equal(map_conflict_name(m->conflict), "latest_wins");
	assert_int_equal(m->initial_sync_master, EVENT_SIDE_CE);
	assert_int_equal(m->threshold.count, 10);
	assert_int_equal(m->threshold.window_ms, 15 * 60 * 1000);
	assert_int_equal(m->threshold.action, MAP_ACTION_PAUSE);
	assert_int_equal(m->ndependencies, 0);
	assert_null(m->atomic_unit);
	assert_null(m->aggregate);
	assert_int_equal(m->nfields, 19);
	assert_int_equal(m->nvalue_maps, 1);
	assert_int_equal(m->value_maps[0].npairs, 7);

	/* a sample of the fields, exactly as the reference names them */
	static const struct {
		size_t i;
		const char *fo, *sym, *ce;
	} want[] = {
		{ 0, "CustomerAccount", "=", "accountnumber" },
		{ 1, "OrganizationName", "=", "name" },
		{ 3, "CustomerGroupId", "=", "msdyn_customergroupid" },
		{ 5, "CreditLimit", "><", "creditlimit" },
		{ 7, "OnHoldStatus", "><", "msdyn_onholdstatus" },
		{ 9, "PrimaryContactPhone", "=", "telephone1" },
		{ 14, "AddressCountryRegionISOCode", "=", "address1_country" },
		{ 15, NULL, ">>", "customertypecode" },
		{ 17, "PartyType", "<<", NULL },
	};
	for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
		const struct map_field *f = &m->fields[want[k].i];
		if (want[k].fo)
			assert_string_equal(f->fo, want[k].fo);
		else
			assert_null(f->fo);
		if (want[k].ce)
			assert_string_equal(f->ce, want[k].ce);
		else
			assert_null(f->ce);
		assert_string_equal(f->symbol, want[k].sym);
	}
	assert_int_equal(m->fields[15].dir, MAP_DIR_FO_TO_CE);
	assert_int_equal(m->fields[15].def->valuedouble, 3);
	assert_int_equal(m->fields[17].dir, MAP_DIR_CE_TO_FO);
	assert_string_equal(m->fields[17].def->valuestring, "Organization");
	assert_non_null(m->fields[3].lookup);
	assert_string_equal(m->fields[3].lookup->set, "msdyn_customergroups");
	assert_string_equal(m->fields[3].lookup->key, "msdyn_groupid");
	assert_string_equal(m->fields[3].lookup->nav, "msdyn_customergroupid");
	assert_string_equal(m->fields[3].lookup->value, "_msdyn_customergroupid_value");
	assert_ptr_equal(m->fields[7].value_map, &m->value_maps[0]);
	map_free(m);
	map_free(NULL);
}

static void test_issue6_sketches_load_in_dependency_order(void **state)
{
	(void)state;
	char err[1024];
	struct map_set *set = NULL;
	if (map_load_dir(GOOD, &set, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	static const char *const order[] = { "accounts",          "products",
					     "customer_assets",   "product_inventory",
					     "purchase_order_headers", "purchase_order_lines" };
	assert_int_equal(set->n, 6);
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(set->maps[i]->name, order[i]);
	const struct map *inv = map_set_find(set, "product_inventory");
	assert_non_null(inv);
	assert_null(map_set_find(set, "vendors"));
	assert_int_equal(inv->direction, MAP_DIR_FO_TO_CE);
	assert_non_null(inv->aggregate);
	assert_int_equal(inv->aggregate->ngroup_by, 3);
	assert_string_equal(inv->aggregate->group_by[2], "InventoryWarehouseId");
	assert_int_equal(inv->aggregate->nsum, 4);
	assert_int_equal(inv->fo.nkey, 9);
	const struct map *lines = map_set_find(set, "purchase_order_lines");
	const struct map *headers = map_set_find(set, "purchase_order_headers");
	assert_string_equal(lines->atomic_unit, "purchase_orders");
	assert_string_equal(headers->atomic_unit, "purchase_orders");
	assert_int_equal(lines->ndependencies, 2);
	assert_string_equal(lines->dependencies[0], "purchase_order_headers");
	assert_int_equal(map_set_find(set, "products")->initial_sync_master, EVENT_SIDE_FO);
	map_set_free(set);
	map_set_free(NULL);
}

/* Every way a map file can be malformed, one fixture each, with the exact message. */
static void test_malformed_maps_name_file_path_and_reason(void **state)
{
	(void)state;
	static const struct {
		const char *file, *error;
	} cases[] = {
		{ "syntax_error", "$: invalid JSON at byte offset 514: expected ',' or '}'" },
		{ "invalid_utf8", "$: invalid UTF-8 at byte offset 71" },
		{ "not_an_object", "$: must be an object, got array" },
		{ "duplicate_member", "$: member 'conflict_policy' appears twice" },
		{ "duplicate_member_nested", "fields[1]: member 'ce' appears twice" },
		{ "unknown_member", "$: unknown member 'conflict'" },
		{ "unknown_member_nested", "fields[2].lookup: unknown member 'alternate_key'" },
		{ "missing_member", "$: missing required member 'direction'" },
		{ "wrong_type", "fields[1].fo: must be a string, got number" },
		{ "format_version", "format: must be 1 (the map file format version this program reads)" },
		{ "name_mismatch", "name: 'accounts' must equal the file name without .json ('name_mismatch')" },
		{ "bad_identifier",
		  "fields[1].ce: 'account name' is not a valid field or entity name ([A-Za-z_][A-Za-z0-9_]*, at most 128)" },
		{ "unknown_map_direction", "direction: unknown value 'two_way' (one of ce_to_fo, fo_to_ce, both)" },
		{ "unknown_conflict_policy",
		  "conflict_policy: unknown value 'newest_wins' (one of ce_wins, fo_wins, latest_wins)" },
		{ "unknown_master", "initial_sync_master: unknown value 'both' (one of ce, fo)" },
		{ "master_not_a_source", "initial_sync_master: 'ce' cannot be the master of a map that only syncs fo_to_ce" },
		{ "unknown_field_direction", "fields[1].dir: unknown direction '=>' (one of =, ><, >, >>, <, <<)" },
		{ "field_direction_incompatible", "fields[1].dir: '=' syncs both, which the map (direction fo_to_ce) does not" },
		{ "duplicate_source",
		  "fields[5].fo: 'OrganizationName' is already mapped by fields[1] (a field may be mapped once: DIPV1023/1026)" },
		{ "duplicate_destination",
		  "fields[5].ce: 'name' is already mapped by fields[1] (a field may be mapped once: DIPV1023/1026)" },
		{ "key_not_bidirectional",
		  "fo.key[1]: key field 'CustomerAccount' must be mapped in both directions in a bidirectional map "
		  "(DIPV1004); fields[0] maps it fo_to_ce only" },
		{ "key_not_mapped", "fo.key[1]: key field 'CustomerAccount' is not mapped by any field" },
		{ "key_constant", "ce.key[0]: key field 'accountnumber' cannot be a constant (fields[5] has a `none` source)" },
		{ "key_empty", "fo.key: must have 1 to 16 items, has 0" },
		{ "none_both_sides", "fields[4]: fo and ce cannot both be null" },
		{ "none_wrong_direction",
		  "fields[4].dir: fo is null (a `none` source), so the direction must be '>>' (a constant written to ce)" },
		{ "none_without_default", "fields[4]: fo is null (a `none` source): a default (the constant) is required" },
		{ "null_default", "fields[4].default: must be a string, number or boolean, got null" },
		{ "transform_without_transform",
		  "fields[3].dir: '><' is a transform direction: give a value_map or a default (or use '=')" },
		{ "value_map_on_plain_direction", "fields[3].value_map: a value_map needs a transform direction ('><' instead of '=')" },
		{ "unknown_value_map", "fields[3].value_map: no value map named 'onhold' in value_maps" },
		{ "value_map_not_one_to_one",
		  "value_maps.on_hold[2].ce: ce value 192350000 already appears in pair 0; fields[3] maps both, so each ce "
		  "value must map to exactly one fo value" },
		{ "value_map_unused", "value_maps.spare: value map 'spare' is not used by any field" },
		{ "value_map_bad_pair", "value_maps.on_hold[1].ce: must be a string, number, boolean or null, got object" },
		{ "lookup_without_ce", "fields[2].lookup: a lookup needs a ce column (the lookup column), but ce is null" },
		{ "lookup_with_value_map", "fields[2].value_map: a lookup field cannot also have a value map" },
		{ "date_with_lookup",
		  "fields[2].date: a date field maps a date column on each side: no value map, lookup or none source" },
		{ "date_not_boolean", "fields[1].date: must be true or false, got string" },
		{ "company_not_in_key",
		  "company.ce: 'msdyn_company' must be one of the ce.key fields (the company is part of every key)" },
		{ "company_in_fields",
		  "fields[5].fo: 'dataAreaId' is the company field; it is mapped by the company member, not in fields" },
		{ "bad_filter", "ce.filter: offset 38: expected ')' to close the '(' at offset 26" },
		{ "bad_filter_operator", "fo.filter: offset 10: expected an operator (eq, ne, gt, ge, lt, le) after 'PartyType'" },
		{ "threshold_count", "error_threshold.count: must be a whole number from 1 to 1000000" },
		{ "threshold_window",
		  "error_threshold.window: 'fifteen minutes' is not a duration (a number with unit s, m, h or d, e.g. 15m)" },
		{ "threshold_action", "error_threshold.action: unknown value 'notify' (one of pause)" },
		{ "dependency_on_itself", "dependencies[1]: a map cannot depend on itself" },
		{ "dependency_twice", "dependencies[1]: 'customer_groups' is listed twice" },
		{ "aggregate_two_way", "aggregate: only maps with direction fo_to_ce can aggregate FO rows" },
		{ "aggregate_sum_unmapped", "aggregate.sum[0]: 'CreditLimit' is not a mapped fo field" },
		{ "no_fields", "fields: must have 1 to 512 items, has 0" },
		{ "company_in_ce_key_false_but_listed",
		  "company.in_ce_key: is false, but 'msdyn_company' is one of the ce.key fields" },
		{ "lookup_company_key_without_company",
		  "fields[2].lookup: company_key needs a company code: give the map a company, or dataAreaId in fo.key" },
		{ "aggregate_join_not_grouped",
		  "aggregate.join.on[0]: 'CustomerGroupId' is not one of aggregate.group_by (the join reads by the group's "
		  "values)" },
	};
	size_t ncases = sizeof(cases) / sizeof(cases[0]);
	int failures = 0;
	for (size_t i = 0; i < ncases; i++) {
		char path[256], want[1024], err[1024] = "";
		snprintf(path, sizeof(path), BAD "/%s.json", cases[i].file);
		snprintf(want, sizeof(want), "%s: %s", path, cases[i].error);
		struct map *m = (struct map *)1;
		int rc = map_load_file(path, &m, err, sizeof(err));
		if (rc != -1 || m != NULL || strcmp(err, want) != 0) {
			print_error("%s: rc %d\n  got:  %s\n  want: %s\n", cases[i].file, rc, err, want);
			failures++;
		}
		map_free(rc == 0 ? m : NULL);
	}
	assert_int_equal(failures, 0);

	/* Every fixture in the folder is covered by a case above. */
	size_t files = 0;
	char err[1024];
	struct map_set *set = NULL;
	assert_int_equal(map_load_dir(BAD, &set, err, sizeof(err)), -1);
	assert_null(set);
	/* the directory loader stops at the first file, alphabetically */
	assert_string_equal(err, BAD "/aggregate_join_not_grouped.json: aggregate.join.on[0]: 'CustomerGroupId' is not "
				     "one of aggregate.group_by (the join reads by the group's values)");
	FILE *ls = popen("ls " BAD " | grep -c '\\.json$'", "r");
	assert_non_null(ls);
	assert_int_equal(fscanf(ls, "%zu", &files), 1);
	pclose(ls);
	assert_int_equal(files, ncases);
}

static void test_file_level_errors(void **state)
{
	(void)state;
	char err[1024];
	struct map *m = NULL;
	assert_int_equal(map_load_file("tests/unit/maps/nonexistent.json", &m, err, sizeof(err)), -1);
	assert_string_equal(err, "tests/unit/maps/nonexistent.json: $: cannot open: No such file or directory");
	assert_int_equal(map_load_file("tests/unit/test_map.c", &m, err, sizeof(err)), -1);
	assert_string_equal(err, "tests/unit/test_map.c: $: a map file name must end in .json");
	assert_null(m);

	/* larger than the cap */
	char dir[] = "/tmp/dw-map-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[300];
	snprintf(path, sizeof(path), "%s/big.json", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputc('"', f);
	for (size_t i = 0; i < MAP_FILE_MAX_BYTES; i++)
		fputc('x', f);
	fputc('"', f);
	fclose(f);
	char want[400];
	snprintf(want, sizeof(want), "%s: $: file larger than 1048576 bytes", path);
	assert_int_equal(map_load_file(path, &m, err, sizeof(err)), -1);
	assert_string_equal(err, want);
	unlink(path);

	/* a directory without maps, and one that does not exist */
	struct map_set *set = NULL;
	assert_int_equal(map_load_dir(dir, &set, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: no map files (*.json)", dir);
	assert_string_equal(err, want);
	rmdir(dir);
	assert_int_equal(map_load_dir(dir, &set, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: cannot open directory: No such file or directory", dir);
	assert_string_equal(err, want);
	assert_null(set);
}

static void test_set_dependencies_checked(void **state)
{
	(void)state;
	char err[1024];
	struct map_set *set = NULL;
	assert_int_equal(map_load_dir(SETS "/cycle", &set, err, sizeof(err)), -1);
	assert_string_equal(err, SETS "/cycle/cycle_a.json: dependencies: cycle cycle_a -> cycle_b -> cycle_c -> cycle_a");
	assert_null(set);
	assert_int_equal(map_load_dir(SETS "/missing_dependency", &set, err, sizeof(err)), -1);
	assert_string_equal(err, SETS "/missing_dependency/orphan.json: dependencies[0]: no map named 'customer_groups'");

	/* the same name from two folders */
	struct map *maps[2] = { load(SETS "/twin_1/twin.json"), load(SETS "/twin_2/twin.json") };
	assert_int_equal(map_set_new(maps, 2, &set, err, sizeof(err)), -1);
	assert_null(set);
	assert_non_null(strstr(err, "twin.json: name: 'twin' is also the name of " SETS "/twin_"));
}

/* ---- transform ---- */

static void test_fo_to_ce_update(void **state)
{
	(void)state;
	struct map *m = load(ACCOUNTS);
	struct fake fk = { 0 };
	struct map_resolver r = { fake_resolve, &fk, fake_guid };
	struct event ev;
	make_event(&ev, "fo", "CustomersV3", "update", FO_CUSTOMER_KEY, FO_CUSTOMER);
	struct map_write w;
	char err[512];
	int rc = map_transform(m, &ev, &r, &w, err, sizeof(err));
	if (rc != MAP_OK)
		fail_msg("rc %d: %s", rc, err);
	assert_int_equal(w.op, MAP_WRITE_UPSERT);
	assert_int_equal(w.target, EVENT_SIDE_CE);
	assert_string_equal(w.entity_set, "accounts");
	assert_string_equal(w.company, "usmf");
	assert_json(w.key, "{`accountnumber`:`US-001`,`msdyn_company`:`usmf`}");
	assert_json(w.payload,
		    "{`msdyn_company@odata.bind`:`/cdm_companies(cdm_companycode='usmf')`,"
		    "`accountnumber`:`US-001`,`name`:`Contoso \xc3\x9cn\xc3\xaf" "c\xc3\xb8" "d\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac`,"
		    "`msdyn_partynumber`:`000001`,"
		    "`msdyn_customergroupid@odata.bind`:`/msdyn_customergroups(msdyn_groupid='O%27%27Neil%2F%C3%9C%2010',"
		    "msdyn_company=" G_USMF ")`,"
		    "`transactioncurrencyid@odata.bind`:`/transactioncurrencies(isocurrencycode='USD')`,"
		    "`creditlimit`:1500.5,`msdyn_paymentterm@odata.bind`:null,`msdyn_onholdstatus`:192350001,"
		    "`emailaddress1`:`ap@contoso.example`,`telephone1`:`+1 555 0100`,`address1_line1`:`1 Main St`,"
		    "`address1_city`:`Redmond`,`address1_county`:null,`address1_postalcode`:`98052`,"
		    "`address1_country`:`US`,`customertypecode`:3,`address1_addresstypecode`:2}");
	assert_int_equal(fk.calls, 1); /* only the company GUID, for the customer group key that includes it */
	char hex[SHA256_HEX_LEN + 1];
	assert_int_equal(map_content_hash(w.payload, hex), 0);
	assert_string_equal(w.hash, hex);

	/* a snapshot (initial sync) maps the same way */
	struct event snap;
	make_event(&snap, "fo", "CustomersV3", "snapshot", FO_CUSTOMER_KEY, FO_CUSTOMER);
	struct map_write w2;
	assert_int_equal(map_transform(m, &snap, &r, &w2, err, sizeof(err)), MAP_OK);
	assert_true(cJSON_Compare(w.payload, w2.payload, 1));
	assert_string_equal(w.hash, w2.hash);
	map_write_clear(&w2);
	event_clear(&snap);

	map_write_clear(&w);
	map_write_clear(&w);
	map_write_clear(NULL);
	event_clear(&ev);
	map_free(m);
}

static void test_ce_to_fo_update(void **state)
{
	(void)state;
	struct map *m = load(ACCOUNTS);
	struct fake fk = { 0 };
	struct map_resolver r = { fake_resolve, &fk, fake_guid };
	struct event ev;
	make_event(&ev, "ce", "account", "update", CE_ACCOUNT_KEY, CE_ACCOUNT);
	struct map_write w;
	char err[512];
	int rc = map_transform(m, &ev, &r, &w, err, sizeof(err));
	if (rc != MAP_OK)
		fail_msg("rc %d: %s", rc, err);
	assert_int_equal(w.op, MAP_WRITE_UPSERT);
	assert_int_equal(w.target, EVENT_SIDE_FO);
	assert_string_equal(w.entity_set, "CustomersV3");
	assert_string_equal(w.company, "usmf");
	assert_json(w.key, "{`dataAreaId`:`usmf`,`CustomerAccount`:`US-001`}");
	assert_json(w.payload,
		    "{`dataAreaId`:`usmf`,`CustomerAccount`:`US-001`,`OrganizationName`:`Contoso Ltd`,"
		    "`PartyNumber`:`000001`,`CustomerGroupId`:`10`,`SalesCurrencyCode`:`USD`,`CreditLimit`:2500,"
		    "`PaymentTerms`:null,`OnHoldStatus`:`All`,`PrimaryContactEmail`:`ap@contoso.example`,"
		    "`PrimaryContactPhone`:`555-0100`,`AddressStreet`:`1 Main St`,`AddressCity`:`Redmond`,"
		    "`AddressZipCode`:`98052`,`AddressCountryRegionISOCode`:`US`,"
		    "`PartyType`:`Organization`,`LanguageId`:`en-us`}");
	assert_int_equal(fk.calls, 3); /* company, customer group, currency */
	map_write_clear(&w);
	event_clear(&ev);
	map_free(m);
}

/* F&O's CreditLimit is not nullable: a CE account without a credit limit must not be dead-lettered. */
static void test_ce_null_credit_limit_becomes_zero(void **state)
{
	(void)state;
	struct map *m = load(ACCOUNTS);
	struct fake fk = { 0 };
	struct map_resolver r = { fake_resolve, &fk, fake_guid };
	struct event ev;
	make_event(&ev, "ce", "account", "update", CE_ACCOUNT_KEY, CE_ACCOUNT);
	cJSON_ReplaceItemInObjectCaseSensitive(ev.data, "creditlimit", cJSON_CreateNull());
	struct map_write w;
	char err[512];
	int rc = map_transform(m, &ev, &r, &w, err, sizeof(err));
	if (rc != MAP_OK)
		fail_msg("rc %d: %s", rc, err);
	const cJSON *cl = cJSON_GetObjectItemCaseSensitive(w.payload, "CreditLimit");
	assert_true(cJSON_IsNumber(cl));
	assert_true(cl->valuedouble == 0);
	map_write_clear(&w);
	event_clear(&ev);
	map_free(m);
}

static void test_delete_events_delete_the_target_key(void **state)
{
	(void)state;
	struct map *m = load(ACCOUNTS);
	struct fake fk = { 0 };
	struct map_resolver r = { fake_resolve, &fk, fake_guid };
	struct event ev;
	struct map_write w;
	char err[512];

	make_event(&ev, "ce", "account", "delete",
		   "{`accountid`:`" ACCOUNT_ID "`,`accountnumber`:`US-001`,`_msdyn_company_value`:`" G_USMF "`}", "null");
	assert_int_equal(map_transform(m, &ev, &r, &w, err, sizeof(err)), MAP_OK);
	assert_int_equal(w.op, MAP_WRITE_DELETE);
	assert_int_equal(w.target, EVENT_SIDE_FO);
	assert_json(w.key, "{`dataAreaId`:`usmf`,`CustomerAccount`:`US-001`}");
	assert_null(w.payload);
	assert_string_equal(w.hash, "");
	assert_int_equal(fk.calls, 1);
	map_write_clear(&w);
	event_clear(&ev);

	make_event(&ev, "fo", "CustomersV3", "delete", FO_CUSTOMER_KEY, "null");
	assert_int_equal(map_transform(m, &ev, &r, &w, err, sizeof(err)), MAP_OK);
	assert_int_equal(w.op, MAP_WRITE_DELETE);
	assert_int_equal(w.target, EVENT_SIDE_CE);
	assert_string_equal(w.entity_set, "accounts");
	assert_json(w.key, "{`accountnumber`:`US-001`,`msdyn_company`:`usmf`}");
	assert_null(w.payload);
	map_write_clear(&w);
	event_clear(&ev);

	/* a delete whose key lacks the alternate key cannot be mapped */
	make_event(&ev, "ce", "account", "delete", "{`accountid`:`" ACCOUNT_ID "`,`_msdyn_company_value`:`" G_USMF "`}",
		   "null");
	assert_int_equal(map_transform(m, &ev, &r, &w, err, sizeof(err)), MAP_ERR_EVENT);
	assert_string_equal(err, "accountnumber: key field CustomerAccount has no value");
	assert_null(w.key);
	event_clear(&ev);
	map_free(m);
}

static void test_lookup_not_found_and_resolver_failure(void **state)
{
	(void)state;
	struct map *m = load(ACCOUNTS);
	struct fake fk = { 0 };
	struct map_resolver r = { fake_resolve, &fk, fake_guid };
	struct event ev;
	struct map_write w;
	char err[512];

	cJSON *data = J(CE_ACCOUNT);
	cJSON_ReplaceItemInObjectCaseSensitive(data, "_msdyn_customergroupid_value", cJSON_CreateString(G_UNKNOWN));
	char *text = cJSON_PrintUnformatted(data);
	make_event(&ev, "ce", "account", "update", CE_ACCOUNT_KEY, text);
	free(text);
	assert_int_equal(map_transform(m, &ev, &r, &w, err, sizeof(err)), MAP_NOT_FOUND);
	assert_string_equal(err, "_msdyn_customergroupid_value: no msdyn_customergroups row with id " G_UNKNOWN
				 " (looking up msdyn_groupid)");
	assert_null(w.key);
	assert_null(w.payload);
	event_clear(&ev);

	cJSON_ReplaceItemInObjectCaseSensitive(data, "_msdyn_customergroupid_value", cJSON_CreateString(G_FAILS));
	text = cJSON_PrintUnformatted(data);
	make_event(&ev, "ce", "account", "update", CE_ACCOUNT_KEY, text);
	free(text);
	assert_int_equal(map_transform(m, &ev, &r, &w, err, sizeof(err)), MAP_ERR_RESOLVE);
	assert_string_equal(err, "_msdyn_customergroupid_value: resolving msdyn_customergroups " G_FAILS
				 " failed: HTTP 503 from the Dataverse endpoint");
	/* without a resolver, CE lookups cannot be mapped */
	assert_int_equal(map_transform(m, &ev, NULL, &w, err, sizeof(err)), MAP_ERR_RESOLVE);
	assert_string_equal(err, "_msdyn_company_value: no resolver to look up cdm_companies(cdm_companycode)");
	event_clear(&ev);

	/* the company itself unknown */
	cJSON_ReplaceItemInObjectCaseSensitive(data, "_msdyn_company_value", cJSON_CreateString(G_UNKNOWN));
	text = cJSON_PrintUnformatted(data);
	make_event(&ev, "ce", "account", "update", CE_ACCOUNT_KEY, text);
	free(text);
	assert_int_equal(map_transform(m, &ev, &r, &w, err, sizeof(err)), MAP_NOT_FOUND);
	assert_string_equal(err, "_msdyn_company_value: no cdm_companies row with id " G_UNKNOWN
				 " (looking up cdm_companycode)");
	event_clear(&ev);

	/* no company at all */
	cJSON_DeleteItemFromObjectCaseSensitive(data, "_msdyn_company_value");
	text = cJSON_PrintUnformatted(data);
	make_event(&ev, "ce", "account", "update", CE_ACCOUNT_KEY, text);
	free(text);
	assert_int_equal(map_transform(m, &ev, &r, &w, err, sizeof(err)), MAP_ERR_EVENT);
	assert_string_equal(err, "_msdyn_company_value: expected a GUID string");
	event_clear(&ev);
	cJSON_Delete(data);
	map_free(m);
}

static void test_events_that_do_not_fit_the_map(void **state)
{
	(void)state;
	struct map *m = load(ACCOUNTS);
	struct event ev;
	struct map_write w;
	char err[512];
	struct fake fk = { 0 };
	struct map_resolver r = { fake_resolve, &fk, fake_guid };

	cJSON *data = J(FO_CUSTOMER);
	cJSON_ReplaceItemInObjectCaseSensitive(data, "OnHoldStatus", cJSON_CreateString("Blocked"));
	char *text = cJSON_PrintUnformatted(data);
	make_event(&ev, "fo", "CustomersV3", "update", FO_CUSTOMER_KEY, text);
	free(text);
	assert_int_equal(map_transform(m, &ev, &r, &w, err, sizeof(err)), MAP_ERR_EVENT);
	assert_string_equal(err, "OnHoldStatus: value \"Blocked\" has no entry in value map 'on_hold_status' (for "
				 "msdyn_onholdstatus)");
	event_clear(&ev);

	cJSON_ReplaceItemInObjectCaseSensitive(data, "OnHoldStatus", cJSON_CreateString("No"));
	cJSON_ReplaceItemInObjectCaseSensitive(data, "OrganizationName", J("{`nested`:1}"));
	text = cJSON_PrintUnformatted(data);
	make_event(&ev, "fo", "CustomersV3", "update", FO_CUSTOMER_KEY, text);
	free(text);
	assert_int_equal(map_transform(m, &ev, &r, &w, err, sizeof(err)), MAP_ERR_EVENT);
	assert_string_equal(err, "OrganizationName: expected a scalar value, got an object");
	event_clear(&ev);

	cJSON_ReplaceItemInObjectCaseSensitive(data, "OrganizationName", cJSON_CreateString("Contoso"));
	cJSON_DeleteItemFromObjectCaseSensitive(data, "CustomerAccount");
	text = cJSON_PrintUnformatted(data);
	make_event(&ev, "fo", "CustomersV3", "update", "{`dataAreaId`:`usmf`}", text);
	free(text);
	assert_int_equal(map_transform(m, &ev, &r, &w, err, sizeof(err)), MAP_ERR_EVENT);
	assert_string_equal(err, "CustomerAccount: key field accountnumber has no value");
	event_clear(&ev);
	cJSON_Delete(data);

	make_event(&ev, "fo", "VendorsV2", "update", FO_CUSTOMER_KEY, FO_CUSTOMER);
	assert_int_equal(map_transform(m, &ev, &r, &w, err, sizeof(err)), MAP_ERR_EVENT);
	assert_string_equal(err, "source.entity: 'VendorsV2' is not the fo entity of map accounts ('CustomersV3')");
	event_clear(&ev);
	map_free(m);

	/* a one-way map refuses events from its target side */
	m = load(GOOD "/products.json");
	make_event(&ev, "ce", "product", "update", "{`productid`:`" G_P100 "`}", "{`msdyn_productnumber`:`P-100`}");
	assert_int_equal(map_transform(m, &ev, &r, &w, err, sizeof(err)), MAP_ERR_EVENT);
	assert_string_equal(err, "map products does not sync ce_to_fo (its direction is fo_to_ce)");
	event_clear(&ev);
	map_free(m);
}

static void test_value_maps_defaults_one_way_products(void **state)
{
	(void)state;
	struct map *m = load(GOOD "/products.json");
	struct event ev;
	struct map_write w;
	char err[512];
	make_event(&ev, "fo", "CDSReleasedDistinctProducts", "create", "{`dataAreaId`:`usmf`,`ProductNumber`:`P-100`}",
		   "{`dataAreaId`:`usmf`,`ProductNumber`:`P-100`,`ProductName`:`Widget`,`ProductDescription`:null,"
		   "`ItemNumber`:`P-100`,`SalesUnitSymbol`:`ea`,`SalesPrice`:12.5,`UnitCost`:7,`CurrencyCode`:`USD`,"
		   "`ProductType`:`Service`,`IsStockedProduct`:`Yes`,`FieldServiceProductType`:`Service`}");
	int rc = map_transform(m, &ev, NULL, &w, err, sizeof(err));
	if (rc != MAP_OK)
		fail_msg("rc %d: %s", rc, err);
	assert_null(w.company);
	assert_json(w.key, "{`msdyn_productnumber`:`P-100`}");
	assert_json(w.payload,
		    "{`msdyn_productnumber`:`P-100`,`name`:`Widget`,`description`:null,`msdyn_itemnumber`:`P-100`,"
		    "`defaultuomid@odata.bind`:`/uoms(msdyn_symbol='ea')`,`price`:12.5,`currentcost`:7,"
		    "`transactioncurrencyid@odata.bind`:`/transactioncurrencies(isocurrencycode='USD')`,"
		    "`producttypecode`:3,`msdyn_isstockedproduct`:true,`msdyn_fieldserviceproducttype`:690970002,"
		    "`quantitydecimal`:0}");
	map_write_clear(&w);
	event_clear(&ev);

	/* a source value wins over the default; value maps work on other values too; fields the
	 * event does not carry are left out (not nulled), fields it carries as null are written */
	make_event(&ev, "fo", "CDSReleasedDistinctProducts", "update", "{`dataAreaId`:`usmf`,`ProductNumber`:`P-200`}",
		   "{`dataAreaId`:`usmf`,`ProductNumber`:`P-200`,`ProductType`:`Item`,`IsStockedProduct`:`No`,"
		   "`FieldServiceProductType`:`Inventory`,`SalesUnitDecimalPrecision`:2,`ProductName`:null,"
		   "`SalesUnitSymbol`:``}");
	assert_int_equal(map_transform(m, &ev, NULL, &w, err, sizeof(err)), MAP_OK);
	assert_json(w.payload,
		    "{`msdyn_productnumber`:`P-200`,`name`:null,`defaultuomid@odata.bind`:null,"
		    "`producttypecode`:1,`msdyn_isstockedproduct`:false,`msdyn_fieldserviceproducttype`:690970000,"
		    "`quantitydecimal`:2}");
	map_write_clear(&w);
	event_clear(&ev);
	map_free(m);
}

static void test_lookups_in_keys_and_one_way_fields_omitted(void **state)
{
	(void)state;
	struct fake fk = { 0 };
	struct map_resolver r = { fake_resolve, &fk, fake_guid };
	struct event ev;
	struct map_write w;
	char err[512];

	/* CE -> FO: the FO key part comes from a CE lookup; FO-owned fields (> / >>) are not written */
	struct map *m = load(GOOD "/purchase_order_lines.json");
	make_event(&ev, "ce", "msdyn_purchaseorderproduct", "update", "{`msdyn_purchaseorderproductid`:`" G_UNKNOWN "`}",
		   "{`_msdyn_purchaseorder_value`:`" G_PO "`,`msdyn_lineorder`:1,`_msdyn_company_value`:`" G_USMF "`,"
		   "`_msdyn_product_value`:`" G_P100 "`,`msdyn_quantity`:5,`_msdyn_unit_value`:`" G_EA "`,"
		   "`msdyn_description`:`Bolts`,`msdyn_unitcost`:2.5,`msdyn_lineamount`:12.5,"
		   "`msdyn_purchaseorderlinestatus`:192350001}");
	int rc = map_transform(m, &ev, &r, &w, err, sizeof(err));
	if (rc != MAP_OK)
		fail_msg("rc %d: %s", rc, err);
	assert_json(w.key, "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`00000123`,`LineNumber`:1}");
	assert_json(w.payload, "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`00000123`,`LineNumber`:1,`ItemNumber`:`P-100`,"
			       "`OrderedPurchaseQuantity`:5,`PurchaseUnitSymbol`:`ea`,`LineDescription`:`Bolts`}");
	map_write_clear(&w);
	event_clear(&ev);

	/* FO -> CE: the CE key holds the related key value, the payload binds it */
	make_event(&ev, "fo", "PurchaseOrderLinesV2", "update",
		   "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`00000123`,`LineNumber`:1}",
		   "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`00000123`,`LineNumber`:1,`ItemNumber`:`P-100`,"
		   "`OrderedPurchaseQuantity`:5,`PurchaseUnitSymbol`:`ea`,`PurchasePrice`:2.5,`LineAmount`:12.5,"
		   "`LineDescription`:`Bolts`,`PurchaseOrderLineStatus`:`Backorder`}");
	assert_int_equal(map_transform(m, &ev, &r, &w, err, sizeof(err)), MAP_OK);
	assert_json(w.key, "{`msdyn_purchaseorder`:`00000123`,`msdyn_lineorder`:1,`msdyn_company`:`usmf`}");
	assert_json(w.payload,
		    "{`msdyn_company@odata.bind`:`/cdm_companies(cdm_companycode='usmf')`,"
		    "`msdyn_purchaseorder@odata.bind`:`/msdyn_purchaseorders(msdyn_name='00000123')`,`msdyn_lineorder`:1,"
		    "`msdyn_product@odata.bind`:`/products(msdyn_productnumber='P-100')`,`msdyn_quantity`:5,"
		    "`msdyn_unit@odata.bind`:`/uoms(msdyn_symbol='ea')`,`msdyn_unitcost`:2.5,`msdyn_lineamount`:12.5,"
		    "`msdyn_description`:`Bolts`,`msdyn_purchaseorderlinestatus`:192350001}");
	map_write_clear(&w);
	event_clear(&ev);
	map_free(m);

	/* product inventory: both key parts are lookups */
	m = load(GOOD "/product_inventory.json");
	make_event(&ev, "fo", "WarehousesOnHandV2", "update", "{`dataAreaId`:`usmf`,`ItemNumber`:`P-100`}",
		   "{`dataAreaId`:`usmf`,`ItemNumber`:`P-100`,`InventoryWarehouseId`:`WH 1`,`InventorySiteId`:`1`,"
		   "`OnHandQuantity`:40,`AvailableOnHandQuantity`:35,`ReservedOnHandQuantity`:5,`OnOrderQuantity`:0}");
	assert_int_equal(map_transform(m, &ev, NULL, &w, err, sizeof(err)), MAP_OK);
	assert_json(w.key, "{`msdyn_product`:`P-100`,`msdyn_warehouse`:`WH 1`}");
	assert_json(w.payload, "{`msdyn_product@odata.bind`:`/products(msdyn_productnumber='P-100')`,"
			       "`msdyn_warehouse@odata.bind`:`/msdyn_warehouses(msdyn_warehouseidentifier='WH%201')`,"
			       "`msdyn_qtyonhand`:40,`msdyn_qtyavailable`:35,`msdyn_qtyallocated`:5,`msdyn_qtyonorder`:0}");
	map_write_clear(&w);
	event_clear(&ev);
	map_free(m);
}

/* ---- filters ---- */

static void test_filters_decide_scope(void **state)
{
	(void)state;
	struct map *m = load(ACCOUNTS);
	struct event ev;
	struct map_write w;
	char err[512] = "untouched";

	cJSON *data = J(FO_CUSTOMER);
	cJSON_ReplaceItemInObjectCaseSensitive(data, "PartyType", cJSON_CreateString("Person"));
	char *text = cJSON_PrintUnformatted(data);
	make_event(&ev, "fo", "CustomersV3", "update", FO_CUSTOMER_KEY, text);
	free(text);
	assert_int_equal(map_in_scope(m, &ev), 0);
	assert_int_equal(map_transform(m, &ev, NULL, &w, err, sizeof(err)), MAP_OUT_OF_SCOPE);
	assert_null(w.key);
	assert_null(w.payload);
	event_clear(&ev);
	cJSON_Delete(data);

	make_event(&ev, "fo", "CustomersV3", "update", FO_CUSTOMER_KEY, FO_CUSTOMER);
	assert_int_equal(map_in_scope(m, &ev), 1);
	event_clear(&ev);

	data = J(CE_ACCOUNT);
	cJSON_ReplaceItemInObjectCaseSensitive(data, "customertypecode", cJSON_CreateNumber(8)); /* prospect */
	text = cJSON_PrintUnformatted(data);
	make_event(&ev, "ce", "account", "update", CE_ACCOUNT_KEY, text);
	free(text);
	assert_int_equal(map_in_scope(m, &ev), 0);
	event_clear(&ev);
	cJSON_Delete(data);

	/* deletes carry no image and stay in scope */
	make_event(&ev, "fo", "CustomersV3", "delete", FO_CUSTOMER_KEY, "null");
	assert_int_equal(map_in_scope(m, &ev), 1);
	event_clear(&ev);
	map_free(m);
}

static void test_filter_expressions(void **state)
{
	(void)state;
	static const struct {
		const char *expr, *record;
		int want;
	} cases[] = {
		{ "a eq 1", "{`a`:1}", 1 },
		{ "a eq 1", "{`a`:1.0}", 1 },
		{ "a eq 1", "{`a`:`1`}", 0 },
		{ "a eq 1", "{}", 0 },
		{ "a ne 1", "{}", 1 },
		{ "a eq null", "{}", 1 },
		{ "a eq null", "{`a`:null}", 1 },
		{ "a ne null", "{`a`:0}", 1 },
		{ "a eq true", "{`a`:true}", 1 },
		{ "a eq false", "{`a`:true}", 0 },
		{ "a gt 5 and a le 10", "{`a`:10}", 1 },
		{ "a gt 5 and a le 10", "{`a`:11}", 0 },
		{ "a gt 5 and a le 10", "{`a`:5}", 0 },
		{ "a ge -2.5e1", "{`a`:-25}", 1 },
		{ "a lt 5", "{`a`:`3`}", 0 },
		{ "a gt 5", "{}", 0 },
		{ "a lt 'm'", "{`a`:`b`}", 1 },
		{ "a ge 'm'", "{`a`:`b`}", 0 },
		{ "Name eq 'O''Brien'", "{`Name`:`O'Brien`}", 1 },
		{ "Name eq ''", "{`Name`:``}", 1 },
		{ "IsStocked eq Microsoft.Dynamics.DataEntities.NoYes'Yes'", "{`IsStocked`:`Yes`}", 1 },
		{ "IsStocked eq Microsoft.Dynamics.DataEntities.NoYes'Yes'", "{`IsStocked`:`No`}", 0 },
		{ "a eq 1 or b eq 1 and c eq 1", "{`a`:1,`b`:0,`c`:0}", 1 },
		{ "a eq 1 or b eq 1 and c eq 1", "{`a`:0,`b`:1,`c`:0}", 0 },
		{ "(a eq 1 or b eq 1) and c eq 1", "{`a`:1,`b`:0,`c`:0}", 0 },
		{ "not a eq 1", "{`a`:1}", 0 },
		{ "not (a eq 1) or b eq true", "{`a`:1,`b`:true}", 1 },
		{ "not not a eq 1", "{`a`:1}", 1 },
		{ "  a\teq\n1  ", "{`a`:1}", 1 },
		{ "andy eq 1 and notes eq 'x' or order eq 2", "{`andy`:1,`notes`:`x`}", 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct map_filter *f = NULL;
		char err[256];
		if (map_filter_parse(cases[i].expr, &f, err, sizeof(err)) != 0)
			fail_msg("'%s': %s", cases[i].expr, err);
		cJSON *rec = J(cases[i].record);
		int got = map_filter_match(f, rec);
		if (got != cases[i].want)
			fail_msg("'%s' on %s: got %d, want %d", cases[i].expr, cases[i].record, got, cases[i].want);
		cJSON_Delete(rec);
		map_filter_free(f);
	}
	assert_int_equal(map_filter_match(NULL, NULL), 1);
	map_filter_free(NULL);
}

static void test_filter_syntax_errors(void **state)
{
	(void)state;
	char deep[128] = "";
	for (int i = 0; i < 40; i++)
		deep[i] = '(';
	snprintf(deep + 40, sizeof(deep) - 40, "a eq 1");
	static const struct {
		const char *expr, *error;
	} cases[] = {
		{ "", "offset 0: unexpected end of filter, expected a field name" },
		{ "a eq", "offset 4: expected a literal ('text', number, true, false or null)" },
		{ "a == 1", "offset 2: expected an operator (eq, ne, gt, ge, lt, le) after 'a'" },
		{ "a eq 'x", "offset 5: unterminated string literal" },
		{ "(a eq 1", "offset 7: expected ')' to close the '(' at offset 0" },
		{ "a eq 1 b eq 2", "offset 7: unexpected 'b eq 2' after a complete expression" },
		{ "a eq 1 and", "offset 10: unexpected end of filter, expected a field name" },
		{ "a eq maybe", "offset 5: expected a literal ('text', number, true, false or null), got 'maybe'" },
		{ "a eq 1.2.3", "offset 5: malformed number literal '1.2.3'" },
		{ "a eq -x", "offset 5: expected a digit after '-'" },
		{ "a eq 1 and or b eq 2", "offset 11: expected a field name or '('" },
		{ "and eq 1", "offset 0: expected a field name or '('" },
		{ "a in ('x')", "offset 2: expected an operator (eq, ne, gt, ge, lt, le) after 'a'" },
		{ "a eq 1 )", "offset 7: unexpected ')' after a complete expression" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct map_filter *f = (struct map_filter *)1;
		char err[256] = "";
		if (map_filter_parse(cases[i].expr, &f, err, sizeof(err)) != -1)
			fail_msg("'%s' parsed", cases[i].expr);
		assert_null(f);
		if (strcmp(err, cases[i].error) != 0)
			fail_msg("'%s':\n  got:  %s\n  want: %s", cases[i].expr, err, cases[i].error);
	}
	struct map_filter *f = NULL;
	char err[256];
	assert_int_equal(map_filter_parse(deep, &f, err, sizeof(err)), -1);
	assert_string_equal(err, "offset 32: nested deeper than 32 levels");
}

/* ---- hashes ---- */

static void hash_of(const char *json, char hex[SHA256_HEX_LEN + 1])
{
	cJSON *v = J(json);
	assert_int_equal(map_content_hash(v, hex), 0);
	cJSON_Delete(v);
}

static void test_content_hash_canonical(void **state)
{
	(void)state;
	char a[SHA256_HEX_LEN + 1], b[SHA256_HEX_LEN + 1], want[SHA256_HEX_LEN + 1];

	/* the canonical text is exactly what is hashed */
	hash_of("{`b`:1,`a`:`x`,`c`:[1,2.5,{`z`:null,`y`:true}]}", a);
	const char *canon = "{\"a\":\"x\",\"b\":1,\"c\":[1,2.5,{\"y\":true,\"z\":null}]}";
	sha256_hex(canon, strlen(canon), want);
	assert_string_equal(a, want);
	hash_of("{`s`:`q\\`\\\\\\n\\u0001\xc3\xa9/`}", b);
	const char *canon2 = "{\"s\":\"q\\\"\\\\\\u000a\\u0001\xc3\xa9/\"}";
	sha256_hex(canon2, strlen(canon2), want);
	assert_string_equal(b, want);

	/* key order and number spelling do not matter */
	static const char *const same[][2] = {
		{ "{`b`:1,`a`:`x`,`c`:[1,2,{`z`:null,`y`:true}]}", "{`a`:`x`,`c`:[1,2,{`y`:true,`z`:null}],`b`:1.0}" },
		{ "{`n`:1500.5}", "{`n`:1.5005e3}" },
		{ "{`n`:-0.0}", "{`n`:0}" },
		{ "{`n`:100}", "{`n`:1E2}" },
		{ "{`n`:0.1}", "{`n`:1e-1}" },
		{ "{`n`:9007199254740991}", "{`n`:9.007199254740991e15}" },
	};
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		hash_of(same[i][0], a);
		hash_of(same[i][1], b);
		if (strcmp(a, b) != 0)
			fail_msg("%s and %s should hash the same", same[i][0], same[i][1]);
	}

	/* any value change changes the hash, and all of these differ from each other */
	static const char *const differ[] = {
		"{`a`:`x`,`b`:1,`c`:[1,2]}",        "{`a`:`y`,`b`:1,`c`:[1,2]}",  "{`a`:`x`,`b`:2,`c`:[1,2]}",
		"{`a`:`x`,`b`:`1`,`c`:[1,2]}",      "{`a`:`x`,`b`:1,`c`:[2,1]}",  "{`a`:`x`,`b`:1,`c`:[1,2],`d`:null}",
		"{`a`:`x`,`b`:1}",                  "{`a`:`x`,`b`:true,`c`:[1,2]}", "{`a`:`x`,`b`:false,`c`:[1,2]}",
		"{`a`:`x`,`b`:null,`c`:[1,2]}",     "{`a`:`x `,`b`:1,`c`:[1,2]}", "{`A`:`x`,`b`:1,`c`:[1,2]}",
		"{`a`:`x`,`b`:1.0000000000000002,`c`:[1,2]}", "{`a`:[`x`],`b`:1,`c`:[1,2]}",
	};
	size_t n = sizeof(differ) / sizeof(differ[0]);
	char hashes[16][SHA256_HEX_LEN + 1];
	for (size_t i = 0; i < n; i++) {
		hash_of(differ[i], hashes[i]);
		for (size_t j = 0; j < i; j++)
			if (strcmp(hashes[i], hashes[j]) == 0)
				fail_msg("%s and %s hash the same", differ[i], differ[j]);
	}

	/* limits */
	assert_int_equal(map_content_hash(NULL, a), -1);
	cJSON *deep = cJSON_CreateArray(), *cur = deep;
	for (int i = 0; i < 70; i++) {
		cJSON *next = cJSON_CreateArray();
		cJSON_AddItemToArray(cur, next);
		cur = next;
	}
	assert_int_equal(map_content_hash(deep, a), -1);
	cJSON_Delete(deep);
}

static void test_write_hash_stable_and_image_hash(void **state)
{
	(void)state;
	struct map *m = load(ACCOUNTS);
	struct fake fk = { 0 };
	struct map_resolver r = { fake_resolve, &fk, fake_guid };
	struct event ev;
	struct map_write w1, w2;
	char err[512];

	/* the same FO image with members in another order gives the same write hash */
	cJSON *data = J(FO_CUSTOMER), *rev = cJSON_CreateObject();
	size_t nmembers = (size_t)cJSON_GetArraySize(data);
	for (size_t i = nmembers; i-- > 0;) {
		cJSON *c = cJSON_GetArrayItem(data, (int)i);
		cJSON_AddItemToObject(rev, c->string, cJSON_Duplicate(c, 1));
	}
	char *t1 = cJSON_PrintUnformatted(data), *t2 = cJSON_PrintUnformatted(rev);
	assert_string_not_equal(t1, t2);
	make_event(&ev, "fo", "CustomersV3", "update", FO_CUSTOMER_KEY, t1);
	assert_int_equal(map_transform(m, &ev, &r, &w1, err, sizeof(err)), MAP_OK);
	event_clear(&ev);
	make_event(&ev, "fo", "CustomersV3", "update", FO_CUSTOMER_KEY, t2);
	assert_int_equal(map_transform(m, &ev, &r, &w2, err, sizeof(err)), MAP_OK);
	event_clear(&ev);
	assert_string_equal(w1.hash, w2.hash);
	map_write_clear(&w2);
	free(t2);

	/* an unmapped member does not change it; a mapped one does */
	cJSON_ReplaceItemInObjectCaseSensitive(data, "FullPrimaryAddress", cJSON_CreateString("elsewhere"));
	t2 = cJSON_PrintUnformatted(data);
	make_event(&ev, "fo", "CustomersV3", "update", FO_CUSTOMER_KEY, t2);
	assert_int_equal(map_transform(m, &ev, &r, &w2, err, sizeof(err)), MAP_OK);
	event_clear(&ev);
	assert_string_equal(w1.hash, w2.hash);
	map_write_clear(&w2);
	free(t2);
	cJSON_ReplaceItemInObjectCaseSensitive(data, "CreditLimit", cJSON_CreateNumber(1500.75));
	t2 = cJSON_PrintUnformatted(data);
	make_event(&ev, "fo", "CustomersV3", "update", FO_CUSTOMER_KEY, t2);
	assert_int_equal(map_transform(m, &ev, &r, &w2, err, sizeof(err)), MAP_OK);
	event_clear(&ev);
	assert_string_not_equal(w1.hash, w2.hash);
	map_write_clear(&w2);
	map_write_clear(&w1);
	free(t1);
	free(t2);
	cJSON_Delete(rev);

	/* image hash: FO image restricted to the mapped fields */
	char h1[SHA256_HEX_LEN + 1], h2[SHA256_HEX_LEN + 1];
	assert_int_equal(map_image_hash(m, EVENT_SIDE_FO, data, h1), 0);
	cJSON_DeleteItemFromObjectCaseSensitive(data, "FullPrimaryAddress"); /* unmapped */
	cJSON_DeleteItemFromObjectCaseSensitive(data, "AddressCounty");      /* null -> absent */
	assert_int_equal(map_image_hash(m, EVENT_SIDE_FO, data, h2), 0);
	assert_string_equal(h1, h2);
	cJSON_ReplaceItemInObjectCaseSensitive(data, "PartyType", cJSON_CreateString("Person")); /* mapped CE->FO */
	assert_int_equal(map_image_hash(m, EVENT_SIDE_FO, data, h2), 0);
	assert_string_not_equal(h1, h2);
	cJSON_Delete(data);

	/* CE image: lookups by their GUID attribute; etag and unmapped columns ignored */
	data = J(CE_ACCOUNT);
	assert_int_equal(map_image_hash(m, EVENT_SIDE_CE, data, h1), 0);
	cJSON *reread = J("{`accountnumber`:`US-001`,`_msdyn_company_value`:`" G_USMF "`,`name`:`Contoso Ltd`,"
			  "`msdyn_partynumber`:`000001`,`_msdyn_customergroupid_value`:`" G_GROUP "`,"
			  "`_transactioncurrencyid_value`:`" G_USD "`,`creditlimit`:2500.00,`msdyn_onholdstatus`:192350002,"
			  "`emailaddress1`:`ap@contoso.example`,`telephone1`:`555-0100`,`address1_line1`:`1 Main St`,"
			  "`address1_city`:`Redmond`,`address1_postalcode`:`98052`,`address1_country`:`US`,"
			  "`customertypecode`:3,`address1_addresstypecode`:2,`@odata.etag`:`W/\\`915300\\``}");
	assert_int_equal(map_image_hash(m, EVENT_SIDE_CE, reread, h2), 0);
	assert_string_equal(h1, h2);
	cJSON_ReplaceItemInObjectCaseSensitive(reread, "_transactioncurrencyid_value", cJSON_CreateString(G_UNKNOWN));
	assert_int_equal(map_image_hash(m, EVENT_SIDE_CE, reread, h2), 0);
	assert_string_not_equal(h1, h2);
	cJSON_ReplaceItemInObjectCaseSensitive(reread, "_transactioncurrencyid_value", cJSON_CreateString(G_USD));
	cJSON_ReplaceItemInObjectCaseSensitive(reread, "telephone1", cJSON_CreateString("+1 555-0100"));
	assert_int_equal(map_image_hash(m, EVENT_SIDE_CE, reread, h2), 0);
	assert_string_not_equal(h1, h2);
	assert_int_equal(map_image_hash(m, EVENT_SIDE_CE, NULL, h2), -1);
	cJSON_Delete(reread);
	cJSON_Delete(data);
	map_free(m);
}

static void test_image_hash_reads_lookup_keys_by_guid(void **state)
{
	(void)state;
	struct map *m = load(GOOD "/purchase_order_lines.json");
	char h1[SHA256_HEX_LEN + 1], h2[SHA256_HEX_LEN + 1];
	cJSON *img = J("{`_msdyn_purchaseorder_value`:`" G_PO "`,`msdyn_lineorder`:1,`_msdyn_company_value`:`" G_USMF "`,"
		       "`_msdyn_product_value`:`" G_P100 "`,`msdyn_quantity`:5}");
	assert_int_equal(map_image_hash(m, EVENT_SIDE_CE, img, h1), 0);
	/* what the hash covers, in canonical form: every CE name of the map, lookups by GUID */
	cJSON *want = J("{`_msdyn_purchaseorder_value`:`" G_PO "`,`msdyn_lineorder`:1,`_msdyn_company_value`:`" G_USMF "`,"
			"`_msdyn_product_value`:`" G_P100 "`,`msdyn_quantity`:5,`_msdyn_unit_value`:null,`msdyn_unitcost`:null,"
			"`msdyn_lineamount`:null,`msdyn_description`:null,`msdyn_purchaseorderlinestatus`:null}");
	assert_int_equal(map_content_hash(want, h2), 0);
	assert_string_equal(h1, h2);
	/* members the image lacks come from extra (a write's key fields); the image's own win */
	cJSON *part = cJSON_Duplicate(img, 1);
	cJSON_DeleteItemFromObjectCaseSensitive(part, "msdyn_lineorder");
	cJSON *extra = J("{`msdyn_lineorder`:1,`msdyn_quantity`:7,`unmapped`:true}");
	assert_int_equal(map_image_hash_of(m, EVENT_SIDE_CE, part, extra, h2), 0);
	assert_string_equal(h1, h2);
	assert_int_equal(map_image_hash_of(m, EVENT_SIDE_CE, part, NULL, h2), 0);
	assert_string_not_equal(h1, h2);
	cJSON_Delete(extra);
	cJSON_Delete(part);
	cJSON_ReplaceItemInObjectCaseSensitive(img, "_msdyn_purchaseorder_value", cJSON_CreateString(G_UNKNOWN));
	assert_int_equal(map_image_hash(m, EVENT_SIDE_CE, img, h2), 0);
	assert_string_not_equal(h1, h2);
	cJSON_Delete(want);
	cJSON_Delete(img);
	map_free(m);
}

/* Truncated and byte-mutated copies of the accounts map either load or fail with
 * "<file>: <path>: <reason>"; never a crash, leak or silent acceptance of broken JSON. */
static void test_mutated_map_files_fail_cleanly(void **state)
{
	(void)state;
	FILE *f = fopen(ACCOUNTS, "rb");
	assert_non_null(f);
	static char orig[64 * 1024];
	size_t len = fread(orig, 1, sizeof(orig), f);
	fclose(f);
	assert_true(len > 1000 && len < sizeof(orig));
	char dir[] = "/tmp/dw-map-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[300], prefix[320];
	snprintf(path, sizeof(path), "%s/accounts.json", dir);
	snprintf(prefix, sizeof(prefix), "%s: ", path);
	static const char repl[] = "{}[]\",:0-9.eEtrufalsn \x01\xff\xc3";
	uint32_t seed = 12345;
	int loaded = 0, rejected = 0;
	static char buf[64 * 1024];
	for (int i = 0; i < 600; i++) {
		memcpy(buf, orig, len);
		size_t n = len;
		seed = seed * 1103515245u + 12345u;
		size_t pos = (seed >> 8) % len;
		if (i % 3 == 0)
			n = pos; /* truncated */
		else
			buf[pos] = repl[(seed >> 4) % (sizeof(repl) - 1)]; /* one byte replaced */
		f = fopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(buf, 1, n, f), n);
		fclose(f);
		struct map *m = NULL;
		char err[1024] = "";
		if (map_load_file(path, &m, err, sizeof(err)) == 0) {
			assert_non_null(m);
			loaded++;
			map_free(m);
		} else {
			assert_null(m);
			if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err + strlen(prefix), ": "))
				fail_msg("mutation %d at %zu: error without file and path: %s", i, pos, err);
			rejected++;
		}
	}
	unlink(path);
	rmdir(dir);
	assert_true(rejected > 300); /* most mutations break the file ... */
	assert_true(loaded > 0);     /* ... some (inside descriptions, say) do not */
}

/* ---- the Field Service maps in schemas/maps (issue 6): each loads and maps a realistic event ---- */

#define MAPS "schemas/maps"

static void transform_ok(const char *file, const char *side, const char *entity, const char *key, const char *data,
			 struct map_write *w)
{
	struct map *m = load(file);
	struct fake fk = { 0 };
	struct map_resolver r = { fake_resolve, &fk, fake_guid };
	struct event ev;
	char err[512];
	make_event(&ev, side, entity, "create", key, data);
	int rc = map_transform(m, &ev, &r, w, err, sizeof(err));
	event_clear(&ev);
	map_free(m);
	if (rc != MAP_OK)
		fail_msg("%s: rc %d: %s", file, rc, err);
}

static void test_fs_maps_load_in_dependency_order(void **state)
{
	(void)state;
	struct map_set *set = NULL;
	char err[1024];
	if (map_load_dir(MAPS, &set, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(6, set->n);
	size_t pos[6];
	static const char *const names[] = { "accounts", "products", "customer_assets", "purchase_order_headers",
					     "purchase_order_lines", "product_inventory" };
	for (size_t i = 0; i < 6; i++) {
		pos[i] = SIZE_MAX;
		for (size_t j = 0; j < set->n; j++)
			if (strcmp(set->maps[j]->name, names[i]) == 0)
				pos[i] = j;
		assert_true(pos[i] != SIZE_MAX);
	}
	assert_true(pos[0] < pos[2] && pos[1] < pos[2]); /* assets after accounts and products */
	assert_true(pos[3] < pos[4] && pos[1] < pos[4]); /* lines after headers and products */
	assert_true(pos[1] < pos[5]);                    /* inventory after products */
	assert_string_equal("purchase_orders", map_set_find(set, "purchase_order_headers")->atomic_unit);
	assert_string_equal("purchase_orders", map_set_find(set, "purchase_order_lines")->atomic_unit);
	map_set_free(set);
}

static void test_fs_customer_asset_links_account_and_product_both_ways(void **state)
{
	(void)state;
	struct map_write w;
	transform_ok(MAPS "/customer_assets.json", "fo", "AssetMaintenanceAssetsV3",
		     "{`dataAreaId`:`usmf`,`MaintenanceAssetId`:`MA-0007`}",
		     "{`dataAreaId`:`usmf`,`MaintenanceAssetId`:`MA-0007`,`Name`:`Pump 7`,`SerialID`:`SN-77`,"
		     "`OwnerCustomerAccountNumber`:`US-001`,`ProductId`:`P-100`,`ParentMaintenanceAssetId`:``,"
		     "`AcquisitionCost`:1200,`FunctionalLocationId`:`FL-1`}",
		     &w);
	assert_json(w.key, "{`msdyn_maintenanceassetid`:`MA-0007`,`msdyn_company`:`usmf`}");
	assert_json(w.payload,
		    "{`msdyn_company@odata.bind`:`/cdm_companies(cdm_companycode='usmf')`,"
		    "`msdyn_maintenanceassetid`:`MA-0007`,`msdyn_name`:`Pump 7`,`msdyn_serialid`:`SN-77`,"
		    "`msdyn_account@odata.bind`:`/accounts(accountnumber='US-001',msdyn_company=" G_USMF ")`,"
		    "`msdyn_product@odata.bind`:`/products(msdyn_productnumber='P-100')`,"
		    "`msdyn_parentasset_msdyn_customerasset@odata.bind`:null}");
	map_write_clear(&w);
	transform_ok(MAPS "/customer_assets.json", "ce", "msdyn_customerasset",
		     "{`msdyn_maintenanceassetid`:`MA-0008`,`_msdyn_company_value`:`" G_USMF "`}",
		     "{`msdyn_customerassetid`:`9d4b8a2e-1111-4000-8000-000000000001`,`msdyn_maintenanceassetid`:`MA-0008`,"
		     "`msdyn_name`:`Pump 8`,`msdyn_serialid`:null,`_msdyn_account_value`:`" G_CUSTOMER "`,"
		     "`_msdyn_product_value`:`" G_P100 "`,`_msdyn_parentasset_value`:null,`_msdyn_company_value`:`" G_USMF "`}",
		     &w);
	assert_json(w.key, "{`dataAreaId`:`usmf`,`MaintenanceAssetId`:`MA-0008`}");
	assert_json(w.payload, "{`dataAreaId`:`usmf`,`MaintenanceAssetId`:`MA-0008`,`Name`:`Pump 8`,`SerialID`:null,"
			       "`OwnerCustomerAccountNumber`:`US-001`,`ProductId`:`P-100`,`ParentMaintenanceAssetId`:null}");
	map_write_clear(&w);
}

static void test_fs_products_from_fo_with_value_maps(void **state)
{
	(void)state;
	struct map_write w;
	transform_ok(MAPS "/products.json", "fo", "CDSReleasedDistinctProducts",
		     "{`dataAreaId`:`usmf`,`ProductNumber`:`P-100`}",
		     "{`dataAreaId`:`usmf`,`ProductNumber`:`P-100`,`ItemNumber`:`P-100`,`ProductName`:`Pump`,"
		     "`ProductDescription`:`Centrifugal pump`,`ProductType`:`Item`,`FieldServiceProductType`:`NotAvailable`,"
		     "`IsStockedProduct`:`No`,`SalesUnitSymbol`:`ea`,`InventoryUnitSymbol`:`ea`,`SalesPrice`:99.5,"
		     "`UnitCost`:60,`CurrencyCode`:`USD`,`SalesUnitDecimalPrecision`:2,`ProductColorId`:``}",
		     &w);
	assert_null(w.company);
	assert_json(w.key, "{`msdyn_productnumber`:`P-100`}");
	assert_json(w.payload,
		    "{`msdyn_productnumber`:`P-100`,`name`:`Pump`,`description`:`Centrifugal pump`,`msdyn_itemnumber`:`P-100`,"
		    "`defaultuomid@odata.bind`:`/uoms(msdyn_symbol='ea')`,`price`:99.5,`currentcost`:60,"
		    "`transactioncurrencyid@odata.bind`:`/transactioncurrencies(isocurrencycode='USD')`,`producttypecode`:1,"
		    "`msdyn_isstockedproduct`:false,`msdyn_fieldserviceproducttype`:null,`quantitydecimal`:2}");
	map_write_clear(&w);
}

static void test_fs_purchase_order_header_both_ways(void **state)
{
	(void)state;
	struct map_write w;
	/* CE -> FO: F&O-owned statuses and the delivery address are not sent; a CE order is a Purch */
	transform_ok(MAPS "/purchase_order_headers.json", "ce", "msdyn_purchaseorder",
		     "{`msdyn_name`:`PO-000123`,`_msdyn_company_value`:`" G_USMF "`}",
		     "{`msdyn_name`:`PO-000123`,`_msdyn_company_value`:`" G_USMF "`,`_msdyn_vendor_value`:`" G_VENDOR "`,"
		     "`_msdyn_invoicevendoraccount_value`:null,`_transactioncurrencyid_value`:`" G_USD "`,"
		     "`msdyn_ordererpersonnelnumber`:`000042`,`msdyn_purchaseorderstatus`:192350001,`msdyn_city`:`Oslo`,"
		     "`msdyn_dateexpected`:`2026-12-01T00:00:00Z`}",
		     &w);
	assert_json(w.key, "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`PO-000123`}");
	/* a date: capture's midnight-UTC form of the CE date-only value -> F&O's date-only form */
	assert_json(w.payload, "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`PO-000123`,`OrderVendorAccountNumber`:`V-1001`,"
			       "`InvoiceVendorAccountNumber`:null,`CurrencyCode`:`USD`,`OrdererPersonnelNumber`:`000042`,"
			       "`RequestedDeliveryDate`:`2026-12-01T12:00:00Z`,`PurchaseType`:`Purch`}");
	map_write_clear(&w);
	/* FO -> CE: vendor bound by account number and company, statuses value-mapped */
	transform_ok(MAPS "/purchase_order_headers.json", "fo", "PurchaseOrderHeadersV2",
		     "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`PO-000124`}",
		     "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`PO-000124`,`OrderVendorAccountNumber`:`V-1001`,"
		     "`InvoiceVendorAccountNumber`:``,`CurrencyCode`:`USD`,`PurchaseOrderStatus`:`Received`,"
		     "`DocumentApprovalStatus`:`Confirmed`,`PurchaseType`:`Purch`,`DeliveryAddressStreet`:`1 Quay`,"
		     "`DeliveryAddressCity`:`Oslo`,`DeliveryAddressZipCode`:`0150`,`DeliveryAddressCountryRegionId`:`NOR`,"
		     "`RequestedDeliveryDate`:`2026-12-01T00:00:00Z`}",
		     &w);
	assert_json(w.key, "{`msdyn_name`:`PO-000124`,`msdyn_company`:`usmf`}");
	assert_json(w.payload,
		    "{`msdyn_company@odata.bind`:`/cdm_companies(cdm_companycode='usmf')`,`msdyn_name`:`PO-000124`,"
		    "`msdyn_vendor@odata.bind`:`/accounts(accountnumber='V-1001',msdyn_company=" G_USMF ")`,"
		    "`msdyn_invoicevendoraccount@odata.bind`:null,"
		    "`transactioncurrencyid@odata.bind`:`/transactioncurrencies(isocurrencycode='USD')`,"
		    "`msdyn_dateexpected`:`2026-12-01`,"
		    "`msdyn_purchaseorderstatus`:192350002,`msdyn_documentapprovalstatus`:192350006,`msdyn_address1`:`1 Quay`,"
		    "`msdyn_city`:`Oslo`,`msdyn_postalcode`:`0150`,`msdyn_country`:`NOR`}");
	map_write_clear(&w);
}

/* Date fields: F&O's empty date and CE's null are the same; what is not a date is refused with
 * the field and the value; a date field cannot be a lookup or have a value map. */
static void test_date_fields(void **state)
{
	(void)state;
	struct map_write w;
	transform_ok(MAPS "/purchase_order_headers.json", "fo", "PurchaseOrderHeadersV2",
		     "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`PO-1`}",
		     "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`PO-1`,`RequestedDeliveryDate`:`1900-01-01T00:00:00Z`}", &w);
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(w.payload, "msdyn_dateexpected")));
	map_write_clear(&w);
	transform_ok(MAPS "/purchase_order_headers.json", "ce", "msdyn_purchaseorder",
		     "{`msdyn_name`:`PO-2`,`_msdyn_company_value`:`" G_USMF "`}",
		     "{`msdyn_name`:`PO-2`,`_msdyn_company_value`:`" G_USMF "`,`msdyn_dateexpected`:null}", &w);
	assert_string_equal("1900-01-01T12:00:00Z", cJSON_GetObjectItem(w.payload, "RequestedDeliveryDate")->valuestring);
	map_write_clear(&w);
	transform_ok(MAPS "/purchase_order_headers.json", "ce", "msdyn_purchaseorder",
		     "{`msdyn_name`:`PO-3`,`_msdyn_company_value`:`" G_USMF "`}",
		     "{`msdyn_name`:`PO-3`,`_msdyn_company_value`:`" G_USMF "`,`msdyn_dateexpected`:`2027-02-28`}", &w);
	assert_string_equal("2027-02-28T12:00:00Z", cJSON_GetObjectItem(w.payload, "RequestedDeliveryDate")->valuestring);
	map_write_clear(&w);

	struct map *m = load(MAPS "/purchase_order_headers.json");
	struct fake fk = { 0 };
	struct map_resolver r = { fake_resolve, &fk, fake_guid };
	struct event ev;
	char err[512];
	make_event(&ev, "fo", "PurchaseOrderHeadersV2", "update", "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`PO-4`}",
		   "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`PO-4`,`RequestedDeliveryDate`:`next week`}");
	assert_int_equal(MAP_ERR_EVENT, map_transform(m, &ev, &r, &w, err, sizeof(err)));
	assert_non_null(strstr(err, "RequestedDeliveryDate: \"next week\" is not a date"));
	event_clear(&ev);
	map_free(m);
}

static void test_fs_purchase_order_line_keyed_by_its_header(void **state)
{
	(void)state;
	struct map_write w;
	transform_ok(MAPS "/purchase_order_lines.json", "fo", "PurchaseOrderLinesV2",
		     "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`00000123`,`LineNumber`:2}",
		     "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`00000123`,`LineNumber`:2,`ItemNumber`:`P-100`,"
		     "`ProductNumber`:`P-100`,`OrderedPurchaseQuantity`:4,`PurchaseUnitSymbol`:`ea`,`PurchasePrice`:60,"
		     "`LineAmount`:240,`LineDescription`:`Pumps`,`CurrencyCode`:`USD`,`PurchaseOrderLineStatus`:`Backorder`}",
		     &w);
	/* the CE key is the header (a lookup) and the line number; the company is written, not keyed */
	assert_string_equal("usmf", w.company);
	assert_json(w.key, "{`msdyn_purchaseorder`:`00000123`,`msdyn_lineorder`:2}");
	assert_json(w.payload,
		    "{`msdyn_company@odata.bind`:`/cdm_companies(cdm_companycode='usmf')`,"
		    "`msdyn_purchaseorder@odata.bind`:`/msdyn_purchaseorders(msdyn_name='00000123',msdyn_company=" G_USMF ")`,"
		    "`msdyn_lineorder`:2,`msdyn_product@odata.bind`:`/products(msdyn_productnumber='P-100')`,"
		    "`msdyn_quantity`:4,`msdyn_unit@odata.bind`:`/uoms(msdyn_symbol='ea')`,`msdyn_description`:`Pumps`,"
		    "`transactioncurrencyid@odata.bind`:`/transactioncurrencies(isocurrencycode='USD')`,`msdyn_unitcost`:60,"
		    "`msdyn_lineamount`:240,`msdyn_purchaseorderlinestatus`:192350001}");
	map_write_clear(&w);
	transform_ok(MAPS "/purchase_order_lines.json", "ce", "msdyn_purchaseorderproduct",
		     "{`_msdyn_purchaseorder_value`:`" G_PO "`,`msdyn_lineorder`:3}",
		     "{`_msdyn_purchaseorder_value`:`" G_PO "`,`msdyn_lineorder`:3,`_msdyn_company_value`:`" G_USMF "`,"
		     "`_msdyn_product_value`:`" G_P100 "`,`msdyn_quantity`:1,`_msdyn_unit_value`:`" G_EA "`,"
		     "`msdyn_description`:null,`_transactioncurrencyid_value`:`" G_USD "`,`msdyn_unitcost`:5}",
		     &w);
	assert_json(w.key, "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`00000123`,`LineNumber`:3}");
	assert_json(w.payload, "{`dataAreaId`:`usmf`,`PurchaseOrderNumber`:`00000123`,`LineNumber`:3,`ProductNumber`:`P-100`,"
			       "`OrderedPurchaseQuantity`:1,`PurchaseUnitSymbol`:`ea`,`LineDescription`:null,"
			       "`CurrencyCode`:`USD`}");
	map_write_clear(&w);
}

static void test_fs_product_inventory_binds_product_warehouse_and_unit(void **state)
{
	(void)state;
	struct map_write w;
	/* the image as the aggregation leaves it: the group's sums and the joined inventory unit */
	transform_ok(MAPS "/product_inventory.json", "fo", "WarehousesOnHandV2",
		     "{`dataAreaId`:`usmf`,`ItemNumber`:`P-100`,`ProductColorId`:`Red`,`ProductConfigurationId`:``,"
		     "`ProductSizeId`:``,`ProductStyleId`:``,`ProductVersionId`:``,`InventorySiteId`:`1`,"
		     "`InventoryWarehouseId`:`13`}",
		     "{`dataAreaId`:`usmf`,`ItemNumber`:`P-100`,`ProductColorId`:`Red`,`ProductConfigurationId`:``,"
		     "`ProductSizeId`:``,`ProductStyleId`:``,`ProductVersionId`:``,`InventorySiteId`:`1`,"
		     "`InventoryWarehouseId`:`13`,`OnHandQuantity`:12,`AvailableOnHandQuantity`:10,"
		     "`ReservedOnHandQuantity`:2,`OnOrderQuantity`:4,`InventoryUnitSymbol`:`ea`,`ProductName`:`Pump`}",
		     &w);
	assert_string_equal("usmf", w.company);
	assert_json(w.key, "{`msdyn_product`:`P-100`,`msdyn_warehouse`:`13`}");
	assert_json(w.payload,
		    "{`msdyn_product@odata.bind`:`/products(msdyn_productnumber='P-100')`,"
		    "`msdyn_warehouse@odata.bind`:`/msdyn_warehouses(msdyn_warehouseidentifier='13',msdyn_company=" G_USMF ")`,"
		    "`msdyn_unit@odata.bind`:`/uoms(msdyn_symbol='ea')`,`msdyn_name`:`F&O on-hand`,`msdyn_qtyonhand`:12,"
		    "`msdyn_qtyavailable`:10,`msdyn_qtyallocated`:2,`msdyn_qtyonorder`:4}");
	map_write_clear(&w);
	struct map *m = load(MAPS "/product_inventory.json");
	assert_non_null(m->aggregate);
	assert_string_equal("CDSReleasedDistinctProducts", m->aggregate->join_set);
	assert_int_equal(3, m->aggregate->ngroup_by);
	assert_int_equal(4, m->aggregate->nsum);
	map_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accounts_map_loads),
		cmocka_unit_test(test_issue6_sketches_load_in_dependency_order),
		cmocka_unit_test(test_malformed_maps_name_file_path_and_reason),
		cmocka_unit_test(test_file_level_errors),
		cmocka_unit_test(test_set_dependencies_checked),
		cmocka_unit_test(test_fo_to_ce_update),
		cmocka_unit_test(test_ce_to_fo_update),
		cmocka_unit_test(test_ce_null_credit_limit_becomes_zero),
		cmocka_unit_test(test_delete_events_delete_the_target_key),
		cmocka_unit_test(test_lookup_not_found_and_resolver_failure),
		cmocka_unit_test(test_events_that_do_not_fit_the_map),
		cmocka_unit_test(test_value_maps_defaults_one_way_products),
		cmocka_unit_test(test_lookups_in_keys_and_one_way_fields_omitted),
		cmocka_unit_test(test_filters_decide_scope),
		cmocka_unit_test(test_filter_expressions),
		cmocka_unit_test(test_filter_syntax_errors),
		cmocka_unit_test(test_content_hash_canonical),
		cmocka_unit_test(test_write_hash_stable_and_image_hash),
		cmocka_unit_test(test_image_hash_reads_lookup_keys_by_guid),
		cmocka_unit_test(test_mutated_map_files_fail_cleanly),
		cmocka_unit_test(test_fs_maps_load_in_dependency_order),
		cmocka_unit_test(test_fs_customer_asset_links_account_and_product_both_ways),
		cmocka_unit_test(test_fs_products_from_fo_with_value_maps),
		cmocka_unit_test(test_fs_purchase_order_header_both_ways),
		cmocka_unit_test(test_fs_purchase_order_line_keyed_by_its_header),
		cmocka_unit_test(test_date_fields),
		cmocka_unit_test(test_fs_product_inventory_binds_product_warehouse_and_unit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
