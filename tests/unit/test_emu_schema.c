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

#define CE_PATH "tests/emulators/schemas/ce.json"
#define FO_PATH "tests/emulators/schemas/fo.json"

static struct schema *ce, *fo;

static int load_both(void **state)
{
	char err[512];
	(void)state;
	if (schema_load(CE_PATH, &ce, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	if (schema_load(FO_PATH, &fo, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	return 0;
}

static int free_both(void **state)
{
	(void)state;
	schema_free(ce);
	schema_free(fo);
	ce = fo = NULL;
	return 0;
}

/* ---- the shipped files ---- */

static void test_ce_file_has_seed_and_reference_tables(void **state)
{
	static const char *const sets[] = { "accounts", "products", "msdyn_customerassets", "msdyn_purchaseorders",
					    "msdyn_purchaseorderproducts", "msdyn_productinventories", "cdm_companies",
					    "transactioncurrencies", "uoms", "msdyn_warehouses", "msdyn_operationalsites",
					    "msdyn_customergroups", "msdyn_paymentterms", "msdyn_vendors" };
	const struct schema_entity *e;
	const struct schema_field *f;
	(void)state;

	assert_int_equal(ce->flavour, SCHEMA_CE);
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
		assert_non_null(schema_entity_by_set(ce, sets[i]));
	assert_null(schema_entity_by_set(ce, "Accounts")); /* case-sensitive, as OData */

	e = schema_entity_by_set(ce, "accounts");
	assert_ptr_equal(e, schema_entity_by_name(ce, "account"));
	assert_string_equal(e->id_field, "accountid");
	assert_string_equal(e->type_name, "Microsoft.Dynamics.CRM.account");
	assert_int_equal(e->primary_key.n_fields, 1);
	f = schema_field(e, "name");
	assert_non_null(f);
	assert_int_equal(f->max_length, 160);
	assert_true(f->required);
	assert_int_equal(schema_field(e, "accountnumber")->max_length, 20);
	assert_int_equal(schema_field(e, "customertypecode")->type, SCHEMA_T_PICKLIST);
	assert_string_equal(schema_option_by_value(schema_field(e, "customertypecode"), 3)->label, "Customer");
	assert_null(schema_option_by_value(schema_field(e, "customertypecode"), 13));

	/* account alternate key: accountnumber + company lookup, in any order, by name or _x_value */
	{
		const char *const k1[] = { "msdyn_company", "accountnumber" };
		const char *const k2[] = { "accountnumber", "_msdyn_company_value" };
		const char *const k3[] = { "accountnumber" };
		const char *const k4[] = { "accountid" };
		const char *const k5[] = { "accountnumber", "accountnumber" };
		assert_non_null(schema_key_match(e, k1, 2));
		assert_ptr_equal(schema_key_match(e, k1, 2), schema_key_match(e, k2, 2));
		assert_null(schema_key_match(e, k3, 1));
		assert_ptr_equal(schema_key_match(e, k4, 1), &e->primary_key);
		assert_null(schema_key_match(e, k5, 2));
	}

	/* navigation property names as documented (entities.md), not the logical names */
	e = schema_entity_by_set(ce, "msdyn_customerassets");
	f = schema_field_by_nav(e, "msdyn_parentasset_msdyn_customerasset");
	assert_non_null(f);
	assert_string_equal(f->name, "msdyn_parentasset");
	assert_string_equal(f->target, "msdyn_customerasset");
	assert_string_equal(f->value_name, "_msdyn_parentasset_value");
	assert_ptr_equal(schema_field_by_value_name(e, "_msdyn_account_value"), schema_field_by_nav(e, "msdyn_account"));
	assert_null(schema_field_by_nav(e, "msdyn_parentasset"));

	e = schema_entity_by_set(ce, "msdyn_purchaseorders");
	f = schema_field_by_nav(e, "msdyn_vendor");
	assert_string_equal(f->target, "account");
	assert_true(f->required);
	assert_int_equal(schema_option_by_value(schema_field(e, "msdyn_systemstatus"), 690970000)->value, 690970000);

	e = schema_entity_by_set(ce, "products");
	assert_string_equal(e->alt_keys[0].fields[0], "msdyn_productnumber");
	assert_non_null(schema_option_by_value(schema_field(e, "msdyn_fieldserviceproducttype"), 690970002));

	e = schema_entity_by_set(ce, "msdyn_productinventories");
	assert_true(schema_field_by_nav(e, "msdyn_warehouse")->required);
	assert_int_equal(schema_field(e, "msdyn_internalflags")->max_length, 1048576);
}

static void test_fo_file_has_seed_and_reference_tables(void **state)
{
	static const char *const sets[] = { "CustomersV3", "CDSReleasedDistinctProducts", "ReleasedProductsV2",
					    "PurchaseOrderHeadersV2", "PurchaseOrderLinesV2", "WarehousesOnHandV2",
					    "AssetMaintenanceAssetsV3", "AssetMaintenanceAssetsV2", "LegalEntities",
					    "Currencies", "UnitsOfMeasure", "Warehouses", "OperationalSitesV2",
					    "CustomerGroups", "PaymentTerms", "VendorsV2" };
	static const char *const onhand[] = { "dataAreaId",	       "ItemNumber",	    "ProductColorId",
					      "ProductConfigurationId", "ProductSizeId",     "ProductStyleId",
					      "ProductVersionId",	"InventorySiteId", "InventoryWarehouseId" };
	const struct schema_entity *e;
	const struct schema_enum *en;
	(void)state;

	assert_int_equal(fo->flavour, SCHEMA_FO);
	assert_string_equal(fo->default_company, "usmf");
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
		assert_non_null(schema_entity_by_set(fo, sets[i]));
	/* V2 and V3 asset set names serve one table */
	assert_ptr_equal(schema_entity_by_set(fo, "AssetMaintenanceAssetsV2"),
			 schema_entity_by_set(fo, "AssetMaintenanceAssetsV3"));

	e = schema_entity_by_set(fo, "WarehousesOnHandV2");
	assert_int_equal(e->primary_key.n_fields, 9);
	for (size_t i = 0; i < 9; i++) {
		assert_string_equal(e->primary_key.fields[i], onhand[i]);
		assert_true(schema_field(e, onhand[i])->is_key);
		assert_true(schema_field(e, onhand[i])->required);
	}
	assert_ptr_equal(schema_key_match(e, onhand, 9), &e->primary_key);
	assert_null(schema_key_match(e, onhand, 8));

	e = schema_entity_by_set(fo, "CustomersV3");
	assert_string_equal(e->company_field, "dataAreaId");
	assert_string_equal(e->primary_key.fields[0], "dataAreaId");
	assert_string_equal(e->primary_key.fields[1], "CustomerAccount");
	assert_int_equal(schema_field(e, "CreditLimit")->type, SCHEMA_T_DECIMAL);
	assert_false(schema_field(e, "CreditLimit")->nullable);
	assert_string_equal(schema_field(e, "OnHoldStatus")->enum_type->name, "CustVendorBlocked");

	e = schema_entity_by_set(fo, "PurchaseOrderLinesV2");
	assert_int_equal(e->primary_key.n_fields, 3);
	assert_int_equal(schema_field(e, "LineNumber")->type, SCHEMA_T_BIGINT);

	/* global entities have no company */
	assert_null(schema_entity_by_set(fo, "Currencies")->company_field);
	assert_string_equal(schema_entity_by_set(fo, "UnitsOfMeasure")->primary_key.fields[0], "UnitSymbol");

	en = schema_enum_by_name(fo, "PurchStatus");
	assert_non_null(en);
	assert_int_equal(schema_enum_member(en, "Canceled")->value, 4);
	assert_null(schema_enum_member(en, "canceled"));
	assert_int_equal(schema_enum_member(schema_enum_by_name(fo, "NoYes"), "Yes")->value, 1);
}

/* ---- strict loading ---- */

struct bad_case {
	const char *json;
	const char *expect; /* substring of the error */
};

static void test_load_rejects_bad_files(void **state)
{
	static const struct bad_case cases[] = {
		{ "{", "bad.json: $: not valid JSON" },
		{ "{\"flavour\":\"xx\",\"namespace\":\"N\",\"entities\":[]}", "flavour: must be \"ce\" or \"fo\"" },
		{ "{\"flavour\":\"ce\",\"namespace\":\"N\",\"entities\":[],\"extra\":1}", "$: unknown member \"extra\"" },
		{ "{\"flavour\":\"ce\",\"namespace\":\"N\",\"entities\":[]}", "entities: must be a non-empty array" },
		{ "{\"flavour\":\"ce\",\"namespace\":\"N\",\"entities\":[{\"logical_name\":\"a\",\"sets\":[\"as\"],"
		  "\"id\":\"aid\",\"fields\":[{\"name\":\"aid\",\"type\":\"guid\"},{\"name\":\"x\",\"type\":\"strin\"}]}]}",
		  "entities[0].fields[1]: unknown type \"strin\"" },
		{ "{\"flavour\":\"ce\",\"namespace\":\"N\",\"entities\":[{\"logical_name\":\"a\",\"sets\":[\"as\"],"
		  "\"id\":\"aid\",\"fields\":[{\"name\":\"aid\",\"type\":\"guid\"},{\"name\":\"x\",\"type\":\"string\"}]}]}",
		  "entities[0].fields[1]: \"max_length\" must be an integer" },
		{ "{\"flavour\":\"ce\",\"namespace\":\"N\",\"entities\":[{\"logical_name\":\"a\",\"sets\":[\"as\"],"
		  "\"id\":\"aid\",\"fields\":[{\"name\":\"aid\",\"type\":\"guid\"},{\"name\":\"l\",\"type\":\"lookup\","
		  "\"target\":\"nope\",\"nav\":\"l\"}]}]}",
		  "entities[0].fields[1]: lookup target \"nope\" is not an entity" },
		{ "{\"flavour\":\"ce\",\"namespace\":\"N\",\"entities\":[{\"logical_name\":\"a\",\"sets\":[\"as\"],"
		  "\"id\":\"aid\",\"alternate_keys\":[{\"name\":\"k\",\"fields\":[\"zz\"]}],"
		  "\"fields\":[{\"name\":\"aid\",\"type\":\"guid\"}]}]}",
		  "entities[0].alternate_keys[0].fields[0]: key field \"zz\" is not a field" },
		{ "{\"flavour\":\"ce\",\"namespace\":\"N\",\"entities\":[{\"logical_name\":\"a\",\"sets\":[\"as\"],"
		  "\"id\":\"aid\",\"fields\":[{\"name\":\"aid\",\"type\":\"guid\"}]},{\"logical_name\":\"b\","
		  "\"sets\":[\"as\"],\"id\":\"bid\",\"fields\":[{\"name\":\"bid\",\"type\":\"guid\"}]}]}",
		  "entities[1]: entity set \"as\" also used by entities[0]" },
		{ "{\"flavour\":\"ce\",\"namespace\":\"N\",\"entities\":[{\"logical_name\":\"a\",\"sets\":[\"as\"],"
		  "\"id\":\"aid\",\"fields\":[{\"name\":\"aid\",\"type\":\"guid\"},{\"name\":\"p\",\"type\":\"picklist\","
		  "\"options\":{\"A\":1},\"default\":2}]}]}",
		  "entities[0].fields[1]: \"default\" is not a valid value" },
		{ "{\"flavour\":\"fo\",\"namespace\":\"N\",\"entities\":[{\"logical_name\":\"a\",\"sets\":[\"As\"],"
		  "\"key\":[\"K\"],\"fields\":[{\"name\":\"K\",\"type\":\"string\",\"max_length\":4},"
		  "{\"name\":\"E\",\"type\":\"enum\",\"enum\":\"NoYes\"}]}]}",
		  "entities[0].fields[1]: enum type \"NoYes\" is not defined" },
		{ "{\"flavour\":\"fo\",\"namespace\":\"N\",\"entities\":[{\"logical_name\":\"a\",\"sets\":[\"As\"],"
		  "\"company\":\"dataAreaId\",\"key\":[\"K\",\"dataAreaId\"],\"fields\":[{\"name\":\"K\",\"type\":"
		  "\"string\",\"max_length\":4},{\"name\":\"dataAreaId\",\"type\":\"string\",\"max_length\":4}]}]}",
		  "entities[0]: company field \"dataAreaId\" must be the first key field" },
		{ "{\"flavour\":\"fo\",\"namespace\":\"N\",\"enums\":[{\"name\":\"E\",\"members\":{\"A\":1,\"B\":1}}],"
		  "\"entities\":[]}",
		  "enums[0].members: value 1 given twice" },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct schema *s = (struct schema *)1;
		char err[512] = "";
		int rc = schema_load_text(cases[i].json, strlen(cases[i].json), "bad.json", &s, err, sizeof(err));
		if (rc == 0 || strstr(err, cases[i].expect) == NULL || strncmp(err, "bad.json: ", 10) != 0)
			fail_msg("case %zu: rc=%d err=\"%s\", expected \"%s\"", i, rc, err, cases[i].expect);
		assert_null(s);
	}
	{
		struct schema *s;
		char err[512];
		assert_int_equal(schema_load("tests/emulators/schemas/nope.json", &s, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "nope.json: cannot open"));
	}
}

/* ---- validation ---- */

static int validate(struct schema *s, const char *set, const char *json, enum schema_op op, struct schema_error *err)
{
	cJSON *body = cJSON_Parse(json);
	int rc;

	assert_non_null(body);
	memset(err, 0, sizeof(*err));
	rc = schema_validate(s, schema_entity_by_set(s, set), body, op, err);
	cJSON_Delete(body);
	return rc;
}

static void test_ce_valid_bodies_pass(void **state)
{
	struct schema_error err;
	(void)state;

	assert_int_equal(validate(ce, "accounts",
				  "{\"@odata.type\":\"Microsoft.Dynamics.CRM.account\",\"name\":\"Contoso\","
				  "\"accountnumber\":\"US-001\",\"creditlimit\":1000.5,\"customertypecode\":3,"
				  "\"creditonhold\":false,\"address1_latitude\":47.6,"
				  "\"msdyn_company@odata.bind\":\"/cdm_companies(cdm_companycode='usmf')\","
				  "\"parentaccountid@odata.bind\":null}",
				  SCHEMA_OP_CREATE, &err),
			 0);
	/* update need not carry required fields */
	assert_int_equal(validate(ce, "accounts", "{\"telephone1\":\"555-0100\"}", SCHEMA_OP_UPDATE, &err), 0);
	/* dates, GUIDs */
	assert_int_equal(validate(ce, "msdyn_purchaseorders",
				  "{\"msdyn_name\":\"PO-1\",\"msdyn_vendor@odata.bind\":\"/accounts(00000000-0000-0000-0000-000000000001)\","
				  "\"transactioncurrencyid@odata.bind\":\"/transactioncurrencies(isocurrencycode='USD')\","
				  "\"msdyn_company@odata.bind\":\"/cdm_companies(cdm_companycode='usmf')\","
				  "\"msdyn_purchaseorderid\":\"6d81597f-0f9f-e711-8122-000d3aa2331c\","
				  "\"msdyn_dateexpected\":\"2024-02-29\",\"msdyn_systemstatus\":690970001}",
				  SCHEMA_OP_CREATE, &err),
			 0);
	/* 160 characters of two-byte UTF-8 are 160 characters */
	{
		char body[1024];
		size_t n = 0;
		n += (size_t)snprintf(body + n, sizeof(body) - n, "{\"name\":\"");
		for (int i = 0; i < 160; i++)
			n += (size_t)snprintf(body + n, sizeof(body) - n, "\xc3\xa9");
		snprintf(body + n, sizeof(body) - n, "\"}");
		assert_int_equal(validate(ce, "accounts", body, SCHEMA_OP_UPDATE, &err), 0);
	}
}

static void test_ce_unknown_property(void **state)
{
	struct schema_error err;
	(void)state;

	assert_int_equal(validate(ce, "accounts", "{\"name\":\"A\",\"nmae\":\"B\"}", SCHEMA_OP_UPDATE, &err), -1);
	assert_int_equal(err.status, 400);
	assert_string_equal(err.code, "0x80060888");
	assert_string_equal(err.message, "Could not find a property named 'nmae' on type 'Microsoft.Dynamics.CRM.account'.");
	/* a lookup's logical name that differs from its navigation property is not a property */
	assert_int_equal(validate(ce, "msdyn_customerassets", "{\"msdyn_parentasset@odata.bind\":\"/msdyn_customerassets(00000000-0000-0000-0000-000000000001)\"}",
				  SCHEMA_OP_UPDATE, &err),
			 -1);
	assert_string_equal(err.code, "0x80060888");
	assert_non_null(strstr(err.message, "An undeclared property 'msdyn_parentasset' which only has property annotations"));
}

static void test_ce_too_long(void **state)
{
	struct schema_error err;
	char body[400];
	(void)state;

	snprintf(body, sizeof(body), "{\"name\":\"%0161d\"}", 0);
	assert_int_equal(validate(ce, "accounts", body, SCHEMA_OP_UPDATE, &err), -1);
	assert_int_equal(err.status, 400);
	assert_string_equal(err.code, "0x80044331");
	assert_string_equal(err.message, "A validation error occurred.  The length of the 'name' attribute of the 'account' "
					 "entity exceeded the maximum allowed length of '160'.");
	/* a character outside the BMP counts twice, as in .NET */
	{
		char b2[512];
		size_t n = (size_t)snprintf(b2, sizeof(b2), "{\"accountnumber\":\"%019d", 0);
		snprintf(b2 + n, sizeof(b2) - n, "\xf0\x9f\x98\x80\"}");
		assert_int_equal(validate(ce, "accounts", b2, SCHEMA_OP_UPDATE, &err), -1);
		assert_string_equal(err.code, "0x80044331");
		assert_non_null(strstr(err.message, "'accountnumber'"));
	}
}

static void test_ce_bad_option_value(void **state)
{
	struct schema_error err;
	(void)state;

	assert_int_equal(validate(ce, "accounts", "{\"customertypecode\":99}", SCHEMA_OP_UPDATE, &err), -1);
	assert_int_equal(err.status, 400);
	assert_string_equal(err.code, "0x8004431a");
	assert_string_equal(err.message, "A validation error occurred.  The value 99 of 'customertypecode' on record of type "
					 "'account' is outside the valid range. Accepted Values: 1,2,3,4,5,6,7,8,9,10,11,12");
	/* state codes are checked the same way */
	assert_int_equal(validate(ce, "products", "{\"statecode\":7}", SCHEMA_OP_UPDATE, &err), -1);
	assert_string_equal(err.code, "0x8004431a");
	/* numeric range */
	assert_int_equal(validate(ce, "accounts", "{\"address1_latitude\":91}", SCHEMA_OP_UPDATE, &err), -1);
	assert_string_equal(err.code, "0x8004431a");
	assert_non_null(strstr(err.message, "Accepted range: -90 to 90"));
}

static void test_ce_wrong_type(void **state)
{
	static const char *const bodies[] = {
		"{\"creditlimit\":\"lots\"}", "{\"name\":12}",		   "{\"creditonhold\":\"yes\"}",
		"{\"customertypecode\":3.5}", "{\"accountid\":\"not-a-guid\"}", "{\"name\":{\"a\":1}}",
	};
	struct schema_error err;
	(void)state;

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		assert_int_equal(validate(ce, "accounts", bodies[i], SCHEMA_OP_UPDATE, &err), -1);
		assert_int_equal(err.status, 400);
		assert_string_equal(err.code, "0x80048d19");
		assert_non_null(strstr(err.message, "Error identified in Payload provided by the user for Entity :'accounts'"));
	}
	validate(ce, "accounts", bodies[0], SCHEMA_OP_UPDATE, &err);
	assert_non_null(strstr(err.message, "Cannot convert the literal 'lots' to the expected type 'Edm.Decimal'."));
	validate(ce, "accounts", bodies[5], SCHEMA_OP_UPDATE, &err);
	assert_non_null(strstr(err.message, "An unexpected 'StartObject' node was found for property named 'name'"));
	/* DateOnly takes a date, not a date-time; February 30th does not exist */
	assert_int_equal(validate(ce, "msdyn_purchaseorders", "{\"msdyn_dateexpected\":\"2025-02-30\"}", SCHEMA_OP_UPDATE, &err), -1);
	assert_non_null(strstr(err.message, "'Edm.Date'"));
	/* a lookup set directly instead of through @odata.bind */
	assert_int_equal(validate(ce, "msdyn_customerassets", "{\"msdyn_account\":\"00000000-0000-0000-0000-000000000001\"}",
				  SCHEMA_OP_UPDATE, &err),
			 -1);
	assert_string_equal(err.code, "0x80048d19");
	assert_non_null(strstr(err.message, "navigation property 'msdyn_account'"));
	assert_int_equal(validate(ce, "accounts", "{\"msdyn_company@odata.bind\":5}", SCHEMA_OP_UPDATE, &err), -1);
	assert_string_equal(err.code, "0x80048d19");
}

static void test_ce_required_missing_on_create(void **state)
{
	struct schema_error err;
	(void)state;

	assert_int_equal(validate(ce, "accounts", "{\"accountnumber\":\"US-001\"}", SCHEMA_OP_CREATE, &err), -1);
	assert_int_equal(err.status, 400);
	assert_string_equal(err.code, "0x80040203");
	assert_string_equal(err.message, "A validation error occurred.  The value for the required attribute 'name' of the "
					 "'account' entity is missing.");
	/* an empty string is null in Dataverse */
	assert_int_equal(validate(ce, "accounts", "{\"name\":\"\"}", SCHEMA_OP_CREATE, &err), -1);
	assert_string_equal(err.code, "0x80040203");
	/* a required lookup must be bound */
	assert_int_equal(validate(ce, "msdyn_purchaseorders",
				  "{\"msdyn_name\":\"PO-1\",\"transactioncurrencyid@odata.bind\":\"/transactioncurrencies(isocurrencycode='USD')\","
				  "\"msdyn_company@odata.bind\":\"/cdm_companies(cdm_companycode='usmf')\"}",
				  SCHEMA_OP_CREATE, &err),
			 -1);
	assert_non_null(strstr(err.message, "'msdyn_vendor'"));
	/* clearing a required field on update is refused as well */
	assert_int_equal(validate(ce, "accounts", "{\"name\":null}", SCHEMA_OP_UPDATE, &err), -1);
	assert_string_equal(err.code, "0x80040203");
}

static void test_ce_read_only(void **state)
{
	struct schema_error err;
	(void)state;

	assert_int_equal(validate(ce, "accounts", "{\"creditlimit_base\":5}", SCHEMA_OP_UPDATE, &err), -1);
	assert_int_equal(err.status, 400);
	assert_string_equal(err.code, "0x80040203");
	assert_string_equal(err.message, "The 'creditlimit_base' attribute of the 'account' entity is not valid for update.");
	assert_int_equal(validate(ce, "accounts", "{\"name\":\"A\",\"versionnumber\":5}", SCHEMA_OP_CREATE, &err), -1);
	assert_non_null(strstr(err.message, "'versionnumber'"));
	assert_non_null(strstr(err.message, "not valid for create"));
	/* the read name of a lookup */
	assert_int_equal(validate(ce, "msdyn_customerassets",
				  "{\"_msdyn_account_value\":\"00000000-0000-0000-0000-000000000001\"}", SCHEMA_OP_UPDATE, &err),
			 -1);
	assert_string_equal(err.code, "0x80040203");
}

static void test_fo_validation(void **state)
{
	struct schema_error err;
	(void)state;

	assert_int_equal(validate(fo, "CustomersV3",
				  "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"US-001\",\"OrganizationName\":\"Contoso\","
				  "\"CreditLimit\":100,\"OnHoldStatus\":\"No\",\"AddressValidFrom\":\"2024-01-01T00:00:00Z\"}",
				  SCHEMA_OP_CREATE, &err),
			 0);
	/* missing key field on create */
	assert_int_equal(validate(fo, "CustomersV3", "{\"dataAreaId\":\"usmf\",\"OrganizationName\":\"X\"}", SCHEMA_OP_CREATE, &err), -1);
	assert_int_equal(err.status, 400);
	assert_string_equal(err.message, "An error has occurred.");
	assert_string_equal(err.inner, "Write failed for table row of type 'CustomerV3'. Infolog: Warning: Field "
				       "'Customer account' must be filled in.");
	/* an empty company */
	assert_int_equal(validate(fo, "CustomersV3", "{\"dataAreaId\":\"\",\"CustomerAccount\":\"A\"}", SCHEMA_OP_CREATE, &err), -1);
	assert_non_null(strstr(err.inner, "Field 'Company' must be filled in."));
	/* wrong enum member */
	assert_int_equal(validate(fo, "CustomersV3", "{\"OnHoldStatus\":\"Maybe\"}", SCHEMA_OP_UPDATE, &err), -1);
	assert_string_equal(err.inner, "The value 'Maybe' is not a valid member of enum type "
				       "'Microsoft.Dynamics.DataEntities.CustVendorBlocked'.");
	assert_string_equal(err.inner_type, "Microsoft.OData.ODataException");
	/* the integer value of a member is accepted, as OData does */
	assert_int_equal(validate(fo, "CustomersV3", "{\"OnHoldStatus\":\"2\"}", SCHEMA_OP_UPDATE, &err), 0);
	/* wrong type */
	assert_int_equal(validate(fo, "CustomersV3", "{\"CreditLimit\":\"much\"}", SCHEMA_OP_UPDATE, &err), -1);
	assert_string_equal(err.inner, "Cannot convert the literal 'much' to the expected type 'Edm.Decimal'.");
	/* null where Nullable=false */
	assert_int_equal(validate(fo, "CustomersV3", "{\"CreditLimit\":null}", SCHEMA_OP_UPDATE, &err), -1);
	assert_non_null(strstr(err.inner, "A null value was found for the property named 'CreditLimit'"));
	/* unknown property */
	assert_int_equal(validate(fo, "CustomersV3", "{\"Nope\":1}", SCHEMA_OP_UPDATE, &err), -1);
	assert_non_null(strstr(err.inner, "The property 'Nope' does not exist on type 'Microsoft.Dynamics.DataEntities.CustomerV3'"));
	/* no @odata.bind on F&O */
	assert_int_equal(validate(fo, "CustomersV3", "{\"x@odata.bind\":\"/y\"}", SCHEMA_OP_UPDATE, &err), -1);
	/* on-hand rows: blank product dimensions are valid key parts, all nine are needed */
	assert_int_equal(validate(fo, "WarehousesOnHandV2",
				  "{\"dataAreaId\":\"usmf\",\"ItemNumber\":\"A0001\",\"ProductColorId\":\"\","
				  "\"ProductConfigurationId\":\"\",\"ProductSizeId\":\"\",\"ProductStyleId\":\"\","
				  "\"ProductVersionId\":\"\",\"InventorySiteId\":\"1\",\"InventoryWarehouseId\":\"11\","
				  "\"OnHandQuantity\":5}",
				  SCHEMA_OP_CREATE, &err),
			 0);
	assert_int_equal(validate(fo, "WarehousesOnHandV2",
				  "{\"dataAreaId\":\"usmf\",\"ItemNumber\":\"A0001\",\"ProductColorId\":\"\","
				  "\"ProductConfigurationId\":\"\",\"ProductSizeId\":\"\",\"ProductStyleId\":\"\","
				  "\"ProductVersionId\":\"\",\"InventorySiteId\":\"1\"}",
				  SCHEMA_OP_CREATE, &err),
			 -1);
	assert_non_null(strstr(err.inner, "Field 'Warehouse' must be filled in."));
	/* too long (EDT size) */
	assert_int_equal(validate(fo, "CustomersV3", "{\"dataAreaId\":\"usmf1\"}", SCHEMA_OP_UPDATE, &err), -1);
	assert_non_null(strstr(err.inner, "the maximum is 4"));
	/* date-time needs an offset */
	assert_int_equal(validate(fo, "PurchaseOrderHeadersV2", "{\"RequestedDeliveryDate\":\"2025-01-31T00:00:00\"}",
				  SCHEMA_OP_UPDATE, &err),
			 -1);
	assert_int_equal(validate(fo, "PurchaseOrderHeadersV2", "{\"RequestedDeliveryDate\":\"2025-01-31T00:00:00.1234567+01:00\"}",
				  SCHEMA_OP_UPDATE, &err),
			 0);
}

static void test_error_bodies(void **state)
{
	struct schema_error err;
	cJSON *b;
	char *s;
	(void)state;

	schema_error_std(SCHEMA_CE, SCHEMA_E_NOT_FOUND, schema_entity_by_set(ce, "accounts"),
			 "6d81597f-0f9f-e711-8122-000d3aa2331c", &err);
	assert_int_equal(err.status, 404);
	s = schema_error_json(SCHEMA_CE, &err);
	assert_string_equal(s, "{\"error\":{\"code\":\"0x80040217\",\"message\":\"account With Id = "
			       "6d81597f-0f9f-e711-8122-000d3aa2331c Does Not Exist\"}}");
	free(s);

	schema_error_std(SCHEMA_CE, SCHEMA_E_ALREADY_EXISTS, NULL, NULL, &err);
	assert_int_equal(err.status, 412);
	assert_string_equal(err.message, "A record with matching key values already exists.");
	schema_error_std(SCHEMA_CE, SCHEMA_E_VERSION_MISMATCH, NULL, NULL, &err);
	assert_int_equal(err.status, 412);
	assert_string_equal(err.message, "The version of the existing record doesn't match the RowVersion property provided.");
	schema_error_std(SCHEMA_CE, SCHEMA_E_THROTTLED_REQUESTS, NULL, NULL, &err);
	assert_int_equal(err.status, 429);
	assert_string_equal(err.code, "0x80072322");
	assert_string_equal(err.message, "Number of requests exceeded the limit of 6000 over time window of 300 seconds.");
	schema_error_std(SCHEMA_CE, SCHEMA_E_THROTTLED_CONCURRENCY, NULL, "2", &err);
	assert_string_equal(err.code, "0x80072326");
	schema_error_std(SCHEMA_CE, SCHEMA_E_UNAUTHORIZED, NULL, NULL, &err);
	assert_int_equal(err.status, 401);
	schema_error_std(SCHEMA_CE, SCHEMA_E_BAD_KEY, schema_entity_by_set(ce, "accounts"), NULL, &err);
	assert_non_null(strstr(err.message, "The key in the request URI is not valid for resource 'Microsoft.Dynamics.CRM.account'"));

	/* F&O: generic message, infolog in innererror */
	schema_error_std(SCHEMA_FO, SCHEMA_E_ALREADY_EXISTS, schema_entity_by_set(fo, "CustomersV3"),
			 "Customer account: US-001, usmf", &err);
	b = schema_error_body(SCHEMA_FO, &err);
	assert_non_null(b);
	{
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(b, "error");
		const cJSON *in = cJSON_GetObjectItemCaseSensitive(e, "innererror");
		assert_string_equal(cJSON_GetObjectItemCaseSensitive(e, "code")->valuestring, "");
		assert_string_equal(cJSON_GetObjectItemCaseSensitive(e, "message")->valuestring, "An error has occurred.");
		assert_non_null(strstr(cJSON_GetObjectItemCaseSensitive(in, "message")->valuestring, "The record already exists."));
		assert_string_equal(cJSON_GetObjectItemCaseSensitive(in, "type")->valuestring,
				    "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException");
		assert_non_null(cJSON_GetObjectItemCaseSensitive(in, "stacktrace"));
	}
	cJSON_Delete(b);
	/* no innererror when there is no inner text */
	schema_error_set(&err, 429, "", "Too many");
	s = schema_error_json(SCHEMA_FO, &err);
	assert_string_equal(s, "{\"error\":{\"code\":\"\",\"message\":\"Too many\"}}");
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ce_file_has_seed_and_reference_tables),
		cmocka_unit_test(test_fo_file_has_seed_and_reference_tables),
		cmocka_unit_test(test_load_rejects_bad_files),
		cmocka_unit_test(test_ce_valid_bodies_pass),
		cmocka_unit_test(test_ce_unknown_property),
		cmocka_unit_test(test_ce_too_long),
		cmocka_unit_test(test_ce_bad_option_value),
		cmocka_unit_test(test_ce_wrong_type),
		cmocka_unit_test(test_ce_required_missing_on_create),
		cmocka_unit_test(test_ce_read_only),
		cmocka_unit_test(test_fo_validation),
		cmocka_unit_test(test_error_bodies),
	};
	return cmocka_run_group_tests(tests, load_both, free_both);
}
