/* Helpers shared by the capture suites (test_capture_ce.c, test_capture_fo.c): emulator requests,
 * migrations, topics, the capture binary as a child process, and a read_committed consumer.
 * Static functions in a header: each suite is its own program. Include after <cmocka.h>. */
#ifndef DW_CAPTURE_TEST_H
#define DW_CAPTURE_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "event.h"
#include "harness.h"
#include "http.h"
#include "kafka.h"
#include "migrate.h"
#include "publish.h"
#include "store.h"

#define CT_WAIT_MS 60000

static __attribute__((unused)) char ct_err[2048];

static __attribute__((unused)) void ct_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* ---- HTTP to the emulators ----------------------------------------------------------------- */

struct ct_resp {
	long status;
	char *body;
	char *entity_id; /* OData-EntityId header, or NULL */
};

static __attribute__((unused)) void ct_resp_free(struct ct_resp *r)
{
	free(r->body);
	free(r->entity_id);
	memset(r, 0, sizeof(*r));
}

static __attribute__((unused)) struct ct_resp ct_http(const char *method, const char *url, const char *ctype, const char *body,
			      const struct http_header *extra, size_t nextra)
{
	struct http_client *c = NULL;
	struct http_response resp;
	struct ct_resp out = { 0 };
	struct http_header h[8];
	size_t n = 0;
	if (http_client_new(NULL, &c, ct_err, sizeof(ct_err)) != 0)
		fail_msg("http client: %s", ct_err);
	if (ctype)
		h[n++] = (struct http_header){ "Content-Type", ctype };
	for (size_t i = 0; i < nextra && n < 8; i++)
		h[n++] = extra[i];
	struct http_request req = { .method = method, .url = url, .headers = h, .nheaders = n, .body = body,
				    .body_len = body ? strlen(body) : 0 };
	if (http_do(c, &req, &resp, ct_err, sizeof(ct_err)) != 0)
		fail_msg("%s %s: %s", method, url, ct_err);
	out.status = resp.status;
	out.body = strdup(resp.body);
	const char *eid = http_response_header(&resp, "OData-EntityId");
	out.entity_id = eid ? strdup(eid) : NULL;
	http_response_free(&resp);
	http_client_free(c);
	return out;
}

/* Base URL of the flavour's emulator ("ce" or "fo"). */
static __attribute__((unused)) const char *ct_base(const char *side)
{
	return harness_env(strcmp(side, "ce") == 0 ? "DW_CE_URL" : "DW_FO_URL");
}

/* A bearer token from the emulator's token endpoint (new string). */
static __attribute__((unused)) char *ct_token(const char *side)
{
	char name[64], body[1024];
	const char *up = strcmp(side, "ce") == 0 ? "CE" : "FO";
	snprintf(name, sizeof(name), "DW_%s_TOKEN_URL", up);
	const char *url = harness_env(name);
	snprintf(name, sizeof(name), "DW_%s_CLIENT_SECRET", up);
	char *secret = strdup(harness_env(name));
	snprintf(name, sizeof(name), "DW_%s_SCOPE", up);
	const char *scope = harness_env(name);
	snprintf(name, sizeof(name), "DW_%s_CLIENT_ID", up);
	snprintf(body, sizeof(body), "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s",
		 harness_env(name), secret, scope);
	free(secret);
	struct ct_resp r = ct_http("POST", url, "application/x-www-form-urlencoded", body, NULL, 0);
	if (r.status != 200)
		fail_msg("token: HTTP %ld %s", r.status, r.body);
	cJSON *j = cJSON_Parse(r.body);
	const cJSON *t = cJSON_GetObjectItem(j, "access_token");
	assert_true(cJSON_IsString(t));
	char *tok = strdup(t->valuestring);
	cJSON_Delete(j);
	ct_resp_free(&r);
	return tok;
}

/* A request to the service API: path relative to the service root (CE /api/data/v9.2/, FO /data/). */
static __attribute__((unused)) struct ct_resp ct_api(const char *side, const char *method, const char *path, const char *body,
			     const char *ctype, const char *prefer)
{
	char url[4096], auth[4096];
	char *tok = ct_token(side);
	snprintf(url, sizeof(url), "%s%s%s", ct_base(side), strcmp(side, "ce") == 0 ? "/api/data/v9.2/" : "/data/",
		 path);
	snprintf(auth, sizeof(auth), "Bearer %s", tok);
	free(tok);
	struct http_header h[3] = { { "Authorization", auth }, { "OData-Version", "4.0" }, { "Prefer", prefer } };
	return ct_http(method, url, body ? (ctype ? ctype : "application/json") : NULL, body, h, prefer ? 3 : 2);
}

/* An admin request (no token). */
static __attribute__((unused)) struct ct_resp ct_admin(const char *side, const char *method, const char *path, const char *body)
{
	char url[2048];
	snprintf(url, sizeof(url), "%s/_emulator/%s", ct_base(side), path);
	return ct_http(method, url, body ? "application/json" : NULL, body, NULL, 0);
}

/* GET on the service API returning parsed JSON (fails the test unless 200). */
static __attribute__((unused)) cJSON *ct_get_json(const char *side, const char *path)
{
	struct ct_resp r = ct_api(side, "GET", path, NULL, NULL, NULL);
	if (r.status != 200)
		fail_msg("GET %s: HTTP %ld %s", path, r.status, r.body);
	cJSON *j = cJSON_Parse(r.body);
	ct_resp_free(&r);
	assert_non_null(j);
	return j;
}

/* ---- state ------------------------------------------------------------------------------- */

static __attribute__((unused)) void ct_migrate(void)
{
	PGconn *conn = NULL;
	struct migrate_result res;
	if (store_connect(harness_env("DW_PG_DSN"), NULL, &conn, ct_err, sizeof(ct_err)) != 0)
		fail_msg("pg: %s", ct_err);
	if (migrate_run(conn, migrate_files, migrate_files_len, &res, ct_err, sizeof(ct_err)) != 0)
		fail_msg("migrate: %s", ct_err);
	store_close(conn);
}

/* Runs one SQL query with parameters and returns the first column of the first row as a new
 * string (NULL when no row). */
static __attribute__((unused)) char *ct_sql1(const char *sql, int np, const char *const *params)
{
	PGconn *conn = NULL;
	PGresult *res = NULL;
	if (store_connect(harness_env("DW_PG_DSN"), NULL, &conn, ct_err, sizeof(ct_err)) != 0)
		fail_msg("pg: %s", ct_err);
	if (store_exec(conn, sql, np, params, &res, ct_err, sizeof(ct_err)) != 0)
		fail_msg("sql: %s", ct_err);
	char *v = PQntuples(res) > 0 ? strdup(PQgetvalue(res, 0, 0)) : NULL;
	PQclear(res);
	store_close(conn);
	return v;
}

static __attribute__((unused)) struct config_common ct_cfg(void)
{
	struct config_common cfg = { 0 };
	cfg.kafka_brokers = (char *)harness_env("DW_KAFKA_BROKERS");
	cfg.topic_prefix = (char *)"dw";
	return cfg;
}

/* Creates topic <prefix>.<side>.<entity> (entity lower-cased) with 3 partitions. */
static __attribute__((unused)) void ct_topic(const char *prefix, const char *side, const char *entity, char *out, size_t outlen)
{
	char table[256];
	snprintf(table, sizeof(table), "%s.%s", side, entity);
	for (char *p = table; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (kafka_table_topic(prefix, table, out, outlen, ct_err, sizeof(ct_err)) != 0)
		fail_msg("topic: %s", ct_err);
	struct config_common cfg = ct_cfg();
	struct kafka_admin *a = NULL;
	if (kafka_admin_new(&cfg, &a, ct_err, sizeof(ct_err)) != 0)
		fail_msg("admin: %s", ct_err);
	struct kafka_topic_spec spec = { 3, 1, -1 };
	enum kafka_topic_outcome oc;
	if (kafka_topic_ensure(a, out, &spec, 30000, &oc, ct_err, sizeof(ct_err)) != 0)
		fail_msg("topic %s: %s", out, ct_err);
	kafka_admin_free(a);
}

/* The whole file at path (at most 16 MiB) as a new string, or NULL. */
static __attribute__((unused)) char *ct_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0 || cap >= ((size_t)16 << 20))
			break;
		if (n + 1 == cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	fclose(f);
	if (buf)
		buf[n] = '\0';
	return buf;
}

/* ---- the capture child ----------------------------------------------------------------------- */

struct ct_capture {
	pid_t pid;
	unsigned port;
	char log[512];
};

/* Captures started and not yet reaped: a failed assertion jumps past a test's own stop, so the
 * suites' group teardown (ct_captures_teardown) stops whatever is left. */
static pid_t ct_capture_pids[64];

static __attribute__((unused)) void ct_capture_track(pid_t pid, int add)
{
	for (size_t i = 0; i < sizeof(ct_capture_pids) / sizeof(ct_capture_pids[0]); i++) {
		if (add ? ct_capture_pids[i] == 0 : ct_capture_pids[i] == pid) {
			ct_capture_pids[i] = add ? pid : 0;
			return;
		}
	}
}

/* Group teardown: SIGKILLs and reaps every capture a test started and did not stop. */
static __attribute__((unused)) int ct_captures_teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(ct_capture_pids) / sizeof(ct_capture_pids[0]); i++) {
		if (ct_capture_pids[i] > 0) {
			kill(ct_capture_pids[i], SIGKILL);
			waitpid(ct_capture_pids[i], NULL, 0);
			ct_capture_pids[i] = 0;
		}
	}
	return 0;
}

/* Starts `capture --side side [--once]` with the current environment plus env (NULL-terminated
 * "NAME=value" list). Unless once, waits until it logs its port and /readyz answers 200. */
static __attribute__((unused)) struct ct_capture ct_capture_start(const char *side, const char *const *env, int once, int wait_ready)
{
	struct ct_capture c;
	memset(&c, 0, sizeof(c));
	const char *dir = getenv("DW_STATE_DIR");
	char *u = harness_unique("capture");
	snprintf(c.log, sizeof(c.log), "%s/%s.log", dir && *dir ? dir : "/tmp", u);
	free(u);
	c.pid = fork();
	assert_true(c.pid >= 0);
	if (c.pid == 0) {
		for (size_t i = 0; env[i]; i++)
			putenv((char *)env[i]);
		int fd = open(c.log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1); /* never the suite's TAP output */
			dup2(fd, 2);
			close(fd);
		}
		/* DW_TEST_CAPTURE_WRAPPER (`make valgrind`): its exit status is what the tests check */
		const char *args[] = { "--side", side, once ? "--once" : NULL, NULL };
		harness_exec("DW_TEST_CAPTURE_WRAPPER", harness_bin("capture"), args);
		_exit(127);
	}
	ct_capture_track(c.pid, 1);
	if (once)
		return c;
	long long deadline = harness_now_ms() + CT_WAIT_MS;
	while (harness_now_ms() < deadline && c.port == 0) {
		FILE *f = fopen(c.log, "r");
		char line[8192];
		while (f && fgets(line, sizeof(line), f)) {
			const char *p = strstr(line, "\"msg\":\"listening\"");
			const char *q = p ? strstr(p, "\"port\":\"") : NULL;
			if (q)
				c.port = (unsigned)strtoul(q + 8, NULL, 10);
		}
		if (f)
			fclose(f);
		int st;
		if (waitpid(c.pid, &st, WNOHANG) == c.pid)
			fail_msg("capture exited early (status %d); log %s", st, c.log);
		if (!c.port)
			ct_sleep_ms(50);
	}
	if (!c.port)
		fail_msg("capture did not start listening; log %s", c.log);
	while (wait_ready && harness_now_ms() < deadline) {
		char url[256];
		snprintf(url, sizeof(url), "http://127.0.0.1:%u/readyz", c.port);
		struct ct_resp r = ct_http("GET", url, NULL, NULL, NULL, 0);
		long st = r.status;
		ct_resp_free(&r);
		if (st == 200)
			break;
		ct_sleep_ms(50);
	}
	return c;
}

/* Waits for the child to exit (after SIGTERM when term) and returns its exit status. */
static __attribute__((unused)) int ct_capture_wait(struct ct_capture *c, int term)
{
	int st = 0;
	if (term)
		kill(c->pid, SIGTERM);
	long long deadline = harness_now_ms() + CT_WAIT_MS;
	while (harness_now_ms() < deadline) {
		pid_t r = waitpid(c->pid, &st, WNOHANG);
		if (r == c->pid) {
			ct_capture_track(c->pid, 0);
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		ct_sleep_ms(20);
	}
	kill(c->pid, SIGKILL);
	waitpid(c->pid, &st, 0);
	ct_capture_track(c->pid, 0);
	fail_msg("capture did not exit; log %s", c->log);
	return -1;
}

/* ---- consuming ------------------------------------------------------------------------------- */

struct ct_msg {
	char topic[256];
	char key[2048];
	char hdr_id[65];
	struct event ev;
};

struct ct_consumer {
	struct kafka_consumer *c;
	char *group;
};

static __attribute__((unused)) struct ct_consumer ct_consumer_new(const char *const *topics, size_t n)
{
	struct ct_consumer k;
	struct config_common cfg = ct_cfg();
	k.group = harness_unique("ct-group");
	struct kafka_consumer_opts co = { .group_id = k.group };
	if (kafka_consumer_new(&cfg, &co, &k.c, ct_err, sizeof(ct_err)) != 0)
		fail_msg("consumer: %s", ct_err);
	if (kafka_consumer_subscribe(k.c, topics, n, ct_err, sizeof(ct_err)) != 0)
		fail_msg("subscribe: %s", ct_err);
	return k;
}

static __attribute__((unused)) void ct_consumer_free(struct ct_consumer *k)
{
	kafka_consumer_close(k->c);
	free(k->group);
}

/* Reads messages into out[*n..cap) until `want` in total were read (then quiet_ms more to catch
 * extras) or timeout_ms passed. Returns the total. */
static __attribute__((unused)) size_t ct_consume(struct ct_consumer *k, struct ct_msg *out, size_t *n, size_t cap, size_t want,
			 int quiet_ms, long long timeout_ms)
{
	long long deadline = harness_now_ms() + timeout_ms;
	long long quiet_until = -1;
	for (;;) {
		long long now = harness_now_ms();
		if (*n >= want && quiet_until < 0)
			quiet_until = now + quiet_ms;
		if ((quiet_until >= 0 && now >= quiet_until) || now >= deadline)
			break;
		struct kafka_message *m = NULL;
		int r = kafka_consumer_poll(k->c, 100, &m, ct_err, sizeof(ct_err));
		if (r < 0)
			fail_msg("consume: %s", ct_err);
		if (r == 0)
			continue;
		if (*n < cap) {
			struct ct_msg *g = &out[*n];
			memset(g, 0, sizeof(*g));
			snprintf(g->topic, sizeof(g->topic), "%s", m->topic);
			snprintf(g->key, sizeof(g->key), "%.*s", (int)m->key_len, (const char *)m->key);
			struct kafka_header h;
			if (kafka_message_header_find(m, PUBLISH_HEADER_ID, &h) == 0)
				snprintf(g->hdr_id, sizeof(g->hdr_id), "%.*s", (int)h.value_len, (const char *)h.value);
			if (event_decode(m->value, m->value_len, 0, 0, &g->ev, ct_err, sizeof(ct_err)) != 0)
				fail_msg("decode: %s", ct_err);
			(*n)++;
		}
		kafka_message_free(m);
	}
	return *n;
}

static __attribute__((unused)) void ct_msgs_free(struct ct_msg *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		event_clear(&m[i].ev);
}

#endif
