/* capture --side ce against the Dataverse emulator, real Kafka and real PostgreSQL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "capture_test.h"
#include "log.h"
#include "odata_batch.h"

#define TABLES                                                                                                   \
	"account@accounts:accountnumber+_msdyn_company_value,"                                                   \
	"msdyn_purchaseorder@msdyn_purchaseorders:msdyn_name+_msdyn_company_value,"                              \
	"msdyn_purchaseorderproduct@msdyn_purchaseorderproducts:_msdyn_purchaseorder_value+msdyn_lineorder"

/* Seed-data GUIDs every test needs. */
static char company[40], currency[40], vendor[40], product[40], uom[40];

static void first_id(const char *path, const char *field, char *out)
{
	cJSON *j = ct_get_json("ce", path);
	const cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "value"), 0);
	const cJSON *id = cJSON_GetObjectItem(v, field);
	if (!cJSON_IsString(id))
		fail_msg("no %s from %s", field, path);
	snprintf(out, 40, "%s", id->valuestring);
	cJSON_Delete(j);
}

static void unregister_hooks(void);

static int setup_all(void **state)
{
	(void)state;
	ct_migrate();
	/* registrations left by an interrupted earlier run would post into this run's captures */
	unregister_hooks();
	/* A company of this suite's own: other suites upsert 'usmf' with GUIDs of their own, and the
	 * seed's records would then fail to bind to the seed's 'usmf'. */
	struct ct_resp r = ct_admin("ce", "POST", "seed", "{\"n\":2,\"seed\":7,\"side\":\"ce\",\"companies\":[\"ctce\"]}");
	if (r.status != 200 || !strstr(r.body, "\"failed\":0"))
		fail_msg("seed: %ld %s", r.status, r.body);
	ct_resp_free(&r);
	first_id("cdm_companies?$filter=cdm_companycode%20eq%20'ctce'&$select=cdm_companyid", "cdm_companyid", company);
	first_id("transactioncurrencies?$filter=isocurrencycode%20eq%20'USD'&$select=transactioncurrencyid",
		 "transactioncurrencyid", currency);
	first_id("accounts?$filter=customertypecode%20eq%2011&$select=accountid", "accountid", vendor);
	first_id("products?$select=productid", "productid", product);
	first_id("uoms?$select=uomid", "uomid", uom);
	return 0;
}

/* After each test, also a failed one: no capture left running, no registration left posting. */
static int teardown_test(void **state)
{
	ct_captures_teardown(state);
	unregister_hooks();
	return 0;
}

/* Per test: a fresh environment name (checkpoints, records) and topic prefix. */
struct fixture {
	char *env;
	char *prefix;
	char topics[3][300];
	char env_vars[12][512];
	const char *envp[13];
};

static void fixture_init(struct fixture *f, const char *extra1, const char *extra2)
{
	memset(f, 0, sizeof(*f));
	f->env = harness_unique("cetest");
	f->prefix = harness_unique("cet");
	ct_topic(f->prefix, "ce", "account", f->topics[0], sizeof(f->topics[0]));
	ct_topic(f->prefix, "ce", "msdyn_purchaseorder", f->topics[1], sizeof(f->topics[1]));
	ct_topic(f->prefix, "ce", "msdyn_purchaseorderproduct", f->topics[2], sizeof(f->topics[2]));
	size_t n = 0;
	snprintf(f->env_vars[n++], 512, "DW_ENV=%s", f->env);
	snprintf(f->env_vars[n++], 512, "DW_TOPIC_PREFIX=%s", f->prefix);
	snprintf(f->env_vars[n++], 512, "DW_CAPTURE_TABLES=%s", TABLES);
	snprintf(f->env_vars[n++], 512, "DW_CAPTURE_TRANSACTIONAL_ID=%s", f->env);
	snprintf(f->env_vars[n++], 512, "DW_HTTP_ADDR=127.0.0.1");
	snprintf(f->env_vars[n++], 512, "DW_HTTP_PORT=0");
	snprintf(f->env_vars[n++], 512, "DW_CAPTURE_POLL_INTERVAL=200ms");
	snprintf(f->env_vars[n++], 512, "DW_CAPTURE_WEBHOOK_KEY=hook-key-1234");
	if (extra1)
		snprintf(f->env_vars[n++], 512, "%s", extra1);
	if (extra2)
		snprintf(f->env_vars[n++], 512, "%s", extra2);
	for (size_t i = 0; i < n; i++)
		f->envp[i] = f->env_vars[i];
	f->envp[n] = NULL;
}

static void fixture_free(struct fixture *f)
{
	free(f->env);
	free(f->prefix);
}

/* Creates an account; returns its row (cJSON_Delete). */
static cJSON *create_account(const char *name, const char *number, const char *company_id)
{
	char body[1024];
	if (company_id)
		snprintf(body, sizeof(body),
			 "{\"name\":\"%s\",\"accountnumber\":\"%s\",\"customertypecode\":3,\"creditlimit\":1500.25,"
			 "\"msdyn_company@odata.bind\":\"/cdm_companies(%s)\"}",
			 name, number, company_id);
	else
		snprintf(body, sizeof(body), "{\"name\":\"%s\",\"accountnumber\":\"%s\"}", name, number);
	struct ct_resp r = ct_api("ce", "POST", "accounts", body, NULL, "return=representation");
	if (r.status != 201)
		fail_msg("create account: %ld %s", r.status, r.body);
	cJSON *row = cJSON_Parse(r.body);
	ct_resp_free(&r);
	return row;
}

static void patch(const char *set, const char *id, const char *body)
{
	char path[256];
	snprintf(path, sizeof(path), "%s(%s)", set, id);
	struct ct_resp r = ct_api("ce", "PATCH", path, body, NULL, NULL);
	if (r.status != 204)
		fail_msg("PATCH %s: %ld %s", path, r.status, r.body);
	ct_resp_free(&r);
}

static void delete_row(const char *set, const char *id)
{
	char path[256];
	snprintf(path, sizeof(path), "%s(%s)", set, id);
	struct ct_resp r = ct_api("ce", "DELETE", path, NULL, NULL, NULL);
	if (r.status != 204)
		fail_msg("DELETE %s: %ld %s", path, r.status, r.body);
	ct_resp_free(&r);
}

static long long row_version(const char *set, const char *id)
{
	char path[256];
	snprintf(path, sizeof(path), "%s(%s)", set, id);
	cJSON *j = ct_get_json("ce", path);
	long long v = (long long)cJSON_GetObjectItem(j, "versionnumber")->valuedouble;
	cJSON_Delete(j);
	return v;
}

/* A unique account number stem (account numbers hold at most 20 characters; suffixes add 3). */
static char *short_unique(const char *prefix)
{
	static int seq;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	char *u = malloc(32);
	snprintf(u, 32, "%s%lld%d", prefix, ((long long)now.tv_sec * 1000 + now.tv_nsec / 1000000) % 100000000000LL,
		 seq++ % 10);
	return u;
}

static const char *sget(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItem(o, name);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Index of the message for record id with version (or any version when < 0), or -1. */
static long find(struct ct_msg *m, size_t n, const char *id, long long version)
{
	for (size_t i = 0; i < n; i++) {
		const char *rid = sget(m[i].ev.key, "accountid");
		if (rid && strcmp(rid, id) == 0 && (version < 0 || m[i].ev.source.version == version))
			return (long)i;
	}
	return -1;
}

static size_t count_for(struct ct_msg *m, size_t n, const char *id)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++) {
		const char *rid = sget(m[i].ev.key, "accountid");
		if (rid && strcmp(rid, id) == 0)
			c++;
	}
	return c;
}

/* Checks the common parts of a CE account event and that Kafka key and header match it. */
static void check_account_event(const struct ct_msg *m, const char *topic, const char *id, const char *number,
				int op, long long version)
{
	assert_string_equal(topic, m->topic);
	assert_int_equal(op, m->ev.op);
	assert_int_equal(version, m->ev.source.version);
	assert_string_equal(m->ev.id, m->hdr_id);
	assert_string_equal("account", m->ev.source.entity);
	assert_string_equal("accounts", m->ev.source.entity_set);
	assert_string_equal(id, sget(m->ev.key, "accountid"));
	assert_string_equal(number, sget(m->ev.key, "accountnumber"));
	assert_string_equal(company, sget(m->ev.key, "_msdyn_company_value"));
	char *ks = NULL;
	assert_int_equal(0, event_key_string(m->ev.key, &ks, ct_err, sizeof(ct_err)));
	assert_string_equal(ks, m->key);
	free(ks);
}

/*
 * First start keeps the token and publishes nothing; then every kind of change appears once,
 * through change tracking alone: create, update, a lookup change, delete, and rows created in a
 * $batch changeset. A restart resumes from the checkpoint (nothing re-published).
 */
static void test_delta_every_change_once(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "DW_CAPTURE_DELTA_GRACE=0", NULL);
	char *u = short_unique("A");
	char num0[64], num1[64], numb1[64], numb2[64];
	snprintf(num0, sizeof(num0), "%s-0", u);
	snprintf(num1, sizeof(num1), "%s-1", u);
	snprintf(numb1, sizeof(numb1), "%s-b1", u);
	snprintf(numb2, sizeof(numb2), "%s-b2", u);
	cJSON *a0 = create_account("Before capture", num0, company);
	char id0[40];
	snprintf(id0, sizeof(id0), "%s", sget(a0, "accountid"));

	/* first start: stores the delta link, publishes nothing */
	struct ct_capture c = ct_capture_start("ce", f.envp, 1, 0);
	assert_int_equal(0, ct_capture_wait(&c, 0));
	const char *p[] = { f.env };
	char *pos = ct_sql1("SELECT position FROM dw_capture_checkpoint WHERE side = 'ce' AND environment = $1 "
			    "AND entity = 'account' AND kind = 'delta'",
			    1, p);
	assert_non_null(pos);
	assert_non_null(strstr(pos, "$deltatoken="));
	free(pos);
	const char *topics[] = { f.topics[0] };
	struct ct_consumer k = ct_consumer_new(topics, 1);
	struct ct_msg msgs[64];
	size_t n = 0;
	ct_consume(&k, msgs, &n, 64, 1, 0, 2000);
	assert_int_equal(0, n);

	c = ct_capture_start("ce", f.envp, 0, 1);
	/* create */
	cJSON *a1 = create_account("Contoso O'Brien \xc3\xa9", num1, company);
	char id1[40];
	snprintf(id1, sizeof(id1), "%s", sget(a1, "accountid"));
	long long v_create = row_version("accounts", id1);
	ct_consume(&k, msgs, &n, 64, 1, 0, CT_WAIT_MS);
	assert_int_equal(1, n);
	check_account_event(&msgs[0], f.topics[0], id1, num1, EVENT_OP_CREATE, v_create);
	assert_string_equal("Contoso O'Brien \xc3\xa9", sget(msgs[0].ev.data, "name"));
	assert_true(cJSON_GetObjectItem(msgs[0].ev.data, "creditlimit")->valuedouble == 1500.25);
	assert_string_equal(company, sget(msgs[0].ev.data, "_msdyn_company_value"));

	/* update; modifiedon has second resolution and a row whose modifiedon equals its createdon
	 * reads as a create, so the update comes in a later second */
	ct_sleep_ms(1100);
	patch("accounts", id1, "{\"name\":\"Contoso renamed\"}");
	long long v_update = row_version("accounts", id1);
	assert_true(v_update > v_create);
	ct_consume(&k, msgs, &n, 64, 2, 0, CT_WAIT_MS);
	assert_int_equal(2, n);
	check_account_event(&msgs[1], f.topics[0], id1, num1, EVENT_OP_UPDATE, v_update);
	assert_string_equal("Contoso renamed", sget(msgs[1].ev.data, "name"));

	/* lookup change */
	char body[256];
	snprintf(body, sizeof(body), "{\"parentaccountid@odata.bind\":\"/accounts(%s)\"}", id0);
	patch("accounts", id1, body);
	long long v_lookup = row_version("accounts", id1);
	ct_consume(&k, msgs, &n, 64, 3, 0, CT_WAIT_MS);
	assert_int_equal(3, n);
	check_account_event(&msgs[2], f.topics[0], id1, num1, EVENT_OP_UPDATE, v_lookup);
	assert_string_equal(id0, sget(msgs[2].ev.data, "_parentaccountid_value"));
	assert_null(sget(msgs[1].ev.data, "_parentaccountid_value"));

	/* delete: the key is complete (from the capture record table), the version above the last */
	delete_row("accounts", id1);
	ct_consume(&k, msgs, &n, 64, 4, 0, CT_WAIT_MS);
	assert_int_equal(4, n);
	check_account_event(&msgs[3], f.topics[0], id1, num1, EVENT_OP_DELETE, v_lookup + 1);
	assert_null(msgs[3].ev.data);

	/* two rows created in one $batch changeset */
	char b1[512], b2[512];
	snprintf(b1, sizeof(b1), "{\"name\":\"Batch one\",\"accountnumber\":\"%s\",\"msdyn_company@odata.bind\":\"/cdm_companies(%s)\"}",
		 numb1, company);
	snprintf(b2, sizeof(b2), "{\"name\":\"Batch two\",\"accountnumber\":\"%s\",\"msdyn_company@odata.bind\":\"/cdm_companies(%s)\"}",
		 numb2, company);
	struct odata_batch_request reqs[2] = {
		{ .content_id = "1", .method = "POST", .url = "accounts", .body = b1, .body_len = strlen(b1) },
		{ .content_id = "2", .method = "POST", .url = "accounts", .body = b2, .body_len = strlen(b2) },
	};
	struct odata_batch_part part = { 1, reqs, 2 };
	char *bbody = NULL, *ctype = NULL;
	size_t blen;
	assert_int_equal(0, odata_batch_request_build(&part, 1, "b1", &bbody, &blen, &ctype, ct_err, sizeof(ct_err)));
	struct ct_resp r = ct_api("ce", "POST", "$batch", bbody, ctype, NULL);
	if (r.status != 200)
		fail_msg("$batch: %ld %s", r.status, r.body);
	ct_resp_free(&r);
	free(bbody);
	free(ctype);
	ct_consume(&k, msgs, &n, 64, 6, 1500, CT_WAIT_MS);
	assert_int_equal(6, n); /* and nothing more */
	int seen_b1 = 0, seen_b2 = 0;
	for (size_t i = 4; i < 6; i++) {
		assert_int_equal(EVENT_OP_CREATE, msgs[i].ev.op);
		const char *an = sget(msgs[i].ev.key, "accountnumber");
		seen_b1 += strcmp(an, numb1) == 0;
		seen_b2 += strcmp(an, numb2) == 0;
		assert_string_equal(company, sget(msgs[i].ev.key, "_msdyn_company_value"));
		assert_int_equal(msgs[i].ev.source.version,
				 row_version("accounts", sget(msgs[i].ev.key, "accountid")));
	}
	assert_int_equal(1, seen_b1);
	assert_int_equal(1, seen_b2);
	assert_int_equal(1, count_for(msgs, n, id1) == 4);
	assert_int_equal(0, ct_capture_wait(&c, 1));

	/* restart: resumes from the checkpoint, nothing re-published; a new change comes through */
	c = ct_capture_start("ce", f.envp, 1, 0);
	assert_int_equal(0, ct_capture_wait(&c, 0));
	ct_consume(&k, msgs, &n, 64, 7, 0, 1500);
	assert_int_equal(6, n);
	patch("accounts", id0, "{\"telephone1\":\"555-0199\"}");
	c = ct_capture_start("ce", f.envp, 1, 0);
	assert_int_equal(0, ct_capture_wait(&c, 0));
	ct_consume(&k, msgs, &n, 64, 7, 1000, CT_WAIT_MS);
	assert_int_equal(7, n);
	check_account_event(&msgs[6], f.topics[0], id0, num0, EVENT_OP_UPDATE, row_version("accounts", id0));
	assert_string_equal("555-0199", sget(msgs[6].ev.data, "telephone1"));

	ct_msgs_free(msgs, n);
	ct_consumer_free(&k);
	cJSON_Delete(a0);
	cJSON_Delete(a1);
	free(u);
	fixture_free(&f);
}

static void register_hook(const char *entity, unsigned port)
{
	char body[512];
	snprintf(body, sizeof(body),
		 "{\"entity\":\"%s\",\"messages\":[\"Create\",\"Update\",\"Delete\"],"
		 "\"url\":\"http://127.0.0.1:%u/webhook/ce\",\"auth\":\"code\",\"auth_value\":\"hook-key-1234\"}",
		 entity, port);
	struct ct_resp r = ct_admin("ce", "POST", "webhooks", body);
	if (r.status != 201)
		fail_msg("register webhook: %ld %s", r.status, r.body);
	ct_resp_free(&r);
}

static void unregister_hooks(void)
{
	cJSON *j = NULL;
	struct ct_resp r = ct_admin("ce", "GET", "webhooks", NULL);
	j = cJSON_Parse(r.body);
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
		struct ct_resp d = ct_admin("ce", "DELETE", path, NULL);
		ct_resp_free(&d);
	}
	cJSON_Delete(j);
}

/*
 * Posts an account webhook by hand, as Dataverse would, and expects 200. message: "Create",
 * "Update" or "Delete". Create/Update carry a PostImage at `version`; a Delete carries a PreImage
 * at pre_version when that is >= 0 (a step registered with a pre-image), else no image.
 */
static void post_account_hook(unsigned port, const char *message, const char *id, const char *name,
			      const char *number, long long version, long long pre_version)
{
	char body[8192], url[256], images[2048] = "", target[2048];
	char attrs[1024];
	snprintf(attrs, sizeof(attrs),
		 "[{\"key\":\"accountid\",\"value\":\"%s\"},{\"key\":\"name\",\"value\":\"%s\"},"
		 "{\"key\":\"accountnumber\",\"value\":\"%s\"},{\"key\":\"msdyn_company\",\"value\":{\"__type\":"
		 "\"EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts\",\"Id\":\"%s\",\"KeyAttributes\":[],"
		 "\"LogicalName\":\"cdm_company\",\"Name\":null,\"RowVersion\":null}},"
		 "{\"key\":\"versionnumber\",\"value\":%lld}]",
		 id, name, number, company, strcmp(message, "Delete") == 0 ? pre_version : version);
	int del = strcmp(message, "Delete") == 0;
	if (del)
		snprintf(target, sizeof(target),
			 "{\"__type\":\"EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts\",\"Id\":\"%s\","
			 "\"KeyAttributes\":[],\"LogicalName\":\"account\",\"Name\":null,\"RowVersion\":null}",
			 id);
	else
		snprintf(target, sizeof(target),
			 "{\"__type\":\"Entity:http://schemas.microsoft.com/xrm/2011/Contracts\",\"Attributes\":%s,"
			 "\"Id\":\"%s\",\"LogicalName\":\"account\",\"RowVersion\":\"%lld\"}",
			 attrs, id, version);
	if (!del || pre_version >= 0)
		snprintf(images, sizeof(images),
			 "[{\"key\":\"%s\",\"value\":{\"Attributes\":%s,\"Id\":\"%s\",\"LogicalName\":\"account\"}}]",
			 del ? "PreImage" : "PostImage", attrs, id);
	snprintf(body, sizeof(body),
		 "{\"CorrelationId\":\"c0ffee00-0000-0000-0002-%012llx\",\"InitiatingUserId\":"
		 "\"11111111-2222-3333-4444-555555555555\",\"InputParameters\":[{\"key\":\"Target\",\"value\":%s}],"
		 "\"IsInTransaction\":false,\"MessageName\":\"%s\",\"OperationCreatedOn\":\"/Date(%lld)/\","
		 "\"PostEntityImages\":%s,\"PreEntityImages\":%s,\"PrimaryEntityId\":\"%s\","
		 "\"PrimaryEntityName\":\"account\",\"UserId\":\"11111111-2222-3333-4444-555555555555\"}",
		 (unsigned long long)harness_now_ms() & 0xffffffffffULL, target, message, harness_now_ms(),
		 del ? "[]" : (images[0] ? images : "[]"), del && images[0] ? images : "[]", id);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/webhook/ce?code=hook-key-1234", port);
	struct ct_resp r = ct_http("POST", url, "application/json", body, NULL, 0);
	if (r.status != 200)
		fail_msg("%s webhook: %ld %s", message, r.status, r.body);
	ct_resp_free(&r);
}

/* Creates an account, updates it twice and deletes it through the API; versions[0..2] are the
 * versions of the create and the two updates. */
static void account_lifecycle(const char *number, char id[40], long long versions[3], int pause_ms)
{
	cJSON *a = create_account("Late one", number, company);
	snprintf(id, 40, "%s", sget(a, "accountid"));
	cJSON_Delete(a);
	versions[0] = row_version("accounts", id);
	if (pause_ms)
		ct_sleep_ms(pause_ms);
	patch("accounts", id, "{\"name\":\"Late two\"}");
	versions[1] = row_version("accounts", id);
	patch("accounts", id, "{\"name\":\"Late three\"}");
	versions[2] = row_version("accounts", id);
	delete_row("accounts", id);
}

/* The delete events of account id in msgs[0..n): all share one event id, have a version above
 * `above`, and the last message of the record on the topic is a delete. Returns how many. */
static size_t check_deletes_last(const struct ct_msg *msgs, size_t n, const char *id, long long above)
{
	size_t deletes = 0;
	long last = -1, first_del = -1;
	for (size_t i = 0; i < n; i++) {
		const char *rid = sget(msgs[i].ev.key, "accountid");
		if (!rid || strcmp(rid, id) != 0)
			continue;
		last = (long)i;
		if (msgs[i].ev.op != EVENT_OP_DELETE)
			continue;
		if (msgs[i].ev.source.version <= above)
			fail_msg("delete event at version %lld, not above the last update's %lld",
				 msgs[i].ev.source.version, above);
		if (first_del < 0)
			first_del = (long)i;
		else
			assert_string_equal(msgs[first_del].ev.id, msgs[i].ev.id);
		deletes++;
	}
	assert_true(deletes > 0);
	assert_int_equal(EVENT_OP_DELETE, msgs[last].ev.op);
	return deletes;
}

/*
 * Change tracking sees a row's deletion before the webhooks of its last changes arrive (here they
 * are posted a second after the delete; delta polls every 200 ms). The delete carries no version:
 * it is held for the grace like a recent change, and its version is assigned only when it goes
 * out, above every version of the row (the webhooks' updates are all published, none is dropped
 * as a change of a deleted row, and the delete comes last).
 */
static void test_delta_delete_waits_for_late_webhooks(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "DW_CAPTURE_DELTA_GRACE=3s", NULL);
	struct ct_capture c = ct_capture_start("ce", f.envp, 0, 1);
	const char *topics[] = { f.topics[0] };
	struct ct_consumer k = ct_consumer_new(topics, 1);
	char *u = short_unique("L");
	char id[40], num[64];
	long long v[3];
	snprintf(num, sizeof(num), "%s-1", u);
	account_lifecycle(num, id, v, 700); /* change tracking sees the row, then its deletion */
	ct_sleep_ms(1000);
	post_account_hook(c.port, "Create", id, "Late one", num, v[0], -1);
	post_account_hook(c.port, "Update", id, "Late two", num, v[1], -1);
	post_account_hook(c.port, "Update", id, "Late three", num, v[2], -1);
	post_account_hook(c.port, "Delete", id, NULL, num, 0, -1);

	static struct ct_msg msgs[64];
	size_t n = 0;
	ct_consume(&k, msgs, &n, 64, 5, 3000, CT_WAIT_MS); /* past the grace: the held delete too */
	for (int i = 0; i < 3; i++)
		if (find(msgs, n, id, v[i]) < 0)
			fail_msg("version %lld (change %d) is not on the topic (%zu messages)", v[i], i, n);
	/* the webhook's delete and change tracking's: one change, one id */
	assert_int_equal(2, check_deletes_last(msgs, n, id, v[2]));
	assert_int_equal(0, ct_capture_wait(&c, 1));
	ct_msgs_free(msgs, n);
	ct_consumer_free(&k);
	free(u);
	fixture_free(&f);
}

/*
 * Webhooks of one row out of order (Dataverse's async deliveries are not ordered): the delete's
 * arrives before the last update's. Its pre-image gives the row's last version, so the delete
 * orders after that update; the update, arriving later, finds the row gone and adds nothing.
 */
static void test_delete_preimage_orders_after_pending_update(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "DW_CAPTURE_DELTA=false", NULL);
	struct ct_capture c = ct_capture_start("ce", f.envp, 0, 1);
	const char *topics[] = { f.topics[0] };
	struct ct_consumer k = ct_consumer_new(topics, 1);
	char *u = short_unique("P");
	char id[40], num[64];
	long long v[3];
	snprintf(num, sizeof(num), "%s-1", u);
	account_lifecycle(num, id, v, 0);
	post_account_hook(c.port, "Create", id, "Late one", num, v[0], -1);
	post_account_hook(c.port, "Update", id, "Late two", num, v[1], -1);
	post_account_hook(c.port, "Delete", id, NULL, num, 0, v[2]);
	post_account_hook(c.port, "Update", id, "Late three", num, v[2], -1);

	static struct ct_msg msgs[64];
	size_t n = 0;
	ct_consume(&k, msgs, &n, 64, 3, 1500, CT_WAIT_MS);
	assert_int_equal(3, n);
	assert_true(find(msgs, n, id, v[0]) >= 0);
	assert_true(find(msgs, n, id, v[1]) >= 0);
	assert_int_equal(1, check_deletes_last(msgs, n, id, v[2]));
	assert_int_equal(v[2] + 1, msgs[n - 1].ev.source.version);
	assert_int_equal(0, ct_capture_wait(&c, 1));
	ct_msgs_free(msgs, n);
	ct_consumer_free(&k);
	free(u);
	fixture_free(&f);
}

/*
 * Webhooks and change tracking together: each change has exactly one event id (perhaps published
 * twice), and a purchase order header with three lines created in one changeset arrives as one
 * unit (txn total 4, orders 1..4, one transaction id).
 */
static void test_webhook_and_delta_one_id_and_txn_unit(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "DW_CAPTURE_POLL_INTERVAL=300ms", NULL);
	struct ct_capture c = ct_capture_start("ce", f.envp, 0, 1);
	register_hook("account", c.port);
	register_hook("msdyn_purchaseorder", c.port);
	register_hook("msdyn_purchaseorderproduct", c.port);
	const char *topics[] = { f.topics[0], f.topics[1], f.topics[2] };
	struct ct_consumer k = ct_consumer_new(topics, 3);

	char *u = short_unique("W");
	char num[64];
	snprintf(num, sizeof(num), "%s-1", u);
	cJSON *a = create_account("Webhook one", num, company);
	char id[40];
	snprintf(id, sizeof(id), "%s", sget(a, "accountid"));
	long long versions[4];
	versions[0] = row_version("accounts", id);
	patch("accounts", id, "{\"name\":\"Webhook two\"}");
	versions[1] = row_version("accounts", id);
	patch("accounts", id, "{\"name\":\"Webhook three\"}");
	versions[2] = row_version("accounts", id);
	delete_row("accounts", id);

	/* PO header + 3 lines in one changeset */
	char po_name[64], hb[1024], lb[3][512];
	snprintf(po_name, sizeof(po_name), "%s-PO", u);
	snprintf(hb, sizeof(hb),
		 "{\"msdyn_name\":\"%s\",\"msdyn_vendor@odata.bind\":\"/accounts(%s)\","
		 "\"transactioncurrencyid@odata.bind\":\"/transactioncurrencies(%s)\","
		 "\"msdyn_company@odata.bind\":\"/cdm_companies(%s)\"}",
		 po_name, vendor, currency, company);
	struct odata_batch_request reqs[4];
	memset(reqs, 0, sizeof(reqs));
	reqs[0] = (struct odata_batch_request){ .content_id = "1", .method = "POST", .url = "msdyn_purchaseorders",
						 .body = hb, .body_len = strlen(hb) };
	static const char *cids[] = { "2", "3", "4" };
	for (int i = 0; i < 3; i++) {
		snprintf(lb[i], sizeof(lb[i]),
			 "{\"msdyn_purchaseorder@odata.bind\":\"$1\",\"msdyn_product@odata.bind\":\"/products(%s)\","
			 "\"msdyn_unit@odata.bind\":\"/uoms(%s)\",\"msdyn_lineorder\":%d,\"msdyn_quantity\":%d,"
			 "\"transactioncurrencyid@odata.bind\":\"/transactioncurrencies(%s)\"}",
			 product, uom, i + 1, 10 * (i + 1), currency);
		reqs[i + 1] = (struct odata_batch_request){ .content_id = cids[i], .method = "POST",
							     .url = "msdyn_purchaseorderproducts", .body = lb[i],
							     .body_len = strlen(lb[i]) };
	}
	struct odata_batch_part part = { 1, reqs, 4 };
	char *bbody = NULL, *ctype = NULL;
	size_t blen;
	assert_int_equal(0, odata_batch_request_build(&part, 1, "po1", &bbody, &blen, &ctype, ct_err, sizeof(ct_err)));
	struct ct_resp r = ct_api("ce", "POST", "$batch", bbody, ctype, NULL);
	if (r.status != 200)
		fail_msg("$batch: %ld %s", r.status, r.body);
	ct_resp_free(&r);
	free(bbody);
	free(ctype);

	/* at least: 4 account changes (webhooks) + 4 PO events; then quiet for the pollers */
	static struct ct_msg msgs[256];
	size_t n = 0;
	long long deadline = harness_now_ms() + CT_WAIT_MS;
	size_t txn_parts = 0;
	while (harness_now_ms() < deadline) {
		ct_consume(&k, msgs, &n, 256, n + 1, 0, 500);
		txn_parts = 0;
		for (size_t i = 0; i < n; i++)
			txn_parts += msgs[i].ev.has_txn;
		if (count_for(msgs, n, id) >= 4 && txn_parts >= 4)
			break;
	}
	ct_consume(&k, msgs, &n, 256, n, 3000, 3000); /* let delta duplicates arrive */

	/* one id per (record key, version); different versions, different ids */
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < n; j++) {
			int same_change = strcmp(msgs[i].key, msgs[j].key) == 0 &&
					  strcmp(msgs[i].ev.source.entity, msgs[j].ev.source.entity) == 0 &&
					  msgs[i].ev.source.version == msgs[j].ev.source.version;
			if (same_change != (strcmp(msgs[i].ev.id, msgs[j].ev.id) == 0))
				fail_msg("messages %zu and %zu: same change %d but ids %s / %s", i, j, same_change,
					 msgs[i].ev.id, msgs[j].ev.id);
		}
	}
	/* every change of the account is there */
	for (int i = 0; i < 3; i++)
		assert_true(find(msgs, n, id, versions[i]) >= 0);
	long del = -1;
	for (size_t i = 0; i < n; i++)
		if (msgs[i].ev.op == EVENT_OP_DELETE && strcmp(sget(msgs[i].ev.key, "accountid"), id) == 0)
			del = (long)i;
	assert_true(del >= 0);
	assert_true(msgs[del].ev.source.version > versions[2]);
	assert_string_equal(num, sget(msgs[del].ev.key, "accountnumber"));

	/* the purchase order unit */
	char txn_id[300] = "";
	int orders[5] = { 0 };
	size_t unit = 0;
	for (size_t i = 0; i < n; i++) {
		if (!msgs[i].ev.has_txn)
			continue;
		if (!txn_id[0])
			snprintf(txn_id, sizeof(txn_id), "%s", msgs[i].ev.txn.id);
		assert_string_equal(txn_id, msgs[i].ev.txn.id);
		assert_int_equal(4, msgs[i].ev.txn.total);
		assert_true(msgs[i].ev.txn.order >= 1 && msgs[i].ev.txn.order <= 4);
		orders[msgs[i].ev.txn.order]++;
		unit++;
	}
	assert_int_equal(4, unit);
	for (int i = 1; i <= 4; i++)
		assert_int_equal(1, orders[i]);
	size_t headers = 0, lines = 0;
	for (size_t i = 0; i < n; i++) {
		if (!msgs[i].ev.has_txn)
			continue;
		if (strcmp(msgs[i].ev.source.entity, "msdyn_purchaseorder") == 0) {
			headers++;
			assert_string_equal(f.topics[1], msgs[i].topic);
			assert_string_equal(po_name, sget(msgs[i].ev.key, "msdyn_name"));
			assert_string_equal(company, sget(msgs[i].ev.key, "_msdyn_company_value"));
		} else {
			lines++;
			assert_string_equal(f.topics[2], msgs[i].topic);
			assert_non_null(sget(msgs[i].ev.key, "_msdyn_purchaseorder_value"));
		}
		assert_int_equal(EVENT_OP_CREATE, msgs[i].ev.op);
	}
	assert_int_equal(1, headers);
	assert_int_equal(3, lines);

	/* /metrics counts what went out */
	char url[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/metrics", c.port);
	r = ct_http("GET", url, NULL, NULL, NULL, 0);
	assert_int_equal(200, r.status);
	assert_non_null(strstr(r.body, "dw_capture_events_total{table=\"account\",op=\"delete\"}"));
	assert_non_null(strstr(r.body, "dw_capture_webhook_total{outcome=\"staged\"} 4"));
	ct_resp_free(&r);

	unregister_hooks();
	assert_int_equal(0, ct_capture_wait(&c, 1));
	ct_msgs_free(msgs, n);
	ct_consumer_free(&k);
	cJSON_Delete(a);
	free(u);
	fixture_free(&f);
}

/* The receiver's own answers: 401 without or with a wrong key, 400 with the reason for bad
 * bodies, 415 for another content type, 413 over the cap; nothing is published. */
static void test_webhook_refusals(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "DW_CAPTURE_DELTA=false", "DW_CAPTURE_BODY_CAP=4096");
	struct ct_capture c = ct_capture_start("ce", f.envp, 0, 1);
	char url[256], url_bad[256], url_none[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/webhook/ce?code=hook-key-1234", c.port);
	snprintf(url_bad, sizeof(url_bad), "http://127.0.0.1:%u/webhook/ce?code=wrong", c.port);
	snprintf(url_none, sizeof(url_none), "http://127.0.0.1:%u/webhook/ce", c.port);
	const char *ok_body = "{\"MessageName\":\"Update\",\"PrimaryEntityName\":\"account\"}";
	struct ct_resp r = ct_http("POST", url_none, "application/json", ok_body, NULL, 0);
	assert_int_equal(401, r.status);
	ct_resp_free(&r);
	r = ct_http("POST", url_bad, "application/json", ok_body, NULL, 0);
	assert_int_equal(401, r.status);
	ct_resp_free(&r);
	struct http_header hk = { "x-dw-webhook-key", "wrong" };
	r = ct_http("POST", url_none, "application/json", ok_body, &hk, 1);
	assert_int_equal(401, r.status);
	ct_resp_free(&r);
	r = ct_http("POST", url, "application/json", "{\"MessageName\":", NULL, 0);
	assert_int_equal(400, r.status);
	assert_non_null(strstr(r.body, "not valid JSON"));
	ct_resp_free(&r);
	r = ct_http("POST", url, "application/json", "{\"MessageName\":\"Update\",\"PrimaryEntityName\":\"contact\"}",
		    NULL, 0);
	assert_int_equal(400, r.status);
	assert_non_null(strstr(r.body, "not captured"));
	ct_resp_free(&r);
	r = ct_http("POST", url, "text/plain", ok_body, NULL, 0);
	assert_int_equal(415, r.status);
	assert_non_null(strstr(r.body, "application/json"));
	ct_resp_free(&r);
	char *big = malloc(8192);
	memset(big, ' ', 8191);
	big[0] = '{';
	big[8190] = '}';
	big[8191] = '\0';
	r = ct_http("POST", url, "application/json", big, NULL, 0);
	assert_int_equal(413, r.status);
	ct_resp_free(&r);
	free(big);
	const char *topics[] = { f.topics[0] };
	struct ct_consumer k = ct_consumer_new(topics, 1);
	struct ct_msg msgs[4];
	size_t n = 0;
	ct_consume(&k, msgs, &n, 4, 1, 0, 2000);
	assert_int_equal(0, n);
	ct_consumer_free(&k);
	assert_int_equal(0, ct_capture_wait(&c, 1));
	fixture_free(&f);
}

/* Reads raw messages of k for up to timeout_ms or until want were read; counts their dw-op headers
 * equal to "staged" and "done". Returns the number read. */
static size_t consume_staging(struct ct_consumer *k, size_t want, long long timeout_ms, size_t *staged, size_t *done)
{
	size_t n = 0;
	long long deadline = harness_now_ms() + timeout_ms;
	while (n < want && harness_now_ms() < deadline) {
		struct kafka_message *m = NULL;
		int r = kafka_consumer_poll(k->c, 100, &m, ct_err, sizeof(ct_err));
		if (r < 0)
			fail_msg("consume: %s", ct_err);
		if (r == 0)
			continue;
		struct kafka_header h;
		if (kafka_message_header_find(m, PUBLISH_HEADER_OP, &h) == 0) {
			*staged += h.value_len == 6 && memcmp(h.value, "staged", 6) == 0;
			*done += h.value_len == 4 && memcmp(h.value, "done", 4) == 0;
		}
		n++;
		kafka_message_free(m);
	}
	return n;
}

static void post_txn_create(unsigned port, const char *correlation, const char *id, const char *name, long long version,
			    const char *company_id)
{
	char body[3072], url[256], comp[512] = "";
	if (company_id)
		snprintf(comp, sizeof(comp),
			 "{\"key\":\"msdyn_company\",\"value\":{\"__type\":\"EntityReference:http://schemas.microsoft.com/"
			 "xrm/2011/Contracts\",\"Id\":\"%s\",\"KeyAttributes\":[],\"LogicalName\":\"cdm_company\","
			 "\"Name\":null,\"RowVersion\":null}},",
			 company_id);
	snprintf(body, sizeof(body),
		 "{\"CorrelationId\":\"%s\",\"InitiatingUserId\":\"11111111-2222-3333-4444-555555555555\","
		 "\"InputParameters\":[{\"key\":\"Target\",\"value\":{\"__type\":\"Entity:http://schemas.microsoft.com/"
		 "xrm/2011/Contracts\",\"Attributes\":[%s{\"key\":\"msdyn_name\",\"value\":\"%s\"},"
		 "{\"key\":\"msdyn_purchaseorderid\",\"value\":\"%s\"},{\"key\":\"versionnumber\",\"value\":\"%lld\"}],"
		 "\"Id\":\"%s\",\"LogicalName\":\"msdyn_purchaseorder\",\"RowVersion\":null}}],"
		 "\"IsInTransaction\":true,\"MessageName\":\"Create\",\"OperationCreatedOn\":\"/Date(1738281600123)/\","
		 "\"PostEntityImages\":[],\"PreEntityImages\":[],\"PrimaryEntityId\":\"%s\","
		 "\"PrimaryEntityName\":\"msdyn_purchaseorder\",\"UserId\":\"11111111-2222-3333-4444-555555555555\"}",
		 correlation, comp, name, id, version, id, id);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/webhook/ce?code=hook-key-1234", port);
	struct ct_resp r = ct_http("POST", url, "application/json", body, NULL, 0);
	if (r.status != 202)
		fail_msg("in-transaction post: %ld %s", r.status, r.body);
	assert_non_null(strstr(r.body, "\"staged\":1"));
	ct_resp_free(&r);
}

/*
 * An event inside a source transaction is answered 2xx only once it is committed in Kafka (the
 * staging topic); the unit is not on the table topic before the settle window closes. A capture
 * killed (SIGKILL) while the unit is still open loses nothing: the next start reads the staging
 * topic back and publishes the unit (txn total 2), with a done record on the staging topic.
 */
static void test_txn_staged_in_kafka_survives_kill(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "DW_CAPTURE_DELTA=false", "DW_CAPTURE_TXN_SETTLE=60s");
	struct ct_capture c = ct_capture_start("ce", f.envp, 0, 1);
	char staging[300];
	snprintf(staging, sizeof(staging), "%s.capture-staging.ce", f.prefix);
	const char *st[] = { staging };
	const char *tt[] = { f.topics[1] };
	struct ct_consumer ks = ct_consumer_new(st, 1);
	struct ct_consumer kt = ct_consumer_new(tt, 1);
	char *u = short_unique("T");
	char corr[64], id1[40], id2[40], n1[64], n2[64];
	unsigned long long salt = (unsigned long long)harness_now_ms() & 0xffffffffffULL;
	snprintf(corr, sizeof(corr), "c0ffee00-0000-0000-0000-%012llx", salt);
	snprintf(id1, sizeof(id1), "aaaaaaaa-0000-0001-0000-%012llx", salt);
	snprintf(id2, sizeof(id2), "aaaaaaaa-0000-0002-0000-%012llx", salt);
	snprintf(n1, sizeof(n1), "%s-1", u);
	snprintf(n2, sizeof(n2), "%s-2", u);
	post_txn_create(c.port, corr, id1, n1, 7001, NULL);
	post_txn_create(c.port, corr, id2, n2, 7002, NULL);
	size_t staged = 0, done = 0;
	/* answered: both are committed on the staging topic already */
	assert_int_equal(2, consume_staging(&ks, 2, 10000, &staged, &done));
	assert_int_equal(2, staged);
	assert_int_equal(0, done);
	struct ct_msg msgs[8];
	size_t n = 0;
	ct_consume(&kt, msgs, &n, 8, 1, 0, 1500);
	assert_int_equal(0, n); /* the unit is still open */

	kill(c.pid, SIGKILL);
	int wst;
	waitpid(c.pid, &wst, 0);
	ct_capture_track(c.pid, 0);
	for (size_t i = 0; f.envp[i]; i++)
		if (strncmp(f.env_vars[i], "DW_CAPTURE_TXN_SETTLE=", 22) == 0)
			snprintf(f.env_vars[i], 512, "DW_CAPTURE_TXN_SETTLE=200ms");
	c = ct_capture_start("ce", f.envp, 0, 1);
	ct_consume(&kt, msgs, &n, 8, 2, 1000, CT_WAIT_MS);
	assert_int_equal(2, n);
	for (size_t i = 0; i < n; i++) {
		assert_true(msgs[i].ev.has_txn);
		assert_string_equal(corr, msgs[i].ev.txn.id);
		assert_int_equal(2, msgs[i].ev.txn.total);
	}
	assert_int_not_equal(msgs[0].ev.txn.order, msgs[1].ev.txn.order);
	assert_int_equal(1, consume_staging(&ks, 1, CT_WAIT_MS, &staged, &done));
	assert_int_equal(1, done);
	assert_int_equal(0, ct_capture_wait(&c, 1));

	/* a third start finds nothing open: the done record covers the unit */
	c = ct_capture_start("ce", f.envp, 0, 1);
	ct_consume(&kt, msgs, &n, 8, 3, 0, 1500);
	assert_int_equal(2, n);
	assert_int_equal(0, ct_capture_wait(&c, 1));
	char *log = ct_read_file(c.log);
	assert_non_null(log);
	assert_non_null(strstr(log, "\"open_transactions\":\"0\""));
	free(log);
	ct_msgs_free(msgs, n);
	ct_consumer_free(&ks);
	ct_consumer_free(&kt);
	free(u);
	fixture_free(&f);
}

/*
 * Change tracking reads a source transaction's rows before their webhooks arrive (here the
 * webhooks are posted 1.5 s after the changeset, while delta polls every 200 ms): the rows are held
 * for DW_CAPTURE_DELTA_GRACE, the webhooks stage them, and they go out only in their unit (txn
 * total 2), never alone first, also after the grace has passed.
 */
static void test_delta_waits_for_txn_webhooks(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "DW_CAPTURE_DELTA_GRACE=5s", NULL);
	struct ct_capture c = ct_capture_start("ce", f.envp, 0, 1);
	const char *tt[] = { f.topics[1] };
	struct ct_consumer kt = ct_consumer_new(tt, 1);
	char *u = short_unique("G");
	char names[2][64], bodies[2][1024];
	struct odata_batch_request reqs[2];
	memset(reqs, 0, sizeof(reqs));
	static const char *cids[] = { "1", "2" };
	for (int i = 0; i < 2; i++) {
		snprintf(names[i], sizeof(names[i]), "%s-%d", u, i + 1);
		snprintf(bodies[i], sizeof(bodies[i]),
			 "{\"msdyn_name\":\"%s\",\"msdyn_vendor@odata.bind\":\"/accounts(%s)\","
			 "\"transactioncurrencyid@odata.bind\":\"/transactioncurrencies(%s)\","
			 "\"msdyn_company@odata.bind\":\"/cdm_companies(%s)\"}",
			 names[i], vendor, currency, company);
		reqs[i] = (struct odata_batch_request){ .content_id = cids[i], .method = "POST",
							.url = "msdyn_purchaseorders", .body = bodies[i],
							.body_len = strlen(bodies[i]) };
	}
	struct odata_batch_part part = { 1, reqs, 2 };
	char *bbody = NULL, *ctype = NULL;
	size_t blen;
	assert_int_equal(0, odata_batch_request_build(&part, 1, "g1", &bbody, &blen, &ctype, ct_err, sizeof(ct_err)));
	struct ct_resp r = ct_api("ce", "POST", "$batch", bbody, ctype, NULL);
	if (r.status != 200)
		fail_msg("$batch: %ld %s", r.status, r.body);
	ct_resp_free(&r);
	free(bbody);
	free(ctype);
	ct_sleep_ms(1500); /* change tracking has seen both rows by now */
	char corr[64];
	snprintf(corr, sizeof(corr), "c0ffee00-0000-0000-0001-%012llx",
		 (unsigned long long)harness_now_ms() & 0xffffffffffULL);
	for (int i = 0; i < 2; i++) {
		char path[256];
		snprintf(path, sizeof(path), "msdyn_purchaseorders?$filter=msdyn_name%%20eq%%20'%s'", names[i]);
		cJSON *j = ct_get_json("ce", path);
		const cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "value"), 0);
		assert_non_null(row);
		post_txn_create(c.port, corr, sget(row, "msdyn_purchaseorderid"), names[i],
				(long long)cJSON_GetObjectItem(row, "versionnumber")->valuedouble, company);
		cJSON_Delete(j);
	}
	struct ct_msg msgs[8];
	size_t n = 0;
	ct_consume(&kt, msgs, &n, 8, 2, 7000, CT_WAIT_MS); /* then past the grace: nothing more */
	assert_int_equal(2, n);
	for (size_t i = 0; i < n; i++) {
		assert_true(msgs[i].ev.has_txn);
		assert_string_equal(corr, msgs[i].ev.txn.id);
		assert_int_equal(2, msgs[i].ev.txn.total);
		assert_string_equal(company, sget(msgs[i].ev.key, "_msdyn_company_value"));
	}
	assert_int_equal(0, ct_capture_wait(&c, 1));
	ct_msgs_free(msgs, n);
	ct_consumer_free(&kt);
	free(u);
	fixture_free(&f);
}

/* Without DW_CAPTURE_TABLES the tables come from the maps (schemas/maps: accounts, both
 * directions): account is captured with the map's key (accountnumber and the company lookup in
 * its read form), a table no map names is refused, and the startup log says where the tables
 * came from. */
static void test_tables_from_maps(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "DW_CAPTURE_DELTA=false", NULL);
	/* a folder with the accounts map only, so the captured set does not depend on which maps
	 * schemas/maps holds */
	char dir[] = "/tmp/dw-capture-maps-XXXXXX", path[512];
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
	struct ct_capture c = ct_capture_start("ce", f.envp, 0, 1);
	register_hook("account", c.port);
	const char *topics[] = { f.topics[0] };
	struct ct_consumer k = ct_consumer_new(topics, 1);
	char *u = short_unique("M");
	cJSON *a = create_account("From maps", u, company);
	char url[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/webhook/ce?code=hook-key-1234", c.port);
	struct ct_resp r = ct_http("POST", url, "application/json",
				   "{\"MessageName\":\"Update\",\"PrimaryEntityName\":\"msdyn_purchaseorder\"}", NULL, 0);
	assert_int_equal(400, r.status);
	assert_non_null(strstr(r.body, "not captured"));
	ct_resp_free(&r);
	struct ct_msg msgs[8];
	size_t n = 0;
	ct_consume(&k, msgs, &n, 8, 1, 0, CT_WAIT_MS);
	assert_int_equal(1, n);
	assert_string_equal(sget(a, "accountid"), sget(msgs[0].ev.key, "accountid"));
	assert_string_equal(u, sget(msgs[0].ev.key, "accountnumber"));
	assert_string_equal(company, sget(msgs[0].ev.key, "_msdyn_company_value"));
	unregister_hooks();
	assert_int_equal(0, ct_capture_wait(&c, 1));
	char *log = ct_read_file(c.log);
	assert_non_null(log);
	char from[600];
	snprintf(from, sizeof(from), "\"from\":\"maps in %s\"", dir);
	assert_non_null(strstr(log, from));
	assert_non_null(strstr(log, "\"tables\":\"account@accounts:accountnumber+_msdyn_company_value\""));
	free(log);
	assert_int_equal(0, unlink(path));
	assert_int_equal(0, rmdir(dir));
	ct_msgs_free(msgs, n);
	ct_consumer_free(&k);
	cJSON_Delete(a);
	free(u);
	fixture_free(&f);
}

/* A post stripped for size (x-ms-dynamics-msg-size-exceeded, no images) makes capture re-read the
 * row: the event carries the full image and the row's version. The initiating user is the
 * integration's own (DW_CE_OWN_USER_ID), so the event is marked as ours. */
static void test_stripped_post_rereads(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "DW_CAPTURE_DELTA=false", "DW_CE_OWN_USER_ID=0A0B0C0D-0000-0000-0000-0000000000AA");
	struct ct_capture c = ct_capture_start("ce", f.envp, 0, 1);
	char *u = short_unique("S");
	cJSON *a = create_account("Stripped image", u, company);
	char id[40], body[1024], url[256];
	snprintf(id, sizeof(id), "%s", sget(a, "accountid"));
	long long v = row_version("accounts", id);
	snprintf(body, sizeof(body),
		 "{\"BusinessUnitId\":\"e2b9dd85-e89e-e711-8122-000d3aa2331c\",\"CorrelationId\":"
		 "\"e0000000-0000-0000-0000-000000000001\",\"Depth\":1,\"InitiatingUserId\":"
		 "\"0a0b0c0d-0000-0000-0000-0000000000aa\",\"IsInTransaction\":false,\"MessageName\":\"Update\","
		 "\"Mode\":1,\"OperationCreatedOn\":\"/Date(1506409448000)/\",\"PrimaryEntityId\":\"%s\","
		 "\"PrimaryEntityName\":\"account\",\"Stage\":40}",
		 id);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/webhook/ce", c.port);
	struct http_header h[2] = { { "x-dw-webhook-key", "hook-key-1234" },
				    { "x-ms-dynamics-msg-size-exceeded", "true" } };
	struct ct_resp r = ct_http("POST", url, "application/json", body, h, 2);
	if (r.status != 200)
		fail_msg("stripped post: %ld %s", r.status, r.body);
	ct_resp_free(&r);
	const char *topics[] = { f.topics[0] };
	struct ct_consumer k = ct_consumer_new(topics, 1);
	struct ct_msg msgs[4];
	size_t n = 0;
	ct_consume(&k, msgs, &n, 4, 1, 1000, CT_WAIT_MS);
	assert_int_equal(1, n);
	check_account_event(&msgs[0], f.topics[0], id, u, EVENT_OP_UPDATE, v);
	assert_string_equal("Stripped image", sget(msgs[0].ev.data, "name"));
	assert_int_equal(1, msgs[0].ev.source.own);
	/* without the size header the same body is refused: it has no image and no InputParameters */
	r = ct_http("POST", url, "application/json", body, h, 1);
	assert_int_equal(400, r.status);
	ct_resp_free(&r);
	assert_int_equal(0, ct_capture_wait(&c, 1));
	ct_msgs_free(msgs, n);
	ct_consumer_free(&k);
	cJSON_Delete(a);
	free(u);
	fixture_free(&f);
}

int main(void)
{
	log_init("test_capture_ce", LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_delta_every_change_once, teardown_test),
		cmocka_unit_test_teardown(test_webhook_and_delta_one_id_and_txn_unit, teardown_test),
		cmocka_unit_test_teardown(test_webhook_refusals, teardown_test),
		cmocka_unit_test_teardown(test_stripped_post_rereads, teardown_test),
		cmocka_unit_test_teardown(test_tables_from_maps, teardown_test),
		cmocka_unit_test_teardown(test_txn_staged_in_kafka_survives_kill, teardown_test),
		cmocka_unit_test_teardown(test_delta_waits_for_txn_webhooks, teardown_test),
		cmocka_unit_test_teardown(test_delta_delete_waits_for_late_webhooks, teardown_test),
		cmocka_unit_test_teardown(test_delete_preimage_orders_after_pending_update, teardown_test),
	};
	const char *only = getenv("DW_TEST_FILTER"); /* e.g. `make valgrind` runs one scenario */
	if (only && *only)
		cmocka_set_test_filter(only);
	return cmocka_run_group_tests(tests, setup_all, NULL);
}
