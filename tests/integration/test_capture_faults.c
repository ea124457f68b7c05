/*
 * The capture program under failure, against the Dataverse emulator, the real broker and the real
 * PostgreSQL:
 *  - SIGKILL in the middle of a stream of 10,000 changes, then a restart: every change is on the
 *    topic (the re-published tail keeps its ids);
 *  - the broker stopped for 30 s while changes keep coming: webhooks are answered 503 while it is
 *    down, change tracking catches up afterwards, nothing is missing (the broker is started again
 *    whatever happens, later suites need it);
 *  - hostile webhook bodies (malformed, truncated, oversized, wrong or missing key, unknown table,
 *    wrong content type...) get 4xx answers naming the problem, publish nothing and crash nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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

#define HOOK_KEY "faults-webhook-key-5f0c1d"
#define TABLES "account@accounts:accountnumber"
#define STREAM_ROWS 10000
#define MAX_ROWS 20000

static char err[1024];
static char *ce_url;
static char *token;
static int broker_stopped;
static pid_t live[4]; /* capture processes to kill when a test fails half-way */

/* ---- rows ------------------------------------------------------------------------------- */

static void row_guid(unsigned tag, long i, char out[37])
{
	snprintf(out, 37, "fa017000-%04x-4000-8000-%012lx", tag & 0xffff, (unsigned long)i);
}

static long guid_row(unsigned tag, const char *g)
{
	char want[37];
	row_guid(tag, 0, want);
	if (strlen(g) != 36 || strncmp(g, want, 24) != 0)
		return -1;
	char *end;
	long v = strtol(g + 24, &end, 16);
	return (*end || v < 0 || v >= MAX_ROWS) ? -1 : v;
}

/* A single writer (so the emulator's change-tracking versions commit in order): rows [0, n) in
 * $batch requests of `batch` upserts, pausing pause_ms between requests. */
struct writer {
	unsigned tag;
	long n, batch, pause_ms;
	atomic_long done;
	long failed;
	pthread_t th;
};

static void *write_rows(void *arg)
{
	struct writer *w = arg;
	size_t cap = (size_t)w->batch * 400 + 64;
	char *body = malloc(cap);
	char url[1024], auth[8192];
	snprintf(url, sizeof(url), "%s/api/data/v9.2/$batch", ce_url);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	const char *h[] = { auth, "Content-Type: multipart/mixed; boundary=batch_W", NULL };
	for (long first = 0; body && first < w->n; first += w->batch) {
		size_t o = 0;
		long last = first + w->batch > w->n ? w->n : first + w->batch;
		for (long i = first; i < last; i++) {
			char g[37];
			row_guid(w->tag, i, g);
			o += (size_t)snprintf(body + o, cap - o,
					      "--batch_W\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: "
					      "binary\r\n\r\nPATCH accounts(%s) HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
					      "{\"name\":\"Fault %u %ld\",\"accountnumber\":\"F%u-%06ld\"}\r\n",
					      g, w->tag, i, w->tag, i);
		}
		snprintf(body + o, cap - o, "--batch_W--\r\n");
		struct emu_resp r;
		emu_http("POST", url, h, body, &r);
		long ok = 0;
		if (r.status == 200)
			for (const char *p = r.body; p && (p = strstr(p, "HTTP/1.1 204")); p += 12)
				ok++;
		w->failed += (last - first) - ok;
		emu_resp_free(&r);
		atomic_store(&w->done, last);
		if (w->pause_ms)
			usleep((useconds_t)w->pause_ms * 1000);
	}
	free(body);
	return NULL;
}

/* The one writer a test runs; global so that a failed test's teardown can still join it. */
static struct writer the_writer;
static int writer_running;

static void writer_join(struct writer *w)
{
	if (writer_running) {
		pthread_join(w->th, NULL);
		writer_running = 0;
	}
}

static void writer_start(struct writer *w, unsigned tag, long n, long batch, long pause_ms)
{
	memset(w, 0, sizeof(*w));
	w->tag = tag;
	w->n = n;
	w->batch = batch;
	w->pause_ms = pause_ms;
	atomic_init(&w->done, 0);
	assert_int_equal(0, pthread_create(&w->th, NULL, write_rows, w));
	writer_running = 1;
}

/* ---- the capture process ---------------------------------------------------------------- */

struct capture {
	pid_t pid;
	int port;
	char log[512];
};

/* Starts `capture --side ce` with the suite's settings plus extra NAME=VALUE pairs (NULL-ended),
 * waits for its HTTP port and, when wait_ready, for /readyz 200. */
static void capture_start(struct capture *c, const char *tag, const char *prefix, const char *env, int wait_ready,
			  const char *const *extra)
{
	snprintf(c->log, sizeof(c->log), "%s/logs/capture_faults.%s.log", harness_env("DW_STATE_DIR"), tag);
	/* Emptied before the child starts, so no port of an earlier run is read from it. */
	int t = open(c->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(t >= 0);
	close(t);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int e = open(c->log, O_WRONLY | O_APPEND, 0644);
		if (e < 0)
			_exit(127);
		dup2(e, 1);
		dup2(e, 2);
		setenv("DW_TOPIC_PREFIX", prefix, 1);
		setenv("DW_ENV", env, 1);
		setenv("DW_CAPTURE_TABLES", TABLES, 1);
		setenv("DW_CAPTURE_POLL_INTERVAL", "200ms", 1);
		setenv("DW_CAPTURE_WEBHOOK_KEY", HOOK_KEY, 1);
		setenv("DW_CAPTURE_TXN_TIMEOUT", "5s", 1);
		setenv("DW_HTTP_ADDR", "127.0.0.1", 1);
		setenv("DW_HTTP_PORT", "0", 1);
		for (size_t i = 0; extra && extra[i]; i++)
			putenv((char *)extra[i]);
		const char *argv[] = { harness_bin("capture"), "--side", "ce", NULL };
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	c->pid = pid;
	c->port = 0;
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (!live[i]) {
			live[i] = pid;
			break;
		}
	long long deadline = harness_now_ms() + 60000;
	while (!c->port) {
		if (harness_now_ms() > deadline || waitpid(pid, NULL, WNOHANG) == pid)
			fail_msg("capture did not start listening; log %s", c->log);
		FILE *f = fopen(c->log, "r");
		char line[8192];
		int last = 0;
		while (f && fgets(line, sizeof(line), f)) {
			const char *p = strstr(line, "\"msg\":\"listening\"");
			const char *q = p ? strstr(p, "\"port\":\"") : NULL;
			if (q)
				last = (int)strtol(q + 8, NULL, 10);
		}
		if (f)
			fclose(f);
		c->port = last;
		if (!c->port)
			usleep(50000);
	}
	if (!wait_ready)
		return;
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", c->port);
	for (;;) {
		struct emu_resp r;
		emu_http("GET", url, NULL, NULL, &r);
		long st = r.status;
		emu_resp_free(&r);
		if (st == 200)
			break;
		if (harness_now_ms() > deadline || waitpid(pid, NULL, WNOHANG) == pid)
			fail_msg("capture not ready; log %s", c->log);
		usleep(100000);
	}
}

/* Stops it (SIGTERM) and returns the exit status. */
static int capture_stop(struct capture *c)
{
	if (c->pid <= 0)
		return -1;
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (live[i] == c->pid)
			live[i] = 0;
	kill(c->pid, SIGTERM);
	int st;
	long long deadline = harness_now_ms() + 60000;
	while (waitpid(c->pid, &st, WNOHANG) != c->pid) {
		if (harness_now_ms() > deadline) {
			kill(c->pid, SIGKILL);
			waitpid(c->pid, &st, 0);
			break;
		}
		usleep(50000);
	}
	c->pid = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static long post_hook(int port, const char *query, const char *content_type, const char *body, struct emu_resp *r)
{
	char url[512], ct[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/webhook/ce%s", port, query);
	snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
	const char *h[] = { ct, NULL };
	emu_http("POST", url, h, body, r);
	return r->status;
}

/* A Dataverse Create webhook body for row i of `tag` (Target with versionnumber). */
static char *create_body(unsigned tag, long i, const char *entity, long long version)
{
	char g[37];
	row_guid(tag, i, g);
	char *b = NULL;
	int n = asprintf(&b,
			 "{\"BusinessUnitId\":\"e2b9dd85-e89e-e711-8122-000d3aa2331c\",\"CorrelationId\":\"%s\","
			 "\"Depth\":1,\"InitiatingUserId\":\"75c2dd85-e89e-e711-8122-000d3aa2331c\","
			 "\"InputParameters\":[{\"key\":\"Target\",\"value\":{\"__type\":\"Entity:http://schemas.microsoft."
			 "com/xrm/2011/Contracts\",\"Attributes\":[{\"key\":\"%sid\",\"value\":\"%s\"},{\"key\":\"name\","
			 "\"value\":\"Hook %ld\"},{\"key\":\"accountnumber\",\"value\":\"H%u-%06ld\"},{\"key\":"
			 "\"versionnumber\",\"value\":%lld}],\"EntityState\":null,\"FormattedValues\":[],\"Id\":\"%s\","
			 "\"KeyAttributes\":[],\"LogicalName\":\"%s\",\"RelatedEntities\":[],\"RowVersion\":null}}],"
			 "\"IsExecutingOffline\":false,\"IsInTransaction\":false,\"IsOfflinePlayback\":false,"
			 "\"IsolationMode\":1,\"MessageName\":\"Create\",\"Mode\":1,"
			 "\"OperationCreatedOn\":\"/Date(1764460800000)/\",\"OperationId\":\"%s\","
			 "\"OrganizationId\":\"4ef5b371-e89e-e711-8122-000d3aa2331c\",\"OrganizationName\":\"dw\","
			 "\"OutputParameters\":[],\"ParentContext\":null,\"PostEntityImages\":[],\"PreEntityImages\":[],"
			 "\"PrimaryEntityId\":\"%s\",\"PrimaryEntityName\":\"%s\",\"RequestId\":null,"
			 "\"SecondaryEntityName\":\"none\",\"SharedVariables\":[],\"Stage\":40,"
			 "\"UserId\":\"75c2dd85-e89e-e711-8122-000d3aa2331c\"}",
			 g, entity, g, i, tag, i, version, g, entity, g, g, entity);
	assert_true(n > 0);
	return b;
}

/* ---- topics ----------------------------------------------------------------------------- */

static struct config_common kafka_cfg(void)
{
	struct config_common cfg = { 0 };
	cfg.kafka_brokers = (char *)harness_env("DW_KAFKA_BROKERS");
	cfg.topic_prefix = (char *)"dw";
	return cfg;
}

static void make_topic(const char *topic)
{
	struct config_common cfg = kafka_cfg();
	struct kafka_admin *a = NULL;
	if (kafka_admin_new(&cfg, &a, err, sizeof(err)) != 0)
		fail_msg("admin: %s", err);
	struct kafka_topic_spec spec = { 6, 1, 86400000LL };
	enum kafka_topic_outcome outcome;
	if (kafka_topic_ensure(a, topic, &spec, 30000, &outcome, err, sizeof(err)) != 0)
		fail_msg("topic %s: %s", topic, err);
	kafka_admin_free(a);
}

/* What the topic holds for rows [0, n) of `tag`. */
struct seen {
	unsigned tag;
	long n;
	long messages, distinct, others;
	char (*ids)[SHA256_HEX_LEN + 1];
};

/* Reads the topic (read_committed) until `want` of the rows [0, n) were seen and 3 s passed without
 * a message, or until timeout_ms. Every event must decode, and a row seen twice must carry the same
 * id both times. */
static void read_topic(const char *topic, unsigned tag, long n, long want, long long timeout_ms, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	s->tag = tag;
	s->n = n;
	s->ids = calloc((size_t)(n ? n : 1), sizeof(*s->ids));
	assert_non_null(s->ids);
	struct config_common cfg = kafka_cfg();
	char *group = harness_unique("faults-reader");
	struct kafka_consumer_opts co = { .group_id = group };
	struct kafka_consumer *c = NULL;
	if (kafka_consumer_new(&cfg, &co, &c, err, sizeof(err)) != 0)
		fail_msg("consumer: %s", err);
	const char *topics[] = { topic };
	if (kafka_consumer_subscribe(c, topics, 1, err, sizeof(err)) != 0)
		fail_msg("subscribe: %s", err);
	long long deadline = harness_now_ms() + timeout_ms, quiet = harness_now_ms();
	while (harness_now_ms() < deadline) {
		if (s->distinct >= want && harness_now_ms() - quiet > 3000)
			break;
		struct kafka_message *m = NULL;
		int rc = kafka_consumer_poll(c, 200, &m, err, sizeof(err));
		if (rc < 0)
			fail_msg("poll: %s", err);
		if (rc == 0)
			continue;
		quiet = harness_now_ms();
		struct event ev;
		if (event_decode(m->value, m->value_len, 0, 0, &ev, err, sizeof(err)) != 0)
			fail_msg("offset %lld: %s", (long long)m->offset, err);
		s->messages++;
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev.key, "accountid");
		long row = cJSON_IsString(id) ? guid_row(tag, id->valuestring) : -1;
		if (row < 0 || row >= n) {
			s->others++;
		} else if (s->ids[row][0]) {
			assert_string_equal(s->ids[row], ev.id);
		} else {
			assert_true(ev.op == EVENT_OP_CREATE || ev.op == EVENT_OP_UPDATE);
			memcpy(s->ids[row], ev.id, sizeof(s->ids[row]));
			s->distinct++;
		}
		event_clear(&ev);
		kafka_message_free(m);
	}
	kafka_consumer_close(c);
	free(group);
}

static void seen_free(struct seen *s)
{
	free(s->ids);
	s->ids = NULL;
}

/* ---- the broker -------------------------------------------------------------------------- */

static int broker(const char *action)
{
	const char *brokers = harness_env("DW_KAFKA_BROKERS");
	const char *colon = strrchr(brokers, ':');
	const char *state = getenv("DW_STACK_STATE_DIR");
	if (!state || !*state)
		state = harness_env("DW_STATE_DIR");
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "DW_STATE_DIR='%s' deploy/local/kafka.sh %s %s >>'%s/logs/capture_faults.kafka.log' 2>&1",
		 state, action, strcmp(action, "start") == 0 && colon ? colon + 1 : "", harness_env("DW_STATE_DIR"));
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void broker_up(void)
{
	if (broker_stopped && broker("start") == 0)
		broker_stopped = 0;
}

/* ---- set-up ----------------------------------------------------------------------------- */

static int group_setup(void **state)
{
	(void)state;
	ce_url = strdup(harness_env("DW_CE_URL"));
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "%s migrate >/dev/null", harness_bin("ctl"));
	if (system(cmd) != 0)
		fail_msg("ctl migrate failed");
	struct emu_resp r;
	emu_admin(ce_url, "POST", "reset", NULL, &r);
	assert_int_equal(204, r.status);
	emu_resp_free(&r);
	token = emu_token("CE");
	atexit(broker_up);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	broker_up();
	free(ce_url);
	free(token);
	return 0;
}

/* After a failed assertion: no capture process may outlive its test. */
static int teardown_captures(void **state)
{
	(void)state;
	writer_join(&the_writer);
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
		if (live[i] > 0) {
			kill(live[i], SIGKILL);
			waitpid(live[i], NULL, 0);
			live[i] = 0;
		}
	}
	return 0;
}

static int teardown_broker(void **state)
{
	broker_up();
	return teardown_captures(state);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_sigkill_mid_stream_loses_nothing(void **state)
{
	(void)state;
	char *prefix = harness_unique("fkill"), *env = harness_unique("fkill");
	char topic[256];
	snprintf(topic, sizeof(topic), "%s.ce.account", prefix);
	make_topic(topic);
	struct capture c;
	capture_start(&c, "kill", prefix, env, 1, NULL);
	struct writer *w = &the_writer;
	writer_start(w, 1, STREAM_ROWS, 100, 20);
	/* Kill it while the stream is in full flow, then start it again at once. */
	while (atomic_load(&w->done) < STREAM_ROWS * 4 / 10)
		usleep(10000);
	kill(c.pid, SIGKILL);
	waitpid(c.pid, NULL, 0);
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (live[i] == c.pid)
			live[i] = 0;
	long at = atomic_load(&w->done);
	capture_start(&c, "kill-restarted", prefix, env, 0, NULL);
	writer_join(w);
	assert_int_equal(0, w->failed);
	fprintf(stderr, "# killed after %ld of %d writes\n", at, STREAM_ROWS);
	assert_true(at < STREAM_ROWS);

	struct seen s;
	read_topic(topic, 1, STREAM_ROWS, STREAM_ROWS, 180000, &s);
	fprintf(stderr, "# %ld messages for %ld rows\n", s.messages, s.distinct);
	assert_int_equal(STREAM_ROWS, s.distinct);
	assert_int_equal(0, s.others);
	seen_free(&s);
	assert_int_equal(0, capture_stop(&c));
	free(prefix);
	free(env);
}

static void test_broker_outage_503_then_catch_up(void **state)
{
	(void)state;
	char *prefix = harness_unique("fbroker"), *env = harness_unique("fbroker");
	char topic[256];
	snprintf(topic, sizeof(topic), "%s.ce.account", prefix);
	make_topic(topic);
	struct capture c;
	capture_start(&c, "broker", prefix, env, 1, NULL);
	/* About 50 s of changes, 20 rows every 250 ms: before, during and after the outage. */
	struct writer *w = &the_writer;
	writer_start(w, 2, 4000, 20, 250);
	while (atomic_load(&w->done) < 400)
		usleep(10000);
	long at_stop = atomic_load(&w->done);
	broker_stopped = 1;
	assert_int_equal(0, broker("stop"));
	long long stopped_at = harness_now_ms();

	/* While it is down a webhook is refused with 503 so that the sender retries. */
	long long t0 = harness_now_ms();
	char *body = create_body(9, 1, "account", 1);
	struct emu_resp r;
	long st = post_hook(c.port, "?code=" HOOK_KEY, "application/json", body, &r);
	fprintf(stderr, "# webhook during the outage: %ld after %lld ms: %.200s\n", st, harness_now_ms() - t0,
		r.body ? r.body : "");
	emu_resp_free(&r);
	free(body);
	assert_int_equal(503, st);
	assert_true(harness_now_ms() - t0 < 20000);

	while (harness_now_ms() - stopped_at < 30000)
		usleep(100000);
	long at_start = atomic_load(&w->done);
	assert_int_equal(0, broker("start"));
	broker_stopped = 0;
	fprintf(stderr, "# broker down for %lld ms, rows %ld..%ld written meanwhile\n", harness_now_ms() - stopped_at,
		at_stop, at_start);
	assert_true(at_start > at_stop);
	writer_join(w);
	assert_int_equal(0, w->failed);

	/* Everything written, before, during and after, reaches the topic. */
	struct seen s;
	read_topic(topic, 2, 4000, 4000, 180000, &s);
	fprintf(stderr, "# %ld messages for %ld rows\n", s.messages, s.distinct);
	assert_int_equal(4000, s.distinct);
	seen_free(&s);

	/* The 503s were counted as such. */
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", c.port);
	emu_http("GET", url, NULL, NULL, &r);
	assert_int_equal(200, r.status);
	assert_non_null(strstr(r.body, "dw_capture_webhook_total{outcome=\"unavailable\"}"));
	emu_resp_free(&r);
	assert_int_equal(0, capture_stop(&c));
	free(prefix);
	free(env);
}

struct hostile {
	const char *name;
	const char *query;
	const char *content_type;
	char *body;
	long min_status, max_status;
	const char *reason; /* a word the answer must contain, or NULL */
};

static void test_hostile_webhook_bodies(void **state)
{
	(void)state;
	char *prefix = harness_unique("fhostile"), *env = harness_unique("fhostile");
	char topic[256];
	snprintf(topic, sizeof(topic), "%s.ce.account", prefix);
	make_topic(topic);
	static const char *const extra[] = { "DW_CAPTURE_DELTA=false", "DW_CAPTURE_BODY_CAP=65536", NULL };
	struct capture c;
	capture_start(&c, "hostile", prefix, env, 1, extra);

	char *valid = create_body(3, 1, "account", 1001);
	char *truncated = strndup(valid, strlen(valid) / 2);
	char *unknown = create_body(3, 2, "contact", 1002);
	char *assign = create_body(3, 3, "account", 1003);
	char *p = strstr(assign, "\"Create\"");
	assert_non_null(p);
	memcpy(p, "\"Assign\"", 8);
	char *huge = malloc(200001);
	assert_non_null(huge);
	memset(huge, ' ', 200000);
	huge[0] = '{';
	huge[199999] = '}';
	huge[200000] = '\0';
	char *latin1 = strdup("{\"MessageName\":\"Create\",\"PrimaryEntityName\":\"account\",\"x\":\"\xe9\xe9\"}");
	struct hostile cases[] = {
		{ "malformed JSON", "?code=" HOOK_KEY, "application/json", strdup("{\"MessageName\":"), 400, 400, NULL },
		{ "truncated body", "?code=" HOOK_KEY, "application/json", truncated, 400, 400, NULL },
		{ "not an object", "?code=" HOOK_KEY, "application/json", strdup("[1,2,3]"), 400, 400, NULL },
		{ "empty body", "?code=" HOOK_KEY, "application/json", strdup(""), 400, 400, NULL },
		{ "invalid UTF-8", "?code=" HOOK_KEY, "application/json", latin1, 400, 400, NULL },
		{ "unknown shape", "?code=" HOOK_KEY, "application/json", strdup("{\"hello\":\"world\"}"), 400, 400, NULL },
		{ "unknown table", "?code=" HOOK_KEY, "application/json", unknown, 400, 400, "contact" },
		{ "message not captured", "?code=" HOOK_KEY, "application/json", assign, 400, 400, "Assign" },
		{ "over the body cap", "?code=" HOOK_KEY, "application/json", huge, 413, 413, NULL },
		{ "wrong key", "?code=not-the-key", "application/json", strdup(valid), 401, 401, NULL },
		{ "no key", "", "application/json", strdup(valid), 401, 401, NULL },
		{ "wrong content type", "?code=" HOOK_KEY, "text/plain", strdup(valid), 400, 499, NULL },
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);
	char health[128];
	snprintf(health, sizeof(health), "http://127.0.0.1:%d/healthz", c.port);
	int failures = 0;
	for (size_t i = 0; i < n; i++) {
		struct emu_resp r;
		long st = post_hook(c.port, cases[i].query, cases[i].content_type, cases[i].body, &r);
		int ok = st >= cases[i].min_status && st <= cases[i].max_status;
		/* 4xx answers say why: a JSON error member (413 may come from the server itself). */
		if (ok && st != 413 && st != 401 && !(r.body && strstr(r.body, "\"error\"")))
			ok = 0;
		if (ok && cases[i].reason && !(r.body && strstr(r.body, cases[i].reason)))
			ok = 0;
		if (!ok) {
			fprintf(stderr, "# %s: got %ld %.300s\n", cases[i].name, st, r.body ? r.body : "");
			failures++;
		}
		emu_resp_free(&r);
		free(cases[i].body);
		/* Nothing crashed: the process is there and answers /healthz. */
		assert_int_equal(0, waitpid(c.pid, NULL, WNOHANG));
		emu_http("GET", health, NULL, NULL, &r);
		assert_int_equal(200, r.status);
		emu_resp_free(&r);
	}
	assert_int_equal(0, failures);

	/* Nothing was published; then a valid post is published, so the topic is not just silent. */
	struct seen s;
	read_topic(topic, 3, 0, 0, 5000, &s);
	assert_int_equal(0, s.messages);
	seen_free(&s);
	struct emu_resp r;
	assert_int_equal(200, post_hook(c.port, "?code=" HOOK_KEY, "application/json", valid, &r));
	emu_resp_free(&r);
	char hdr[128];
	snprintf(hdr, sizeof(hdr), "x-dw-webhook-key: %s", HOOK_KEY);
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/webhook/ce", c.port);
	const char *h[] = { "Content-Type: application/json", hdr, NULL };
	emu_http("POST", url, h, valid, &r); /* the key as a header works too; same change, same id */
	assert_int_equal(200, r.status);
	emu_resp_free(&r);
	read_topic(topic, 3, 2, 1, 15000, &s);
	assert_int_equal(2, s.messages);
	assert_int_equal(1, s.distinct);
	assert_int_equal(0, s.others);
	assert_true(s.ids[1][0]);
	seen_free(&s);
	free(valid);
	assert_int_equal(0, capture_stop(&c));
	free(prefix);
	free(env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_hostile_webhook_bodies, teardown_captures),
		cmocka_unit_test_teardown(test_sigkill_mid_stream_loses_nothing, teardown_captures),
		cmocka_unit_test_teardown(test_broker_outage_503_then_catch_up, teardown_broker),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
