/* The apply worker end to end, CE -> FO through the accounts map: the real binary against the real
 * broker, PostgreSQL and the FO/CE emulators. Events are produced straight onto the source topic;
 * writes are counted on the emulator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "config.h"
#include "event.h"
#include "harness.h"
#include "emu_client.h"
#include "kafka.h"
#include "migrate.h"
#include "store.h"
#include "apply_test.h"

#define WAIT_MS 120000
#define PARTITIONS 3

static char err[1024];
static char prefix[32];   /* unique topic prefix of this run */
static char topic[96];    /* <prefix>.ce.account */
static char fo_topic[96]; /* <prefix>.fo.customersv3 */
static char dlq_topic[96];
static char dbname[64];
static char dsn[1024];    /* DW_PG_DSN with the database replaced by dbname */
static char company_guid[40];
static char maps_dir[1024];
static pid_t workers[2] = { -1, -1 }; /* [0] --to fo, [1] --to ce */
static struct kafka_producer *producer;
static struct config_common kcfg;
static const char *fo_base;
static char *fo_token;
static unsigned run_id;

/* ---- helpers ------------------------------------------------------------------------------- */

static PGconn *connect_db(const char *db)
{
	const struct store_opts opts = { .application_name = "dw-test-apply", .dbname = db };
	PGconn *c = NULL;
	if (store_connect(harness_env("DW_PG_DSN"), &opts, &c, err, sizeof(err)) != 0)
		fail_msg("connect: %s", err);
	return c;
}

static void admin_db(const char *verb, const char *suffix)
{
	PGconn *admin = connect_db(NULL);
	char *ident = PQescapeIdentifier(admin, dbname, strlen(dbname));
	char sql[256];
	snprintf(sql, sizeof(sql), "%s %s%s", verb, ident, suffix);
	PQfreemem(ident);
	if (store_exec(admin, sql, 0, NULL, NULL, err, sizeof(err)) != 0)
		fail_msg("%s: %s", sql, err);
	store_close(admin);
}

static long long query_ll(const char *sql, int n, const char *const *params)
{
	PGconn *c = connect_db(dbname);
	PGresult *r = NULL;
	if (store_exec(c, sql, n, params, &r, err, sizeof(err)) != 0)
		fail_msg("%s: %s", sql, err);
	long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	store_close(c);
	return v;
}

/* A unique customer account (FO: at most 20 characters). */
static void account_no(char *out, size_t len, unsigned i)
{
	snprintf(out, len, "A%u-%u-%u", run_id % 100000, (unsigned)(harness_now_ms() % 100000), i);
}

static int widx(const char *to)
{
	return strcmp(to, "fo") == 0 ? 0 : 1;
}

/* The worker's /metrics port: the stack's port base + 60 (to fo) or + 61 (to ce). */
static int metrics_port(const char *to)
{
	return (int)strtol(harness_env("DW_PORT_BASE"), NULL, 10) + 60 + widx(to);
}

/* GET http://127.0.0.1:<port><path>; the status, body into *body (new) when asked. */
static long worker_get(const char *to, const char *path, char **body)
{
	char url[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", metrics_port(to), path);
	struct emu_resp r;
	emu_http("GET", url, NULL, NULL, &r);
	long st = (long)r.status;
	if (body)
		*body = strndup(r.body ? r.body : "", r.len);
	emu_resp_free(&r);
	return st;
}

/* Waits until the worker's HTTP endpoint accepts connections (it has just been started). */
static void wait_worker_listening(const char *to)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)metrics_port(to)) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	long long deadline = harness_now_ms() + WAIT_MS;
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(fd >= 0);
		int ok = connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(fd);
		if (ok)
			return;
		if (harness_now_ms() > deadline)
			fail_msg("the worker to %s does not listen", to);
		usleep(50000);
	}
}

/* The value of one series in the worker's /metrics, e.g. dw_apply_events_total{outcome="applied"}. */
static double metric(const char *to, const char *series)
{
	char *body = NULL;
	if (worker_get(to, "/metrics", &body) != 200)
		fail_msg("GET /metrics failed");
	double v = 0;
	size_t n = strlen(series);
	for (char *line = body; line && *line;) {
		char *nl = strchr(line, '\n');
		if (strncmp(line, series, n) == 0 && line[n] == ' ')
			v = strtod(line + n + 1, NULL);
		line = nl ? nl + 1 : NULL;
	}
	free(body);
	return v;
}

static void worker_start(const char *to, const char *batch_max)
{
	char log_path[1024];
	snprintf(log_path, sizeof(log_path), "%s/logs/apply-worker-to-%s.log", harness_env("DW_STATE_DIR"), to);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		setenv("DW_PG_DSN", dsn, 1);
		setenv("DW_TOPIC_PREFIX", prefix, 1);
		setenv("DW_MAPS_DIR", maps_dir, 1);
		char port[16];
		snprintf(port, sizeof(port), "%d", metrics_port(to));
		setenv("DW_HTTP_PORT", port, 1);
		setenv("DW_APPLY_STATE_CHECK_MS", "300", 1);
		setenv("DW_HTTP_ADDR", "127.0.0.1", 1);
		setenv("DW_APPLY_BATCH_MAX", batch_max, 1);
		setenv("DW_APPLY_BACKOFF_MIN_MS", "200", 1);
		setenv("DW_APPLY_BACKOFF_MAX_MS", "2000", 1);
		setenv("DW_KAFKA_SESSION_TIMEOUT_MS", "6000", 1);
		setenv("DW_APPLY_REDRIVE_MS", "300", 1);
		setenv("DW_APPLY_TXN_TIMEOUT", "8s", 1);
		setenv("DW_APPLY_APPLIED_RETENTION", "1h", 1);
		setenv("DW_APPLY_PRUNE_INTERVAL", "1s", 1);
		/* DW_TEST_APPLY_WRAPPER (`make valgrind`): a worker's exit status is checked at its stop */
		const char *args[] = { "--map", "accounts", "--to", to, NULL };
		harness_exec("DW_TEST_APPLY_WRAPPER", harness_bin("apply"), args);
		_exit(127);
	}
	workers[widx(to)] = pid;
}

/* SIGTERM and wait; returns the exit status (or -1 when it did not exit in time: then killed). */
static int worker_stop(const char *to)
{
	pid_t worker = workers[widx(to)];
	workers[widx(to)] = -1;
	return at_stop_child(worker);
}

static void worker_kill(const char *to)
{
	int status;
	pid_t worker = workers[widx(to)];
	workers[widx(to)] = -1;
	kill(worker, SIGKILL);
	waitpid(worker, &status, 0);
}

static void produce_to(const char *t, const char *key, const void *value, size_t len)
{
	if (kafka_produce(producer, t, key, strlen(key), value, len, NULL, 0, NULL, err, sizeof(err)) != 0)
		fail_msg("produce: %s", err);
}

static void produce_raw(const char *key, const void *value, size_t len)
{
	produce_to(topic, key, value, len);
}

/* Produces one account event (op create/update/delete) at version v. */
static void produce_account(const char *acct, const char *op, int64_t v, const char *name, int own)
{
	struct event ev;
	memset(&ev, 0, sizeof(ev));
	ev.v = EVENT_FORMAT_VERSION;
	ev.source.side = EVENT_SIDE_CE;
	ev.source.env = strdup("test");
	ev.source.entity = strdup("account");
	ev.source.entity_set = strdup("accounts");
	ev.source.version = v;
	ev.source.ts = at_event_ts > 0 ? at_event_ts : 1764464400000LL + v;
	ev.source.own = own;
	ev.op = event_op_parse(op);
	ev.key = cJSON_CreateObject();
	cJSON_AddStringToObject(ev.key, "accountnumber", acct);
	cJSON_AddStringToObject(ev.key, "_msdyn_company_value", company_guid);
	if (ev.op != EVENT_OP_DELETE) {
		ev.data = cJSON_CreateObject();
		cJSON_AddStringToObject(ev.data, "accountnumber", acct);
		cJSON_AddStringToObject(ev.data, "name", name);
		cJSON_AddNumberToObject(ev.data, "customertypecode", 3);
		cJSON_AddNumberToObject(ev.data, "creditlimit", 0); /* FO's CreditLimit is not nullable */
		cJSON_AddStringToObject(ev.data, "_msdyn_company_value", company_guid);
	}
	if (event_compute_id(&ev, err, sizeof(err)) != 0)
		fail_msg("id: %s", err);
	char *out = NULL, *key = NULL;
	size_t len = 0;
	if (event_encode(&ev, &out, &len, err, sizeof(err)) != 0 || event_key_string(ev.key, &key, err, sizeof(err)))
		fail_msg("encode: %s", err);
	produce_raw(key, out, len);
	free(out);
	free(key);
	event_clear(&ev);
}

static void flush_producer(void)
{
	if (kafka_producer_flush(producer, 30000, err, sizeof(err)) != 0)
		fail_msg("flush: %s", err);
	uint64_t ok = 0, failed = 0;
	kafka_producer_counts(producer, &ok, &failed);
	assert_int_equal(0, failed);
}

/* Waits until the group of the worker writing to `to` has committed every partition up to its end. */
static void wait_caught_up_to(const char *to)
{
	char group[96];
	const char *topic_ = strcmp(to, "fo") == 0 ? topic : fo_topic;
	snprintf(group, sizeof(group), "%s.apply.accounts.%s", prefix, to);
	char errstr[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "bootstrap.servers", kcfg.kafka_brokers, errstr, sizeof(errstr));
	rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr));
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	assert_non_null(rk);
	long long deadline = harness_now_ms() + WAIT_MS;
	int done = 0;
	while (!done && harness_now_ms() < deadline) {
		rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTITIONS);
		for (int p = 0; p < PARTITIONS; p++)
			rd_kafka_topic_partition_list_add(l, topic_, p);
		done = rd_kafka_committed(rk, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR;
		for (int p = 0; p < PARTITIONS && done; p++) {
			int64_t lo = 0, hi = 0;
			if (rd_kafka_query_watermark_offsets(rk, topic_, p, &lo, &hi, 10000) != 0)
				done = 0;
			else if (hi > 0 && l->elems[p].offset < hi)
				done = 0;
		}
		rd_kafka_topic_partition_list_destroy(l);
		if (!done)
			usleep(100000);
	}
	rd_kafka_destroy(rk);
	if (!done)
		fail_msg("the worker did not catch up within %d ms", WAIT_MS);
}

static void wait_caught_up(void)
{
	wait_caught_up_to("fo");
}

static void fo_pred(const char *acct, char *out, size_t len)
{
	snprintf(out, len, "(dataAreaId='usmf',CustomerAccount='%s')", acct);
}

/* Emulator write count of one FO customer; -1 when it never existed. */
static long fo_writes(const char *acct, int *deleted)
{
	char pred[128];
	fo_pred(acct, pred, sizeof(pred));
	CURL *c = curl_easy_init();
	char *e = curl_easy_escape(c, pred, 0);
	char path[512];
	snprintf(path, sizeof(path), "records/CustomersV3?key=%s", e);
	curl_free(e);
	curl_easy_cleanup(c);
	struct emu_resp r;
	emu_admin(fo_base, "GET", path, NULL, &r);
	long writes = -1;
	if (r.status == 200) {
		cJSON *j = emu_json(&r);
		writes = (long)cJSON_GetObjectItem(j, "writes")->valuedouble;
		if (deleted)
			*deleted = cJSON_IsTrue(cJSON_GetObjectItem(j, "deleted"));
		cJSON_Delete(j);
	}
	emu_resp_free(&r);
	return writes;
}

/* The FO customer's OrganizationName (new string) or NULL when not found. */
static char *fo_name(const char *acct)
{
	char pred[128], url[1024], auth[8192];
	fo_pred(acct, pred, sizeof(pred));
	snprintf(url, sizeof(url), "%s/data/CustomersV3%s", fo_base, pred);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", fo_token);
	const char *h[] = { auth, "Accept: application/json", NULL };
	struct emu_resp r;
	emu_http("GET", url, h, NULL, &r);
	char *name = NULL;
	if (r.status == 200) {
		cJSON *j = emu_json(&r);
		const cJSON *n = cJSON_GetObjectItem(j, "OrganizationName");
		if (cJSON_IsString(n))
			name = strdup(n->valuestring);
		cJSON_Delete(j);
	}
	emu_resp_free(&r);
	return name;
}

/* Total creates and all writes of CustomersV3 on the FO emulator. */
static void fo_counts(long *creates, long *writes)
{
	struct emu_resp r;
	emu_admin(fo_base, "GET", "stats", NULL, &r);
	assert_int_equal(200, r.status);
	cJSON *j = emu_json(&r);
	const cJSON *s = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "writes"), "CustomersV3");
	long c = 0, u = 0, d = 0;
	if (s) {
		c = (long)cJSON_GetObjectItem(s, "create")->valuedouble;
		u = (long)cJSON_GetObjectItem(s, "update")->valuedouble;
		d = (long)cJSON_GetObjectItem(s, "delete")->valuedouble;
	}
	cJSON_Delete(j);
	emu_resp_free(&r);
	*creates = c;
	*writes = c + u + d;
}

static void assert_name(const char *acct, const char *want)
{
	char *n = fo_name(acct);
	if (!n || strcmp(n, want) != 0)
		fail_msg("%s: OrganizationName is '%s', want '%s'", acct, n ? n : "(none)", want);
	free(n);
}

/* Reads the dead-letter topic from the start until a message with `key` arrives. Returns its
 * header `name` value (new string) or fails. */
static char *dlq_header_in(const char *dlq, const char *key, const char *name, char **body_out)
{
	char *group = harness_unique("dlq-reader");
	struct kafka_consumer_opts o = { .group_id = group };
	struct kafka_consumer *c = NULL;
	if (kafka_consumer_new(&kcfg, &o, &c, err, sizeof(err)) != 0)
		fail_msg("consumer: %s", err);
	const char *topics[] = { dlq };
	if (kafka_consumer_subscribe(c, topics, 1, err, sizeof(err)) != 0)
		fail_msg("subscribe: %s", err);
	char *val = NULL;
	long long deadline = harness_now_ms() + WAIT_MS;
	while (!val && harness_now_ms() < deadline) {
		struct kafka_message *m = NULL;
		int rc = kafka_consumer_poll(c, 200, &m, err, sizeof(err));
		if (rc != 1)
			continue;
		if (m->key && m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0) {
			struct kafka_header h;
			if (kafka_message_header_find(m, name, &h) == 0) {
				val = strndup(h.value ? h.value : "", h.value_len);
				if (body_out)
					*body_out = strndup(m->value ? m->value : "", m->value_len);
			}
		}
		kafka_message_free(m);
	}
	kafka_consumer_close(c);
	free(group);
	if (!val)
		fail_msg("no dead letter for key %s", key);
	return val;
}

static char *dlq_header(const char *key, const char *name, char **body_out)
{
	return dlq_header_in(dlq_topic, key, name, body_out);
}


/* ---- the other direction and round trips ------------------------------------------------- */

static char *ce_token;

/* An event from `side` with the given key and data (both borrowed, copied; data NULL for delete),
 * part `order` of `total` of unit txn_id when txn_id is not NULL. */
static void produce_event_txn(const char *side, const char *entity, const char *set, const char *t, const char *op,
			      int64_t v, const cJSON *key, const cJSON *data, const char *txn_id, int total, int order)
{
	at_produce_event(producer, t, side, entity, set, op, v, key, data, txn_id, total, order);
}

static void produce_event(const char *side, const char *entity, const char *set, const char *t, const char *op,
			  int64_t v, const cJSON *key, const cJSON *data)
{
	produce_event_txn(side, entity, set, t, op, v, key, data, NULL, 0, 0);
}

static cJSON *fo_key(const char *acct)
{
	cJSON *k = cJSON_CreateObject();
	cJSON_AddStringToObject(k, "CustomerAccount", acct);
	cJSON_AddStringToObject(k, "dataAreaId", "usmf");
	return k;
}

/* An FO customer event with a plain image (or delete). */
static void produce_customer(const char *acct, const char *op, int64_t v, const char *name)
{
	cJSON *k = fo_key(acct), *d = NULL;
	if (strcmp(op, "delete") != 0) {
		d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "dataAreaId", "usmf");
		cJSON_AddStringToObject(d, "CustomerAccount", acct);
		cJSON_AddStringToObject(d, "OrganizationName", name);
		cJSON_AddStringToObject(d, "PartyType", "Organization");
		cJSON_AddNumberToObject(d, "CreditLimit", 0);
	}
	produce_event("fo", "CustomersV3", "CustomersV3", fo_topic, op, v, k, d);
	cJSON_Delete(k);
	cJSON_Delete(d);
}

/* GET one record; the JSON (annotations removed) or NULL on 404. */
static cJSON *get_record(const char *url, const char *token)
{
	char auth[8192];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	const char *h[] = { auth, "Accept: application/json", NULL };
	struct emu_resp r;
	emu_http("GET", url, h, NULL, &r);
	cJSON *j = NULL;
	if (r.status == 200) {
		j = emu_json(&r);
		cJSON *m = j ? j->child : NULL;
		while (m) {
			cJSON *next = m->next;
			if (m->string[0] == '@')
				cJSON_Delete(cJSON_DetachItemViaPointer(j, m));
			m = next;
		}
	} else if (r.status != 404) {
		fail_msg("GET %s: HTTP %ld", url, (long)r.status);
	}
	emu_resp_free(&r);
	return j;
}

static cJSON *ce_account(const char *acct)
{
	char url[1024];
	snprintf(url, sizeof(url), "%s/api/data/v9.2/accounts(accountnumber='%s',msdyn_company=%s)",
		 harness_env("DW_CE_URL"), acct, company_guid);
	return get_record(url, ce_token);
}

static cJSON *fo_customer(const char *acct)
{
	char url[1024], pred[128];
	fo_pred(acct, pred, sizeof(pred));
	snprintf(url, sizeof(url), "%s/data/CustomersV3%s", fo_base, pred);
	return get_record(url, fo_token);
}

/* All writes to accounts on the CE emulator. */
static long ce_writes(void)
{
	struct emu_resp r;
	emu_admin(harness_env("DW_CE_URL"), "GET", "stats", NULL, &r);
	assert_int_equal(200, r.status);
	cJSON *j = emu_json(&r);
	const cJSON *s = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "writes"), "accounts");
	long n = 0;
	if (s)
		n = (long)(cJSON_GetObjectItem(s, "create")->valuedouble + cJSON_GetObjectItem(s, "update")->valuedouble +
			   cJSON_GetObjectItem(s, "delete")->valuedouble);
	cJSON_Delete(j);
	emu_resp_free(&r);
	return n;
}

static const char *str_of(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItem(o, name);
	return cJSON_IsString(v) ? v->valuestring : "(none)";
}

static void test_fo_to_ce_create_update_delete(void **state)
{
	(void)state;
	char x[32], y[32];
	account_no(x, sizeof(x), 40);
	account_no(y, sizeof(y), 41);
	produce_customer(x, "create", 1, "Fo One");
	produce_customer(y, "create", 1, "Fo Two");
	flush_producer();
	wait_caught_up_to("ce");
	cJSON *a = ce_account(x), *b = ce_account(y);
	assert_non_null(a);
	assert_non_null(b);
	assert_string_equal("Fo One", str_of(a, "name"));
	assert_string_equal("Fo Two", str_of(b, "name"));
	assert_int_equal(3, cJSON_GetObjectItem(a, "customertypecode")->valueint); /* the map's constant */
	assert_string_equal(company_guid, str_of(a, "_msdyn_company_value"));
	cJSON_Delete(a);
	cJSON_Delete(b);
	long w0 = ce_writes();
	produce_customer(x, "update", 2, "Fo One b");
	produce_customer(y, "delete", 2, NULL);
	flush_producer();
	wait_caught_up_to("ce");
	a = ce_account(x);
	assert_string_equal("Fo One b", str_of(a, "name"));
	cJSON_Delete(a);
	assert_null(ce_account(y));
	assert_int_equal(w0 + 2, ce_writes());
}

static void test_round_trip_echoes_write_nothing(void **state)
{
	(void)state;
	/* CE -> FO, then FO's change event for our own write comes back: nothing is written to CE */
	char a[32];
	account_no(a, sizeof(a), 50);
	produce_account(a, "create", 1, "Echo from CE", 0);
	flush_producer();
	wait_caught_up();
	cJSON *img = fo_customer(a);
	assert_non_null(img);
	long ce0 = ce_writes();
	cJSON *k = fo_key(a);
	produce_event("fo", "CustomersV3", "CustomersV3", fo_topic, "update", 1000, k, img);
	cJSON_Delete(k);
	cJSON_Delete(img);
	flush_producer();
	wait_caught_up_to("ce");
	assert_int_equal(ce0, ce_writes());
	assert_null(ce_account(a));
	/* FO -> CE, then CE's change event for our own write comes back: nothing is written to FO */
	char b[32];
	account_no(b, sizeof(b), 51);
	produce_customer(b, "create", 1, "Echo from FO");
	flush_producer();
	wait_caught_up_to("ce");
	cJSON *cimg = ce_account(b);
	assert_non_null(cimg);
	long fc0, fw0;
	fo_counts(&fc0, &fw0);
	cJSON *ck = cJSON_CreateObject();
	cJSON_AddStringToObject(ck, "_msdyn_company_value", company_guid);
	cJSON_AddStringToObject(ck, "accountnumber", b);
	produce_event("ce", "account", "accounts", topic, "update", 1000, ck, cimg);
	cJSON_Delete(ck);
	cJSON_Delete(cimg);
	flush_producer();
	wait_caught_up();
	long fc1, fw1;
	fo_counts(&fc1, &fw1);
	assert_int_equal(fw0, fw1);
	assert_null(fo_name(b));
	const char *p[] = { "accounts" };
	assert_true(query_ll("SELECT count(*) FROM dw_applied_event WHERE map_name = $1 AND outcome = 'echo' "
			     "AND target_side = 'ce'", 1, p) >= 1);
	/* a real edit on FO after that is applied to CE */
	produce_customer(b, "update", 2, "Edited on FO");
	flush_producer();
	wait_caught_up_to("ce");
	cimg = ce_account(b);
	assert_string_equal("Edited on FO", str_of(cimg, "name"));
	cJSON_Delete(cimg);
}

/* ---- setup --------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
	(void)state;
	run_id = (unsigned)getpid();
	snprintf(prefix, sizeof(prefix), "dwt%u", run_id);
	snprintf(topic, sizeof(topic), "%s.ce.account", prefix);
	snprintf(dlq_topic, sizeof(dlq_topic), "%s.dlq.accounts.fo", prefix);
	snprintf(fo_topic, sizeof(fo_topic), "%s.fo.customersv3", prefix);
	char cwd[512];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	snprintf(maps_dir, sizeof(maps_dir), "%s/schemas/maps", cwd);
	fo_base = harness_env("DW_FO_URL");
	fo_token = emu_token("FO");
	ce_token = emu_token("CE");

	/* a fresh database, migrated */
	snprintf(dbname, sizeof(dbname), "dwt_apply_%u_%lld", run_id, harness_now_ms());
	admin_db("CREATE DATABASE", "");
	PGconn *c = connect_db(dbname);
	struct migrate_result res;
	if (migrate_run(c, migrate_files, migrate_files_len, &res, err, sizeof(err)) != 0)
		fail_msg("migrate: %s", err);
	store_close(c);
	const char *base = harness_env("DW_PG_DSN");
	const char *q = strchr(base, '?');
	const char *slash = q ? q : base + strlen(base);
	while (slash > base && *slash != '/')
		slash--;
	snprintf(dsn, sizeof(dsn), "%.*s/%s%s", (int)(slash - base), base, dbname, q ? q : "");

	/* the company on CE: the worker resolves _msdyn_company_value to its code */
	char url[1024], auth[8192];
	snprintf(url, sizeof(url), "%s/api/data/v9.2/cdm_companies(cdm_companycode='usmf')", harness_env("DW_CE_URL"));
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", ce_token);
	const char *h[] = { auth, "Content-Type: application/json", "Prefer: return=representation", NULL };
	struct emu_resp r;
	emu_http("PATCH", url, h, "{\"cdm_name\":\"USMF\"}", &r);
	assert_true(r.status == 200 || r.status == 201);
	cJSON *j = emu_json(&r);
	snprintf(company_guid, sizeof(company_guid), "%s", cJSON_GetObjectItem(j, "cdm_companyid")->valuestring);
	cJSON_Delete(j);
	emu_resp_free(&r);

	/* the source topic and a producer */
	kcfg.kafka_brokers = (char *)harness_env("DW_KAFKA_BROKERS");
	kcfg.topic_prefix = prefix;
	struct kafka_admin *ad = NULL;
	if (kafka_admin_new(&kcfg, &ad, err, sizeof(err)) != 0)
		fail_msg("admin: %s", err);
	struct kafka_topic_spec spec = { PARTITIONS, 1, -1 };
	enum kafka_topic_outcome oc;
	if (kafka_topic_ensure(ad, topic, &spec, 30000, &oc, err, sizeof(err)) != 0 ||
	    kafka_topic_ensure(ad, fo_topic, &spec, 30000, &oc, err, sizeof(err)) != 0)
		fail_msg("topic: %s", err);
	kafka_admin_free(ad);
	if (kafka_producer_new(&kcfg, NULL, &producer, err, sizeof(err)) != 0)
		fail_msg("producer: %s", err);
	worker_start("fo", "500");
	worker_start("ce", "500");
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	int rc = worker_stop("fo");
	int rc_ce = worker_stop("ce");
	kafka_producer_close(producer, 10000);
	free(fo_token);
	free(ce_token);
	admin_db("DROP DATABASE", " WITH (FORCE)");
	assert_int_equal(0, rc); /* SIGTERM: a clean exit */
	assert_int_equal(0, rc_ce);
	return 0;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_create_update_delete_arrive(void **state)
{
	(void)state;
	char a[32], b[32], c[32];
	account_no(a, sizeof(a), 1);
	account_no(b, sizeof(b), 2);
	account_no(c, sizeof(c), 3);
	produce_account(a, "create", 1, "Alpha", 0);
	produce_account(b, "create", 1, "Beta", 0);
	produce_account(c, "create", 1, "Gamma", 0);
	flush_producer();
	wait_caught_up();
	assert_name(a, "Alpha");
	assert_name(b, "Beta");
	assert_name(c, "Gamma");
	long c0, w0;
	fo_counts(&c0, &w0);
	produce_account(a, "update", 2, "Alpha two", 0);
	produce_account(c, "delete", 2, NULL, 0);
	flush_producer();
	wait_caught_up();
	assert_name(a, "Alpha two");
	assert_name(b, "Beta");
	char *gone = fo_name(c);
	assert_null(gone);
	long c1, w1;
	fo_counts(&c1, &w1);
	assert_int_equal(c0, c1);     /* nothing created */
	assert_int_equal(w0 + 2, w1); /* one update, one delete */
	assert_int_equal(2, fo_writes(a, NULL));
	assert_int_equal(1, fo_writes(b, NULL));
}

static void test_replay_and_stale_and_echo_write_nothing(void **state)
{
	(void)state;
	char a[32];
	account_no(a, sizeof(a), 10);
	produce_account(a, "create", 5, "Five", 0);
	flush_producer();
	wait_caught_up();
	long c0, w0;
	fo_counts(&c0, &w0);
	/* the same events again (same ids), an older version, an echo of the same content at a newer
	 * version, and an event marked as our own */
	produce_account(a, "create", 5, "Five", 0);
	produce_account(a, "update", 3, "Three", 0);
	produce_account(a, "update", 6, "Five", 0);
	produce_account(a, "update", 7, "Seven but own", 1);
	flush_producer();
	wait_caught_up();
	long c1, w1;
	fo_counts(&c1, &w1);
	assert_int_equal(w0, w1);
	assert_int_equal(c0, c1);
	assert_name(a, "Five");
	assert_int_equal(1, fo_writes(a, NULL));
	/* the outcomes are recorded as such */
	const char *p[] = { "accounts" };
	assert_true(query_ll("SELECT count(*) FROM dw_applied_event WHERE map_name = $1 AND outcome = 'echo'", 1, p) >= 2);
	/* a newer real change is still written */
	produce_account(a, "update", 8, "Eight", 0);
	flush_producer();
	wait_caught_up();
	assert_name(a, "Eight");
	assert_int_equal(2, fo_writes(a, NULL));
}

/* Idempotency keys older than DW_APPLY_APPLIED_RETENTION (1h here) are pruned by the worker of
 * their map and target, every DW_APPLY_PRUNE_INTERVAL (1s here); newer ones and other maps' stay. */
static void test_old_idempotency_keys_pruned(void **state)
{
	(void)state;
	char ids[5][64];
	static const char *const rows[5][3] = {
		{ "accounts", "fo", "2 hours" }, { "accounts", "ce", "3 hours" }, { "accounts", "fo", "10 minutes" },
		{ "other_map", "fo", "2 hours" }, { "accounts", "fo", "0 seconds" },
	};
	for (int i = 0; i < 5; i++) {
		snprintf(ids[i], sizeof(ids[i]), "prune-%u-%d", run_id, i);
		const char *p[] = { rows[i][0], rows[i][1], ids[i], rows[i][2] };
		query_ll("WITH x AS (INSERT INTO dw_applied_event (map_name, target_side, event_id, outcome, applied_at) "
			 "VALUES ($1, $2, $3, 'applied', now() - $4::interval) RETURNING 1) SELECT count(*) FROM x",
			 4, p);
	}
	long long deadline = harness_now_ms() + 20000;
	long long left = 2;
	while (harness_now_ms() < deadline) {
		const char *p[] = { ids[0], ids[1] };
		left = query_ll("SELECT count(*) FROM dw_applied_event WHERE event_id IN ($1, $2)", 2, p);
		if (left == 0)
			break;
		usleep(200000);
	}
	assert_int_equal(0, left);
	for (int i = 2; i < 5; i++) {
		const char *p[] = { ids[i] };
		if (query_ll("SELECT count(*) FROM dw_applied_event WHERE event_id = $1", 1, p) != 1)
			fail_msg("row %d (%s %s, %s old) was pruned", i, rows[i][0], rows[i][1], rows[i][2]);
	}
}

static void test_malformed_event_goes_to_dlq_and_partition_moves_on(void **state)
{
	(void)state;
	char a[32], key[128];
	account_no(a, sizeof(a), 20);
	snprintf(key, sizeof(key), "_msdyn_company_value=%s,accountnumber=%s", company_guid, a);
	const char *poison = "{\"v\":1,\"id\":\"nope\"";
	produce_raw(key, poison, strlen(poison)); /* same key: same partition, before the good one */
	produce_account(a, "create", 1, "After the poison", 0);
	flush_producer();
	wait_caught_up();
	assert_name(a, "After the poison");
	char *reason = dlq_header(key, "dw.reason", NULL);
	assert_string_equal("decode", reason);
	free(reason);
	char *why = dlq_header(key, "dw.error", NULL);
	assert_true(strlen(why) > 0);
	free(why);
}

static void test_validation_error_goes_to_dlq_with_target_body(void **state)
{
	(void)state;
	char a[32], good[32], name[200];
	account_no(a, sizeof(a), 30);
	account_no(good, sizeof(good), 31);
	memset(name, 'n', 150); /* OrganizationName holds 100 on FO */
	name[150] = '\0';
	produce_account(a, "create", 1, name, 0);
	produce_account(good, "create", 1, "Fine", 0);
	flush_producer();
	wait_caught_up();
	assert_name(good, "Fine");
	assert_int_equal(-1, fo_writes(a, NULL));
	char key[128];
	snprintf(key, sizeof(key), "_msdyn_company_value=%s,accountnumber=%s", company_guid, a);
	char *status = dlq_header(key, "dw.http.status", NULL);
	assert_string_equal("400", status);
	free(status);
	char *body = dlq_header(key, "dw.target.error.body", NULL);
	assert_non_null(strstr(body, "\"error\""));
	assert_non_null(strstr(body, "OrganizationName"));
	free(body);
	const char *p[] = { "accounts" };
	assert_true(query_ll("SELECT count(*) FROM dw_applied_event WHERE map_name = $1 AND outcome = 'dead_letter'",
			     1, p) >= 1);
}


static void exec_sql(const char *sql, int n, const char *const *params)
{
	PGconn *c = connect_db(dbname);
	if (store_exec(c, sql, n, params, NULL, err, sizeof(err)) != 0)
		fail_msg("%s: %s", sql, err);
	store_close(c);
}

/* Waits until the metric reaches at least `want`. */
static void wait_metric(const char *to, const char *series, double want)
{
	long long deadline = harness_now_ms() + WAIT_MS;
	while (metric(to, series) < want) {
		if (harness_now_ms() > deadline)
			fail_msg("%s stayed below %g", series, want);
		usleep(100000);
	}
}

/* Teardown of the fault tests: the emulator back to normal even when the test failed. */
static int faults_off(void **state)
{
	(void)state;
	struct emu_resp r;
	emu_admin(fo_base, "POST", "faults", "{\"outage\":false,\"latency_ms\":0}", &r);
	emu_resp_free(&r);
	emu_admin(fo_base, "POST", "limits", "{\"max_requests\":0}", &r);
	emu_resp_free(&r);
	return 0;
}

static void test_health_readiness_and_metrics(void **state)
{
	(void)state;
	for (int i = 0; i < 2; i++) {
		const char *to = i == 0 ? "fo" : "ce";
		assert_int_equal(200, worker_get(to, "/healthz", NULL));
		assert_int_equal(200, worker_get(to, "/readyz", NULL));
		char *body = NULL;
		assert_int_equal(200, worker_get(to, "/metrics", &body));
		assert_non_null(strstr(body, "# TYPE dw_apply_events_total counter"));
		assert_non_null(strstr(body, "dw_apply_batch_seconds_bucket"));
		assert_non_null(strstr(body, "dw_apply_end_to_end_seconds_count"));
		assert_non_null(strstr(body, "dw_apply_consumer_lag{partition="));
		assert_non_null(strstr(body, "dw_apply_parked_events 0"));
		free(body);
	}
	/* the earlier tests applied, skipped and dead-lettered events: the counters say so */
	assert_true(metric("fo", "dw_apply_events_total{outcome=\"applied\"}") >= 5);
	assert_true(metric("fo", "dw_apply_events_total{outcome=\"duplicate\"}") >= 1);
	assert_true(metric("fo", "dw_apply_events_total{outcome=\"echo\"}") >= 1);
	assert_true(metric("fo", "dw_apply_events_total{outcome=\"dead_letter\"}") >= 2);
	assert_true(metric("ce", "dw_apply_events_total{outcome=\"applied\"}") >= 3);
}

static void test_paused_map_holds_backlog_then_catches_up_in_order(void **state)
{
	(void)state;
	const char *p[] = { "accounts", "paused by the test" };
	exec_sql("INSERT INTO dw_map_state (map_name, state, reason) VALUES ($1, 'paused', $2) "
		 "ON CONFLICT (map_name) DO UPDATE SET state = 'paused', reason = $2",
		 2, p);
	usleep(1000000); /* three state checks */
	char a[32];
	account_no(a, sizeof(a), 60);
	produce_account(a, "create", 1, "Paused one", 0);
	produce_account(a, "update", 2, "Paused two", 0);
	produce_account(a, "update", 3, "Paused three", 0);
	flush_producer();
	usleep(2000000); /* a paused map consumes nothing: give it time to (wrongly) do so */
	char *n = fo_name(a);
	assert_null(n);
	const char *q[] = { "accounts" };
	exec_sql("UPDATE dw_map_state SET state = 'running', reason = NULL WHERE map_name = $1", 1, q);
	wait_caught_up();
	assert_name(a, "Paused three");
}

/* Turns the FO emulator's outage fault (503 for every API call) on or off. */
static void fo_outage(int on)
{
	struct emu_resp r;
	emu_admin(fo_base, "POST", "faults", on ? "{\"outage\":true}" : "{\"outage\":false}", &r);
	assert_int_equal(r.status, 200);
	emu_resp_free(&r);
}

static void test_outage_pauses_and_retries_without_loss(void **state)
{
	(void)state;
	double r0 = metric("fo", "dw_apply_retries_total{reason=\"target\"}");
	fo_outage(1);
	char accts[20][32];
	for (int i = 0; i < 20; i++) {
		account_no(accts[i], sizeof(accts[i]), 70 + (unsigned)i);
		produce_account(accts[i], "create", 1, "During outage v1", 0);
		produce_account(accts[i], "update", 2, "During outage v2", 0);
	}
	flush_producer();
	wait_metric("fo", "dw_apply_retries_total{reason=\"target\"}", r0 + 2); /* it retried, more than once */
	fo_outage(0);
	wait_caught_up();
	for (int i = 0; i < 20; i++)
		assert_name(accts[i], "During outage v2");
}

static void test_throttling_honours_retry_after_without_loss(void **state)
{
	(void)state;
	double r0 = metric("fo", "dw_apply_retries_total{reason=\"target\"}");
	struct emu_resp r;
	/* three requests per 2 s window (a create is a PATCH and a POST): most batches meet a 429 with
	 * Retry-After: 1 */
	emu_admin(fo_base, "POST", "limits", "{\"max_requests\":3,\"window_s\":2,\"retry_after_s\":1}", &r);
	emu_resp_free(&r);
	char accts[6][32];
	for (int i = 0; i < 6; i++) {
		account_no(accts[i], sizeof(accts[i]), 90 + (unsigned)i);
		produce_account(accts[i], "create", 1, "Throttled", 0);
		flush_producer();
		usleep(50000);
	}
	wait_caught_up();
	emu_admin(fo_base, "POST", "limits", "{\"max_requests\":0}", &r);
	emu_resp_free(&r);
	for (int i = 0; i < 6; i++)
		assert_name(accts[i], "Throttled");
	assert_true(metric("fo", "dw_apply_retries_total{reason=\"target\"}") > r0);
	assert_true(metric("fo", "dw_apply_target_http_total{status=\"429\"}") >= 1);
}

static void test_concurrent_edits_of_different_fields_both_survive(void **state)
{
	(void)state;
	char a[32];
	account_no(a, sizeof(a), 100);
	produce_account(a, "create", 1, "Before", 0);
	flush_producer();
	wait_caught_up();
	/* someone edits the record on FO directly: its ETag changes */
	char url[1024], pred[128], auth[8192];
	fo_pred(a, pred, sizeof(pred));
	snprintf(url, sizeof(url), "%s/data/CustomersV3%s", fo_base, pred);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", fo_token);
	const char *h[] = { auth, "Content-Type: application/json", NULL };
	struct emu_resp r;
	emu_http("PATCH", url, h, "{\"PrimaryContactEmail\":\"edited@fo.example\"}", &r);
	assert_true(r.status == 204 || r.status == 200);
	emu_resp_free(&r);
	double c0 = metric("fo", "dw_apply_conflicts_total{outcome=\"merged\"}");
	long w0 = fo_writes(a, NULL);
	/* the CE change made after it: 412, re-read, the fields differ: merged and written again */
	produce_account(a, "update", 2, "After", 0);
	flush_producer();
	wait_caught_up();
	assert_name(a, "After");
	assert_int_equal(c0 + 1, metric("fo", "dw_apply_conflicts_total{outcome=\"merged\"}"));
	assert_true(metric("fo", "dw_apply_target_http_total{status=\"412\"}") >= 1);
	/* both edits survive, and the merge wrote once */
	cJSON *f = fo_customer(a);
	assert_non_null(f);
	assert_string_equal("edited@fo.example", str_of(f, "PrimaryContactEmail"));
	assert_string_equal("After", str_of(f, "OrganizationName"));
	cJSON_Delete(f);
	assert_int_equal(w0 + 1, fo_writes(a, NULL));
}

/* ---- conflicts on one field (rule 4) --------------------------------------------------------- */

static long ce_record_writes(const char *guid)
{
	char path[128];
	snprintf(path, sizeof(path), "records/accounts?id=%s", guid);
	struct emu_resp r;
	emu_admin(harness_env("DW_CE_URL"), "GET", path, NULL, &r);
	assert_int_equal(200, r.status);
	cJSON *j = emu_json(&r);
	long w = (long)cJSON_GetObjectItem(j, "writes")->valuedouble;
	cJSON_Delete(j);
	emu_resp_free(&r);
	return w;
}

/* A service API call on one side; fails the test unless the status is 2xx. */
static void side_call(const char *side, const char *method, const char *path, const char *body)
{
	char url[1024], auth[8192];
	int ce = strcmp(side, "ce") == 0;
	snprintf(url, sizeof(url), "%s%s%s", ce ? harness_env("DW_CE_URL") : fo_base, ce ? "/api/data/v9.2/" : "/data/",
		 path);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", ce ? ce_token : fo_token);
	const char *h[] = { auth, "Content-Type: application/json", NULL };
	struct emu_resp r;
	emu_http(method, url, h, body, &r);
	if (r.status < 200 || r.status > 299)
		fail_msg("%s %s %s: HTTP %d", side, method, path, (int)r.status);
	emu_resp_free(&r);
}

/* Produces the change event of the record as it is now on `side`, as capture would, with source
 * time ts (0: now). */
static void produce_current(const char *side, const char *acct, const char *op, int64_t v, long long ts)
{
	at_event_ts = ts > 0 ? ts : at_wall_ms();
	if (strcmp(side, "ce") == 0) {
		cJSON *img = ce_account(acct), *k = cJSON_CreateObject();
		assert_non_null(img);
		cJSON_AddStringToObject(k, "_msdyn_company_value", company_guid);
		cJSON_AddStringToObject(k, "accountnumber", acct);
		produce_event("ce", "account", "accounts", topic, op, v, k, img);
		cJSON_Delete(k);
		cJSON_Delete(img);
	} else {
		cJSON *img = fo_customer(acct), *k = fo_key(acct);
		assert_non_null(img);
		produce_event("fo", "CustomersV3", "CustomersV3", fo_topic, op, v, k, img);
		cJSON_Delete(k);
		cJSON_Delete(img);
	}
	at_event_ts = 0;
}

/* Restarts both workers on a copy of the accounts map with conflict_policy `policy`. */
static void restart_with_policy(const char *policy)
{
	char dir[1024], path[1100], *text = NULL;
	snprintf(dir, sizeof(dir), "%s/apply-maps-%u-%s", harness_env("DW_STATE_DIR"), run_id, policy);
	mkdir(dir, 0755);
	FILE *in = fopen("schemas/maps/accounts.json", "r");
	assert_non_null(in);
	size_t cap = 1 << 20, len = 0;
	text = calloc(1, cap);
	assert_non_null(text);
	len = fread(text, 1, cap - 1, in);
	fclose(in);
	const char *at = strstr(text, "\"latest_wins\"");
	assert_non_null(at);
	snprintf(path, sizeof(path), "%s/accounts.json", dir);
	FILE *out = fopen(path, "w");
	assert_non_null(out);
	fprintf(out, "%.*s\"%s\"%s", (int)(at - text), text, policy, at + strlen("\"latest_wins\""));
	fclose(out);
	free(text);
	(void)len;
	assert_int_equal(0, worker_stop("fo"));
	assert_int_equal(0, worker_stop("ce"));
	snprintf(maps_dir, sizeof(maps_dir), "%s", dir);
	worker_start("fo", "500");
	worker_start("ce", "500");
}

/* Makes account a on CE and lets it reach FO; fills the FO and CE record paths. */
static void make_on_ce(const char *a, char *path, size_t plen, char *ce_path, size_t clen)
{
	char body[512], pred[128];
	snprintf(body, sizeof(body),
		 "{\"name\":\"base\",\"accountnumber\":\"%s\",\"customertypecode\":3,\"creditlimit\":0,"
		 "\"msdyn_company@odata.bind\":\"/cdm_companies(%s)\"}",
		 a, company_guid);
	side_call("ce", "POST", "accounts", body);
	produce_current("ce", a, "create", 1, 0);
	flush_producer();
	wait_caught_up();
	fo_pred(a, pred, sizeof(pred));
	snprintf(path, plen, "CustomersV3%s", pred);
	snprintf(ce_path, clen, "accounts(accountnumber='%s',msdyn_company=%s)", a, company_guid);
}

/* CE's account a once its telephone1 is `want`, or after 30 s (a worker may still be joining its
 * group after a restart). The caller frees it. */
static cJSON *ce_account_with_phone(const char *a, const char *want)
{
	cJSON *c = NULL;
	for (long long end = harness_now_ms() + 30000;;) {
		c = ce_account(a);
		assert_non_null(c);
		if (strcmp(str_of(c, "telephone1"), want) == 0 || harness_now_ms() > end)
			return c;
		cJSON_Delete(c);
		usleep(200000);
	}
}

/*
 * One account edited in the same field on both sides at once (CE first, FO 50 ms later), both
 * change events applied concurrently: both sides end with the value of the side `want`, and only
 * the losing side is written (once).
 */
static void same_field_conflict(const char *policy, const char *want, unsigned n)
{
	restart_with_policy(policy);
	char a[32], path[256], ce_path[256];
	account_no(a, sizeof(a), n);
	/* the account made on CE reaches FO; an FO edit reaches CE; CE's echo of it comes back */
	make_on_ce(a, path, sizeof(path), ce_path, sizeof(ce_path));
	side_call("fo", "PATCH", path, "{\"PrimaryContactPhone\":\"p1\"}");
	produce_current("fo", a, "update", 1, 0);
	flush_producer();
	wait_caught_up();
	produce_current("ce", a, "update", 2, 0);
	flush_producer();
	wait_caught_up();
	cJSON *c = ce_account_with_phone(a, "p1");
	if (strcmp(str_of(c, "telephone1"), "p1") != 0) {
		char have[64];
		snprintf(have, sizeof(have), "%s", str_of(c, "telephone1"));
		cJSON_Delete(c);
		fail_msg("%s: FO's phone edit did not reach CE (telephone1 '%s')", policy, have);
	}
	char guid[40];
	snprintf(guid, sizeof(guid), "%s", str_of(c, "accountid"));
	cJSON_Delete(c);
	/* the concurrent edits */
	side_call("ce", "PATCH", ce_path, "{\"name\":\"ce-edit\"}");
	long long t1 = at_wall_ms();
	usleep(50000);
	side_call("fo", "PATCH", path, "{\"OrganizationName\":\"fo-edit\"}");
	long long t2 = at_wall_ms();
	long cw0 = ce_record_writes(guid), fw0 = fo_writes(a, NULL);
	produce_current("ce", a, "update", 3, t1);
	produce_current("fo", a, "update", 2, t2);
	flush_producer();
	wait_caught_up();
	c = ce_account(a);
	cJSON *f = fo_customer(a);
	assert_non_null(c);
	assert_non_null(f);
	const char *wanted = strcmp(want, "ce") == 0 ? "ce-edit" : "fo-edit";
	if (strcmp(str_of(c, "name"), wanted) != 0 || strcmp(str_of(f, "OrganizationName"), wanted) != 0)
		fail_msg("%s: ce name '%s', fo OrganizationName '%s', want '%s' on both", policy, str_of(c, "name"),
			 str_of(f, "OrganizationName"), wanted);
	/* the other edits stay */
	assert_string_equal("p1", str_of(c, "telephone1"));
	assert_string_equal("p1", str_of(f, "PrimaryContactPhone"));
	cJSON_Delete(c);
	cJSON_Delete(f);
	long cw = ce_record_writes(guid) - cw0, fw = fo_writes(a, NULL) - fw0;
	assert_int_equal(strcmp(want, "fo") == 0 ? 1 : 0, cw);
	assert_int_equal(strcmp(want, "ce") == 0 ? 1 : 0, fw);
}

static int default_policy(void **state)
{
	(void)state;
	char cwd[512];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	snprintf(maps_dir, sizeof(maps_dir), "%s/schemas/maps", cwd);
	assert_int_equal(0, worker_stop("fo"));
	assert_int_equal(0, worker_stop("ce"));
	worker_start("fo", "500");
	worker_start("ce", "500");
	return 0;
}

static void test_same_field_latest_wins_ends_equal(void **state)
{
	(void)state;
	same_field_conflict("latest_wins", "fo", 310);
}

static void test_same_field_ce_wins_ends_equal(void **state)
{
	(void)state;
	same_field_conflict("ce_wins", "ce", 311);
}

static void test_same_field_fo_wins_ends_equal(void **state)
{
	(void)state;
	same_field_conflict("fo_wins", "fo", 312);
}

/*
 * Issue 5 (e2e concurrent edits ended with the phone different on the two sides): FO changes the
 * phone at .700 of a second, the FO->CE worker writes it to CE, then CE changes the phone again in
 * the same second. CE's change time has whole seconds only, so it is older than FO's; but CE's
 * change overwrote our copy of FO's change and follows it: it must reach FO (FO's own event was
 * applied already and will not carry anything to CE again), and both sides end with it.
 */
static void test_change_after_our_copy_reaches_other_side(void **state)
{
	(void)state;
	char a[32], path[256], ce_path[256];
	account_no(a, sizeof(a), 313);
	make_on_ce(a, path, sizeof(path), ce_path, sizeof(ce_path));
	side_call("fo", "PATCH", path, "{\"PrimaryContactPhone\":\"fo-first\"}");
	/* FO's change time (after the account reached FO); CE's below is its whole second */
	long long t_fo = at_wall_ms();
	if (t_fo % 1000 == 0)
		t_fo++;
	produce_current("fo", a, "update", 1, t_fo);
	flush_producer();
	wait_caught_up();
	cJSON *c = ce_account_with_phone(a, "fo-first");
	assert_string_equal("fo-first", str_of(c, "telephone1"));
	cJSON_Delete(c);
	side_call("ce", "PATCH", ce_path, "{\"telephone1\":\"ce-after\"}");
	c = ce_account(a);
	assert_non_null(c);
	const cJSON *vn = cJSON_GetObjectItemCaseSensitive(c, "versionnumber");
	assert_true(cJSON_IsNumber(vn));
	int64_t version = (int64_t)vn->valuedouble;
	cJSON_Delete(c);
	produce_current("ce", a, "update", version, t_fo / 1000 * 1000);
	flush_producer();
	wait_caught_up();
	c = ce_account(a);
	cJSON *f = fo_customer(a);
	assert_non_null(c);
	assert_non_null(f);
	if (strcmp(str_of(c, "telephone1"), "ce-after") != 0 || strcmp(str_of(f, "PrimaryContactPhone"), "ce-after") != 0)
		fail_msg("ce telephone1 '%s', fo PrimaryContactPhone '%s', want 'ce-after' on both",
			 str_of(c, "telephone1"), str_of(f, "PrimaryContactPhone"));
	cJSON_Delete(c);
	cJSON_Delete(f);
}

/*
 * An account made on FO, so the CE->FO worker has never written it and knows no ETag for it. FO
 * changes the city, then an earlier CE change of the city arrives: the worker must not overwrite
 * FO's change blindly (FO's change times are taken when its request begins, so its event could then
 * look older than our write and be dropped as such). It finds FO's change (a 412), and under
 * latest_wins FO's later value ends on both sides.
 */
static void test_first_write_does_not_overwrite_unseen_change(void **state)
{
	(void)state;
	char a[32], path[256], ce_path[256], pred[128], body[512];
	account_no(a, sizeof(a), 314);
	snprintf(body, sizeof(body),
		 "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"%s\",\"OrganizationName\":\"base\","
		 "\"PartyType\":\"Organization\",\"CreditLimit\":0}",
		 a);
	side_call("fo", "POST", "CustomersV3", body);
	produce_current("fo", a, "create", 1, 0);
	flush_producer();
	wait_caught_up();
	fo_pred(a, pred, sizeof(pred));
	snprintf(path, sizeof(path), "CustomersV3%s", pred);
	snprintf(ce_path, sizeof(ce_path), "accounts(accountnumber='%s',msdyn_company=%s)", a, company_guid);
	cJSON *c = NULL;
	for (long long end = harness_now_ms() + 30000;;) {
		c = ce_account(a);
		if (c || harness_now_ms() > end)
			break;
		usleep(200000);
	}
	assert_non_null(c);
	cJSON_Delete(c);
	long long t_ce = at_wall_ms() - 1000;
	side_call("ce", "PATCH", ce_path, "{\"address1_city\":\"ce-earlier\"}");
	side_call("fo", "PATCH", path, "{\"AddressCity\":\"fo-later\"}");
	c = ce_account(a);
	assert_non_null(c);
	int64_t version = (int64_t)cJSON_GetObjectItemCaseSensitive(c, "versionnumber")->valuedouble;
	cJSON_Delete(c);
	produce_current("ce", a, "update", version, t_ce);
	flush_producer();
	/* give a blind write time to land (it would within this); FO's own event follows */
	cJSON *f = NULL;
	for (long long end = harness_now_ms() + 2000;;) {
		f = fo_customer(a);
		assert_non_null(f);
		if (strcmp(str_of(f, "AddressCity"), "fo-later") != 0 || harness_now_ms() > end)
			break;
		cJSON_Delete(f);
		usleep(100000);
	}
	cJSON_Delete(f);
	produce_current("fo", a, "update", 2, 0);
	flush_producer();
	wait_caught_up();
	c = ce_account(a);
	f = fo_customer(a);
	assert_non_null(c);
	assert_non_null(f);
	if (strcmp(str_of(c, "address1_city"), "fo-later") != 0 || strcmp(str_of(f, "AddressCity"), "fo-later") != 0)
		fail_msg("ce address1_city '%s', fo AddressCity '%s', want FO's later 'fo-later' on both",
			 str_of(c, "address1_city"), str_of(f, "AddressCity"));
	cJSON_Delete(c);
	cJSON_Delete(f);
}

/* CE's versionnumber of account a. */
static int64_t ce_version(const char *a)
{
	cJSON *c = ce_account(a);
	assert_non_null(c);
	const cJSON *vn = cJSON_GetObjectItemCaseSensitive(c, "versionnumber");
	assert_true(cJSON_IsNumber(vn));
	int64_t v = (int64_t)vn->valuedouble;
	cJSON_Delete(c);
	return v;
}

/* Fails unless account a holds `want` in ce_field on CE and in fo_field on FO. */
static void assert_both(const char *a, const char *ce_field, const char *fo_field, const char *want)
{
	cJSON *c = ce_account(a), *f = fo_customer(a);
	assert_non_null(c);
	assert_non_null(f);
	char have_ce[64], have_fo[64];
	snprintf(have_ce, sizeof(have_ce), "%s", str_of(c, ce_field));
	snprintf(have_fo, sizeof(have_fo), "%s", str_of(f, fo_field));
	cJSON_Delete(c);
	cJSON_Delete(f);
	if (strcmp(have_ce, want) != 0 || strcmp(have_fo, want) != 0)
		fail_msg("ce %s '%s', fo %s '%s', want '%s' on both", ce_field, have_ce, fo_field, have_fo, want);
}

/* The change event of account a on `side` at version v and time ts, its image the record as it is
 * now there with `field` set to a copy of value (field NULL: as it is; value NULL: null). */
static void produce_image(const char *side, const char *a, int64_t v, long long ts, cJSON *img);

static void produce_edited(const char *side, const char *a, int64_t v, long long ts, const char *field,
			   const cJSON *value)
{
	int ce = strcmp(side, "ce") == 0;
	cJSON *img = ce ? ce_account(a) : fo_customer(a);
	assert_non_null(img);
	if (field)
		cJSON_ReplaceItemInObjectCaseSensitive(img, field, value ? cJSON_Duplicate(value, 1) : cJSON_CreateNull());
	produce_image(side, a, v, ts, img);
}

/* The change event of account a on `side` at version v and time ts with image img (taken). */
static void produce_image(const char *side, const char *a, int64_t v, long long ts, cJSON *img)
{
	int ce = strcmp(side, "ce") == 0;
	cJSON *k = ce ? cJSON_CreateObject() : fo_key(a);
	if (ce) {
		cJSON_AddStringToObject(k, "_msdyn_company_value", company_guid);
		cJSON_AddStringToObject(k, "accountnumber", a);
	}
	at_event_ts = ts;
	if (ce)
		produce_event("ce", "account", "accounts", topic, "update", v, k, img);
	else
		produce_event("fo", "CustomersV3", "CustomersV3", fo_topic, "update", v, k, img);
	at_event_ts = 0;
	cJSON_Delete(k);
	cJSON_Delete(img);
}

/*
 * Issue 5 (the concurrent e2e edits ended with a name different on the two sides): FO answers our
 * writes with 204 and no version, so FO's events are placed against them by time; but an FO event
 * carries the time of the change that triggered it and an image FO capture re-reads later. Here FO's
 * event of our first write of the name is re-read only after our second write and an FO user's
 * change made after it: its time is older than our second write, its image holds FO's newer name.
 * That name must reach CE (both sides end with it, and CE's echo writes nothing more to FO), while
 * an image read before our second write landed (it holds the name that write replaced) stays stale.
 */
static void test_fo_change_in_event_older_than_our_write_reaches_ce(void **state)
{
	(void)state;
	char a[32], path[256], ce_path[256];
	account_no(a, sizeof(a), 315);
	make_on_ce(a, path, sizeof(path), ce_path, sizeof(ce_path));
	/* our first write of the name; FO's event of it carries a time at or after its sending */
	side_call("ce", "PATCH", ce_path, "{\"name\":\"ce-1\"}");
	produce_current("ce", a, "update", ce_version(a), 0);
	flush_producer();
	wait_caught_up();
	long long t_first = at_wall_ms();
	usleep(20000);
	/* our second write */
	side_call("ce", "PATCH", ce_path, "{\"name\":\"ce-2\"}");
	produce_current("ce", a, "update", ce_version(a), 0);
	flush_producer();
	wait_caught_up();
	cJSON *f = fo_customer(a);
	assert_non_null(f);
	assert_string_equal("ce-2", str_of(f, "OrganizationName"));
	cJSON_Delete(f);
	/* an image read between the two writes: stale, CE keeps ce-2 */
	cJSON *stale = cJSON_CreateString("ce-1");
	produce_edited("fo", a, 1, t_first, "OrganizationName", stale);
	cJSON_Delete(stale);
	flush_producer();
	wait_caught_up_to("ce");
	cJSON *c = ce_account(a);
	assert_non_null(c);
	assert_string_equal("ce-2", str_of(c, "name"));
	char guid[40];
	snprintf(guid, sizeof(guid), "%s", str_of(c, "accountid"));
	cJSON_Delete(c);
	/* an FO user changes the name after our second write; FO's event of our first write is
	 * re-read only now */
	side_call("fo", "PATCH", path, "{\"OrganizationName\":\"fo-later\"}");
	long cw0 = ce_record_writes(guid);
	produce_edited("fo", a, 2, t_first, NULL, NULL);
	flush_producer();
	wait_caught_up_to("ce");
	assert_both(a, "name", "OrganizationName", "fo-later");
	assert_int_equal(cw0 + 1, ce_record_writes(guid));
	/* CE's event of that write is its echo: nothing goes back to FO */
	long fw0 = fo_writes(a, NULL);
	produce_current("ce", a, "update", ce_version(a), 0);
	flush_producer();
	wait_caught_up();
	assert_int_equal(fw0, fo_writes(a, NULL));
}

/*
 * Issue 5 (a concurrent e2e run ended with the phone different on the two sides): CE changes the
 * city, then the phone; FO changes the phone after that. CE's city event meets a 412, re-reads FO
 * (which shows FO's phone, not seen yet) and writes the city with the new ETag. That ETag covers
 * FO's phone change: CE's phone event, older than FO's change, must not pass If-Match with it and
 * overwrite FO's phone unnoticed. Under latest_wins FO's later phone ends on both sides.
 */
static void test_merge_does_not_hide_unseen_change(void **state)
{
	(void)state;
	char a[32], path[256], ce_path[256];
	account_no(a, sizeof(a), 316);
	make_on_ce(a, path, sizeof(path), ce_path, sizeof(ce_path));
	side_call("ce", "PATCH", ce_path, "{\"address1_city\":\"ce-city\"}");
	long long t_city = at_wall_ms();
	int64_t v_city = ce_version(a);
	side_call("ce", "PATCH", ce_path, "{\"telephone1\":\"ce-phone\"}");
	long long t_phone = at_wall_ms();
	int64_t v_phone = ce_version(a);
	usleep(20000);
	side_call("fo", "PATCH", path, "{\"PrimaryContactPhone\":\"fo-phone\"}");
	long long t_fo = at_wall_ms();
	/* CE's city event: 412, re-read, merged write of the city */
	produce_edited("ce", a, v_city, t_city, "telephone1", NULL);
	flush_producer();
	wait_caught_up();
	cJSON *f = fo_customer(a);
	assert_non_null(f);
	assert_string_equal("ce-city", str_of(f, "AddressCity"));
	assert_string_equal("fo-phone", str_of(f, "PrimaryContactPhone"));
	cJSON_Delete(f);
	/* CE's phone event, older than FO's change */
	produce_current("ce", a, "update", v_phone, t_phone);
	flush_producer();
	/* give a write guarded by the merge's ETag time to land (it would within this) */
	for (long long end = harness_now_ms() + 2000;;) {
		f = fo_customer(a);
		assert_non_null(f);
		int moved = strcmp(str_of(f, "PrimaryContactPhone"), "fo-phone") != 0;
		cJSON_Delete(f);
		if (moved || harness_now_ms() > end)
			break;
		usleep(100000);
	}
	/* FO's own event of its phone change */
	produce_edited("fo", a, 1, t_fo, NULL, NULL);
	flush_producer();
	wait_caught_up();
	wait_caught_up_to("ce");
	assert_both(a, "telephone1", "PrimaryContactPhone", "fo-phone");
}

/*
 * Issue 5 (the concurrent e2e edits ended with the city different on the two sides): CE changes the
 * city, FO changes it 20 ms later, and CE changes the phone in a later second. Both change events
 * of the city are applied at once: each direction's write meets a 412. The FO->CE worker must not
 * settle the city by CE's modifiedon (the record's last change, the phone's, is later than FO's
 * city change, but CE's city change is earlier), and the two workers must not wait on each other's
 * change event either: the waiting write notes its change as pending, the other direction decides
 * by the two change times, and FO's later city ends on both sides with CE written once for it.
 */
static void test_same_field_both_sides_decided_by_field_times(void **state)
{
	(void)state;
	char a[32], path[256], ce_path[256];
	account_no(a, sizeof(a), 317);
	make_on_ce(a, path, sizeof(path), ce_path, sizeof(ce_path));
	cJSON *c = ce_account(a);
	assert_non_null(c);
	char guid[40];
	snprintf(guid, sizeof(guid), "%s", str_of(c, "accountid"));
	cJSON_Delete(c);
	side_call("ce", "PATCH", ce_path, "{\"address1_city\":\"ce-city\"}");
	long long t_ce = at_wall_ms();
	int64_t v_city = ce_version(a);
	usleep(20000);
	side_call("fo", "PATCH", path, "{\"AddressCity\":\"fo-city\"}");
	long long t_fo = at_wall_ms();
	/* CE's next change in a later second: its modifiedon is after FO's city change */
	usleep((useconds_t)(1000 - at_wall_ms() % 1000 + 20) * 1000);
	side_call("ce", "PATCH", ce_path, "{\"telephone1\":\"ce-phone\"}");
	long long t_phone = at_wall_ms();
	int64_t v_phone = ce_version(a);
	long cw0 = ce_record_writes(guid), fw0 = fo_writes(a, NULL);
	/* both images first: a worker may apply one event before the other image is read */
	cJSON *fo_img = fo_customer(a), *ce_img = ce_account(a);
	assert_non_null(fo_img);
	assert_non_null(ce_img);
	cJSON_ReplaceItemInObjectCaseSensitive(ce_img, "telephone1", cJSON_CreateNull());
	produce_image("fo", a, 1, t_fo, fo_img);
	produce_image("ce", a, v_city, t_ce, ce_img);
	flush_producer();
	wait_caught_up();
	wait_caught_up_to("ce");
	produce_current("ce", a, "update", v_phone, t_phone);
	flush_producer();
	wait_caught_up();
	wait_caught_up_to("ce");
	assert_both(a, "address1_city", "AddressCity", "fo-city");
	assert_both(a, "telephone1", "PrimaryContactPhone", "ce-phone");
	/* CE written once (FO's city), FO once (CE's phone): no ping-pong */
	assert_int_equal(1, ce_record_writes(guid) - cw0);
	assert_int_equal(1, fo_writes(a, NULL) - fw0);
}

/* Total requests the FO emulator answered. */
static long fo_requests(void)
{
	struct emu_resp r;
	emu_admin(fo_base, "GET", "stats", NULL, &r);
	cJSON *j = emu_json(&r);
	long n = (long)cJSON_GetObjectItem(j, "requests")->valuedouble;
	cJSON_Delete(j);
	emu_resp_free(&r);
	return n;
}

static void test_batching_switch(void **state)
{
	(void)state;
	enum { N = 20 };
	char accts[N][32];
	for (int i = 0; i < N; i++) {
		account_no(accts[i], sizeof(accts[i]), 200 + (unsigned)i);
		produce_account(accts[i], "create", 1, "Batch v1", 0);
	}
	flush_producer();
	wait_caught_up();
	/* batched: the updates of N records go in a few $batch requests */
	long q0 = fo_requests();
	for (int i = 0; i < N; i++)
		produce_account(accts[i], "update", 2, "Batch v2", 0);
	flush_producer();
	wait_caught_up();
	long batched = fo_requests() - q0;
	/* DW_APPLY_BATCH_MAX=1: one request per event, a commit after each */
	assert_int_equal(0, worker_stop("fo"));
	worker_start("fo", "1");
	q0 = fo_requests();
	for (int i = 0; i < N; i++)
		produce_account(accts[i], "update", 3, "Single v3", 0);
	flush_producer();
	wait_caught_up();
	long single = fo_requests() - q0;
	assert_int_equal(0, worker_stop("fo"));
	worker_start("fo", "500");
	for (int i = 0; i < N; i++)
		assert_name(accts[i], "Single v3");
	print_message("# batching: %d updates took %ld requests batched, %ld one per event\n", N, batched, single);
	assert_int_equal(N, single);
	assert_true(batched >= 1 && batched <= N / 4);
}

/* A backlog on a slow target (latency_ms per request): versions 1..nv of n accounts numbered from
 * first (version 1 creates), named "<tag> <i> v<version>"; the accounts' numbers into accts. */
static void fo_latency(int ms)
{
	struct emu_resp r;
	char faults[64];
	snprintf(faults, sizeof(faults), "{\"latency_ms\":%d}", ms);
	emu_admin(fo_base, "POST", "faults", faults, &r);
	emu_resp_free(&r);
}

static void produce_backlog(char (*accts)[32], int n, int nv, unsigned first, const char *tag, int latency_ms)
{
	fo_latency(latency_ms);
	for (int i = 0; i < n; i++)
		account_no(accts[i], 32, first + (unsigned)i);
	for (int v = 1; v <= nv; v++)
		for (int i = 0; i < n; i++) {
			char name[64];
			snprintf(name, sizeof(name), "%s %d v%d", tag, i, v);
			produce_account(accts[i], v == 1 ? "create" : "update", v, name, 0);
		}
	flush_producer();
}

/* After the backlog drained at full speed: every account created once and at its last version,
 * at most one write per version. c0/w0: fo_counts before. Returns the writes. */
static long assert_backlog_applied(char (*accts)[32], int n, int nv, const char *tag, long c0, long w0)
{
	fo_latency(0);
	wait_caught_up();
	long c1, w1;
	fo_counts(&c1, &w1);
	assert_int_equal(n, c1 - c0); /* no duplicate creates */
	for (int i = 0; i < n; i++) {
		char want[64];
		snprintf(want, sizeof(want), "%s %d v%d", tag, i, nv);
		assert_name(accts[i], want);
	}
	assert_true(w1 - w0 <= (long)n * nv);
	return w1 - w0;
}

/* Idempotency keys of the FO direction recorded so far. */
static long long fo_outcomes(void)
{
	const char *p[] = { "accounts" };
	return query_ll("SELECT count(*) FROM dw_applied_event WHERE map_name = $1 AND target_side = 'fo'", 1, p);
}

#define KILL_RECORDS 1000
#define KILL_VERSIONS 10

static void test_sigkill_mid_batch_then_restart(void **state)
{
	(void)state;
	long c0, w0;
	fo_counts(&c0, &w0);
	static char accts[KILL_RECORDS][32];
	/* a slower target so that the kill lands in the middle */
	produce_backlog(accts, KILL_RECORDS, KILL_VERSIONS, 1000, "rec", 20);
	/* kill once some, not all, of the batch is recorded */
	long long before = fo_outcomes();
	long long deadline = harness_now_ms() + WAIT_MS;
	while (harness_now_ms() < deadline && fo_outcomes() < before + 500)
		usleep(20000);
	worker_kill("fo");
	long long at_kill = fo_outcomes();
	assert_true(at_kill < before + KILL_RECORDS * KILL_VERSIONS);
	worker_start("fo", "500");
	long writes = assert_backlog_applied(accts, KILL_RECORDS, KILL_VERSIONS, "rec", c0, w0);
	print_message("# sigkill: %lld outcomes recorded at the kill, %ld writes for %d events\n", at_kill - before,
		      writes, KILL_RECORDS * KILL_VERSIONS);
}

#define LOST_RECORDS 400
#define LOST_VERSIONS 6

/* Pipelining (DW_APPLY_PIPELINE): a batch's outcomes are recorded on a connection of their own
 * while the next batch is written. That connection is cut again and again during a backlog: each
 * failed recording puts its batch back (its offsets were not stored) and the connection is opened
 * again; nothing is lost, nothing created twice, no version written twice. */
static void test_recording_connection_lost_loses_nothing(void **state)
{
	(void)state;
	long c0, w0;
	fo_counts(&c0, &w0);
	wait_worker_listening("fo");
	double r0 = metric("fo", "dw_apply_retries_total{reason=\"state\"}");
	static char accts[LOST_RECORDS][32];
	long long before = fo_outcomes();
	produce_backlog(accts, LOST_RECORDS, LOST_VERSIONS, 3000, "lost", 100);
	long long total = before + LOST_RECORDS * LOST_VERSIONS, cuts = 0;
	long long deadline = harness_now_ms() + WAIT_MS;
	while (harness_now_ms() < deadline && cuts < 6 && fo_outcomes() < total - 200) {
		cuts += query_ll("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
				 "WHERE application_name = 'dw-apply-record') AS t",
				 0, NULL);
		usleep(150000);
	}
	long writes = assert_backlog_applied(accts, LOST_RECORDS, LOST_VERSIONS, "lost", c0, w0);
	double retried = metric("fo", "dw_apply_retries_total{reason=\"state\"}") - r0;
	print_message("# recording connection cut %lld times: %.0f events put back, %ld writes for %d events\n", cuts,
		      retried, writes, LOST_RECORDS * LOST_VERSIONS);
	assert_true(cuts >= 2);
	assert_true(retried > 0); /* recordings failed and their batches came back */
	assert_int_equal(total, fo_outcomes()); /* every event's outcome recorded */
}

/* ---- rule 6: parking and re-drive ---------------------------------------------------------- */

/* Creates (or updates) company `code` on CE; its GUID into guid[40]. */
static void ce_company(const char *code, char guid[40])
{
	char url[1024], auth[8192];
	snprintf(url, sizeof(url), "%s/api/data/v9.2/cdm_companies(cdm_companycode='%s')", harness_env("DW_CE_URL"),
		 code);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", ce_token);
	const char *h[] = { auth, "Content-Type: application/json", "Prefer: return=representation", NULL };
	struct emu_resp r;
	emu_http("PATCH", url, h, "{\"cdm_name\":\"Parking test\"}", &r);
	assert_true(r.status == 200 || r.status == 201);
	cJSON *j = emu_json(&r);
	snprintf(guid, 40, "%s", cJSON_GetObjectItem(j, "cdm_companyid")->valuestring);
	cJSON_Delete(j);
	emu_resp_free(&r);
}

/* An FO customer event of company `company`. */
static void produce_customer_in(const char *company, const char *acct, int64_t v, const char *name)
{
	cJSON *k = cJSON_CreateObject(), *d = cJSON_CreateObject();
	cJSON_AddStringToObject(k, "CustomerAccount", acct);
	cJSON_AddStringToObject(k, "dataAreaId", company);
	cJSON_AddStringToObject(d, "dataAreaId", company);
	cJSON_AddStringToObject(d, "CustomerAccount", acct);
	cJSON_AddStringToObject(d, "OrganizationName", name);
	cJSON_AddStringToObject(d, "PartyType", "Organization");
	cJSON_AddNumberToObject(d, "CreditLimit", 0);
	produce_event("fo", "CustomersV3", "CustomersV3", fo_topic, v == 1 ? "create" : "update", v, k, d);
	cJSON_Delete(k);
	cJSON_Delete(d);
}

static long long parked_ce(const char *extra)
{
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM dw_parked_event WHERE map_name = 'accounts' AND target_side = 'ce'%s", extra);
	return query_ll(sql, 0, NULL);
}

/* Sets the next attempt of every parked event far ahead, and checks it stays there (an attempt in
 * flight when the update ran would have moved it back: then once more). */
static void hold_redrive(void)
{
	for (int i = 0; i < 20; i++) {
		exec_sql("UPDATE dw_parked_event SET next_attempt_at = now() + interval '1 hour'", 0, NULL);
		usleep(700000);
		if (parked_ce(" AND next_attempt_at < now() + interval '30 minutes'") == 0)
			return;
	}
	fail_msg("parked events kept being re-driven");
}

static void test_missing_lookup_parks_then_redrives_in_order(void **state)
{
	(void)state;
	/* a customer of a company CE does not have yet: the company lookup finds nothing -> parked */
	char company[16], acct[32], guid[40];
	snprintf(company, sizeof(company), "pk%u", run_id % 100000);
	account_no(acct, sizeof(acct), 200);
	long w0 = ce_writes();
	produce_customer_in(company, acct, 1, "Parked one");
	flush_producer();
	wait_caught_up_to("ce");
	assert_int_equal(1, parked_ce(""));
	assert_int_equal(w0, ce_writes());
	/* periodic re-drive: it is tried again (and fails again, backed off) */
	long long deadline = harness_now_ms() + WAIT_MS;
	while (parked_ce(" AND attempts >= 2") < 1) {
		if (harness_now_ms() > deadline)
			fail_msg("the parked event was not retried");
		usleep(100000);
	}
	assert_int_equal(w0, ce_writes());
	/* hold the re-drive, let the company arrive, then a later update of the same record: it maps
	 * fine now, yet must queue behind the parked create */
	hold_redrive();
	ce_company(company, guid);
	produce_customer_in(company, acct, 2, "Parked two");
	flush_producer();
	wait_caught_up_to("ce");
	assert_int_equal(2, parked_ce(""));
	assert_int_equal(1, parked_ce(" AND reason LIKE 'queued behind%'"));
	assert_int_equal(w0, ce_writes());
	/* release: the create is re-driven, then the update behind it */
	exec_sql("UPDATE dw_parked_event SET next_attempt_at = now()", 0, NULL);
	deadline = harness_now_ms() + WAIT_MS;
	while (parked_ce("") > 0) {
		if (harness_now_ms() > deadline)
			fail_msg("the parked events were not re-driven");
		usleep(100000);
	}
	char url[1024];
	snprintf(url, sizeof(url), "%s/api/data/v9.2/accounts(accountnumber='%s',msdyn_company=%s)",
		 harness_env("DW_CE_URL"), acct, guid);
	cJSON *a = get_record(url, ce_token);
	assert_non_null(a);
	assert_string_equal("Parked two", str_of(a, "name"));
	assert_string_equal(guid, str_of(a, "_msdyn_company_value"));
	cJSON_Delete(a);
	/* two writes, in order: the create, then the update (the other order would have skipped the
	 * create as stale and written once) */
	assert_int_equal(w0 + 2, ce_writes());
	const char *p[] = { acct };
	assert_int_equal(2, query_ll("SELECT source_version FROM dw_record_state WHERE map_name = 'accounts' "
				     "AND target_side = 'ce' AND record_key LIKE '%' || $1 || '%'",
				     1, p));
}

/*
 * A lookup that never resolves: the parked create and the update queued behind it go to dead
 * letters (reason parked_too_long, naming the lookup) once parked longer than
 * DW_APPLY_PARK_MAX_AGE (default 24 h; the test ages the rows), one after the other, and nothing is
 * written. Without the bound they would stay parked for ever.
 */
static void test_parked_too_long_goes_to_dlq(void **state)
{
	(void)state;
	char company[16], acct[32], dlq[128], like[64];
	snprintf(company, sizeof(company), "px%u", run_id % 100000);
	snprintf(dlq, sizeof(dlq), "%s.dlq.accounts.ce", prefix);
	account_no(acct, sizeof(acct), 201);
	snprintf(like, sizeof(like), "%%%s%%", acct);
	long w0 = ce_writes();
	/* apart, so that they are not collapsed in one batch: the update queues behind the create */
	produce_customer_in(company, acct, 1, "Never placed");
	flush_producer();
	wait_caught_up_to("ce");
	double d0 = metric("ce", "dw_apply_events_total{outcome=\"dead_letter\"}");
	produce_customer_in(company, acct, 2, "Never placed two");
	flush_producer();
	wait_caught_up_to("ce");
	const char *p[] = { like };
	const char *count_sql = "SELECT count(*) FROM dw_parked_event WHERE map_name = 'accounts' AND target_side = 'ce' "
				"AND record_key LIKE $1";
	long long np = query_ll(count_sql, 1, p);
	if (np != 2)
		fail_msg("%lld events of %s parked, want 2 (all parked: %lld)", np, acct, parked_ce(""));
	char why[256];
	PGconn *c = connect_db(dbname);
	PGresult *r = NULL;
	if (store_exec(c, "SELECT reason FROM dw_parked_event WHERE record_key LIKE $1 ORDER BY id LIMIT 1", 1, p, &r, err,
		       sizeof(err)) != 0)
		fail_msg("%s", err);
	snprintf(why, sizeof(why), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	store_close(c);
	/* a day later (24 h is the default bound) */
	exec_sql("UPDATE dw_parked_event SET parked_at = now() - interval '25 hours', next_attempt_at = now() "
		 "WHERE record_key LIKE $1",
		 1, p);
	long long deadline = harness_now_ms() + WAIT_MS;
	while (query_ll(count_sql, 1, p) > 0) {
		if (harness_now_ms() > deadline)
			fail_msg("the parked events were not dead-lettered");
		usleep(200000);
	}
	assert_int_equal(w0, ce_writes());
	char key[128];
	snprintf(key, sizeof(key), "CustomerAccount=%s,dataAreaId=%s", acct, company);
	char *reason = dlq_header_in(dlq, key, "dw.reason", NULL);
	int ok = strcmp(reason, "parked_too_long") == 0;
	free(reason);
	assert_true(ok);
	char *e = dlq_header_in(dlq, key, "dw.error", NULL);
	int says = strcmp(e, why) == 0;
	if (!says)
		fail_msg("dead letter error '%s', want the park reason '%s'", e, why);
	free(e);
	/* both events: the create, then the update that had queued behind it */
	assert_true(metric("ce", "dw_apply_events_total{outcome=\"dead_letter\"}") >= d0 + 2);
}

/* ---- rule 5: atomic units ------------------------------------------------------------------- */

/* Part `order` of 4 of unit txn_id: an FO customer (company usmf) created with `name`. */
static void produce_unit_part(const char *txn_id, int order, const char *acct, const char *name)
{
	cJSON *k = fo_key(acct), *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "dataAreaId", "usmf");
	cJSON_AddStringToObject(d, "CustomerAccount", acct);
	cJSON_AddStringToObject(d, "OrganizationName", name);
	cJSON_AddStringToObject(d, "PartyType", "Organization");
	cJSON_AddNumberToObject(d, "CreditLimit", 0);
	produce_event_txn("fo", "CustomersV3", "CustomersV3", fo_topic, "create", 1, k, d, txn_id, 4, order);
	cJSON_Delete(k);
	cJSON_Delete(d);
}

static long long staged_parts(const char *txn_id)
{
	const char *p[] = { txn_id };
	return query_ll("SELECT count(*) FROM dw_txn_part WHERE source_side = 'fo' AND txn_id = $1", 1, p);
}

static void test_unit_of_four_parts_appears_all_at_once(void **state)
{
	(void)state;
	char txn[64], acct[4][32], name[4][32];
	snprintf(txn, sizeof(txn), "po-%u-%lld", run_id, harness_now_ms());
	for (int i = 0; i < 4; i++) {
		account_no(acct[i], sizeof(acct[i]), 300 + (unsigned)i);
		snprintf(name[i], sizeof(name[i]), i == 0 ? "Header" : "Line %d", i);
	}
	long w0 = ce_writes();
	/* the header and two lines: staged, nothing written */
	for (int i = 0; i < 3; i++)
		produce_unit_part(txn, i + 1, acct[i], name[i]);
	flush_producer();
	wait_caught_up_to("ce");
	assert_int_equal(3, staged_parts(txn));
	assert_int_equal(w0, ce_writes());
	for (int i = 0; i < 4; i++) {
		cJSON *a = ce_account(acct[i]);
		assert_null(a);
	}
	/* the last line completes the unit: all four at once */
	produce_unit_part(txn, 4, acct[3], name[3]);
	flush_producer();
	wait_caught_up_to("ce");
	assert_int_equal(w0 + 4, ce_writes());
	for (int i = 0; i < 4; i++) {
		cJSON *a = ce_account(acct[i]);
		assert_non_null(a);
		assert_string_equal(name[i], str_of(a, "name"));
		cJSON_Delete(a);
	}
	assert_int_equal(0, staged_parts(txn));
	/* re-delivery of a part of an applied unit is a duplicate: nothing staged, nothing written */
	produce_unit_part(txn, 2, acct[1], name[1]);
	flush_producer();
	wait_caught_up_to("ce");
	assert_int_equal(0, staged_parts(txn));
	assert_int_equal(w0 + 4, ce_writes());
}

static void test_unit_with_invalid_part_is_dead_lettered_whole(void **state)
{
	(void)state;
	char txn[64], acct[4][32], longname[200], dlq[128];
	snprintf(txn, sizeof(txn), "po-bad-%u-%lld", run_id, harness_now_ms());
	snprintf(dlq, sizeof(dlq), "%s.dlq.accounts.ce", prefix);
	memset(longname, 'x', 190); /* CE's account name holds 160 */
	longname[190] = '\0';
	for (int i = 0; i < 4; i++)
		account_no(acct[i], sizeof(acct[i]), 400 + (unsigned)i);
	long w0 = ce_writes();
	produce_unit_part(txn, 1, acct[0], "Header");
	produce_unit_part(txn, 2, acct[1], "Line 1");
	produce_unit_part(txn, 3, acct[2], longname);
	produce_unit_part(txn, 4, acct[3], "Line 3");
	flush_producer();
	wait_caught_up_to("ce");
	assert_int_equal(w0, ce_writes());
	for (int i = 0; i < 4; i++) {
		cJSON *a = ce_account(acct[i]);
		assert_null(a);
	}
	assert_int_equal(0, staged_parts(txn));
	/* every part is dead-lettered, each with the rejected part's reason and the target's body */
	for (int i = 0; i < 4; i++) {
		char key[192];
		snprintf(key, sizeof(key), "CustomerAccount=%s,dataAreaId=usmf", acct[i]);
		char *reason = dlq_header_in(dlq, key, "dw.reason", NULL);
		assert_string_equal("txn_rejected", reason);
		free(reason);
		char *e = dlq_header_in(dlq, key, "dw.error", NULL);
		int names_unit = strstr(e, txn) != NULL, names_field = strstr(e, "'name'") != NULL;
		free(e);
		assert_true(names_unit);
		assert_true(names_field);
		char *body = dlq_header_in(dlq, key, "dw.target.error.body", NULL);
		int has_limit = strstr(body, "160") != NULL;
		free(body);
		assert_true(has_limit);
		char *status = dlq_header_in(dlq, key, "dw.http.status", NULL);
		assert_string_equal("400", status);
		free(status);
	}
	assert_true(query_ll("SELECT count(*) FROM dw_applied_event WHERE map_name = 'accounts' AND target_side = 'ce' "
			     "AND outcome = 'dead_letter'",
			     0, NULL) >= 4);
}

static void test_incomplete_unit_times_out_to_dlq(void **state)
{
	(void)state;
	char txn[64], acct[2][32], dlq[128];
	snprintf(txn, sizeof(txn), "po-late-%u-%lld", run_id, harness_now_ms());
	snprintf(dlq, sizeof(dlq), "%s.dlq.accounts.ce", prefix);
	account_no(acct[0], sizeof(acct[0]), 500);
	account_no(acct[1], sizeof(acct[1]), 501);
	long w0 = ce_writes();
	produce_unit_part(txn, 1, acct[0], "Header");
	produce_unit_part(txn, 2, acct[1], "Line 1");
	flush_producer();
	wait_caught_up_to("ce");
	long long t0 = harness_now_ms();
	assert_int_equal(2, staged_parts(txn));
	/* parts 3 and 4 never come: after the worker's 8 s timeout both staged parts are dead letters */
	while (staged_parts(txn) > 0) {
		if (harness_now_ms() - t0 > WAIT_MS)
			fail_msg("the incomplete unit was not expired");
		usleep(200000);
	}
	assert_int_equal(w0, ce_writes());
	for (int i = 0; i < 2; i++) {
		char key[128];
		snprintf(key, sizeof(key), "CustomerAccount=%s,dataAreaId=usmf", acct[i]);
		char *reason = dlq_header_in(dlq, key, "dw.reason", NULL);
		int ok = strcmp(reason, "txn_timeout") == 0;
		free(reason);
		assert_true(ok);
		char *e = dlq_header_in(dlq, key, "dw.error", NULL);
		int says = strstr(e, "2 of 4 parts") != NULL;
		free(e);
		assert_true(says);
	}
}

/*
 * FO sends one data event per trigger, each with the record re-read: several events of one version
 * and one image, with later and later times. Collapsed in one batch they are one change, dated by
 * the earliest, as when that one is applied alone and the later ones are duplicates; dated by the
 * newest, the two directions would compare one change at two different times (a concurrent edit
 * could then end different on the two sides).
 */
static void test_events_of_one_version_collapse_dated_by_earliest(void **state)
{
	(void)state;
	char x[32];
	account_no(x, sizeof(x), 2200);
	produce_customer(x, "create", 1, "Dated");
	flush_producer();
	wait_caught_up_to("ce");
	/* both events in one batch: the worker is stopped while they are produced */
	assert_int_equal(0, worker_stop("ce"));
	const long long t1 = 1764500000000LL, t2 = t1 + 5000;
	at_event_ts = t1;
	produce_customer(x, "update", 2, "Dated twice");
	at_event_ts = t2;
	produce_customer(x, "update", 2, "Dated twice");
	at_event_ts = 0;
	flush_producer();
	worker_start("ce", "500");
	wait_caught_up_to("ce");
	cJSON *a = ce_account(x);
	assert_non_null(a);
	assert_string_equal("Dated twice", str_of(a, "name"));
	cJSON_Delete(a);
	char like[48];
	snprintf(like, sizeof(like), "%%%s%%", x);
	const char *p[] = { like };
	/* the change as written to CE carries its source time, and FO's side notes its change at it */
	assert_int_equal(t1, query_ll("SELECT (image->'name'->>'s')::bigint FROM dw_record_state WHERE map_name = "
				      "'accounts' AND target_side = 'ce' AND record_key LIKE $1",
				      1, p));
	assert_int_equal(t1, query_ll("SELECT (image->'OrganizationName'->>'t')::bigint FROM dw_record_state WHERE "
				      "map_name = 'accounts' AND target_side = 'fo' AND record_key LIKE $1",
				      1, p));
}

/* Deletes every record of topic t up to its end, as topic retention deletes old segments. */
static void delete_records_to_end(const char *t)
{
	rd_kafka_t *rk = kafka_producer_handle(producer);
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTITIONS);
	for (int p = 0; p < PARTITIONS; p++)
		rd_kafka_topic_partition_list_add(l, t, p)->offset = RD_KAFKA_OFFSET_END; /* the high watermark */
	rd_kafka_DeleteRecords_t *dr = rd_kafka_DeleteRecords_new(l);
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_DeleteRecords(rk, &dr, 1, NULL, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
	assert_non_null(ev);
	if (rd_kafka_event_error(ev))
		fail_msg("DeleteRecords: %s", rd_kafka_event_error_string(ev));
	const rd_kafka_topic_partition_list_t *done =
		rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
	assert_non_null(done);
	for (int i = 0; i < done->cnt; i++)
		if (done->elems[i].err)
			fail_msg("DeleteRecords %s [%d]: %s", t, done->elems[i].partition, rd_kafka_err2str(done->elems[i].err));
	rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_DeleteRecords_destroy(dr);
}

/* Whether the FO worker's log holds `needle`. */
static int worker_log_has(const char *needle)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/logs/apply-worker-to-fo.log", harness_env("DW_STATE_DIR"));
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char line[8192];
	int found = 0;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

/*
 * The events a retry's back-off sought the partitions back to are deleted by topic retention
 * before the target comes back: nothing of them can be applied any more, but the events after
 * them must be, and the partitions' offsets must be stored and committed again (the worker used to
 * hold every later offset as owed for good, so the group's lag only grew).
 */
static void test_retry_target_deleted_by_retention_does_not_hold_offsets(void **state)
{
	(void)state;
	wait_worker_listening("fo");
	double r0 = metric("fo", "dw_apply_retries_total{reason=\"target\"}");
	fo_outage(1);
	char accts[9][32];
	for (int i = 0; i < 9; i++) {
		account_no(accts[i], sizeof(accts[i]), 2100 + (unsigned)i);
		produce_account(accts[i], "create", 1, "Deleted by retention", 0);
	}
	flush_producer();
	wait_metric("fo", "dw_apply_retries_total{reason=\"target\"}", r0 + 2); /* sought back, more than once */
	delete_records_to_end(topic);
	/* the same records (so the same partitions), after the deleted events */
	for (int i = 0; i < 9; i++)
		produce_account(accts[i], "update", 2, "After retention", 0);
	flush_producer();
	fo_outage(0);
	wait_caught_up();
	for (int i = 0; i < 9; i++)
		assert_name(accts[i], "After retention");
	assert_true(worker_log_has("no longer in the topic"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_update_delete_arrive),
		cmocka_unit_test(test_replay_and_stale_and_echo_write_nothing),
		cmocka_unit_test(test_old_idempotency_keys_pruned),
		cmocka_unit_test(test_malformed_event_goes_to_dlq_and_partition_moves_on),
		cmocka_unit_test(test_validation_error_goes_to_dlq_with_target_body),
		cmocka_unit_test(test_fo_to_ce_create_update_delete),
		cmocka_unit_test(test_round_trip_echoes_write_nothing),
		cmocka_unit_test(test_health_readiness_and_metrics),
		cmocka_unit_test(test_paused_map_holds_backlog_then_catches_up_in_order),
		cmocka_unit_test_teardown(test_outage_pauses_and_retries_without_loss, faults_off),
		cmocka_unit_test_teardown(test_throttling_honours_retry_after_without_loss, faults_off),
		cmocka_unit_test(test_concurrent_edits_of_different_fields_both_survive),
		cmocka_unit_test(test_same_field_latest_wins_ends_equal),
		cmocka_unit_test(test_same_field_ce_wins_ends_equal),
		cmocka_unit_test_teardown(test_same_field_fo_wins_ends_equal, default_policy),
		cmocka_unit_test(test_change_after_our_copy_reaches_other_side),
		cmocka_unit_test(test_first_write_does_not_overwrite_unseen_change),
		cmocka_unit_test(test_fo_change_in_event_older_than_our_write_reaches_ce),
		cmocka_unit_test(test_merge_does_not_hide_unseen_change),
		cmocka_unit_test(test_same_field_both_sides_decided_by_field_times),
		cmocka_unit_test(test_batching_switch),
		cmocka_unit_test_teardown(test_sigkill_mid_batch_then_restart, faults_off),
		cmocka_unit_test_teardown(test_recording_connection_lost_loses_nothing, faults_off),
		cmocka_unit_test(test_missing_lookup_parks_then_redrives_in_order),
		cmocka_unit_test(test_parked_too_long_goes_to_dlq),
		cmocka_unit_test(test_unit_of_four_parts_appears_all_at_once),
		cmocka_unit_test(test_unit_with_invalid_part_is_dead_lettered_whole),
		cmocka_unit_test(test_incomplete_unit_times_out_to_dlq),
		cmocka_unit_test_teardown(test_retry_target_deleted_by_retention_does_not_hold_offsets, faults_off),
		cmocka_unit_test(test_events_of_one_version_collapse_dated_by_earliest),
	};
	const char *only = getenv("DW_TEST_FILTER"); /* e.g. `make valgrind` runs some scenarios */
	if (only && *only)
		cmocka_set_test_filter(only);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
