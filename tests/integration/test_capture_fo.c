/* capture --side fo against the F&O emulator's data events, real Kafka and real PostgreSQL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "capture_test.h"
#include "log.h"
#include "odata_batch.h"

#define TABLES                                                                                                   \
	"CustomersV3@mserp_custcustomerv3entity:dataAreaId+CustomerAccount,"                                     \
	"PurchaseOrderHeadersV2@mserp_purchpurchaseorderheaderv2entity:dataAreaId+PurchaseOrderNumber,"          \
	"PurchaseOrderLinesV2@mserp_purchpurchaseorderlinev2entity:dataAreaId+PurchaseOrderNumber+LineNumber"

static void unregister_hooks(void);

static int setup_all(void **state)
{
	(void)state;
	ct_migrate();
	/* registrations left by an interrupted earlier run would post into this run's captures */
	unregister_hooks();
	return 0;
}

/* After each test, also a failed one: no capture left running, no registration left posting. */
static int teardown_test(void **state)
{
	ct_captures_teardown(state);
	unregister_hooks();
	return 0;
}

struct fixture {
	char *env;
	char *prefix;
	char topics[3][300];
	char env_vars[12][512];
	const char *envp[13];
};

static void fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->env = harness_unique("fotest");
	f->prefix = harness_unique("fot");
	ct_topic(f->prefix, "fo", "CustomersV3", f->topics[0], sizeof(f->topics[0]));
	ct_topic(f->prefix, "fo", "PurchaseOrderHeadersV2", f->topics[1], sizeof(f->topics[1]));
	ct_topic(f->prefix, "fo", "PurchaseOrderLinesV2", f->topics[2], sizeof(f->topics[2]));
	size_t n = 0;
	snprintf(f->env_vars[n++], 512, "DW_ENV=%s", f->env);
	snprintf(f->env_vars[n++], 512, "DW_TOPIC_PREFIX=%s", f->prefix);
	snprintf(f->env_vars[n++], 512, "DW_CAPTURE_TABLES=%s", TABLES);
	snprintf(f->env_vars[n++], 512, "DW_CAPTURE_TRANSACTIONAL_ID=%s", f->env);
	snprintf(f->env_vars[n++], 512, "DW_HTTP_ADDR=127.0.0.1");
	snprintf(f->env_vars[n++], 512, "DW_HTTP_PORT=0");
	snprintf(f->env_vars[n++], 512, "DW_CAPTURE_WEBHOOK_KEY=fo-key-5678");
	for (size_t i = 0; i < n; i++)
		f->envp[i] = f->env_vars[i];
	f->envp[n] = NULL;
}

static void fixture_free(struct fixture *f)
{
	free(f->env);
	free(f->prefix);
}

static void register_hook(const char *entity, unsigned port)
{
	char body[512];
	snprintf(body, sizeof(body),
		 "{\"entity\":\"%s\",\"messages\":[\"Create\",\"Update\",\"Delete\"],"
		 "\"url\":\"http://127.0.0.1:%u/webhook/fo\",\"auth\":\"header\",\"auth_name\":\"x-dw-webhook-key\","
		 "\"auth_value\":\"fo-key-5678\"}",
		 entity, port);
	struct ct_resp r = ct_admin("fo", "POST", "webhooks", body);
	if (r.status != 201)
		fail_msg("register data event: %ld %s", r.status, r.body);
	ct_resp_free(&r);
}

static void unregister_hooks(void)
{
	struct ct_resp r = ct_admin("fo", "GET", "webhooks", NULL);
	cJSON *j = cJSON_Parse(r.body);
	ct_resp_free(&r);
	const cJSON *list = cJSON_IsArray(j) ? j : cJSON_GetObjectItem(j, "registrations");
	const cJSON *it;
	cJSON_ArrayForEach(it, list)
	{
		const cJSON *id = cJSON_GetObjectItem(it, "id");
		if (!cJSON_IsString(id))
			continue;
		char path[128];
		snprintf(path, sizeof(path), "webhooks/%s", id->valuestring);
		struct ct_resp d = ct_admin("fo", "DELETE", path, NULL);
		ct_resp_free(&d);
	}
	cJSON_Delete(j);
}

static void api_ok(const char *method, const char *path, const char *body, long want)
{
	struct ct_resp r = ct_api("fo", method, path, body, NULL, NULL);
	if (r.status != want)
		fail_msg("%s %s: %ld %s", method, path, r.status, r.body);
	ct_resp_free(&r);
}

/* A unique purchase order number (they hold at most 20 characters). */
static char *po_number(const char *prefix)
{
	static int seq;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	char *po = malloc(32);
	snprintf(po, 32, "%s%lld%d", prefix, ((long long)now.tv_sec * 1000 + now.tv_nsec / 1000000) % 100000000000LL,
		 seq++ % 10);
	return po;
}

static const char *sget(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItem(o, name);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/*
 * Create, update, a foreign-key ("lookup") change and delete of a customer in a company that is
 * not the default one: each appears once, with the natural key (dataAreaId included), a version
 * that rises with every change, the full re-read image, and a key-only delete.
 */
static void test_data_events_every_change_once(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f);
	struct ct_capture c = ct_capture_start("fo", f.envp, 0, 1);
	register_hook("CustomersV3", c.port);
	const char *topics[] = { f.topics[0] };
	struct ct_consumer k = ct_consumer_new(topics, 1);
	char *acct = harness_unique("C");
	char body[512], path[512];
	snprintf(body, sizeof(body),
		 "{\"dataAreaId\":\"usrt\",\"CustomerAccount\":\"%s\",\"OrganizationName\":\"Fabrikam O'Neil\","
		 "\"CustomerGroupId\":\"10\",\"CreditLimit\":2500.75}",
		 acct);
	api_ok("POST", "CustomersV3", body, 201);
	struct ct_msg msgs[32];
	size_t n = 0;
	ct_consume(&k, msgs, &n, 32, 1, 0, CT_WAIT_MS);
	assert_int_equal(1, n);
	snprintf(path, sizeof(path), "CustomersV3(dataAreaId='usrt',CustomerAccount='%s')", acct);
	api_ok("PATCH", path, "{\"OrganizationName\":\"Fabrikam renamed\"}", 204);
	ct_consume(&k, msgs, &n, 32, 2, 0, CT_WAIT_MS);
	api_ok("PATCH", path, "{\"CustomerGroupId\":\"20\"}", 204);
	ct_consume(&k, msgs, &n, 32, 3, 0, CT_WAIT_MS);
	api_ok("DELETE", path, NULL, 204);
	ct_consume(&k, msgs, &n, 32, 4, 1500, CT_WAIT_MS);
	assert_int_equal(4, n);

	static const int ops[] = { EVENT_OP_CREATE, EVENT_OP_UPDATE, EVENT_OP_UPDATE, EVENT_OP_DELETE };
	for (size_t i = 0; i < 4; i++) {
		const struct event *ev = &msgs[i].ev;
		assert_string_equal(f.topics[0], msgs[i].topic);
		assert_int_equal(ops[i], ev->op);
		assert_int_equal((long long)i + 1, ev->source.version);
		assert_string_equal("CustomersV3", ev->source.entity);
		assert_string_equal("usrt", sget(ev->key, "dataAreaId"));
		assert_string_equal(acct, sget(ev->key, "CustomerAccount"));
		assert_int_equal(2, cJSON_GetArraySize(ev->key));
		assert_string_equal(ev->id, msgs[i].hdr_id);
		char *ks = NULL;
		assert_int_equal(0, event_key_string(ev->key, &ks, ct_err, sizeof(ct_err)));
		assert_string_equal(ks, msgs[i].key);
		free(ks);
	}
	assert_string_equal("Fabrikam O'Neil", sget(msgs[0].ev.data, "OrganizationName"));
	assert_true(cJSON_GetObjectItem(msgs[0].ev.data, "CreditLimit")->valuedouble == 2500.75);
	assert_string_equal("Fabrikam renamed", sget(msgs[1].ev.data, "OrganizationName"));
	assert_string_equal("10", sget(msgs[1].ev.data, "CustomerGroupId"));
	assert_string_equal("20", sget(msgs[2].ev.data, "CustomerGroupId"));
	assert_null(msgs[3].ev.data);
	/* every id differs */
	for (size_t i = 0; i < 4; i++)
		for (size_t j = i + 1; j < 4; j++)
			assert_string_not_equal(msgs[i].ev.id, msgs[j].ev.id);

	unregister_hooks();
	assert_int_equal(0, ct_capture_wait(&c, 1));
	ct_msgs_free(msgs, n);
	ct_consumer_free(&k);
	free(acct);
	fixture_free(&f);
}

/* A data event delivered twice (the sender retried) for an unchanged record gives the same id. */
static void test_redelivery_same_id(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f);
	struct ct_capture c = ct_capture_start("fo", f.envp, 0, 1);
	const char *topics[] = { f.topics[0] };
	struct ct_consumer k = ct_consumer_new(topics, 1);
	char *acct = harness_unique("R");
	char body[1024], url[256];
	snprintf(body, sizeof(body), "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"%s\",\"OrganizationName\":\"Twice\"}",
		 acct);
	api_ok("POST", "CustomersV3", body, 201);
	snprintf(body, sizeof(body),
		 "{\"MessageName\":\"Update\",\"PrimaryEntityName\":\"mserp_custcustomerv3entity\",\"CorrelationId\":"
		 "\"11111111-0000-0000-0000-000000000000\",\"IsInTransaction\":false,\"InputParameters\":[{\"key\":"
		 "\"Target\",\"value\":{\"Attributes\":[{\"key\":\"mserp_dataareaid\",\"value\":\"usmf\"},{\"key\":"
		 "\"mserp_customeraccount\",\"value\":\"%s\"}]}}]}",
		 acct);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/webhook/fo?code=fo-key-5678", c.port);
	for (int i = 0; i < 2; i++) {
		struct ct_resp r = ct_http("POST", url, "application/json", body, NULL, 0);
		if (r.status != 200)
			fail_msg("post %d: %ld %s", i, r.status, r.body);
		assert_non_null(strstr(r.body, "\"published\":1"));
		ct_resp_free(&r);
	}
	struct ct_msg msgs[8];
	size_t n = 0;
	ct_consume(&k, msgs, &n, 8, 2, 1000, CT_WAIT_MS);
	assert_int_equal(2, n);
	assert_string_equal(msgs[0].ev.id, msgs[1].ev.id);
	assert_int_equal(1, msgs[0].ev.source.version);
	/* a record that does not exist: nothing to publish, answered 200 so the sender stops */
	snprintf(body, sizeof(body),
		 "{\"MessageName\":\"Update\",\"PrimaryEntityName\":\"mserp_custcustomerv3entity\",\"InputParameters\":"
		 "[{\"key\":\"Target\",\"value\":{\"Attributes\":[{\"key\":\"mserp_dataareaid\",\"value\":\"usmf\"},"
		 "{\"key\":\"mserp_customeraccount\",\"value\":\"%s-missing\"}]}}]}",
		 acct);
	struct ct_resp r = ct_http("POST", url, "application/json", body, NULL, 0);
	assert_int_equal(200, r.status);
	assert_non_null(strstr(r.body, "\"published\":0"));
	ct_resp_free(&r);
	assert_int_equal(0, ct_capture_wait(&c, 1));
	ct_msgs_free(msgs, n);
	ct_consumer_free(&k);
	free(acct);
	fixture_free(&f);
}

/* A purchase order header and three lines written in one changeset arrive as one unit. */
static void test_changeset_one_unit(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f);
	struct ct_capture c = ct_capture_start("fo", f.envp, 0, 1);
	register_hook("PurchaseOrderHeadersV2", c.port);
	register_hook("PurchaseOrderLinesV2", c.port);
	const char *topics[] = { f.topics[1], f.topics[2] };
	struct ct_consumer k = ct_consumer_new(topics, 2);
	char *po = po_number("P");
	char hb[512], lb[3][512];
	snprintf(hb, sizeof(hb), "{\"dataAreaId\":\"usmf\",\"PurchaseOrderNumber\":\"%s\",\"PurchaseOrderName\":\"Unit\"}", po);
	struct odata_batch_request reqs[4];
	memset(reqs, 0, sizeof(reqs));
	reqs[0] = (struct odata_batch_request){ .content_id = "1", .method = "POST", .url = "PurchaseOrderHeadersV2",
						 .body = hb, .body_len = strlen(hb) };
	static const char *cids[] = { "2", "3", "4" };
	for (int i = 0; i < 3; i++) {
		snprintf(lb[i], sizeof(lb[i]),
			 "{\"dataAreaId\":\"usmf\",\"PurchaseOrderNumber\":\"%s\",\"LineNumber\":%d,"
			 "\"OrderedPurchaseQuantity\":%d}",
			 po, i + 1, 5 * (i + 1));
		reqs[i + 1] = (struct odata_batch_request){ .content_id = cids[i], .method = "POST",
							     .url = "PurchaseOrderLinesV2", .body = lb[i],
							     .body_len = strlen(lb[i]) };
	}
	struct odata_batch_part part = { 1, reqs, 4 };
	char *bbody = NULL, *ctype = NULL;
	size_t blen;
	assert_int_equal(0, odata_batch_request_build(&part, 1, "fo1", &bbody, &blen, &ctype, ct_err, sizeof(ct_err)));
	struct ct_resp r = ct_api("fo", "POST", "$batch", bbody, ctype, NULL);
	if (r.status != 200)
		fail_msg("$batch: %ld %s", r.status, r.body);
	ct_resp_free(&r);
	free(bbody);
	free(ctype);
	struct ct_msg msgs[16];
	size_t n = 0;
	ct_consume(&k, msgs, &n, 16, 4, 1500, CT_WAIT_MS);
	assert_int_equal(4, n);
	int orders[5] = { 0 };
	size_t lines = 0;
	for (size_t i = 0; i < n; i++) {
		const struct event *ev = &msgs[i].ev;
		assert_int_equal(1, ev->has_txn);
		assert_string_equal(msgs[0].ev.txn.id, ev->txn.id);
		assert_int_equal(4, ev->txn.total);
		orders[ev->txn.order]++;
		assert_int_equal(EVENT_OP_CREATE, ev->op);
		assert_string_equal(po, sget(ev->key, "PurchaseOrderNumber"));
		if (strcmp(ev->source.entity, "PurchaseOrderLinesV2") == 0) {
			lines++;
			const cJSON *ln = cJSON_GetObjectItem(ev->key, "LineNumber");
			assert_true(cJSON_IsNumber(ln));
			assert_true(cJSON_GetObjectItem(ev->data, "OrderedPurchaseQuantity")->valuedouble ==
				    5 * ln->valuedouble);
		}
	}
	assert_int_equal(3, lines);
	for (int i = 1; i <= 4; i++)
		assert_int_equal(1, orders[i]);
	unregister_hooks();
	assert_int_equal(0, ct_capture_wait(&c, 1));
	ct_msgs_free(msgs, n);
	ct_consumer_free(&k);
	free(po);
	fixture_free(&f);
}

static void iso_at(long long secs, char *out, size_t len)
{
	time_t t = (time_t)secs;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * Modified-time polling (no data events registered, as when they were missed): the first start
 * only stores the watermark; rows changed after it are published once, unchanged rows at the
 * watermark are not published again, and a data event for a polled row gives the same id.
 */
static void test_modified_time_polling(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f);
	snprintf(f.env_vars[2], 512, "DW_CAPTURE_TABLES=%s",
		 "PurchaseOrderHeadersV2@mserp_purchpurchaseorderheaderv2entity:dataAreaId+PurchaseOrderNumber:AccountingDate");
	/* times after anything else in the emulator (2200 onwards), and each run's t0 after the
	 * previous run's t2 (runs are at least a second apart) */
	long long base = 7258118400LL + ((long long)time(NULL) - 1764000000LL) * 3;
	char t0[32], t1[32], t2[32], body[512], path[256];
	iso_at(base, t0, sizeof(t0));
	iso_at(base + 1, t1, sizeof(t1));
	iso_at(base + 2, t2, sizeof(t2));
	char *po = po_number("M");
	char po1[80], po2[80];
	snprintf(po1, sizeof(po1), "%s-1", po);
	snprintf(po2, sizeof(po2), "%s-2", po);
	snprintf(body, sizeof(body), "{\"dataAreaId\":\"usmf\",\"PurchaseOrderNumber\":\"%s\",\"AccountingDate\":\"%s\"}", po1, t0);
	api_ok("POST", "PurchaseOrderHeadersV2", body, 201);

	struct ct_capture c = ct_capture_start("fo", f.envp, 1, 0);
	assert_int_equal(0, ct_capture_wait(&c, 0));
	const char *p[] = { f.env };
	char *wm = ct_sql1("SELECT position FROM dw_capture_checkpoint WHERE side = 'fo' AND environment = $1 "
			   "AND entity = 'PurchaseOrderHeadersV2' AND kind = 'watermark'",
			   1, p);
	assert_non_null(wm);
	assert_string_equal(t0, wm);
	free(wm);
	const char *topics[] = { f.topics[1] };
	struct ct_consumer k = ct_consumer_new(topics, 1);
	struct ct_msg msgs[16];
	size_t n = 0;
	ct_consume(&k, msgs, &n, 16, 1, 0, 1500);
	assert_int_equal(0, n);

	snprintf(body, sizeof(body), "{\"dataAreaId\":\"usmf\",\"PurchaseOrderNumber\":\"%s\",\"AccountingDate\":\"%s\"}", po2, t1);
	api_ok("POST", "PurchaseOrderHeadersV2", body, 201);
	snprintf(path, sizeof(path), "PurchaseOrderHeadersV2(dataAreaId='usmf',PurchaseOrderNumber='%s')", po1);
	snprintf(body, sizeof(body), "{\"PurchaseOrderName\":\"changed\",\"AccountingDate\":\"%s\"}", t2);
	api_ok("PATCH", path, body, 204);
	c = ct_capture_start("fo", f.envp, 1, 0);
	assert_int_equal(0, ct_capture_wait(&c, 0));
	ct_consume(&k, msgs, &n, 16, 2, 1500, CT_WAIT_MS);
	assert_int_equal(2, n);
	int got1 = 0, got2 = 0;
	long idx2 = -1;
	for (size_t i = 0; i < n; i++) {
		const char *num = sget(msgs[i].ev.key, "PurchaseOrderNumber");
		assert_int_equal(1, msgs[i].ev.source.version);
		if (strcmp(num, po1) == 0) {
			got1++;
			assert_string_equal("changed", sget(msgs[i].ev.data, "PurchaseOrderName"));
		} else if (strcmp(num, po2) == 0) {
			got2++;
			idx2 = (long)i;
		}
	}
	assert_int_equal(1, got1);
	assert_int_equal(1, got2);
	wm = ct_sql1("SELECT position FROM dw_capture_checkpoint WHERE side = 'fo' AND environment = $1 "
		     "AND entity = 'PurchaseOrderHeadersV2' AND kind = 'watermark'",
		     1, p);
	assert_string_equal(t2, wm);
	free(wm);

	/* nothing changed: the next poll publishes nothing */
	c = ct_capture_start("fo", f.envp, 1, 0);
	assert_int_equal(0, ct_capture_wait(&c, 0));
	ct_consume(&k, msgs, &n, 16, 3, 0, 1500);
	assert_int_equal(2, n);

	/* the data event for the same state of po2 gives the same id */
	c = ct_capture_start("fo", f.envp, 0, 1);
	char url[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/webhook/fo?code=fo-key-5678", c.port);
	snprintf(body, sizeof(body),
		 "{\"MessageName\":\"Create\",\"PrimaryEntityName\":\"mserp_purchpurchaseorderheaderv2entity\","
		 "\"InputParameters\":[{\"key\":\"Target\",\"value\":{\"Attributes\":[{\"key\":\"mserp_dataareaid\","
		 "\"value\":\"usmf\"},{\"key\":\"mserp_purchaseordernumber\",\"value\":\"%s\"}]}}]}",
		 po2);
	struct ct_resp r = ct_http("POST", url, "application/json", body, NULL, 0);
	assert_int_equal(200, r.status);
	ct_resp_free(&r);
	ct_consume(&k, msgs, &n, 16, 3, 1000, CT_WAIT_MS);
	assert_int_equal(3, n);
	assert_string_equal(msgs[idx2].ev.id, msgs[2].ev.id);
	assert_int_equal(0, ct_capture_wait(&c, 1));
	ct_msgs_free(msgs, n);
	ct_consumer_free(&k);
	free(po);
	fixture_free(&f);
}

/*
 * Without DW_CAPTURE_TABLES the tables come from the maps: the accounts map's FO side
 * (CustomersV3, keyed by dataAreaId + CustomerAccount) with the data event named in
 * DW_CAPTURE_FO_EVENTS. A map whose entity set has no data event there stops the start with a
 * message naming the map and the set.
 */
static void test_tables_from_maps(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f);
	char dir[] = "/tmp/dw-capture-fo-maps-XXXXXX", path[512];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/accounts.json", dir);
	char *map = ct_read_file("schemas/maps/accounts.json");
	assert_non_null(map);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(strlen(map), fwrite(map, 1, strlen(map), fp));
	assert_int_equal(0, fclose(fp));
	free(map);
	snprintf(f.env_vars[2], 512, "DW_MAPS_DIR=%s", dir);

	/* no data event named for CustomersV3: refused at start */
	snprintf(f.env_vars[7], 512, "DW_CAPTURE_FO_EVENTS=PurchaseOrderHeadersV2=mserp_purchpurchaseorderheaderv2entity");
	f.envp[7] = f.env_vars[7];
	f.envp[8] = NULL;
	struct ct_capture c = ct_capture_start("fo", f.envp, 1, 0);
	assert_int_not_equal(0, ct_capture_wait(&c, 0));
	char *log = ct_read_file(c.log);
	assert_non_null(log);
	assert_non_null(strstr(log, "map accounts: DW_CAPTURE_FO_EVENTS names no data event for CustomersV3"));
	free(log);

	snprintf(f.env_vars[7], 512, "DW_CAPTURE_FO_EVENTS=CustomersV3=mserp_custcustomerv3entity");
	c = ct_capture_start("fo", f.envp, 0, 1);
	register_hook("CustomersV3", c.port);
	const char *topics[] = { f.topics[0] };
	struct ct_consumer k = ct_consumer_new(topics, 1);
	char *acct = harness_unique("M");
	char body[512];
	snprintf(body, sizeof(body),
		 "{\"dataAreaId\":\"usrt\",\"CustomerAccount\":\"%s\",\"OrganizationName\":\"From maps\","
		 "\"CustomerGroupId\":\"10\"}",
		 acct);
	api_ok("POST", "CustomersV3", body, 201);
	struct ct_msg msgs[8];
	size_t n = 0;
	ct_consume(&k, msgs, &n, 8, 1, 1000, CT_WAIT_MS);
	assert_int_equal(1, n);
	assert_int_equal(EVENT_OP_CREATE, msgs[0].ev.op);
	assert_string_equal("usrt", sget(msgs[0].ev.key, "dataAreaId"));
	assert_string_equal(acct, sget(msgs[0].ev.key, "CustomerAccount"));
	assert_int_equal(2, cJSON_GetArraySize(msgs[0].ev.key));
	unregister_hooks();
	assert_int_equal(0, ct_capture_wait(&c, 1));
	log = ct_read_file(c.log);
	assert_non_null(log);
	char from[600];
	snprintf(from, sizeof(from), "\"from\":\"maps in %s\"", dir);
	assert_non_null(strstr(log, from));
	assert_non_null(strstr(log, "\"tables\":\"CustomersV3@mserp_custcustomerv3entity:dataAreaId+CustomerAccount\""));
	free(log);
	assert_int_equal(0, unlink(path));
	assert_int_equal(0, rmdir(dir));
	ct_msgs_free(msgs, n);
	ct_consumer_free(&k);
	free(acct);
	fixture_free(&f);
}

int main(void)
{
	log_init("test_capture_fo", LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_data_events_every_change_once, teardown_test),
		cmocka_unit_test_teardown(test_redelivery_same_id, teardown_test),
		cmocka_unit_test_teardown(test_changeset_one_unit, teardown_test),
		cmocka_unit_test_teardown(test_modified_time_polling, teardown_test),
		cmocka_unit_test_teardown(test_tables_from_maps, teardown_test),
	};
	return cmocka_run_group_tests(tests, setup_all, NULL);
}
