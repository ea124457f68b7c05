/*
 * `ctl initial-sync` against the Dataverse emulator, the real broker and the real PostgreSQL:
 * 100,000 seeded accounts give exactly 100,000 distinct snapshot events; a run killed with SIGKILL
 * halfway and started again finishes with every row on the topic (the re-sent tail keeps its ids);
 * a finished table is not synced twice without --restart, and --restart publishes every row again
 * with the same ids; an F&O table is read across companies in 10,000-row pages, its versions
 * follow the image (an unchanged row keeps its id, a changed one gets the next version).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "harness.h"
#include "emu_client.h"
#include "event.h"
#include "kafka.h"
#include "store.h"

#define ROWS 100000
#define FO_ROWS 12000
#define FO_TABLE "CustomersV3@mserp_custcustomerv3entity:dataAreaId+CustomerAccount"
#define SEED_BATCH 1000
#define SEED_THREADS 4
#define TABLE "account@accounts:accountnumber"
#define CONSUME_MS 240000
#define RUN_MS 600000

static char err[1024];
static char *ce_url, *fo_url;
static char *token, *fo_token;
static long long *row_versions; /* versionnumber of each seeded account, read back after seeding */

/* Row i's GUID: the index is readable back from the last 12 hex digits. */
static void row_guid(long i, char out[37])
{
	snprintf(out, 37, "5eed0000-0000-4000-8000-%012lx", (unsigned long)i);
}

static long guid_row(const char *g)
{
	if (strlen(g) != 36 || strncmp(g, "5eed0000-0000-4000-8000-", 24) != 0)
		return -1;
	char *end;
	long v = strtol(g + 24, &end, 16);
	return (*end || v < 0 || v >= ROWS) ? -1 : v;
}

/* ---- seeding: $batch upserts of accounts, several connections at once -------------------- */

struct seeder {
	int fo;           /* seed F&O customers instead of Dataverse accounts */
	long first, last; /* batches [first, last) */
	long ok;
};

static const char *const fo_companies[] = { "usmf", "usrt", "demf" };

static void *seed_worker(void *arg)
{
	struct seeder *w = arg;
	size_t cap = (size_t)SEED_BATCH * 420 + 64;
	char *body = malloc(cap);
	char url[1024], auth[8192];
	snprintf(url, sizeof(url), "%s%s$batch", w->fo ? fo_url : ce_url, w->fo ? "/data/" : "/api/data/v9.2/");
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", w->fo ? fo_token : token);
	const char *h[] = { auth, "Content-Type: multipart/mixed; boundary=batch_S", "OData-Version: 4.0", NULL };
	for (long b = w->first; body && b < w->last; b++) {
		size_t o = 0;
		for (long i = b * SEED_BATCH; i < (b + 1) * SEED_BATCH; i++) {
			char g[37];
			row_guid(i, g);
			o += (size_t)snprintf(body + o, cap - o,
					      "--batch_S\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: "
					      "binary\r\n\r\n");
			if (w->fo)
				o += (size_t)snprintf(body + o, cap - o,
						      "POST CustomersV3 HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
						      "{\"dataAreaId\":\"%s\",\"CustomerAccount\":\"ISF-%05ld\","
						      "\"OrganizationName\":\"F&O initial sync %ld\"}\r\n",
						      fo_companies[i % 3], i, i);
			else
				o += (size_t)snprintf(body + o, cap - o,
						      "PATCH accounts(%s) HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
						      "{\"name\":\"Initial sync %ld\",\"accountnumber\":\"IS-%06ld\","
						      "\"creditlimit\":%ld}\r\n",
						      g, i, i, i % 1000);
		}
		snprintf(body + o, cap - o, "--batch_S--\r\n");
		struct emu_resp r;
		emu_http("POST", url, h, body, &r);
		if (r.status == 200) {
			/* Count the inner successes: 204 per upsert, 201 per F&O create. */
			const char *ok = w->fo ? "HTTP/1.1 201" : "HTTP/1.1 204";
			for (const char *p = r.body; p && (p = strstr(p, ok)); p += 12)
				w->ok++;
		}
		emu_resp_free(&r);
	}
	free(body);
	return NULL;
}

/* Seeds rows [0, n) on one side with SEED_THREADS connections; returns how many were written. */
static long seed(int fo, long n)
{
	struct seeder w[SEED_THREADS];
	pthread_t th[SEED_THREADS];
	long batches = n / SEED_BATCH;
	for (int i = 0; i < SEED_THREADS; i++) {
		w[i] = (struct seeder){ fo, batches * i / SEED_THREADS, batches * (i + 1) / SEED_THREADS, 0 };
		assert_int_equal(0, pthread_create(&th[i], NULL, seed_worker, &w[i]));
	}
	long ok = 0;
	for (int i = 0; i < SEED_THREADS; i++) {
		pthread_join(th[i], NULL);
		ok += w[i].ok;
	}
	return ok;
}

/* ---- running ctl ------------------------------------------------------------------------- */

struct ctl_run {
	pid_t pid;
	char out[512]; /* stdout file */
	char log[512]; /* stderr file */
};

/* Starts `ctl initial-sync --from ce TABLE extra...` with the suite's prefix and environment. */
static void ctl_start_table(struct ctl_run *r, const char *tag, const char *prefix, const char *env,
			    const char *side, const char *table, const char *extra1, const char *extra2)
{
	const char *state = harness_env("DW_STATE_DIR");
	snprintf(r->out, sizeof(r->out), "%s/logs/initial_sync.%s.out", state, tag);
	snprintf(r->log, sizeof(r->log), "%s/logs/initial_sync.%s.log", state, tag);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int o = open(r->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(r->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (o < 0 || e < 0)
			_exit(127);
		dup2(o, 1);
		dup2(e, 2);
		setenv("DW_TOPIC_PREFIX", prefix, 1);
		setenv("DW_ENV", env, 1);
		const char *argv[] = { harness_bin("ctl"), "initial-sync", "--from", side, table, extra1, extra2, NULL };
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	r->pid = pid;
}

static void ctl_start(struct ctl_run *r, const char *tag, const char *prefix, const char *env,
		      const char *extra1, const char *extra2)
{
	ctl_start_table(r, tag, prefix, env, "ce", TABLE, extra1, extra2);
}

/* Waits for the process; returns its exit status (128+signal when killed). */
static int ctl_wait(struct ctl_run *r, long long timeout_ms)
{
	long long deadline = harness_now_ms() + timeout_ms;
	int st;
	for (;;) {
		pid_t w = waitpid(r->pid, &st, WNOHANG);
		if (w == r->pid)
			break;
		if (harness_now_ms() > deadline) {
			kill(r->pid, SIGKILL);
			waitpid(r->pid, &st, 0);
			fail_msg("ctl initial-sync did not finish in %lld ms; log %s", timeout_ms, r->log);
		}
		usleep(50000);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return strdup("");
	char *buf = calloc(1, 65536);
	size_t n = buf ? fread(buf, 1, 65535, f) : 0;
	(void)n;
	fclose(f);
	return buf;
}

static void assert_output_contains(const struct ctl_run *r, const char *what)
{
	char *o = slurp(r->out);
	if (!strstr(o, what)) {
		char *l = slurp(r->log);
		fail_msg("stdout lacks '%s'\nstdout: %s\nstderr: %.3000s", what, o, l);
	}
	free(o);
}

/* ---- reading the topic ------------------------------------------------------------------- */

struct tally {
	long messages;
	long distinct_rows;
	long duplicates;
	unsigned char *seen;       /* per row: times seen */
	char (*ids)[SHA256_HEX_LEN + 1]; /* per row: the first id seen */
};

typedef void event_fn(const struct event *ev, const struct kafka_message *m, void *ctx);

/* Reads the topic from the start (read_committed), decoding every message (the id is checked
 * against its inputs) and checking that the Kafka key is the canonical key, until at least
 * `expected` messages arrived and then 3 s passed without another. Returns the message count. */
static long read_events(const char *topic, long expected, event_fn *fn, void *ctx)
{
	struct config_common cfg = { 0 };
	cfg.kafka_brokers = (char *)harness_env("DW_KAFKA_BROKERS");
	cfg.topic_prefix = (char *)"dw";
	char *group = harness_unique("is-reader");
	struct kafka_consumer_opts co = { .group_id = group };
	struct kafka_consumer *c = NULL;
	if (kafka_consumer_new(&cfg, &co, &c, err, sizeof(err)) != 0)
		fail_msg("consumer: %s", err);
	const char *topics[] = { topic };
	if (kafka_consumer_subscribe(c, topics, 1, err, sizeof(err)) != 0)
		fail_msg("subscribe: %s", err);
	long n = 0;
	long long deadline = harness_now_ms() + CONSUME_MS, quiet_since = 0;
	for (;;) {
		long long now = harness_now_ms();
		if (n >= expected) {
			if (!quiet_since)
				quiet_since = now;
			if (now - quiet_since > 3000)
				break;
		}
		if (now > deadline)
			break;
		struct kafka_message *m = NULL;
		int rc = kafka_consumer_poll(c, 200, &m, err, sizeof(err));
		if (rc < 0)
			fail_msg("poll: %s", err);
		if (rc == 0)
			continue;
		quiet_since = 0;
		struct event ev;
		if (event_decode(m->value, m->value_len, 0, 0, &ev, err, sizeof(err)) != 0)
			fail_msg("message at offset %lld: %s", (long long)m->offset, err);
		assert_int_equal(EVENT_OP_SNAPSHOT, ev.op);
		char *ks = NULL;
		assert_int_equal(0, event_key_string(ev.key, &ks, err, sizeof(err)));
		assert_int_equal(strlen(ks), m->key_len);
		assert_memory_equal(ks, m->key, m->key_len);
		free(ks);
		fn(&ev, m, ctx);
		n++;
		event_clear(&ev);
		kafka_message_free(m);
	}
	kafka_consumer_close(c);
	free(group);
	return n;
}

static void tally_one(const struct event *ev, const struct kafka_message *m, void *ctx)
{
	(void)m;
	struct tally *t = ctx;
	assert_int_equal(EVENT_SIDE_CE, ev->source.side);
	assert_string_equal("account", ev->source.entity);
	assert_string_equal("accounts", ev->source.entity_set);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev->key, "accountid");
	const cJSON *num = cJSON_GetObjectItemCaseSensitive(ev->key, "accountnumber");
	assert_true(cJSON_IsString(id));
	long row = guid_row(id->valuestring);
	if (row < 0)
		fail_msg("event for a row the suite did not seed: %s", id->valuestring);
	char want[32];
	snprintf(want, sizeof(want), "IS-%06ld", row);
	assert_true(cJSON_IsString(num));
	assert_string_equal(want, num->valuestring);
	/* The version is the row's versionnumber, as the Web API shows it. */
	assert_int_equal(row_versions[row], ev->source.version);
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(ev->data, "name");
	snprintf(want, sizeof(want), "Initial sync %ld", row);
	assert_true(cJSON_IsString(name));
	assert_string_equal(want, name->valuestring);
	assert_null(cJSON_GetObjectItemCaseSensitive(ev->data, "@odata.etag"));
	t->messages++;
	if (t->seen[row]) {
		t->duplicates++;
		/* A re-published row carries the same id. */
		assert_string_equal(t->ids[row], ev->id);
	} else {
		t->distinct_rows++;
		memcpy(t->ids[row], ev->id, sizeof(t->ids[row]));
	}
	if (t->seen[row] < 255)
		t->seen[row]++;
}

/* Reads every account event of the topic into *t. */
static void tally_topic(const char *topic, struct tally *t)
{
	memset(t, 0, sizeof(*t));
	t->seen = calloc(ROWS, 1);
	t->ids = calloc(ROWS, sizeof(*t->ids));
	assert_non_null(t->seen);
	assert_non_null(t->ids);
	read_events(topic, ROWS, tally_one, t);
}

static void tally_free(struct tally *t)
{
	free(t->seen);
	free(t->ids);
}

static void make_topic_for(const char *prefix, const char *table)
{
	struct config_common cfg = { 0 };
	cfg.kafka_brokers = (char *)harness_env("DW_KAFKA_BROKERS");
	struct kafka_admin *a = NULL;
	if (kafka_admin_new(&cfg, &a, err, sizeof(err)) != 0)
		fail_msg("admin: %s", err);
	char topic[256];
	snprintf(topic, sizeof(topic), "%s.%s", prefix, table);
	struct kafka_topic_spec spec = { 6, 1, 86400000LL };
	enum kafka_topic_outcome outcome;
	if (kafka_topic_ensure(a, topic, &spec, 30000, &outcome, err, sizeof(err)) != 0)
		fail_msg("topic %s: %s", topic, err);
	kafka_admin_free(a);
}

static void make_topic(const char *prefix)
{
	make_topic_for(prefix, "ce.account");
}

/* The saved position's rows and done flag (-1 rows when there is none). */
static long long checkpoint_rows(const char *env, int *done)
{
	PGconn *pg = NULL;
	if (store_connect(harness_env("DW_PG_DSN"), NULL, &pg, err, sizeof(err)) != 0)
		fail_msg("pg: %s", err);
	const char *params[] = { env };
	PGresult *res = NULL;
	if (store_exec(pg,
		       "SELECT (position::jsonb->>'rows')::bigint, coalesce((position::jsonb->>'done')::boolean, false) "
		       "FROM dw_capture_checkpoint WHERE side = 'ce' AND environment = $1 AND entity = 'account' "
		       "AND kind = 'initial_sync'",
		       1, params, &res, err, sizeof(err)) != 0)
		fail_msg("checkpoint: %s", err);
	long long rows = -1;
	*done = 0;
	if (PQntuples(res) == 1) {
		rows = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		*done = PQgetvalue(res, 0, 1)[0] == 't';
	}
	PQclear(res);
	store_close(pg);
	return rows;
}

/* Pages through accounts ($select=accountid,versionnumber) and keeps every seeded row's version. */
static void read_versions(void)
{
	row_versions = calloc(ROWS, sizeof(*row_versions));
	assert_non_null(row_versions);
	char url[4096], auth[8192];
	snprintf(url, sizeof(url), "%s/api/data/v9.2/accounts?$select=accountid,versionnumber", ce_url);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	const char *h[] = { auth, "Prefer: odata.maxpagesize=5000", NULL };
	long found = 0;
	while (url[0]) {
		struct emu_resp r;
		emu_http("GET", url, h, NULL, &r);
		assert_int_equal(200, r.status);
		cJSON *j = emu_json(&r);
		const cJSON *row;
		cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(j, "value"))
		{
			const cJSON *id = cJSON_GetObjectItemCaseSensitive(row, "accountid");
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, "versionnumber");
			long i = cJSON_IsString(id) ? guid_row(id->valuestring) : -1;
			if (i >= 0 && cJSON_IsNumber(v)) {
				row_versions[i] = (long long)v->valuedouble;
				found++;
			}
		}
		const cJSON *next = cJSON_GetObjectItemCaseSensitive(j, "@odata.nextLink");
		snprintf(url, sizeof(url), "%s", cJSON_IsString(next) ? next->valuestring : "");
		cJSON_Delete(j);
		emu_resp_free(&r);
	}
	assert_int_equal(ROWS, found);
}

/* ---- set-up: migrate, reset the emulator, seed 100,000 accounts ------------------------- */

static int group_setup(void **state)
{
	(void)state;
	ce_url = strdup(harness_env("DW_CE_URL"));
	fo_url = strdup(harness_env("DW_FO_URL"));
	/* The checkpoint table. */
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "%s migrate >/dev/null", harness_bin("ctl"));
	if (system(cmd) != 0)
		fail_msg("ctl migrate failed");
	struct emu_resp r;
	emu_admin(ce_url, "POST", "reset", NULL, &r);
	assert_int_equal(204, r.status);
	emu_resp_free(&r);
	emu_admin(fo_url, "POST", "reset", NULL, &r);
	assert_int_equal(204, r.status);
	emu_resp_free(&r);
	token = emu_token("CE");
	fo_token = emu_token("FO");
	long long t0 = harness_now_ms();
	assert_int_equal(FO_ROWS, seed(1, FO_ROWS));
	long ok = seed(0, ROWS);
	fprintf(stderr, "# seeded %ld accounts and %d F&O customers in %lld ms\n", ok, FO_ROWS, harness_now_ms() - t0);
	read_versions();
	assert_int_equal(ROWS, ok);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	free(ce_url);
	free(fo_url);
	free(token);
	free(fo_token);
	free(row_versions);
	return 0;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_full_run_publishes_every_row_once(void **state)
{
	(void)state;
	char *prefix = harness_unique("isfull"), *env = harness_unique("isfull");
	make_topic(prefix);
	struct ctl_run r;
	long long t0 = harness_now_ms();
	ctl_start(&r, "full", prefix, env, NULL, NULL);
	int rc = ctl_wait(&r, RUN_MS);
	if (rc != 0)
		fail_msg("exit %d; log %s", rc, r.log);
	fprintf(stderr, "# 100,000 rows synced in %lld ms\n", harness_now_ms() - t0);
	assert_output_contains(&r, "initial sync ce.account: 100000 rows, 20 pages");
	int done = 0;
	assert_int_equal(ROWS, checkpoint_rows(env, &done));
	assert_true(done);

	char topic[256];
	snprintf(topic, sizeof(topic), "%s.ce.account", prefix);
	struct tally t;
	tally_topic(topic, &t);
	assert_int_equal(ROWS, t.distinct_rows);
	assert_int_equal(ROWS, t.messages); /* an uninterrupted run publishes each row once */
	tally_free(&t);

	/* A finished table is not synced again without --restart. */
	ctl_start(&r, "again", prefix, env, NULL, NULL);
	assert_int_equal(0, ctl_wait(&r, RUN_MS));
	assert_output_contains(&r, "already complete (100000 rows, 20 pages)");
	tally_topic(topic, &t);
	assert_int_equal(ROWS, t.messages);
	tally_free(&t);
	free(prefix);
	free(env);
}

static void test_killed_run_resumes_without_missing_a_row(void **state)
{
	(void)state;
	char *prefix = harness_unique("iskill"), *env = harness_unique("iskill");
	make_topic(prefix);
	struct ctl_run r;
	ctl_start(&r, "killed", prefix, env, "--page-size", "500");
	/* Kill it once at least half of the rows are confirmed. */
	long long deadline = harness_now_ms() + RUN_MS;
	long long rows = -1;
	int done = 0;
	for (;;) {
		rows = checkpoint_rows(env, &done);
		if (rows >= ROWS / 2 || done)
			break;
		if (harness_now_ms() > deadline || waitpid(r.pid, NULL, WNOHANG) == r.pid)
			fail_msg("initial sync ended or stalled before half the rows; log %s", r.log);
		usleep(20000);
	}
	kill(r.pid, SIGKILL);
	assert_int_equal(128 + SIGKILL, ctl_wait(&r, 30000));
	rows = checkpoint_rows(env, &done);
	fprintf(stderr, "# killed with %lld rows confirmed\n", rows);
	assert_false(done);
	assert_true(rows >= ROWS / 2 && rows < ROWS);

	ctl_start(&r, "resumed", prefix, env, "--page-size", "500");
	int rc = ctl_wait(&r, RUN_MS);
	if (rc != 0)
		fail_msg("exit %d; log %s", rc, r.log);
	char want[128];
	snprintf(want, sizeof(want), "initial sync ce.account: %lld rows, ", ROWS - rows);
	assert_output_contains(&r, want);
	assert_output_contains(&r, "100000 rows in all, over 200 pages");
	assert_int_equal(ROWS, checkpoint_rows(env, &done));
	assert_true(done);

	char topic[256];
	snprintf(topic, sizeof(topic), "%s.ce.account", prefix);
	struct tally t;
	tally_topic(topic, &t);
	fprintf(stderr, "# %ld messages, %ld duplicates\n", t.messages, t.duplicates);
	assert_int_equal(ROWS, t.distinct_rows);
	/* At most the page in flight when it was killed went out twice. */
	assert_true(t.duplicates <= 500);
	assert_int_equal(ROWS + t.duplicates, t.messages);
	tally_free(&t);
	free(prefix);
	free(env);
}

static void test_restart_publishes_everything_again(void **state)
{
	(void)state;
	char *prefix = harness_unique("isre"), *env = harness_unique("isre");
	make_topic(prefix);
	struct ctl_run r;
	ctl_start(&r, "first", prefix, env, NULL, NULL);
	assert_int_equal(0, ctl_wait(&r, RUN_MS));
	ctl_start(&r, "restart", prefix, env, "--restart", NULL);
	assert_int_equal(0, ctl_wait(&r, RUN_MS));
	assert_output_contains(&r, "initial sync ce.account: 100000 rows, 20 pages");
	char topic[256];
	snprintf(topic, sizeof(topic), "%s.ce.account", prefix);
	struct tally t;
	tally_topic(topic, &t);
	assert_int_equal(ROWS, t.distinct_rows);
	assert_int_equal(2 * ROWS, t.messages); /* same ids both times (checked in tally_topic) */
	tally_free(&t);
	free(prefix);
	free(env);
}

/* Per F&O row: the ids seen, in order (two runs at most). */
struct fo_seen {
	int count[FO_ROWS];
	char ids[FO_ROWS][2][SHA256_HEX_LEN + 1];
	long long versions[FO_ROWS][2];
	long companies[3];
};

static void fo_one(const struct event *ev, const struct kafka_message *m, void *ctx)
{
	(void)m;
	struct fo_seen *f = ctx;
	assert_int_equal(EVENT_SIDE_FO, ev->source.side);
	assert_string_equal("CustomersV3", ev->source.entity);
	assert_int_equal(2, cJSON_GetArraySize(ev->key));
	const cJSON *acct = cJSON_GetObjectItemCaseSensitive(ev->key, "CustomerAccount");
	const cJSON *area = cJSON_GetObjectItemCaseSensitive(ev->key, "dataAreaId");
	assert_true(cJSON_IsString(acct) && cJSON_IsString(area));
	char *end = NULL;
	if (strncmp(acct->valuestring, "ISF-", 4) != 0)
		fail_msg("event for a row the suite did not seed: %s", acct->valuestring);
	long row = strtol(acct->valuestring + 4, &end, 10);
	assert_true(*end == '\0' && row >= 0 && row < FO_ROWS);
	assert_string_equal(fo_companies[row % 3], area->valuestring);
	f->companies[row % 3]++;
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(ev->data, "OrganizationName");
	assert_true(cJSON_IsString(name));
	assert_true(f->count[row] < 2);
	memcpy(f->ids[row][f->count[row]], ev->id, SHA256_HEX_LEN + 1);
	f->versions[row][f->count[row]] = ev->source.version;
	f->count[row]++;
}

static void test_fo_cross_company_and_versions_follow_content(void **state)
{
	(void)state;
	char *prefix = harness_unique("isfo"), *env = harness_unique("isfo");
	make_topic_for(prefix, "fo.customersv3");
	struct ctl_run r;
	ctl_start_table(&r, "fo", prefix, env, "fo", FO_TABLE, NULL, NULL);
	int rc = ctl_wait(&r, RUN_MS);
	if (rc != 0)
		fail_msg("exit %d; log %s", rc, r.log);
	/* Every company (cross-company=true), 10,000 rows per page. */
	assert_output_contains(&r, "initial sync fo.CustomersV3: 12000 rows, 2 pages");

	/* One row changes; a second full run gives it the next version and every other row its old id. */
	char url[1024], auth[8192];
	snprintf(url, sizeof(url), "%s/data/CustomersV3(dataAreaId='%s',CustomerAccount='ISF-00007')", fo_url,
		 fo_companies[7 % 3]);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", fo_token);
	const char *h[] = { auth, "Content-Type: application/json", NULL };
	struct emu_resp resp;
	emu_http("PATCH", url, h, "{\"OrganizationName\":\"Renamed 7\"}", &resp);
	assert_int_equal(204, resp.status);
	emu_resp_free(&resp);
	ctl_start_table(&r, "fo-restart", prefix, env, "fo", FO_TABLE, "--restart", NULL);
	assert_int_equal(0, ctl_wait(&r, RUN_MS));

	char topic[256];
	snprintf(topic, sizeof(topic), "%s.fo.customersv3", prefix);
	struct fo_seen *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_int_equal(2 * FO_ROWS, read_events(topic, 2 * FO_ROWS, fo_one, f));
	for (int i = 0; i < 3; i++)
		assert_int_equal(2 * FO_ROWS / 3, f->companies[i]);
	for (long i = 0; i < FO_ROWS; i++) {
		assert_int_equal(2, f->count[i]);
		assert_int_equal(1, f->versions[i][0]); /* first sight */
		if (i == 7) {
			assert_int_equal(2, f->versions[i][1]);
			assert_string_not_equal(f->ids[i][0], f->ids[i][1]);
		} else {
			assert_int_equal(1, f->versions[i][1]);
			assert_string_equal(f->ids[i][0], f->ids[i][1]);
		}
	}
	free(f);
	free(prefix);
	free(env);
}

static void test_usage_errors(void **state)
{
	(void)state;
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "%s initial-sync account@accounts 2>/dev/null", harness_bin("ctl"));
	assert_int_equal(2, WEXITSTATUS(system(cmd)));
	snprintf(cmd, sizeof(cmd), "%s initial-sync --from xx account@accounts 2>/dev/null", harness_bin("ctl"));
	assert_int_equal(2, WEXITSTATUS(system(cmd)));
	snprintf(cmd, sizeof(cmd), "%s initial-sync --from ce --page-size 5001 account@accounts 2>/dev/null",
		 harness_bin("ctl"));
	assert_int_equal(2, WEXITSTATUS(system(cmd)));
	snprintf(cmd, sizeof(cmd), "%s initial-sync --from fo CustomersV3@mserp_custcustomerv3entity 2>/dev/null",
		 harness_bin("ctl"));
	assert_int_equal(2, WEXITSTATUS(system(cmd))); /* F&O entry without key fields */
	snprintf(cmd, sizeof(cmd), "env -u DW_CAPTURE_TABLES %s initial-sync --from ce account 2>/dev/null",
		 harness_bin("ctl"));
	assert_int_equal(2, WEXITSTATUS(system(cmd)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_full_run_publishes_every_row_once),
		cmocka_unit_test(test_killed_run_resumes_without_missing_a_row),
		cmocka_unit_test(test_restart_publishes_everything_again),
		cmocka_unit_test(test_fo_cross_company_and_versions_follow_content),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
