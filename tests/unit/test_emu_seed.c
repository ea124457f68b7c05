#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "schema.h"
#include "seed.h"

/* Everything emitted, in order: an array of {"set":..., "record":...}. */
struct sink {
	cJSON *all;
	char *text; /* concatenation of "set\trecord\n" */
	size_t len, cap;
	int stop_after; /* >0: return 42 after this many records */
	int count;
};

static int collect(void *ctx, const char *set, cJSON *record)
{
	struct sink *s = ctx;
	char *t = cJSON_PrintUnformatted(record);
	size_t need;
	cJSON *item;

	assert_non_null(t);
	need = strlen(set) + strlen(t) + 3;
	if (s->len + need > s->cap) {
		s->cap = (s->len + need) * 2;
		s->text = realloc(s->text, s->cap);
		assert_non_null(s->text);
	}
	s->len += (size_t)snprintf(s->text + s->len, s->cap - s->len, "%s\t%s\n", set, t);
	free(t);
	item = cJSON_CreateObject();
	cJSON_AddStringToObject(item, "set", set);
	cJSON_AddItemToObject(item, "record", record); /* takes ownership */
	cJSON_AddItemToArray(s->all, item);
	s->count++;
	if (s->stop_after > 0 && s->count >= s->stop_after)
		return 42;
	return 0;
}

static void sink_init(struct sink *s)
{
	memset(s, 0, sizeof(*s));
	s->all = cJSON_CreateArray();
}

static void sink_free(struct sink *s)
{
	cJSON_Delete(s->all);
	free(s->text);
}

static void run(struct sink *s, size_t n, uint64_t seed, enum seed_side side)
{
	struct seed_options o;
	char err[256];

	seed_options_init(&o);
	o.per_table = n;
	o.seed = seed;
	o.side = side;
	sink_init(s);
	if (seed_generate(&o, collect, s, err, sizeof(err)) != 0)
		fail_msg("seed_generate: %s", err);
}

static size_t count_set(const struct sink *s, const char *set)
{
	size_t n = 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, s->all)
	if (strcmp(cJSON_GetObjectItem(it, "set")->valuestring, set) == 0)
		n++;
	return n;
}

/* The first record of `set` whose `field` is the string `value` (and, when cfield is given, whose
 * cfield equals cvalue). */
static const cJSON *find(const struct sink *s, const char *set, const char *field, const char *value,
			 const char *cfield, const char *cvalue)
{
	const cJSON *it;
	cJSON_ArrayForEach(it, s->all)
	{
		const cJSON *r = cJSON_GetObjectItem(it, "record");
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, field);
		if (strcmp(cJSON_GetObjectItem(it, "set")->valuestring, set) != 0 || !cJSON_IsString(v) ||
		    strcmp(v->valuestring, value) != 0)
			continue;
		if (cfield) {
			const cJSON *cv = cJSON_GetObjectItemCaseSensitive(r, cfield);
			if (!cJSON_IsString(cv) || strcmp(cv->valuestring, cvalue) != 0)
				continue;
		}
		return r;
	}
	return NULL;
}

static void test_same_seed_same_bytes(void **state)
{
	struct sink a, b, c, ce_only;
	(void)state;

	run(&a, 12, 7, SEED_SIDE_BOTH);
	run(&b, 12, 7, SEED_SIDE_BOTH);
	run(&c, 12, 8, SEED_SIDE_BOTH);
	assert_true(a.len > 10000);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.text, b.text, a.len);
	assert_false(a.len == c.len && memcmp(a.text, c.text, a.len) == 0);

	/* one side alone is exactly that side's part of a "both" run */
	run(&ce_only, 12, 7, SEED_SIDE_CE);
	{
		char *filtered = malloc(a.len + 1);
		size_t fl = 0;
		const char *p = a.text;
		while (p < a.text + a.len) {
			const char *nl = memchr(p, '\n', (size_t)(a.text + a.len - p));
			size_t l = (size_t)(nl - p) + 1;
			/* CE set names start with a lower-case letter, F&O ones with an upper-case one */
			if (*p >= 'a' && *p <= 'z') {
				memcpy(filtered + fl, p, l);
				fl += l;
			}
			p += l;
		}
		assert_int_equal(fl, ce_only.len);
		assert_memory_equal(filtered, ce_only.text, fl);
		free(filtered);
	}
	sink_free(&a);
	sink_free(&b);
	sink_free(&c);
	sink_free(&ce_only);
}

/* Every record is a valid create body for its side; ids are unique and every @odata.bind points
 * at a record emitted earlier. */
static void test_records_valid_and_lookups_resolve(void **state)
{
	struct schema *ce, *fo;
	struct sink s;
	char err[512];
	cJSON *seen = cJSON_CreateObject(); /* "set(guid)" -> true */
	const cJSON *it;
	size_t n = 0, binds = 0;
	(void)state;

	assert_int_equal(schema_load("tests/emulators/schemas/ce.json", &ce, err, sizeof(err)), 0);
	assert_int_equal(schema_load("tests/emulators/schemas/fo.json", &fo, err, sizeof(err)), 0);
	run(&s, 15, 3, SEED_SIDE_BOTH);
	cJSON_ArrayForEach(it, s.all)
	{
		const char *set = cJSON_GetObjectItem(it, "set")->valuestring;
		const cJSON *r = cJSON_GetObjectItem(it, "record");
		const struct schema_entity *e = schema_entity_by_set(ce, set);
		struct schema *sch = ce;
		struct schema_error verr;
		const cJSON *f;
		if (e == NULL) {
			e = schema_entity_by_set(fo, set);
			sch = fo;
		}
		if (e == NULL)
			fail_msg("record %zu: entity set %s is in neither schema", n, set);
		if (schema_validate(sch, e, r, SCHEMA_OP_CREATE, &verr) != 0)
			fail_msg("record %zu (%s) invalid: %s %s %s", n, set, verr.code, verr.message, verr.inner);
		cJSON_ArrayForEach(f, r)
		{
			const char *at = strstr(f->string, "@odata.bind");
			if (at) {
				char key[160];
				snprintf(key, sizeof(key), "%s", f->valuestring + 1); /* drop the leading '/' */
				if (cJSON_GetObjectItemCaseSensitive(seen, key) == NULL)
					fail_msg("record %zu (%s): %s -> %s not emitted before", n, set, f->string,
						 f->valuestring);
				binds++;
			}
		}
		if (sch == ce) {
			char key[160];
			snprintf(key, sizeof(key), "%s(%s)", set,
				 cJSON_GetObjectItemCaseSensitive(r, e->id_field)->valuestring);
			if (cJSON_GetObjectItemCaseSensitive(seen, key))
				fail_msg("duplicate id %s", key);
			cJSON_AddTrueToObject(seen, key);
		} else {
			/* F&O natural keys are unique too */
			char key[512];
			size_t kl = (size_t)snprintf(key, sizeof(key), "%s(", set);
			for (size_t k = 0; k < e->primary_key.n_fields; k++) {
				const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, e->primary_key.fields[k]);
				assert_non_null(v);
				if (cJSON_IsString(v))
					kl += (size_t)snprintf(key + kl, sizeof(key) - kl, "%s,", v->valuestring);
				else
					kl += (size_t)snprintf(key + kl, sizeof(key) - kl, "%g,", v->valuedouble);
			}
			if (cJSON_GetObjectItemCaseSensitive(seen, key))
				fail_msg("duplicate key %s", key);
			cJSON_AddTrueToObject(seen, key);
		}
		n++;
	}
	assert_true(n > 500);
	assert_true(binds > 500);
	cJSON_Delete(seen);
	sink_free(&s);
	schema_free(ce);
	schema_free(fo);
}

static const char *bind_guid(const cJSON *r, const char *nav, char out[37])
{
	char k[128];
	const cJSON *v;
	const char *p;
	snprintf(k, sizeof(k), "%s@odata.bind", nav);
	v = cJSON_GetObjectItemCaseSensitive(r, k);
	assert_non_null(v);
	p = strchr(v->valuestring, '(');
	assert_non_null(p);
	snprintf(out, 37, "%s", p + 1);
	return out;
}

static void test_sides_agree(void **state)
{
	struct sink s;
	const cJSON *it;
	size_t customers = 0, lines = 0, onhand = 0;
	(void)state;

	run(&s, 10, 11, SEED_SIDE_BOTH);
	/* the same number of rows per table pair: 3 companies, 10 per table */
	assert_int_equal(count_set(&s, "cdm_companies"), 3);
	assert_int_equal(count_set(&s, "LegalEntities"), 3);
	assert_int_equal(count_set(&s, "transactioncurrencies"), count_set(&s, "Currencies"));
	assert_int_equal(count_set(&s, "uoms"), count_set(&s, "UnitsOfMeasure"));
	assert_int_equal(count_set(&s, "msdyn_warehouses"), count_set(&s, "Warehouses"));
	assert_int_equal(count_set(&s, "msdyn_operationalsites"), count_set(&s, "OperationalSitesV2"));
	assert_int_equal(count_set(&s, "msdyn_customergroups"), count_set(&s, "CustomerGroups"));
	assert_int_equal(count_set(&s, "msdyn_paymentterms"), count_set(&s, "PaymentTerms"));
	assert_int_equal(count_set(&s, "msdyn_vendors"), 30);
	assert_int_equal(count_set(&s, "VendorsV2"), 30);
	assert_int_equal(count_set(&s, "CustomersV3"), 30);
	assert_int_equal(count_set(&s, "accounts"), 60);
	assert_int_equal(count_set(&s, "products"), 30);
	assert_int_equal(count_set(&s, "CDSReleasedDistinctProducts"), 30);
	assert_int_equal(count_set(&s, "ReleasedProductsV2"), 30);
	assert_int_equal(count_set(&s, "msdyn_customerassets"), 30);
	assert_int_equal(count_set(&s, "AssetMaintenanceAssetsV3"), 30);
	assert_int_equal(count_set(&s, "msdyn_purchaseorders"), 30);
	assert_int_equal(count_set(&s, "PurchaseOrderHeadersV2"), 30);
	assert_int_equal(count_set(&s, "msdyn_purchaseorderproducts"), count_set(&s, "PurchaseOrderLinesV2"));
	assert_true(count_set(&s, "PurchaseOrderLinesV2") >= 30 && count_set(&s, "PurchaseOrderLinesV2") <= 150);
	assert_int_equal(count_set(&s, "msdyn_productinventories"), count_set(&s, "WarehousesOnHandV2"));

	cJSON_ArrayForEach(it, s.all)
	{
		const char *set = cJSON_GetObjectItem(it, "set")->valuestring;
		const cJSON *r = cJSON_GetObjectItem(it, "record");
		if (strcmp(set, "CustomersV3") == 0) {
			const char *acct = cJSON_GetObjectItem(r, "CustomerAccount")->valuestring;
			const char *area = cJSON_GetObjectItem(r, "dataAreaId")->valuestring;
			const cJSON *a = find(&s, "accounts", "accountnumber", acct, NULL, NULL);
			const cJSON *comp;
			char g[37];
			assert_non_null(a);
			assert_string_equal(cJSON_GetObjectItem(a, "name")->valuestring,
					    cJSON_GetObjectItem(r, "OrganizationName")->valuestring);
			assert_true(cJSON_GetObjectItem(a, "creditlimit")->valuedouble ==
				    cJSON_GetObjectItem(r, "CreditLimit")->valuedouble);
			assert_string_equal(cJSON_GetObjectItem(a, "emailaddress1")->valuestring,
					    cJSON_GetObjectItem(r, "PrimaryContactEmail")->valuestring);
			assert_string_equal(cJSON_GetObjectItem(a, "address1_city")->valuestring,
					    cJSON_GetObjectItem(r, "DeliveryAddressCity")->valuestring);
			assert_int_equal(cJSON_GetObjectItem(a, "customertypecode")->valueint, 3);
			/* the account's company lookup points at the cdm_company of the same code */
			bind_guid(a, "msdyn_company", g);
			g[36] = '\0';
			comp = find(&s, "cdm_companies", "cdm_companyid", g, NULL, NULL);
			assert_non_null(comp);
			assert_string_equal(cJSON_GetObjectItem(comp, "cdm_companycode")->valuestring, area);
			customers++;
		} else if (strcmp(set, "PurchaseOrderLinesV2") == 0) {
			const char *po = cJSON_GetObjectItem(r, "PurchaseOrderNumber")->valuestring;
			const cJSON *h = find(&s, "msdyn_purchaseorders", "msdyn_name", po, NULL, NULL);
			const cJSON *l = NULL, *x;
			char g[37];
			assert_non_null(h);
			/* the CE line of the same header and line number */
			cJSON_ArrayForEach(x, s.all)
			{
				const cJSON *cr = cJSON_GetObjectItem(x, "record");
				char hg[37];
				if (strcmp(cJSON_GetObjectItem(x, "set")->valuestring, "msdyn_purchaseorderproducts") != 0)
					continue;
				bind_guid(cr, "msdyn_purchaseorder", hg);
				hg[36] = '\0';
				if (strcmp(hg, cJSON_GetObjectItem(h, "msdyn_purchaseorderid")->valuestring) == 0 &&
				    cJSON_GetObjectItem(cr, "msdyn_lineorder")->valuedouble ==
					    cJSON_GetObjectItem(r, "LineNumber")->valuedouble)
					l = cr;
			}
			assert_non_null(l);
			assert_true(cJSON_GetObjectItem(l, "msdyn_quantity")->valuedouble ==
				    cJSON_GetObjectItem(r, "OrderedPurchaseQuantity")->valuedouble);
			assert_true(cJSON_GetObjectItem(l, "msdyn_unitcost")->valuedouble ==
				    cJSON_GetObjectItem(r, "PurchasePrice")->valuedouble);
			assert_true(cJSON_GetObjectItem(l, "msdyn_lineamount")->valuedouble ==
				    cJSON_GetObjectItem(r, "LineAmount")->valuedouble);
			/* the line's product is the released product with the same item number */
			bind_guid(l, "msdyn_product", g);
			g[36] = '\0';
			assert_string_equal(cJSON_GetObjectItem(find(&s, "products", "productid", g, NULL, NULL),
								"msdyn_itemnumber")
						    ->valuestring,
					    cJSON_GetObjectItem(r, "ItemNumber")->valuestring);
			lines++;
		} else if (strcmp(set, "WarehousesOnHandV2") == 0) {
			const char *item = cJSON_GetObjectItem(r, "ItemNumber")->valuestring;
			const cJSON *p = find(&s, "products", "msdyn_itemnumber", item, NULL, NULL);
			const cJSON *x, *inv = NULL;
			char pg[37];
			assert_non_null(p);
			cJSON_ArrayForEach(x, s.all)
			{
				const cJSON *cr = cJSON_GetObjectItem(x, "record");
				if (strcmp(cJSON_GetObjectItem(x, "set")->valuestring, "msdyn_productinventories") != 0)
					continue;
				bind_guid(cr, "msdyn_product", pg);
				pg[36] = '\0';
				if (strcmp(pg, cJSON_GetObjectItem(p, "productid")->valuestring) == 0)
					inv = cr;
			}
			assert_non_null(inv);
			assert_true(cJSON_GetObjectItem(inv, "msdyn_qtyonhand")->valuedouble ==
				    cJSON_GetObjectItem(r, "OnHandQuantity")->valuedouble);
			assert_true(cJSON_GetObjectItem(inv, "msdyn_qtyavailable")->valuedouble ==
				    cJSON_GetObjectItem(r, "AvailableOnHandQuantity")->valuedouble);
			onhand++;
		} else if (strcmp(set, "CDSReleasedDistinctProducts") == 0) {
			const cJSON *p = find(&s, "products", "msdyn_productnumber",
					      cJSON_GetObjectItem(r, "ProductNumber")->valuestring, NULL, NULL);
			const char *type = cJSON_GetObjectItem(r, "ProductType")->valuestring;
			assert_non_null(p);
			assert_string_equal(cJSON_GetObjectItem(p, "name")->valuestring,
					    cJSON_GetObjectItem(r, "ProductName")->valuestring);
			assert_true(cJSON_GetObjectItem(p, "price")->valuedouble ==
				    cJSON_GetObjectItem(r, "SalesPrice")->valuedouble);
			/* dual-write value map: Item -> 1, Service -> 3 */
			assert_int_equal(cJSON_GetObjectItem(p, "producttypecode")->valueint,
					 strcmp(type, "Service") == 0 ? 3 : 1);
		} else if (strcmp(set, "PurchaseOrderHeadersV2") == 0) {
			const cJSON *h = find(&s, "msdyn_purchaseorders", "msdyn_name",
					      cJSON_GetObjectItem(r, "PurchaseOrderNumber")->valuestring, NULL, NULL);
			char vg[37];
			const cJSON *v;
			assert_non_null(h);
			bind_guid(h, "msdyn_vendor", vg);
			vg[36] = '\0';
			v = find(&s, "accounts", "accountid", vg, NULL, NULL);
			assert_non_null(v);
			assert_string_equal(cJSON_GetObjectItem(v, "accountnumber")->valuestring,
					    cJSON_GetObjectItem(r, "OrderVendorAccountNumber")->valuestring);
			assert_non_null(find(&s, "VendorsV2", "VendorAccountNumber",
					     cJSON_GetObjectItem(r, "OrderVendorAccountNumber")->valuestring, "dataAreaId",
					     cJSON_GetObjectItem(r, "dataAreaId")->valuestring));
			/* requested delivery date: same day on both sides */
			assert_memory_equal(cJSON_GetObjectItem(h, "msdyn_dateexpected")->valuestring,
					    cJSON_GetObjectItem(r, "RequestedDeliveryDate")->valuestring, 10);
		}
	}
	assert_int_equal(customers, 30);
	assert_true(lines >= 30);
	assert_true(onhand > 0);
	sink_free(&s);
}

static void test_options_and_stop(void **state)
{
	struct seed_options o;
	struct sink s;
	char err[256];
	enum seed_side side;
	static const char *const bad_comp[] = { "usmf", "USRT" };
	static const char *const dup_comp[] = { "usmf", "usmf" };
	static const char *const one_comp[] = { "ab12" };
	(void)state;

	assert_int_equal(seed_parse_side("both", &side), 0);
	assert_int_equal(side, SEED_SIDE_BOTH);
	assert_int_equal(seed_parse_side("fo", &side), 0);
	assert_int_equal(side, SEED_SIDE_FO);
	assert_int_equal(seed_parse_side("CE", &side), -1);

	seed_options_init(&o);
	assert_int_equal(o.per_table, 10);
	sink_init(&s);
	o.per_table = SEED_MAX_PER_TABLE + 1;
	assert_int_equal(seed_generate(&o, collect, &s, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "above the limit"));
	o.per_table = 2;
	o.companies = bad_comp;
	o.n_companies = 2;
	assert_int_equal(seed_generate(&o, collect, &s, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "\"USRT\""));
	o.companies = dup_comp;
	assert_int_equal(seed_generate(&o, collect, &s, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "given twice"));
	assert_int_equal(s.count, 0);

	/* the callback's value stops the run and comes back */
	o.companies = one_comp;
	o.n_companies = 1;
	s.stop_after = 5;
	assert_int_equal(seed_generate(&o, collect, &s, err, sizeof(err)), 42);
	assert_int_equal(s.count, 5);
	assert_non_null(strstr(err, "emit stopped"));
	sink_free(&s);

	/* one custom company: its code appears in the keys */
	sink_init(&s);
	assert_int_equal(seed_generate(&o, collect, &s, err, sizeof(err)), 0);
	assert_non_null(find(&s, "CustomersV3", "CustomerAccount", "CAB12-00001", "dataAreaId", "ab12"));
	assert_int_equal(count_set(&s, "LegalEntities"), 1);
	sink_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_seed_same_bytes),
		cmocka_unit_test(test_records_valid_and_lookups_resolve),
		cmocka_unit_test(test_sides_agree),
		cmocka_unit_test(test_options_and_stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
