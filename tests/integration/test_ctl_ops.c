/* The operator commands end to end: `ctl pause/resume`, `ctl status`, `ctl replay`, `ctl dlq`
 * run as an operator runs them (the real ctl binary) against the real apply worker (CE -> FO,
 * accounts map), broker, PostgreSQL and FO emulator. Writes are counted on the emulator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#define OUT_MAX 65536

static char err[1024];
static char prefix[32];
static char topic[96];     /* <prefix>.ce.account */
static char dbname[64];
static char dsn[1024];
static char base_dsn[1024]; /* the stack's DW_PG_DSN (DW_PG_DSN is replaced by dsn) */
static char company_guid[40];
static char maps_dir[1024];
static char errpath[1100];
static pid_t worker = -1;
static struct kafka_producer *producer;
static struct config_common kcfg;
static const char *fo_base;
static char *fo_token;
static unsigned run_id;
static char out[OUT_MAX];  /* stdout of the last ctl run */
static char eout[OUT_MAX]; /* its stderr */

/* ---- helpers ------------------------------------------------------------------------------- */

static PGconn *connect_db(const char *db)
{
	const struct store_opts opts = { .application_name = "dw-test-ctl-ops", .dbname = db };
	PGconn *c = NULL;
	if (store_connect(base_dsn, &opts, &c, err, sizeof(err)) != 0)
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

static void account_no(char *o, size_t len, unsigned i)
{
	snprintf(o, len, "C%u-%u-%u", run_id % 100000, (unsigned)(harness_now_ms() % 100000), i);
}

static void read_file(const char *path, char *buf, size_t len)
{
	buf[0] = '\0';
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	size_t n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

/* Runs `ctl ARGS` (ARGS: a shell-safe string); stdout into out, stderr into eout; the exit status. */
static int ctl(const char *args)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "'%s' %s 2>'%s'", harness_bin("ctl"), args, errpath);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	int st = pclose(p);
	read_file(errpath, eout, sizeof(eout));
	int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	print_message("# ctl %s -> %d\n", args, rc);
	return rc;
}

static void ctl_ok(const char *args)
{
	int rc = ctl(args);
	if (rc != 0)
		fail_msg("ctl %s: exit %d\nstdout: %s\nstderr: %s", args, rc, out, eout);
}

/* `ctl status --map accounts --json`: the member `name` of the "to fo" row (number or string). */
static double status_num(const char *name)
{
	ctl_ok("status --map accounts --json");
	cJSON *a = cJSON_Parse(out);
	if (!cJSON_IsArray(a))
		fail_msg("status --json is not an array: %s", out);
	double v = -1;
	const cJSON *row;
	cJSON_ArrayForEach(row, a)
	{
		if (strcmp(cJSON_GetObjectItem(row, "to")->valuestring, "fo") == 0)
			v = cJSON_GetObjectItem(row, name)->valuedouble;
	}
	cJSON_Delete(a);
	if (v < 0)
		fail_msg("status has no row to fo: %s", out);
	return v;
}

/* GET url: the HTTP status, 0 when nothing answers. */
static long http_status(const char *url)
{
	CURL *c = curl_easy_init();
	assert_non_null(c);
	FILE *devnull = fopen("/dev/null", "w");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
	long st = 0;
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
	curl_easy_cleanup(c);
	if (devnull)
		fclose(devnull);
	return st;
}

static void worker_start(void)
{
	char log_path[1024];
	snprintf(log_path, sizeof(log_path), "%s/logs/ctl-ops-apply.log", harness_env("DW_STATE_DIR"));
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		char port[16];
		snprintf(port, sizeof(port), "%d", (int)strtol(harness_env("DW_PORT_BASE"), NULL, 10) + 70);
		setenv("DW_HTTP_PORT", port, 1);
		setenv("DW_APPLY_STATE_CHECK_MS", "300", 1);
		setenv("DW_HTTP_ADDR", "127.0.0.1", 1);
		setenv("DW_APPLY_BACKOFF_MIN_MS", "200", 1);
		setenv("DW_APPLY_BACKOFF_MAX_MS", "2000", 1);
		setenv("DW_KAFKA_SESSION_TIMEOUT_MS", "6000", 1);
		execl(harness_bin("apply"), "apply", "--map", "accounts", "--to", "fo", (char *)NULL);
		_exit(127);
	}
	worker = pid;
	/* ready: its signal handlers are in place and it consumes */
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", (int)strtol(harness_env("DW_PORT_BASE"), NULL, 10) + 70);
	long long deadline = harness_now_ms() + WAIT_MS;
	for (;;) {
		if (http_status(url) == 200)
			break;
		if (harness_now_ms() > deadline || waitpid(pid, NULL, WNOHANG) == pid)
			fail_msg("the apply worker did not become ready (see logs/ctl-ops-apply.log)");
		usleep(100000);
	}
}

/* SIGTERM and wait; the exit status (-1 when killed after 30 s). */
static int worker_stop(void)
{
	pid_t w = worker;
	worker = -1;
	return at_stop_child(w);
}

static void produce_account(const char *acct, const char *op, int64_t v, const char *name)
{
	struct event ev;
	memset(&ev, 0, sizeof(ev));
	ev.v = EVENT_FORMAT_VERSION;
	ev.source.side = EVENT_SIDE_CE;
	ev.source.env = strdup("test");
	ev.source.entity = strdup("account");
	ev.source.entity_set = strdup("accounts");
	ev.source.version = v;
	ev.source.ts = 1764464400000LL + v;
	ev.op = event_op_parse(op);
	ev.key = cJSON_CreateObject();
	cJSON_AddStringToObject(ev.key, "accountnumber", acct);
	cJSON_AddStringToObject(ev.key, "_msdyn_company_value", company_guid);
	if (ev.op != EVENT_OP_DELETE) {
		ev.data = cJSON_CreateObject();
		cJSON_AddStringToObject(ev.data, "accountnumber", acct);
		cJSON_AddStringToObject(ev.data, "name", name);
		cJSON_AddNumberToObject(ev.data, "customertypecode", 3);
		cJSON_AddNumberToObject(ev.data, "creditlimit", 0);
		cJSON_AddStringToObject(ev.data, "_msdyn_company_value", company_guid);
	}
	char *o = NULL, *key = NULL;
	size_t len = 0;
	if (event_compute_id(&ev, err, sizeof(err)) != 0 || event_encode(&ev, &o, &len, err, sizeof(err)) != 0 ||
	    event_key_string(ev.key, &key, err, sizeof(err)) != 0)
		fail_msg("event: %s", err);
	if (kafka_produce(producer, topic, key, strlen(key), o, len, NULL, 0, NULL, err, sizeof(err)) != 0)
		fail_msg("produce: %s", err);
	free(o);
	free(key);
	event_clear(&ev);
}

static void flush_producer(void)
{
	if (kafka_producer_flush(producer, 30000, err, sizeof(err)) != 0)
		fail_msg("flush: %s", err);
}

/* Waits until `ctl status` shows no lag for the fo direction. */
static void wait_caught_up(void)
{
	long long deadline = harness_now_ms() + WAIT_MS;
	while (status_num("lag") > 0) {
		if (harness_now_ms() > deadline)
			fail_msg("the worker did not catch up within %d ms", WAIT_MS);
		usleep(300000);
	}
}

/* Messages on the source topic (sum of high - low watermarks). */
static long topic_messages(void)
{
	char es[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "bootstrap.servers", kcfg.kafka_brokers, es, sizeof(es));
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, es, sizeof(es));
	assert_non_null(rk);
	long n = 0;
	for (int p = 0; p < PARTITIONS; p++) {
		int64_t lo = 0, hi = 0;
		assert_int_equal(0, rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000));
		n += (long)(hi - lo);
	}
	rd_kafka_destroy(rk);
	return n;
}

static long fo_writes(const char *acct)
{
	char pred[128];
	snprintf(pred, sizeof(pred), "(dataAreaId='usmf',CustomerAccount='%s')", acct);
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
		cJSON_Delete(j);
	}
	emu_resp_free(&r);
	return writes;
}

static char *fo_name(const char *acct)
{
	char url[1024], auth[8192];
	snprintf(url, sizeof(url), "%s/data/CustomersV3(dataAreaId='usmf',CustomerAccount='%s')", fo_base, acct);
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

static void assert_name(const char *acct, const char *want)
{
	char *n = fo_name(acct);
	if (!n || strcmp(n, want) != 0)
		fail_msg("%s: OrganizationName is '%s', want '%s'", acct, n ? n : "(none)", want);
	free(n);
}

/* All writes (create, update, delete) of CustomersV3 on the FO emulator. */
static long fo_total_writes(void)
{
	struct emu_resp r;
	emu_admin(fo_base, "GET", "stats", NULL, &r);
	assert_int_equal(200, r.status);
	cJSON *j = emu_json(&r);
	const cJSON *s = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "writes"), "CustomersV3");
	long t = 0;
	if (s)
		t = (long)(cJSON_GetObjectItem(s, "create")->valuedouble + cJSON_GetObjectItem(s, "update")->valuedouble +
			   cJSON_GetObjectItem(s, "delete")->valuedouble);
	cJSON_Delete(j);
	emu_resp_free(&r);
	return t;
}

/* The offset of the dead letter with this key, from `ctl dlq list` (-1 when not listed). */
static long dlq_offset_of(const char *key)
{
	ctl_ok("dlq list --map accounts --to fo");
	long off = -1;
	for (char *line = out; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		size_t ll = strlen(line), kl = strlen(key);
		if (ll > kl && strcmp(line + ll - kl, key) == 0) {
			long p = -1, o = -1;
			if (sscanf(line, "%ld %ld", &p, &o) == 2)
				off = o;
		}
		if (nl)
			*nl = '\n';
		line = nl ? nl + 1 : NULL;
	}
	return off;
}

static int faults_off(void **state)
{
	(void)state;
	struct emu_resp r;
	emu_admin(fo_base, "POST", "faults", "{\"error_rate\":0,\"error_status\":0,\"outage\":false}", &r);
	emu_resp_free(&r);
	return 0;
}

/* ---- setup --------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
	(void)state;
	run_id = (unsigned)getpid();
	snprintf(prefix, sizeof(prefix), "dwo%u", run_id);
	snprintf(topic, sizeof(topic), "%s.ce.account", prefix);
	snprintf(errpath, sizeof(errpath), "%s/logs/ctl-ops-%u.stderr", harness_env("DW_STATE_DIR"), run_id);
	char cwd[512];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	snprintf(maps_dir, sizeof(maps_dir), "%s/schemas/maps", cwd);
	fo_base = harness_env("DW_FO_URL");
	fo_token = emu_token("FO");
	char *ce_token = emu_token("CE");

	snprintf(base_dsn, sizeof(base_dsn), "%s", harness_env("DW_PG_DSN"));
	snprintf(dbname, sizeof(dbname), "dwt_ctlops_%u_%lld", run_id, harness_now_ms());
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
	/* the worker (forked) and ctl (popen) inherit these */
	setenv("DW_PG_DSN", dsn, 1);
	setenv("DW_TOPIC_PREFIX", prefix, 1);
	setenv("DW_MAPS_DIR", maps_dir, 1);
	setenv("DW_LOG_LEVEL", "warn", 1);

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
	free(ce_token);

	kcfg.kafka_brokers = (char *)harness_env("DW_KAFKA_BROKERS");
	kcfg.topic_prefix = prefix;
	struct kafka_admin *ad = NULL;
	if (kafka_admin_new(&kcfg, &ad, err, sizeof(err)) != 0)
		fail_msg("admin: %s", err);
	struct kafka_topic_spec spec = { PARTITIONS, 1, -1 };
	enum kafka_topic_outcome oc;
	if (kafka_topic_ensure(ad, topic, &spec, 30000, &oc, err, sizeof(err)) != 0)
		fail_msg("topic: %s", err);
	kafka_admin_free(ad);
	if (kafka_producer_new(&kcfg, NULL, &producer, err, sizeof(err)) != 0)
		fail_msg("producer: %s", err);
	worker_start();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	int rc = worker_stop();
	kafka_producer_close(producer, 10000);
	free(fo_token);
	unlink(errpath);
	admin_db("DROP DATABASE", " WITH (FORCE)");
	assert_int_equal(0, rc);
	return 0;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_usage_errors(void **state)
{
	(void)state;
	assert_int_equal(0, ctl("replay --help"));
	assert_non_null(strstr(out, "--from-beginning"));
	assert_int_equal(2, ctl("replay --map accounts --to fo"));
	assert_non_null(strstr(eout, "exactly one of --since"));
	assert_int_equal(2, ctl("replay --map accounts --to fo --since yesterday"));
	assert_non_null(strstr(eout, "'yesterday'"));
	assert_int_equal(2, ctl("replay --map accounts --to fo --since 2026-02-31T00:00:00Z"));
	assert_int_equal(2, ctl("replay --map accounts --to fo --since 2026-11-30T00:00:00"));
	assert_int_equal(2, ctl("pause"));
	assert_int_equal(2, ctl("dlq retry --map accounts --to fo"));
	assert_int_equal(1, ctl("pause --map nosuchmap"));
	assert_non_null(strstr(eout, "nosuchmap"));
}

static void test_pause_holds_backlog_then_resume_catches_up_in_order(void **state)
{
	(void)state;
	char a[32], b[32];
	account_no(a, sizeof(a), 1);
	account_no(b, sizeof(b), 11);
	produce_account(a, "create", 1, "Before pause");
	flush_producer();
	wait_caught_up();
	assert_name(a, "Before pause");

	ctl_ok("pause --map accounts --to fo --reason 'nightly maintenance'");
	ctl_ok("status --map accounts");
	assert_non_null(strstr(out, "paused"));
	assert_non_null(strstr(out, "nightly maintenance"));
	usleep(1000000); /* three state checks of the worker */
	produce_account(a, "update", 2, "Paused two");
	produce_account(a, "update", 3, "Paused three");
	produce_account(a, "update", 4, "Paused four");
	produce_account(b, "create", 1, "Created while paused");
	flush_producer();
	usleep(2500000); /* a paused worker writes nothing: give it time to (wrongly) do so */
	assert_int_equal(1, fo_writes(a));
	assert_int_equal(-1, fo_writes(b));
	assert_name(a, "Before pause");
	assert_int_equal(4, (long)status_num("lag"));

	ctl_ok("resume --map accounts --to fo");
	wait_caught_up();
	/* the held updates of one record may be collapsed into one write, but the newest wins */
	long wa = fo_writes(a);
	assert_true(wa >= 2 && wa <= 4);
	assert_name(a, "Paused four");
	assert_int_equal(1, fo_writes(b));
	assert_name(b, "Created while paused");
	ctl_ok("status --map accounts --json");
	assert_non_null(strstr(out, "\"state\":\t\"running\""));
}

static void test_replay_refused_while_worker_runs(void **state)
{
	(void)state;
	long before = fo_total_writes();
	assert_int_equal(1, ctl("replay --map accounts --to fo --from-beginning"));
	char want[128];
	snprintf(want, sizeof(want), "%s.apply.accounts.fo has 1 active member", prefix);
	assert_non_null(strstr(eout, want));
	assert_int_equal(0, (long)status_num("lag")); /* nothing was reset */
	assert_int_equal(before, fo_total_writes());
}

static void test_replay_whole_topic_twice_writes_nothing(void **state)
{
	(void)state;
	char a[32];
	account_no(a, sizeof(a), 2);
	produce_account(a, "create", 1, "Replayed");
	flush_producer();
	wait_caught_up();
	long before = fo_total_writes();
	long total = topic_messages();
	assert_true(total >= 5);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(0, worker_stop());
		ctl_ok("replay --map accounts --to fo --from-beginning");
		assert_int_equal(total, (long)status_num("lag")); /* the whole topic is to be re-read */
		worker_start();
		wait_caught_up();
		assert_int_equal(before, fo_total_writes());
	}
	assert_name(a, "Replayed");
}

static void test_replay_since_rfc3339_and_relative(void **state)
{
	(void)state;
	assert_int_equal(0, worker_stop());
	long total = topic_messages();
	/* an hour from now: nothing is that new, every partition goes to its end */
	char when[64];
	time_t later = time(NULL) + 3600;
	struct tm tm;
	gmtime_r(&later, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	char args[256];
	snprintf(args, sizeof(args), "replay --map accounts --to fo --since %s", when);
	ctl_ok(args);
	assert_int_equal(0, (long)status_num("lag"));
	/* the same time written with an offset */
	later -= 3600 * 2;
	gmtime_r(&later, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S+00:00", &tm);
	snprintf(args, sizeof(args), "replay --map accounts --to fo --since %s", when);
	ctl_ok(args); /* an hour ago: everything this test run produced */
	assert_int_equal(total, (long)status_num("lag"));
	ctl_ok("replay --map accounts --to fo --since 1s");
	assert_int_equal(0, (long)status_num("lag"));
	ctl_ok("replay --map accounts --to fo --since 2h");
	assert_int_equal(total, (long)status_num("lag"));
	long before = fo_total_writes();
	worker_start();
	wait_caught_up();
	assert_int_equal(before, fo_total_writes());
}

static void exec_sql(const char *sql, int n, const char *const *params)
{
	PGconn *c = connect_db(dbname);
	if (store_exec(c, sql, n, params, NULL, err, sizeof(err)) != 0)
		fail_msg("%s: %s", sql, err);
	store_close(c);
}

static void test_status_counts_parked_and_open_transactions(void **state)
{
	(void)state;
	assert_int_equal(0, worker_stop()); /* it would re-drive the parked event */
	ctl_ok("status");
	assert_non_null(strstr(out, "MAP"));
	assert_non_null(strstr(out, "OPEN_TXNS"));
	assert_int_equal(0, (long)status_num("parked"));
	assert_int_equal(0, (long)status_num("open_transactions"));
	exec_sql("INSERT INTO dw_parked_event (map_name, target_side, record_key, event_id, event, reason) "
		 "VALUES ('accounts', 'fo', 'k1', 'e1', '{}', 'test'), ('accounts', 'ce', 'k2', 'e2', '{}', 'test')",
		 0, NULL);
	exec_sql("INSERT INTO dw_txn_part (source_side, txn_id, part_order, total, map_name, event_id, event) VALUES "
		 "('ce', 't1', 1, 3, 'accounts', 'e1', '{}'), ('ce', 't1', 2, 3, 'accounts', 'e2', '{}'), "
		 "('ce', 't2', 1, 2, 'accounts', 'e3', '{}'), ('fo', 't3', 1, 2, 'accounts', 'e4', '{}')",
		 0, NULL);
	assert_int_equal(1, (long)status_num("parked"));            /* only the fo direction's */
	assert_int_equal(2, (long)status_num("open_transactions")); /* t1 and t2 come from ce */
	exec_sql("DELETE FROM dw_parked_event", 0, NULL);
	exec_sql("DELETE FROM dw_txn_part", 0, NULL);
	worker_start();
}

static void test_kafka_own_reset_tool_writes_nothing(void **state)
{
	(void)state;
	assert_int_equal(0, worker_stop());
	long before = fo_total_writes();
	long total = topic_messages();
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
		 "java -cp '.deps/kafka/libs/*' org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "
		 "--bootstrap-server %s --group %s.apply.accounts.fo --reset-offsets --to-earliest --topic %s "
		 "--execute >'%s' 2>&1",
		 kcfg.kafka_brokers, prefix, topic, errpath);
	int st = system(cmd);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		read_file(errpath, eout, sizeof(eout));
		fail_msg("kafka tool failed: %s", eout);
	}
	assert_int_equal(total, (long)status_num("lag"));
	worker_start();
	wait_caught_up();
	assert_int_equal(before, fo_total_writes());
}

static void test_dlq_list_show_retry(void **state)
{
	(void)state;
	char a[32], key[128];
	account_no(a, sizeof(a), 3);
	snprintf(key, sizeof(key), "_msdyn_company_value=%s,accountnumber=%s", company_guid, a);
	double dlq0 = status_num("dead_letters");
	/* the target rejects everything with 400: the event is dead-lettered */
	struct emu_resp r;
	emu_admin(fo_base, "POST", "faults", "{\"error_status\":400,\"error_rate\":1}", &r);
	emu_resp_free(&r);
	produce_account(a, "create", 1, "Retried");
	flush_producer();
	wait_caught_up();
	faults_off(NULL);
	assert_int_equal(-1, fo_writes(a));
	assert_int_equal(dlq0 + 1, status_num("dead_letters"));

	long off = dlq_offset_of(key);
	assert_true(off >= 0);
	assert_non_null(strstr(out, "target_rejected"));
	char args[256];
	snprintf(args, sizeof(args), "dlq show --map accounts --to fo --offset %ld", off);
	ctl_ok(args);
	assert_non_null(strstr(out, "dw.reason: target_rejected"));
	assert_non_null(strstr(out, "dw.http.status: 400"));
	assert_non_null(strstr(out, "dw.source.topic: "));
	assert_non_null(strstr(out, "\"Retried\""));
	assert_non_null(strstr(out, a));
	snprintf(args, sizeof(args), "dlq show --map accounts --to fo --offset %ld", off + 1000);
	assert_int_equal(1, ctl(args));

	/* retried with the faults off: written once */
	snprintf(args, sizeof(args), "dlq retry --map accounts --to fo --offset %ld", off);
	ctl_ok(args);
	assert_non_null(strstr(out, "1 event(s) sent back"));
	long long deadline = harness_now_ms() + WAIT_MS;
	while (fo_writes(a) < 1 && harness_now_ms() < deadline)
		usleep(200000);
	wait_caught_up();
	assert_int_equal(1, fo_writes(a));
	assert_name(a, "Retried");
	/* retrying again passes the normal rules: the same event is not written twice */
	ctl_ok("dlq retry --map accounts --to fo --all");
	wait_caught_up();
	assert_int_equal(1, fo_writes(a));
	const char *p[] = { "accounts" };
	assert_int_equal(0, query_ll("SELECT count(*) FROM dw_applied_event WHERE map_name = $1 AND "
				     "outcome = 'dead_letter'", 1, p));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_pause_holds_backlog_then_resume_catches_up_in_order),
		cmocka_unit_test(test_replay_refused_while_worker_runs),
		cmocka_unit_test(test_replay_whole_topic_twice_writes_nothing),
		cmocka_unit_test(test_replay_since_rfc3339_and_relative),
		cmocka_unit_test(test_status_counts_parked_and_open_transactions),
		cmocka_unit_test(test_kafka_own_reset_tool_writes_nothing),
		cmocka_unit_test_teardown(test_dlq_list_show_retry, faults_off),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
