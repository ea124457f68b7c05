/* capture_ce: delta pages and webhook bodies (tests/unit/data/capture/) into events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture_ce.h"
#include "event.h"
#include "log.h"

#define DATA "tests/unit/data/capture/"

static char err[1024];

static char *slurp(const char *name, size_t *len)
{
	char path[256];
	snprintf(path, sizeof(path), DATA "%s", name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s (run from the repository root)", path);
	char *buf = malloc(1 << 20);
	assert_non_null(buf);
	*len = fread(buf, 1, (1 << 20) - 1, f);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

static struct capture_ce_table account(void)
{
	struct capture_ce_table t;
	assert_int_equal(0, capture_ce_table_parse("account@accounts:accountnumber+_msdyn_company_value", &t, err,
						   sizeof(err)));
	return t;
}

static void test_table_spec(void **state)
{
	(void)state;
	struct capture_ce_table t = account();
	assert_string_equal("account", t.logical);
	assert_string_equal("accounts", t.set);
	assert_string_equal("accountid", t.id_field);
	assert_int_equal(2, t.nalt);
	assert_string_equal("_msdyn_company_value", t.alt[1]);
	capture_ce_table_clear(&t);
	assert_int_equal(0, capture_ce_table_parse("product@products", &t, err, sizeof(err)));
	assert_int_equal(0, t.nalt);
	capture_ce_table_clear(&t);
	const char *bad[] = { "accounts", "@accounts", "account@", "acc-ount@accounts", "account@accounts:",
			      "account@accounts:a++b", "account@accounts:a+b+c+d+e+f+g+h+i" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(-1, capture_ce_table_parse(bad[i], &t, err, sizeof(err)));
		assert_non_null(strstr(err, "table"));
		assert_null(t.logical);
	}
}

static void test_dates(void **state)
{
	(void)state;
	long long ms;
	char buf[40];
	assert_int_equal(0, capture_ce_parse_date("/Date(1506409448000-0700)/", &ms));
	assert_int_equal(1506409448000LL, ms);
	assert_int_equal(0, capture_ce_parse_date("/Date(1506384247000)/", &ms));
	assert_string_equal("2017-09-26T00:04:07Z", capture_ce_format_time(ms, buf, sizeof(buf)));
	assert_int_equal(0, capture_ce_parse_date("/Date(-1000)/", &ms));
	assert_string_equal("1969-12-31T23:59:59Z", capture_ce_format_time(ms, buf, sizeof(buf)));
	assert_int_equal(-1, capture_ce_parse_date("/Date(12a)/", &ms));
	assert_int_equal(-1, capture_ce_parse_date("/Date(12+07)/", &ms));
	assert_int_equal(-1, capture_ce_parse_date("Date(12)", &ms));
	assert_int_equal(0, capture_ce_parse_iso("2017-09-26T00:04:07Z", &ms));
	assert_int_equal(1506384247000LL, ms);
	assert_int_equal(0, capture_ce_parse_iso("2017-09-26T02:04:07.5+02:00", &ms));
	assert_int_equal(1506384247500LL, ms);
	assert_int_equal(-1, capture_ce_parse_iso("2017-09-26", &ms));
}

/* The same change read through the webhook (PostImage) and through change tracking gives the same
 * event: id, key, version, image. */
static void test_webhook_and_delta_agree(void **state)
{
	(void)state;
	struct capture_ce_table t = account();
	struct capture_ce_ctx ctx = { "prod", "75c2dd85-e89e-e711-8122-000d3aa2331c" };
	size_t len;
	char *body = slurp("ce_webhook_update.json", &len);
	struct capture_ce_hook h;
	assert_int_equal(0, capture_ce_webhook_parse(&ctx, &t, 1, body, len, 0, &h, err, sizeof(err)));
	assert_int_equal(CAPTURE_CE_HOOK_EVENT, h.action);
	assert_int_equal(EVENT_OP_UPDATE, h.ev.op);
	assert_int_equal(915244, h.ev.source.version);
	assert_int_equal(1506384247000LL, h.ev.source.ts);
	assert_string_equal("b374239d-4233-41a9-8b17-a86cb4f737b5", h.correlation_id);
	assert_int_equal(0, h.in_transaction);
	/* the initiating user is the integration's own: marked */
	assert_string_equal("75c2dd85-e89e-e711-8122-000d3aa2331c", h.ev.source.user);
	assert_int_equal(1, h.ev.source.own);
	char *key = cJSON_PrintUnformatted(h.ev.key);
	assert_string_equal("{\"accountid\":\"6d81597f-0f9f-e711-8122-000d3aa2331c\",\"accountnumber\":\"US-001\","
			    "\"_msdyn_company_value\":\"0a1b2c3d-0000-0000-0000-000000000001\"}",
			    key);
	free(key);
	const cJSON *d = h.ev.data;
	assert_int_equal(3, cJSON_GetObjectItem(d, "customertypecode")->valuedouble);
	assert_true(cJSON_GetObjectItem(d, "creditlimit")->valuedouble == 12500.5);
	assert_string_equal("2017-09-26T00:04:07Z", cJSON_GetObjectItem(d, "modifiedon")->valuestring);
	assert_null(cJSON_GetObjectItem(d, "fax"));           /* nulls omitted */
	assert_null(cJSON_GetObjectItem(d, "versionnumber")); /* it is source.version */
	assert_null(cJSON_GetObjectItem(d, "msdyn_company"));
	free(body);

	body = slurp("ce_delta_same_change.json", &len);
	struct capture_ce_delta page;
	assert_int_equal(0, capture_ce_delta_parse(&t, body, len, &page, err, sizeof(err)));
	assert_int_equal(2, page.n);
	assert_null(page.next_link);
	assert_string_equal("http://org/api/data/v9.2/accounts?$deltatoken=919058", page.delta_link);
	assert_int_equal(0, page.entries[0].deleted);
	assert_int_equal(1, page.entries[1].deleted);
	assert_string_equal("2e451703-c686-e711-80e5-00155db19e6d", page.entries[1].id);
	struct event ev;
	assert_int_equal(0, capture_ce_row_event(&ctx, &t, page.entries[0].row, 0, &ev, err, sizeof(err)));
	assert_int_equal(EVENT_OP_UPDATE, ev.op); /* createdon != modifiedon */
	assert_string_equal(h.ev.id, ev.id);
	assert_true(cJSON_Compare(h.ev.key, ev.key, 1));
	assert_true(cJSON_Compare(h.ev.data, ev.data, 1));
	assert_null(ev.source.user); /* the row has no _modifiedby_value */
	event_clear(&ev);
	capture_ce_delta_free(&page);
	capture_ce_hook_clear(&h);
	free(body);
	capture_ce_table_clear(&t);
}

static void test_webhook_create_from_target(void **state)
{
	(void)state;
	struct capture_ce_table t;
	assert_int_equal(0, capture_ce_table_parse("msdyn_purchaseorder@msdyn_purchaseorders:msdyn_name", &t, err,
						   sizeof(err)));
	struct capture_ce_ctx ctx = { "prod", NULL };
	size_t len;
	char *body = slurp("ce_webhook_create_target.json", &len);
	struct capture_ce_hook h;
	assert_int_equal(0, capture_ce_webhook_parse(&ctx, &t, 1, body, len, 0, &h, err, sizeof(err)));
	assert_int_equal(CAPTURE_CE_HOOK_EVENT, h.action);
	assert_int_equal(EVENT_OP_CREATE, h.ev.op);
	assert_int_equal(5001, h.ev.source.version); /* versionnumber given as a string */
	assert_int_equal(1, h.in_transaction);
	assert_string_equal("c0ffee00-0000-0000-0000-000000000001", h.correlation_id);
	assert_int_equal(1738281600123LL, h.ev.source.ts); /* no modifiedon: the operation time */
	assert_string_equal("2025-01-31T00:00:00Z",
			    cJSON_GetObjectItem(h.ev.data, "msdyn_purchaseorderdate")->valuestring);
	assert_string_equal("PO-0001", cJSON_GetObjectItem(h.ev.key, "msdyn_name")->valuestring);
	assert_int_equal(0, h.ev.source.own);
	char e2[256];
	assert_int_equal(0, event_validate(&h.ev, 0, e2, sizeof(e2)));
	capture_ce_hook_clear(&h);
	free(body);
	capture_ce_table_clear(&t);
}

/* A date-only column: the webhook gives "/Date(midnight)/", change tracking "YYYY-MM-DD"; both
 * images carry the same midnight UTC date-time, so the events are equal. A text value that is
 * not a whole date is left alone. */
static void test_date_only_same_on_both_paths(void **state)
{
	(void)state;
	struct capture_ce_table t;
	assert_int_equal(0, capture_ce_table_parse("msdyn_purchaseorder@msdyn_purchaseorders:msdyn_name", &t, err,
						   sizeof(err)));
	struct capture_ce_ctx ctx = { "prod", NULL };
	size_t len;
	char *body = slurp("ce_webhook_create_target.json", &len);
	struct capture_ce_hook h;
	assert_int_equal(0, capture_ce_webhook_parse(&ctx, &t, 1, body, len, 0, &h, err, sizeof(err)));
	/* the same row as change tracking returns it */
	cJSON *row = cJSON_Duplicate(h.ev.data, 1);
	cJSON_ReplaceItemInObject(row, "msdyn_purchaseorderdate", cJSON_CreateString("2025-01-31"));
	cJSON_AddStringToObject(row, "msdyn_description", "2025-01-31 delivery");
	cJSON_AddNumberToObject(row, "versionnumber", (double)h.ev.source.version);
	cJSON_AddStringToObject(row, "@odata.etag", "W/\"5001\"");
	struct event ev;
	assert_int_equal(0, capture_ce_row_event(&ctx, &t, row, EVENT_OP_CREATE, &ev, err, sizeof(err)));
	assert_string_equal("2025-01-31T00:00:00Z", cJSON_GetObjectItem(ev.data, "msdyn_purchaseorderdate")->valuestring);
	assert_string_equal("2025-01-31 delivery", cJSON_GetObjectItem(ev.data, "msdyn_description")->valuestring);
	cJSON_DeleteItemFromObject(ev.data, "msdyn_description");
	assert_true(cJSON_Compare(h.ev.data, ev.data, 1));
	assert_string_equal(h.ev.id, ev.id);
	event_clear(&ev);
	cJSON_Delete(row);
	capture_ce_hook_clear(&h);
	free(body);
	capture_ce_table_clear(&t);
}

static void test_webhook_delete_and_stripped(void **state)
{
	(void)state;
	struct capture_ce_table t = account();
	struct capture_ce_ctx ctx = { "prod", NULL };
	size_t len;
	char *body = slurp("ce_webhook_delete.json", &len);
	struct capture_ce_hook h;
	assert_int_equal(0, capture_ce_webhook_parse(&ctx, &t, 1, body, len, 0, &h, err, sizeof(err)));
	assert_int_equal(CAPTURE_CE_HOOK_DELETE, h.action);
	assert_int_equal(EVENT_OP_DELETE, h.ev.op);
	assert_null(h.ev.data);
	assert_string_equal("6d81597f-0f9f-e711-8122-000d3aa2331c",
			    cJSON_GetObjectItem(h.ev.key, "accountid")->valuestring);
	assert_int_equal(0, h.ev.source.version); /* no pre-image: the record table decides */
	capture_ce_hook_clear(&h);
	free(body);

	/* a pre-image gives the lowest version the delete may get: its version + 1 */
	body = slurp("ce_webhook_delete_preimage.json", &len);
	assert_int_equal(0, capture_ce_webhook_parse(&ctx, &t, 1, body, len, 0, &h, err, sizeof(err)));
	assert_int_equal(CAPTURE_CE_HOOK_DELETE, h.action);
	assert_int_equal(4712, h.ev.source.version);
	capture_ce_hook_clear(&h);
	/* without the versionnumber attribute the image's RowVersion serves */
	char *cut = strstr(body, ",\n   {\"key\":\"versionnumber\",\"value\":4711}");
	assert_non_null(cut);
	const char *rest = strchr(cut + 1, '}') + 1;
	memmove(cut, rest, strlen(rest) + 1);
	assert_int_equal(0, capture_ce_webhook_parse(&ctx, &t, 1, body, strlen(body), 0, &h, err, sizeof(err)));
	assert_int_equal(4712, h.ev.source.version);
	capture_ce_hook_clear(&h);
	free(body);

	body = slurp("ce_webhook_stripped.json", &len);
	assert_int_equal(0, capture_ce_webhook_parse(&ctx, &t, 1, body, len, 1, &h, err, sizeof(err)));
	assert_int_equal(CAPTURE_CE_HOOK_REREAD, h.action);
	assert_int_equal(EVENT_OP_UPDATE, h.op);
	assert_string_equal("6d81597f-0f9f-e711-8122-000d3aa2331c", h.id);
	capture_ce_hook_clear(&h);
	/* the same body without the size header is not a RemoteExecutionContext we can use */
	assert_int_equal(-1, capture_ce_webhook_parse(&ctx, &t, 1, body, len, 0, &h, err, sizeof(err)));
	assert_non_null(strstr(err, "InputParameters"));
	free(body);
	capture_ce_table_clear(&t);
}

static void test_webhook_rejections(void **state)
{
	(void)state;
	struct capture_ce_table t = account();
	struct capture_ce_ctx ctx = { "prod", NULL };
	struct capture_ce_hook h;
	struct {
		const char *body;
		const char *reason;
	} cases[] = {
		{ "", "body: not valid JSON at byte 0" },
		{ "{\"MessageName\":\"Update\"", "not valid JSON at byte 23" },
		{ "{\"a\":01}", "not valid JSON" },
		{ "\xff\xfe", "not valid UTF-8 at byte 0" },
		{ "[]", "not a RemoteExecutionContext" },
		{ "{}", "MessageName: missing" },
		{ "{\"MessageName\":\"Assign\",\"PrimaryEntityName\":\"account\"}", "\"Assign\" is not captured" },
		{ "{\"MessageName\":\"Update\",\"PrimaryEntityName\":\"contact\"}", "table \"contact\" is not captured" },
		{ "{\"MessageName\":\"Update\",\"PrimaryEntityName\":\"account\",\"PrimaryEntityId\":\"x\"}",
		  "PrimaryEntityId" },
		{ "{\"MessageName\":\"Create\",\"PrimaryEntityName\":\"account\",\"PrimaryEntityId\":"
		  "\"6d81597f-0f9f-e711-8122-000d3aa2331c\",\"InputParameters\":[{\"key\":\"Target\",\"value\":"
		  "{\"Attributes\":[{\"key\":\"a b\",\"value\":1}]}}]}",
		  "Attributes" },
		{ "{\"MessageName\":\"Create\",\"PrimaryEntityName\":\"account\",\"PrimaryEntityId\":"
		  "\"6d81597f-0f9f-e711-8122-000d3aa2331c\",\"InputParameters\":[{\"key\":\"Target\",\"value\":"
		  "{\"Attributes\":[{\"key\":\"o\",\"value\":{\"__type\":\"Money:x\",\"Value\":\"1\"}}]}}]}",
		  "Money without a numeric Value" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&h, 0x5a, sizeof(h));
		int rc = capture_ce_webhook_parse(&ctx, &t, 1, cases[i].body, strlen(cases[i].body), 0, &h, err,
						  sizeof(err));
		if (rc != -1 || !strstr(err, cases[i].reason))
			fail_msg("case %zu: rc %d, err \"%s\", want \"%s\"", i, rc, err, cases[i].reason);
		assert_null(h.ev.key);
	}
	capture_ce_table_clear(&t);
}

static void test_delta_rejections(void **state)
{
	(void)state;
	struct capture_ce_table t = account();
	struct capture_ce_delta d;
	const char *cases[] = {
		"{\"value\":[]}",
		"{\"value\":[],\"@odata.nextLink\":\"a\",\"@odata.deltaLink\":\"b\"}",
		"{\"value\":{},\"@odata.deltaLink\":\"b\"}",
		"{\"value\":[1],\"@odata.deltaLink\":\"b\"}",
		"{\"value\":[{\"name\":\"x\"}],\"@odata.deltaLink\":\"b\"}",
		"{\"value\":[{\"@odata.context\":\"x/$deletedEntity\",\"id\":\"nope\"}],\"@odata.deltaLink\":\"b\"}",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (capture_ce_delta_parse(&t, cases[i], strlen(cases[i]), &d, err, sizeof(err)) != -1)
			fail_msg("case %zu accepted", i);
		assert_null(d.doc);
	}
	/* a row without versionnumber cannot become an event */
	const char *row = "{\"accountid\":\"6d81597f-0f9f-e711-8122-000d3aa2331c\",\"name\":\"x\"}";
	cJSON *r = cJSON_Parse(row);
	struct event ev;
	struct capture_ce_ctx ctx = { "prod", NULL };
	assert_int_equal(-1, capture_ce_row_event(&ctx, &t, r, 0, &ev, err, sizeof(err)));
	assert_non_null(strstr(err, "versionnumber"));
	cJSON_Delete(r);
	capture_ce_table_clear(&t);
}

int main(void)
{
	log_init("test_capture_ce", LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_spec),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_date_only_same_on_both_paths),
		cmocka_unit_test(test_webhook_and_delta_agree),
		cmocka_unit_test(test_webhook_create_from_target),
		cmocka_unit_test(test_webhook_delete_and_stripped),
		cmocka_unit_test(test_webhook_rejections),
		cmocka_unit_test(test_delta_rejections),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
