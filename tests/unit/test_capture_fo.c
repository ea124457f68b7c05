/* capture_fo: data events (tests/unit/data/capture/) to keys, key paths, images, hashes, events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture_fo.h"
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

static void tables(struct capture_fo_table t[2])
{
	assert_int_equal(0, capture_fo_table_parse("CustomersV3@mserp_custcustomerv3entity:dataAreaId+CustomerAccount",
						   &t[0], err, sizeof(err)));
	assert_int_equal(0, capture_fo_table_parse("PurchaseOrderLinesV2@mserp_purchpurchaseorderlinev2entity:"
						   "dataAreaId+PurchaseOrderNumber+LineNumber:ModifiedDateTime",
						   &t[1], err, sizeof(err)));
}

static void test_table_spec(void **state)
{
	(void)state;
	struct capture_fo_table t[2];
	tables(t);
	assert_string_equal("CustomersV3", t[0].set);
	assert_int_equal(2, t[0].nkeys);
	assert_null(t[0].modified);
	assert_int_equal(3, t[1].nkeys);
	assert_string_equal("LineNumber", t[1].keys[2]);
	assert_string_equal("ModifiedDateTime", t[1].modified);
	capture_fo_table_clear(&t[0]);
	capture_fo_table_clear(&t[1]);
	const char *bad[] = { "CustomersV3", "CustomersV3@x", "CustomersV3@x:", "Cust omers@x:a", "C@x:a+", "C@x:a:b c" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (capture_fo_table_parse(bad[i], &t[0], err, sizeof(err)) != -1)
			fail_msg("accepted %s", bad[i]);
		assert_null(t[0].set);
	}
}

static void test_data_event(void **state)
{
	(void)state;
	struct capture_fo_table t[2];
	tables(t);
	size_t len;
	char *body = slurp("fo_data_event_update.json", &len);
	struct capture_fo_notice n;
	assert_int_equal(0, capture_fo_event_parse(t, 2, body, len, &n, err, sizeof(err)));
	assert_int_equal(1, n.table);
	assert_int_equal(EVENT_OP_UPDATE, n.op);
	assert_int_equal(1, n.in_transaction);
	assert_string_equal("f0000000-0000-0000-0000-000000000001", n.correlation_id);
	assert_int_equal(1738281600000LL, n.ts_ms);
	char *k = cJSON_PrintUnformatted(n.key);
	assert_string_equal("{\"dataAreaId\":\"usmf\",\"PurchaseOrderNumber\":\"O'USMF-0001\",\"LineNumber\":3}", k);
	free(k);
	char *path = NULL;
	assert_int_equal(0, capture_fo_key_path(&t[1], n.key, &path, err, sizeof(err)));
	if (strcmp(path, "(dataAreaId='usmf',PurchaseOrderNumber='O''USMF-0001',LineNumber=3)") != 0)
		fail_msg("path %s", path);
	free(path);
	capture_fo_notice_clear(&n);
	free(body);

	const char *bad[][2] = {
		{ "{\"MessageName\":\"Update\"}", "PrimaryEntityName" },
		{ "{\"MessageName\":\"Update\",\"PrimaryEntityName\":\"mserp_other\"}", "not captured" },
		{ "{\"MessageName\":\"Update\",\"PrimaryEntityName\":\"mserp_custcustomerv3entity\"}", "Target" },
		{ "{\"MessageName\":\"Update\",\"PrimaryEntityName\":\"mserp_custcustomerv3entity\",\"InputParameters\":"
		  "[{\"key\":\"Target\",\"value\":{\"Attributes\":[{\"key\":\"mserp_dataareaid\",\"value\":\"usmf\"}]}}]}",
		  "mserp_CustomerAccount missing" },
		{ "{\"MessageName\":\"Retrieve\"}", "not captured" },
		{ "{\"MessageName\":", "not valid JSON" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = capture_fo_event_parse(t, 2, bad[i][0], strlen(bad[i][0]), &n, err, sizeof(err));
		if (rc != -1 || !strstr(err, bad[i][1]))
			fail_msg("case %zu: rc %d err \"%s\"", i, rc, err);
		assert_null(n.key);
	}
	capture_fo_table_clear(&t[0]);
	capture_fo_table_clear(&t[1]);
}

static void test_image_hash_and_event(void **state)
{
	(void)state;
	struct capture_fo_table t[2];
	tables(t);
	cJSON *a = cJSON_Parse("{\"@odata.etag\":\"W/\\\"x\\\"\",\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"US-001\","
			       "\"Name\":\"Contoso\",\"CreditLimit\":10.5,\"Addr\":{\"b\":1,\"a\":[1,\"2\"]}}");
	cJSON *b = cJSON_Parse("{\"Addr\":{\"a\":[1,\"2\"],\"b\":1},\"CreditLimit\":10.5,\"Name\":\"Contoso\","
			       "\"CustomerAccount\":\"US-001\",\"dataAreaId\":\"usmf\"}");
	cJSON *c = cJSON_Parse("{\"Addr\":{\"a\":[1,2],\"b\":1},\"CreditLimit\":10.5,\"Name\":\"Contoso\","
			       "\"CustomerAccount\":\"US-001\",\"dataAreaId\":\"usmf\"}");
	cJSON *ia = capture_fo_image(a);
	assert_null(cJSON_GetObjectItem(ia, "@odata.etag"));
	char ha[65], hb[65], hc[65];
	assert_int_equal(0, capture_fo_image_hash(ia, ha));
	assert_int_equal(0, capture_fo_image_hash(b, hb));
	assert_int_equal(0, capture_fo_image_hash(c, hc));
	assert_string_equal(ha, hb);        /* member order does not matter */
	assert_string_not_equal(ha, hc);    /* "2" and 2 differ */
	cJSON *key = capture_fo_row_key(&t[0], a, err, sizeof(err));
	assert_non_null(key);
	struct event ev;
	assert_int_equal(0, capture_fo_event("prod", "ABC", &t[0], EVENT_OP_UPDATE, key, ia, 7, 1000, "abc", &ev, err,
					     sizeof(err)));
	assert_int_equal(1, ev.source.own);
	assert_string_equal("CustomersV3", ev.source.entity);
	assert_int_equal(7, ev.source.version);
	char e2[256];
	assert_int_equal(0, event_validate(&ev, 0, e2, sizeof(e2)));
	event_clear(&ev);
	/* delete: key only */
	assert_int_equal(0, capture_fo_event("prod", NULL, &t[0], EVENT_OP_DELETE, key, NULL, 8, 1000, NULL, &ev, err,
					     sizeof(err)));
	assert_null(ev.data);
	assert_int_equal(0, event_validate(&ev, 0, e2, sizeof(e2)));
	event_clear(&ev);
	cJSON *nokey = cJSON_Parse("{\"dataAreaId\":\"usmf\"}");
	assert_null(capture_fo_row_key(&t[0], nokey, err, sizeof(err)));
	assert_non_null(strstr(err, "CustomerAccount"));
	cJSON_Delete(nokey);
	cJSON_Delete(key);
	cJSON_Delete(ia);
	cJSON_Delete(a);
	cJSON_Delete(b);
	cJSON_Delete(c);
	capture_fo_table_clear(&t[0]);
	capture_fo_table_clear(&t[1]);
}

int main(void)
{
	log_init("test_capture_fo", LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_spec),
		cmocka_unit_test(test_data_event),
		cmocka_unit_test(test_image_hash_and_event),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
