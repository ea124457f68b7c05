/*
 * Capture figures against the stack's Dataverse emulator, Kafka broker and PostgreSQL, with the
 * programs of $DW_BUILD (release: `make bench`):
 *   1. initial-sync rows/s: BENCH_SYNC_ROWS (100000) accounts upserted, then one
 *      `ctl initial-sync --from ce` of the whole accounts table (every row, whatever else the table
 *      already holds), wall time of the process;
 *   2. events/s captured from delta pages: `capture --once` stores the delta link, then
 *      BENCH_DELTA_ROWS (50000) new accounts are written and a second `capture --once` publishes
 *      them from change tracking; wall time of that process (start-up included) and the events
 *      counted on the topic;
 *   3. webhook-to-Kafka-ack latency: a running `capture` receives BENCH_HOOKS (2000) webhook posts
 *      (Create of an account, PostImage with versionnumber) from BENCH_HOOK_THREADS (1, then 8)
 *      clients; the time from sending a post to its 200 (sent after the Kafka commit) gives p50,
 *      p99 and max.
 * Every figure is checked: the expected number of events must be on the topic. Prints one line per
 * figure; exits non-zero when a step fails. BENCH_CAPTURE_PHASES (default "sync,delta,webhook")
 * picks the phases.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "config.h"
#include "kafka.h"
#include "log.h"

#define SEED_BATCH 1000
#define SEED_THREADS 4
#define HOOK_KEY "bench-webhook-key-0123456789"

static char ce_api[1024];
static char *token;
static char prefix[64], env[64];
static unsigned run_id;
static char state_dir[1024];

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long env_long(const char *name, long def)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	char *end;
	long n = strtol(v, &end, 10);
	return *end || n <= 0 ? def : n;
}

static const char *need(const char *name)
{
	const char *v = getenv(name);
	if (!v || !*v) {
		fprintf(stderr, "bench_capture: %s is not set (run tests/bench/run.sh)\n", name);
		exit(2);
	}
	return v;
}

static const char *bin(const char *name)
{
	static char path[2][1024];
	static int k;
	k ^= 1;
	const char *b = getenv("DW_BUILD");
	snprintf(path[k], sizeof(path[k]), "%s/bin/%s", b && *b ? b : "build/release", name);
	return path[k];
}

/* ---- HTTP ------------------------------------------------------------------------------- */

struct buf {
	char *p;
	size_t n;
};

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
	struct buf *b = ud;
	size_t add = sz * n;
	if (!b)
		return add;
	if (b->n + add > (size_t)64 * 1024 * 1024)
		return 0;
	char *np = realloc(b->p, b->n + add + 1);
	if (!np)
		return 0;
	b->p = np;
	memcpy(b->p + b->n, p, add);
	b->n += add;
	b->p[b->n] = '\0';
	return add;
}

/* One request on handle c (kept alive between calls); returns the status, 0 on transport failure. */
static long request(CURL *c, const char *method, const char *url, struct curl_slist *h, const char *body,
		    struct buf *out)
{
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 120000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	} else {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	}
	if (curl_easy_perform(c) != CURLE_OK)
		return 0;
	long st = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
	return st;
}

static int fetch_token(void)
{
	CURL *c = curl_easy_init();
	char *id = curl_easy_escape(c, need("DW_CE_CLIENT_ID"), 0);
	char *secret = curl_easy_escape(c, need("DW_CE_CLIENT_SECRET"), 0);
	char *scope = curl_easy_escape(c, need("DW_CE_SCOPE"), 0);
	char form[4096];
	snprintf(form, sizeof(form), "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s", id,
		 secret, scope);
	curl_free(id);
	curl_free(secret);
	curl_free(scope);
	struct buf b = { 0 };
	long st = request(c, "POST", need("DW_CE_TOKEN_URL"), NULL, form, &b);
	curl_easy_cleanup(c);
	cJSON *j = st == 200 && b.p ? cJSON_Parse(b.p) : NULL;
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "access_token");
	if (cJSON_IsString(t))
		token = strdup(t->valuestring);
	cJSON_Delete(j);
	free(b.p);
	return token ? 0 : -1;
}

/* ---- seeding ---------------------------------------------------------------------------- */

struct seeder {
	unsigned tag; /* distinguishes the GUID ranges of the two phases */
	long first, last;
	long ok;
};

static void guid(unsigned tag, long i, char out[37])
{
	snprintf(out, 37, "be0c%04x-%04x-4000-8000-%012lx", run_id & 0xffff, tag & 0xffff, (unsigned long)i);
}

static void *seed_worker(void *arg)
{
	struct seeder *w = arg;
	CURL *c = curl_easy_init();
	char auth[8192], url[1100];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	snprintf(url, sizeof(url), "%s$batch", ce_api);
	struct curl_slist *h = curl_slist_append(NULL, auth);
	h = curl_slist_append(h, "Content-Type: multipart/mixed; boundary=batch_B");
	h = curl_slist_append(h, "Expect:");
	size_t cap = (size_t)SEED_BATCH * 400 + 64;
	char *body = malloc(cap);
	for (long b = w->first; body && b < w->last; b++) {
		size_t o = 0;
		for (long i = b * SEED_BATCH; i < (b + 1) * SEED_BATCH; i++) {
			char g[37];
			guid(w->tag, i, g);
			o += (size_t)snprintf(body + o, cap - o,
					      "--batch_B\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: "
					      "binary\r\n\r\nPATCH accounts(%s) HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
					      "{\"name\":\"Bench %u %ld\",\"accountnumber\":\"B%x-%u-%ld\"}\r\n",
					      g, w->tag, i, run_id, w->tag, i);
		}
		snprintf(body + o, cap - o, "--batch_B--\r\n");
		struct buf r = { 0 };
		if (request(c, "POST", url, h, body, &r) == 200)
			for (const char *p = r.p; p && (p = strstr(p, "HTTP/1.1 204")); p += 12)
				w->ok++;
		free(r.p);
	}
	free(body);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return NULL;
}

static long seed(unsigned tag, long n)
{
	struct seeder w[SEED_THREADS];
	pthread_t th[SEED_THREADS];
	long batches = (n + SEED_BATCH - 1) / SEED_BATCH;
	for (int i = 0; i < SEED_THREADS; i++) {
		w[i] = (struct seeder){ tag, batches * i / SEED_THREADS, batches * (i + 1) / SEED_THREADS, 0 };
		pthread_create(&th[i], NULL, seed_worker, &w[i]);
	}
	long ok = 0;
	for (int i = 0; i < SEED_THREADS; i++) {
		pthread_join(th[i], NULL);
		ok += w[i].ok;
	}
	return ok;
}

/* ---- processes ------------------------------------------------------------------------- */

/* Starts argv with stdout/stderr into <state>/bench_capture.<tag>.{out,log}. */
static pid_t start(const char *tag, const char *const *argv)
{
	char out[1200], log[1200];
	snprintf(out, sizeof(out), "%s/bench_capture.%s.out", state_dir, tag);
	snprintf(log, sizeof(log), "%s/bench_capture.%s.log", state_dir, tag);
	/* empty the log before the child exists: a reader must never see the last run's lines */
	int t = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (t >= 0)
		close(t);
	pid_t pid = fork();
	if (pid == 0) {
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (o < 0 || e < 0)
			_exit(127);
		dup2(o, 1);
		dup2(e, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static int finish(pid_t pid)
{
	int st;
	if (pid <= 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void tail_log(const char *tag)
{
	char cmd[1400];
	snprintf(cmd, sizeof(cmd), "tail -5 '%s/bench_capture.%s.log' >&2", state_dir, tag);
	if (system(cmd) != 0)
		fprintf(stderr, "(no log)\n");
}

/* ---- Kafka ------------------------------------------------------------------------------ */

static struct config_common kcfg;

static int make_topic(const char *topic)
{
	struct kafka_admin *a = NULL;
	char err[512];
	struct kafka_topic_spec spec = { 6, 1, 86400000LL };
	enum kafka_topic_outcome outcome;
	int rc = kafka_admin_new(&kcfg, &a, err, sizeof(err));
	if (rc == 0)
		rc = kafka_topic_ensure(a, topic, &spec, 30000, &outcome, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "bench_capture: topic %s: %s\n", topic, err);
	kafka_admin_free(a);
	return rc;
}

/* Messages on the topic (read_committed), reading until `want` arrived and 2 s passed without more,
 * or 120 s in all. */
static long count_topic(const char *topic, long want)
{
	char group[128], err[512];
	snprintf(group, sizeof(group), "bench-capture-%u-%ld", run_id, (long)(now_s() * 1000));
	struct kafka_consumer_opts co = { .group_id = group };
	struct kafka_consumer *c = NULL;
	const char *topics[] = { topic };
	if (kafka_consumer_new(&kcfg, &co, &c, err, sizeof(err)) != 0 ||
	    kafka_consumer_subscribe(c, topics, 1, err, sizeof(err)) != 0) {
		fprintf(stderr, "bench_capture: consumer: %s\n", err);
		kafka_consumer_close(c);
		return -1;
	}
	long n = 0;
	double deadline = now_s() + 120, quiet = 0;
	while (now_s() < deadline) {
		if (n >= want) {
			if (quiet == 0)
				quiet = now_s();
			if (now_s() - quiet > 2)
				break;
		}
		struct kafka_message *m = NULL;
		int rc = kafka_consumer_poll(c, 200, &m, err, sizeof(err));
		if (rc < 0)
			break;
		if (rc == 1) {
			n++;
			quiet = 0;
			kafka_message_free(m);
		}
	}
	kafka_consumer_close(c);
	return n;
}

/* ---- 1. initial sync -------------------------------------------------------------------- */

static int bench_initial_sync(long rows)
{
	double t0 = now_s();
	long ok = seed(1, rows);
	printf("%-34s %10.0f rows/s  (%ld accounts upserted through $batch)\n", "setup: seeding", ok / (now_s() - t0),
	       ok);
	if (ok != rows)
		return -1;
	char topic[256];
	snprintf(topic, sizeof(topic), "%s.ce.account", prefix);
	const char *argv[] = { bin("ctl"), "initial-sync", "--from", "ce", "account@accounts:accountnumber", NULL };
	t0 = now_s();
	int rc = finish(start("initial-sync", argv));
	double secs = now_s() - t0;
	if (rc != 0) {
		fprintf(stderr, "bench_capture: ctl initial-sync exited %d\n", rc);
		tail_log("initial-sync");
		return -1;
	}
	long n = count_topic(topic, rows);
	printf("%-34s %10.0f rows/s  (%ld snapshot events in %.1f s wall, start-up included; %.1f s per 100,000)\n",
	       "initial sync (ce accounts)", n / secs, n, secs, secs * 100000.0 / (double)n);
	return n >= rows ? 0 : -1;
}

/* ---- 2. delta pages --------------------------------------------------------------------- */

static int bench_delta(long rows)
{
	char topic[256];
	snprintf(topic, sizeof(topic), "%s.ce.account", prefix);
	long before = count_topic(topic, 0);
	const char *argv[] = { bin("capture"), "--side", "ce", "--once", NULL };
	/* First start: keeps the delta link, publishes nothing. */
	if (finish(start("delta-first", argv)) != 0) {
		fprintf(stderr, "bench_capture: capture --once (first start) failed\n");
		tail_log("delta-first");
		return -1;
	}
	long ok = seed(2, rows);
	if (ok != rows) {
		fprintf(stderr, "bench_capture: seeded %ld of %ld rows\n", ok, rows);
		return -1;
	}
	double t0 = now_s();
	int rc = finish(start("delta", argv));
	double secs = now_s() - t0;
	if (rc != 0) {
		fprintf(stderr, "bench_capture: capture --once exited %d\n", rc);
		tail_log("delta");
		return -1;
	}
	long n = count_topic(topic, before + rows) - before;
	printf("%-34s %10.0f events/s  (%ld events from delta pages in %.2f s wall, start-up included)\n",
	       "capture from delta pages (ce)", n / secs, n, secs);
	return n >= rows ? 0 : -1;
}

/* ---- 3. webhook latency ----------------------------------------------------------------- */

struct hooker {
	const char *url;
	long first, n;
	double *lat; /* seconds per post */
	long failed;
};

static void *hook_worker(void *arg)
{
	struct hooker *w = arg;
	CURL *c = curl_easy_init();
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	h = curl_slist_append(h, "Expect:");
	char body[4096];
	for (long k = 0; k < w->n; k++) {
		long i = w->first + k;
		char g[37];
		guid(3, i, g);
		snprintf(body, sizeof(body),
			 "{\"CorrelationId\":\"%s\",\"InitiatingUserId\":\"11111111-2222-3333-4444-555555555555\","
			 "\"InputParameters\":[{\"key\":\"Target\",\"value\":{\"__type\":\"Entity:http://schemas.microsoft.com/"
			 "xrm/2011/Contracts\",\"Attributes\":[{\"key\":\"accountid\",\"value\":\"%s\"},{\"key\":\"name\","
			 "\"value\":\"Hook %ld\"},{\"key\":\"accountnumber\",\"value\":\"H%x-%ld\"},{\"key\":\"versionnumber\","
			 "\"value\":%ld}],\"Id\":\"%s\",\"LogicalName\":\"account\",\"RowVersion\":null}}],"
			 "\"IsInTransaction\":false,\"MessageName\":\"Create\",\"OperationCreatedOn\":\"/Date(1764460800000)/\","
			 "\"PostEntityImages\":[],\"PreEntityImages\":[],\"PrimaryEntityId\":\"%s\","
			 "\"PrimaryEntityName\":\"account\",\"UserId\":\"11111111-2222-3333-4444-555555555555\"}",
			 g, g, i, run_id, i, 1000 + i, g, g);
		double t0 = now_s();
		long st = request(c, "POST", w->url, h, body, NULL);
		w->lat[i] = now_s() - t0;
		if (st != 200)
			w->failed++;
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The port capture logged in its "listening" line, or 0. */
static int capture_port(void)
{
	char path[1200];
	snprintf(path, sizeof(path), "%s/bench_capture.webhook.log", state_dir);
	for (int tries = 0; tries < 300; tries++) {
		FILE *f = fopen(path, "r");
		char line[8192];
		while (f && fgets(line, sizeof(line), f)) {
			const char *p = strstr(line, "\"msg\":\"listening\"");
			const char *q = p ? strstr(p, "\"port\":\"") : NULL;
			if (q) {
				fclose(f);
				return (int)strtol(q + 8, NULL, 10);
			}
		}
		if (f)
			fclose(f);
		usleep(100000);
	}
	return 0;
}

static int bench_webhook(long hooks, long threads_max)
{
	char topic[256];
	snprintf(topic, sizeof(topic), "%s.ce.account", prefix);
	long before = count_topic(topic, 0);
	setenv("DW_CAPTURE_DELTA", "false", 1);
	setenv("DW_CAPTURE_WEBHOOK_KEY", HOOK_KEY, 1);
	setenv("DW_HTTP_ADDR", "127.0.0.1", 1);
	setenv("DW_HTTP_PORT", "0", 1);
	setenv("DW_LOG_LEVEL", "info", 1); /* the "listening" line names the port */
	const char *argv[] = { bin("capture"), "--side", "ce", NULL };
	pid_t pid = start("webhook", argv);
	int port = capture_port();
	int rc = 0;
	if (!port) {
		fprintf(stderr, "bench_capture: capture did not start listening\n");
		tail_log("webhook");
		rc = -1;
		goto out;
	}
	char url[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/webhook/ce?code=%s", port, HOOK_KEY);
	double *lat = calloc((size_t)hooks * 2, sizeof(*lat));
	long sent = 0;
	for (long threads = 1; threads <= threads_max && rc == 0; threads = threads == 1 ? threads_max : threads + 1) {
		struct hooker w[64];
		pthread_t th[64];
		if (threads > 64)
			threads = 64;
		for (long i = 0; i < threads; i++) {
			w[i] = (struct hooker){ url, sent + hooks * i / threads, hooks * (i + 1) / threads - hooks * i / threads,
						lat, 0 };
			pthread_create(&th[i], NULL, hook_worker, &w[i]);
		}
		long failed = 0;
		double t0 = now_s();
		for (long i = 0; i < threads; i++) {
			pthread_join(th[i], NULL);
			failed += w[i].failed;
		}
		double secs = now_s() - t0;
		qsort(lat + sent, (size_t)hooks, sizeof(*lat), cmp_double);
		double *l = lat + sent;
		printf("%-34s p50 %.2f ms  p99 %.2f ms  max %.2f ms  (%ld posts, %ld client%s, %.0f posts/s, %ld failed)\n",
		       threads == 1 ? "webhook -> Kafka ack" : "webhook -> Kafka ack, concurrent", l[hooks / 2] * 1000,
		       l[(hooks * 99) / 100] * 1000, l[hooks - 1] * 1000, hooks, threads, threads == 1 ? "" : "s",
		       hooks / secs, failed);
		sent += hooks;
		if (failed)
			rc = -1;
		if (threads == threads_max)
			break;
	}
	free(lat);
	if (rc == 0) {
		long n = count_topic(topic, before + sent) - before;
		if (n < sent) {
			fprintf(stderr, "bench_capture: %ld of %ld webhook events on the topic\n", n, sent);
			rc = -1;
		}
	}
out:
	kill(pid, SIGTERM);
	if (finish(pid) != 0)
		tail_log("webhook");
	return rc;
}

int main(void)
{
	log_init("bench_capture", LOG_WARN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	run_id = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
	snprintf(ce_api, sizeof(ce_api), "%s/api/data/v9.2/", need("DW_CE_URL"));
	const char *sd = getenv("DW_STATE_DIR");
	snprintf(state_dir, sizeof(state_dir), "%s", sd && *sd ? sd : "/tmp");
	kcfg.kafka_brokers = (char *)need("DW_KAFKA_BROKERS");
	need("DW_PG_DSN");
	snprintf(prefix, sizeof(prefix), "bench%x", run_id);
	snprintf(env, sizeof(env), "bench%x", run_id);
	setenv("DW_TOPIC_PREFIX", prefix, 1);
	setenv("DW_ENV", env, 1);
	setenv("DW_CAPTURE_TABLES", "account@accounts:accountnumber", 1);
	setenv("DW_LOG_LEVEL", "warn", 1);
	if (fetch_token() < 0) {
		fprintf(stderr, "bench_capture: no token from %s\n", need("DW_CE_TOKEN_URL"));
		return 2;
	}
	const char *mig[] = { bin("ctl"), "migrate", NULL };
	if (finish(start("migrate", mig)) != 0) {
		fprintf(stderr, "bench_capture: ctl migrate failed\n");
		tail_log("migrate");
		return 1;
	}
	char topic[256];
	snprintf(topic, sizeof(topic), "%s.ce.account", prefix);
	if (make_topic(topic) != 0)
		return 1;
	int rc = 0;
	const char *phases = getenv("BENCH_CAPTURE_PHASES");
	if (!phases || !*phases)
		phases = "sync,delta,webhook";
	if (strstr(phases, "sync"))
		rc |= bench_initial_sync(env_long("BENCH_SYNC_ROWS", 100000)) != 0;
	if (strstr(phases, "delta"))
		rc |= bench_delta(env_long("BENCH_DELTA_ROWS", 50000)) != 0;
	if (strstr(phases, "webhook"))
		rc |= bench_webhook(env_long("BENCH_HOOKS", 2000), env_long("BENCH_HOOK_THREADS", 8)) != 0;
	free(token);
	curl_global_cleanup();
	return rc;
}
