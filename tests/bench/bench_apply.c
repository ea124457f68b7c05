/*
 * Apply worker figures (CE -> FO, accounts map) against the stack's FO emulator, Kafka broker and
 * PostgreSQL, with the programs of $DW_BUILD (release: `make bench`):
 *   1. batched: BENCH_APPLY_EVENTS (100000) account update events pre-filled on a 3-partition topic
 *      over BENCH_APPLY_RECORDS (10000) accounts (event i updates account i % records at version
 *      i / records + 1, so no batch holds two events of one account); one `apply --to fo` with the
 *      default batching drains it: events/s from the worker's start to the moment its group has
 *      committed the end of every partition;
 *   2. one request per event with a commit after each (DW_APPLY_BATCH_MAX=1), the same build and the
 *      same shape of data (its own topic and accounts), BENCH_APPLY_SINGLE_EVENTS (default: as many
 *      as phase 1; the account count scales with it, so creates and updates mix alike): events/s
 *      and the ratio batched / single;
 *   3. latency: a running worker (default batching) is offered BENCH_APPLY_RATE (1000) events/s for
 *      BENCH_APPLY_LAT_S (30) s over 1000 accounts; each event's source ts is its send time, and it
 *      counts as acknowledged when the worker's committed offset passes it (offsets are committed only
 *      after the target answered and the outcome is in PostgreSQL, so this is an upper bound of
 *      source ts -> target ack). Prints p50, p99, max;
 *   4. the peak RSS (VmHWM from /proc/<pid>/status) of every worker, read just before it is stopped.
 * The worker's CPU time is printed with its RSS: the rest of a phase's time is spent waiting for
 * the target, PostgreSQL and Kafka. When DW_STACK_STATE_DIR (stack.env) names the stack's state, a
 * drain phase also prints the CPU time its FO emulator and its PostgreSQL server (every backend,
 * ended ones too) used meanwhile: the batched phase is bound by the CPU of all of them.
 * Every phase checks that the worker caught up and that the FO emulator holds the last version of a
 * sample account. Exits non-zero when a step fails. BENCH_APPLY_PHASES (default
 * "batched,single,latency") picks the phases. The workers inherit the environment, so DW_KAFKA_<PROP>
 * settings (e.g. DW_KAFKA_QUEUED_MAX_MESSAGES_KBYTES) reach them. Each phase has a topic prefix of its
 * own, so its workers' group (<prefix>.apply.accounts.fo) is its own too.
 */
#include <dirent.h>
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
#include <curl/curl.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "event.h"
#include "kafka.h"
#include "migrate.h"
#include "store.h"

#define PARTITIONS 3
#define WAIT_MS 900000

static char err[1024];
static char dbname[64], dsn[1024], maps_dir[1024], company_guid[40];
static unsigned run_id;
static struct config_common kcfg;
static char *fo_token;

/* per produced event of the current phase: send time and where it landed */
struct sent {
	long long t_ms;
	int32_t partition;
	int64_t offset;
};
static struct sent *sent;
static size_t nsent;

static long long wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
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
		fprintf(stderr, "bench_apply: %s is not set (run tests/bench/run.sh)\n", name);
		exit(2);
	}
	return v;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_apply: %s: %s\n", what, err);
	exit(1);
}

/* ---- HTTP ---------------------------------------------------------------------------------- */

struct buf {
	char *p;
	size_t n;
};

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
	struct buf *b = ud;
	size_t add = sz * n;
	char *q = realloc(b->p, b->n + add + 1);
	if (!q)
		return 0;
	memcpy(q + b->n, p, add);
	b->n += add;
	q[b->n] = 0;
	b->p = q;
	return add;
}

/* One request; the status, the body in *out (new, may be NULL when not wanted). */
static long request(const char *method, const char *url, const char *token, const char *ctype, const char *body,
		    char **out)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	char auth[8192];
	if (token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		h = curl_slist_append(h, auth);
	}
	if (ctype) {
		char ct[128];
		snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
		h = curl_slist_append(h, ct);
	}
	h = curl_slist_append(h, "Accept: application/json");
	struct buf b = { 0 };
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	long st = 0;
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (out)
		*out = b.p;
	else
		free(b.p);
	return st;
}

static char *token(const char *side)
{
	char name[64], form[2048];
	const char *up = strcmp(side, "ce") == 0 ? "CE" : "FO";
	CURL *c = curl_easy_init();
	snprintf(name, sizeof(name), "DW_%s_CLIENT_ID", up);
	char *id = curl_easy_escape(c, need(name), 0);
	snprintf(name, sizeof(name), "DW_%s_CLIENT_SECRET", up);
	char *secret = curl_easy_escape(c, need(name), 0);
	snprintf(name, sizeof(name), "DW_%s_SCOPE", up);
	char *scope = curl_easy_escape(c, need(name), 0);
	snprintf(form, sizeof(form), "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s", id, secret,
		 scope);
	curl_free(id);
	curl_free(secret);
	curl_free(scope);
	curl_easy_cleanup(c);
	snprintf(name, sizeof(name), "DW_%s_TOKEN_URL", up);
	char *body = NULL;
	long st = request("POST", need(name), NULL, "application/x-www-form-urlencoded", form, &body);
	cJSON *j = body ? cJSON_Parse(body) : NULL;
	const cJSON *t = cJSON_GetObjectItem(j, "access_token");
	char *tok = st == 200 && cJSON_IsString(t) ? strdup(t->valuestring) : NULL;
	cJSON_Delete(j);
	free(body);
	if (!tok) {
		snprintf(err, sizeof(err), "HTTP %ld", st);
		die("token");
	}
	return tok;
}

/* ---- setup --------------------------------------------------------------------------------- */

static void exec_admin(const char *verb, const char *suffix)
{
	PGconn *c = NULL;
	if (store_connect(need("DW_PG_DSN"), NULL, &c, err, sizeof(err)) != 0)
		die("pg");
	char *ident = PQescapeIdentifier(c, dbname, strlen(dbname));
	char sql[256];
	snprintf(sql, sizeof(sql), "%s %s%s", verb, ident, suffix);
	PQfreemem(ident);
	if (store_exec(c, sql, 0, NULL, NULL, err, sizeof(err)) != 0)
		die(sql);
	store_close(c);
}

static void setup(void)
{
	run_id = (unsigned)getpid() ^ (unsigned)mono_ms();
	char cwd[512];
	if (!getcwd(cwd, sizeof(cwd)))
		exit(1);
	snprintf(maps_dir, sizeof(maps_dir), "%s/schemas/maps", cwd);
	snprintf(dbname, sizeof(dbname), "dwb_apply_%u", run_id);
	exec_admin("CREATE DATABASE", "");
	const char *base = need("DW_PG_DSN");
	const char *q = strchr(base, '?');
	const char *slash = q ? q : base + strlen(base);
	while (slash > base && *slash != '/')
		slash--;
	snprintf(dsn, sizeof(dsn), "%.*s/%s%s", (int)(slash - base), base, dbname, q ? q : "");
	PGconn *c = NULL;
	struct migrate_result res;
	if (store_connect(dsn, NULL, &c, err, sizeof(err)) != 0 ||
	    migrate_run(c, migrate_files, migrate_files_len, &res, err, sizeof(err)) != 0)
		die("migrate");
	store_close(c);
	/* the company's CE id: events carry it as _msdyn_company_value; the worker resolves it */
	char *ce_tok = token("ce");
	char url[1024], *body = NULL;
	snprintf(url, sizeof(url), "%s/api/data/v9.2/cdm_companies(cdm_companycode='usmf')", need("DW_CE_URL"));
	request("PATCH", url, ce_tok, "application/json", "{\"cdm_name\":\"USMF\"}", NULL);
	long st = request("GET", url, ce_tok, NULL, NULL, &body);
	cJSON *j = body ? cJSON_Parse(body) : NULL;
	const cJSON *id = cJSON_GetObjectItem(j, "cdm_companyid");
	if (st != 200 || !cJSON_IsString(id)) {
		snprintf(err, sizeof(err), "HTTP %ld", st);
		die("company");
	}
	snprintf(company_guid, sizeof(company_guid), "%s", id->valuestring);
	cJSON_Delete(j);
	free(body);
	free(ce_tok);
	fo_token = token("fo");
	kcfg.kafka_brokers = (char *)need("DW_KAFKA_BROKERS");
	kcfg.topic_prefix = (char *)"dw";
}

static void make_topic(const char *topic, int partitions)
{
	struct kafka_admin *ad = NULL;
	struct kafka_topic_spec spec = { partitions, 1, -1 };
	enum kafka_topic_outcome oc;
	if (kafka_admin_new(&kcfg, &ad, err, sizeof(err)) != 0 ||
	    kafka_topic_ensure(ad, topic, &spec, 30000, &oc, err, sizeof(err)) != 0)
		die("topic");
	kafka_admin_free(ad);
}

/* ---- producing ----------------------------------------------------------------------------- */

static void on_delivery(const struct kafka_delivery *d, void *ctx)
{
	(void)ctx;
	size_t slot = (size_t)(uintptr_t)d->msg_opaque;
	if (slot > 0 && slot <= nsent) {
		size_t i = slot - 1;
		sent[i].partition = d->err ? -1 : d->partition;
		sent[i].offset = d->err ? -1 : d->offset;
	}
}

static void acct_of(const char *tag, long rec, char *out, size_t len)
{
	snprintf(out, len, "B%s%u-%ld", tag, run_id % 10000, rec);
}

/* Produces event i of a phase: an update of account (tag, i % records) at version i / records + 1.
 * slot > 0: sent[slot - 1] gets its send time and, on delivery, its partition and offset. */
static void produce_update(struct kafka_producer *p, const char *topic, const char *tag, size_t i, long records,
			   size_t slot)
{
	char acct[32], name[64];
	acct_of(tag, (long)(i % (size_t)records), acct, sizeof(acct));
	int64_t v = (int64_t)(i / (size_t)records) + 1;
	snprintf(name, sizeof(name), "Bench %s v%lld", acct, (long long)v);
	struct event ev;
	memset(&ev, 0, sizeof(ev));
	ev.v = EVENT_FORMAT_VERSION;
	ev.source.side = EVENT_SIDE_CE;
	ev.source.env = strdup("bench");
	ev.source.entity = strdup("account");
	ev.source.entity_set = strdup("accounts");
	ev.source.version = v;
	ev.source.ts = wall_ms();
	ev.op = EVENT_OP_UPDATE;
	ev.key = cJSON_CreateObject();
	cJSON_AddStringToObject(ev.key, "accountnumber", acct);
	cJSON_AddStringToObject(ev.key, "_msdyn_company_value", company_guid);
	ev.data = cJSON_CreateObject();
	cJSON_AddStringToObject(ev.data, "accountnumber", acct);
	cJSON_AddStringToObject(ev.data, "name", name);
	cJSON_AddNumberToObject(ev.data, "customertypecode", 3);
	cJSON_AddNumberToObject(ev.data, "creditlimit", (double)v);
	cJSON_AddStringToObject(ev.data, "telephone1", "+1 555 0100");
	cJSON_AddStringToObject(ev.data, "address1_city", "Seattle");
	cJSON_AddStringToObject(ev.data, "_msdyn_company_value", company_guid);
	char *out = NULL, *key = NULL;
	size_t len = 0;
	if (event_compute_id(&ev, err, sizeof(err)) != 0 || event_encode(&ev, &out, &len, err, sizeof(err)) != 0 ||
	    event_key_string(ev.key, &key, err, sizeof(err)) != 0)
		die("event");
	if (slot > 0 && slot <= nsent)
		sent[slot - 1].t_ms = ev.source.ts;
	for (;;) {
		if (kafka_produce(p, topic, key, strlen(key), out, len, NULL, 0, (void *)(uintptr_t)slot, err,
				  sizeof(err)) == 0)
			break;
		if (kafka_producer_poll(p, 100) < 0) /* queue full: serve deliveries, then try again */
			die("produce");
	}
	free(out);
	free(key);
	event_clear(&ev);
}

static struct kafka_producer *producer_new(void)
{
	struct kafka_producer *p = NULL;
	struct kafka_producer_opts o = { .on_delivery = on_delivery };
	if (kafka_producer_new(&kcfg, &o, &p, err, sizeof(err)) != 0)
		die("producer");
	return p;
}

static void producer_done(struct kafka_producer *p)
{
	if (kafka_producer_flush(p, 120000, err, sizeof(err)) != 0)
		die("flush");
	uint64_t ok = 0, failed = 0;
	kafka_producer_counts(p, &ok, &failed);
	if (failed) {
		snprintf(err, sizeof(err), "%llu not delivered", (unsigned long long)failed);
		die("produce");
	}
	kafka_producer_close(p, 10000);
}

/* ---- the worker ---------------------------------------------------------------------------- */

static pid_t worker_start(const char *prefix, const char *batch_max, const char *tag)
{
	char log_path[1024];
	const char *dir = getenv("DW_STATE_DIR");
	snprintf(log_path, sizeof(log_path), "%s/bench-apply-%s-%u.log", dir && *dir ? dir : "/tmp", tag, run_id);
	pid_t pid = fork();
	if (pid < 0)
		exit(1);
	if (pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		setenv("DW_PG_DSN", dsn, 1);
		setenv("DW_TOPIC_PREFIX", prefix, 1);
		setenv("DW_MAPS_DIR", maps_dir, 1);
		setenv("DW_HTTP_ADDR", "127.0.0.1", 1);
		setenv("DW_HTTP_PORT", "0", 1);
		if (batch_max)
			setenv("DW_APPLY_BATCH_MAX", batch_max, 1);
		setenv("DW_LOG_LEVEL", "warn", 1);
		char path[1024];
		const char *b = getenv("DW_BUILD");
		snprintf(path, sizeof(path), "%s/bin/apply", b && *b ? b : "build/release");
		execl(path, "apply", "--map", "accounts", "--to", "fo", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* VmHWM of a process in kB (-1 when unreadable). */
static long peak_rss_kb(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kb = -1;
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "VmHWM:", 6) == 0)
			kb = strtol(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return kb;
}

/* CPU seconds (user + system) a process has used so far, with children: plus what its waited-for
 * children used; *ppid (may be NULL) gets its parent. -1 when unreadable. */
static double proc_cpu_s(pid_t pid, int children, pid_t *ppid)
{
	char path[64], line[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	double s = -1;
	if (f && fgets(line, sizeof(line), f)) {
		const char *p = strrchr(line, ')'); /* the command name may hold spaces */
		int parent = 0;
		unsigned long ut = 0, st = 0;
		long cut = 0, cst = 0;
		if (p && sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %ld %ld", &parent, &ut, &st, &cut,
				&cst) == 5) {
			s = (double)(ut + st + (children ? (unsigned long)(cut + cst) : 0)) / (double)sysconf(_SC_CLK_TCK);
			if (ppid)
				*ppid = (pid_t)parent;
		}
	}
	if (f)
		fclose(f);
	return s;
}

/* CPU seconds (user + system) a process has used so far (-1 when unreadable). */
static double cpu_s(pid_t pid)
{
	return proc_cpu_s(pid, 0, NULL);
}

/* The first line of $DW_STACK_STATE_DIR/<name> as a pid; 0 when there is none. */
static pid_t stack_pid(const char *name)
{
	const char *dir = getenv("DW_STACK_STATE_DIR");
	char path[1024], line[64];
	if (!dir || !*dir)
		return 0;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	long pid = 0;
	if (f && fgets(line, sizeof(line), f))
		pid = strtol(line, NULL, 10);
	if (f)
		fclose(f);
	return pid > 0 ? (pid_t)pid : 0;
}

/* CPU seconds used so far by the stack's PostgreSQL server: the postmaster with its ended children
 * (backends of every database, autovacuum) plus its live children. -1 when unknown. */
static double pg_cpu_s(void)
{
	pid_t pm = stack_pid("pg/postmaster.pid");
	double total = pm ? proc_cpu_s(pm, 1, NULL) : -1;
	if (total < 0)
		return -1;
	/* live children: every process of /proc whose parent is the postmaster */
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		pid_t parent = 0;
		if (*end || pid <= 0)
			continue;
		double c = proc_cpu_s((pid_t)pid, 0, &parent);
		if (c > 0 && parent == pm)
			total += c;
	}
	if (d)
		closedir(d);
	return total;
}

static long worker_stop(pid_t pid, const char *tag)
{
	long kb = peak_rss_kb(pid);
	double cpu = cpu_s(pid);
	kill(pid, SIGTERM);
	int st = 0;
	long long deadline = mono_ms() + 60000;
	while (mono_ms() < deadline && waitpid(pid, &st, WNOHANG) != pid)
		sleep_ms(50);
	if (mono_ms() >= deadline) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	printf("apply %-8s peak RSS (VmHWM): %.1f MB (target < 64 MB), worker CPU %.1f s, exit %d\n", tag,
	       (double)kb / 1024.0, cpu, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	return kb;
}

/* Committed offsets of the worker's group on `topic`: fills committed[0..parts). 0 on success. */
static int committed(rd_kafka_t *rk, const char *topic, int parts, int64_t *out)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
	for (int p = 0; p < parts; p++)
		rd_kafka_topic_partition_list_add(l, topic, p);
	int rc = rd_kafka_committed(rk, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
	for (int p = 0; p < parts && rc == 0; p++)
		out[p] = l->elems[p].offset;
	rd_kafka_topic_partition_list_destroy(l);
	return rc;
}

/* A handle for reading the committed offsets of the apply group of topic prefix `prefix`. */
static rd_kafka_t *group_reader(const char *prefix)
{
	char errstr[256], group[128];
	snprintf(group, sizeof(group), "%s.apply.accounts.fo", prefix);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "bootstrap.servers", kcfg.kafka_brokers, errstr, sizeof(errstr));
	rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr));
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (!rk) {
		snprintf(err, sizeof(err), "%s", errstr);
		die("group reader");
	}
	return rk;
}

/* Waits until the group committed the end of every partition; returns the monotonic time then. */
static long long wait_drained(rd_kafka_t *rk, const char *topic, int parts, pid_t worker)
{
	long long deadline = mono_ms() + WAIT_MS;
	int64_t hi[PARTITIONS], c[PARTITIONS];
	for (int p = 0; p < parts; p++) {
		int64_t lo;
		if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi[p], 10000) != 0) {
			snprintf(err, sizeof(err), "%s[%d]", topic, p);
			die("watermarks");
		}
	}
	while (mono_ms() < deadline) {
		int st;
		if (waitpid(worker, &st, WNOHANG) == worker) {
			snprintf(err, sizeof(err), "status %d", st);
			die("worker exited");
		}
		int done = committed(rk, topic, parts, c) == 0;
		for (int p = 0; p < parts && done; p++)
			done = c[p] >= hi[p];
		if (done)
			return mono_ms();
		sleep_ms(20);
	}
	snprintf(err, sizeof(err), "not drained in %d ms", WAIT_MS);
	die(topic);
	return 0;
}

/* The FO customer's CreditLimit (-1 when missing): the version of the last event applied. */
static double fo_credit(const char *acct)
{
	char url[1024], *body = NULL;
	snprintf(url, sizeof(url), "%s/data/CustomersV3(dataAreaId='usmf',CustomerAccount='%s')", need("DW_FO_URL"),
		 acct);
	long st = request("GET", url, fo_token, NULL, NULL, &body);
	double v = -1;
	cJSON *j = st == 200 && body ? cJSON_Parse(body) : NULL;
	const cJSON *n = cJSON_GetObjectItem(j, "CreditLimit");
	if (cJSON_IsNumber(n))
		v = n->valuedouble;
	cJSON_Delete(j);
	free(body);
	return v;
}

static void check_last(const char *tag, size_t events, long records)
{
	size_t last = events - 1;
	char acct[32];
	acct_of(tag, (long)(last % (size_t)records), acct, sizeof(acct));
	double want = (double)(last / (size_t)records + 1);
	double got = fo_credit(acct);
	if (got != want) {
		snprintf(err, sizeof(err), "%s has CreditLimit %.0f, want %.0f", acct, got, want);
		die("check");
	}
}

/* Phase 1 or 2: pre-fill, then time the drain. Returns events/s. */
static double drain_phase(const char *tag, const char *batch_max, size_t events, long records)
{
	char prefix[64], topic[128];
	snprintf(prefix, sizeof(prefix), "bench%u%s", run_id, tag);
	snprintf(topic, sizeof(topic), "%s.ce.account", prefix);
	make_topic(topic, PARTITIONS);
	nsent = 0;
	struct kafka_producer *p = producer_new();
	long long t0 = mono_ms();
	for (size_t i = 0; i < events; i++)
		produce_update(p, topic, tag, i, records, 0);
	producer_done(p);
	fprintf(stderr, "bench_apply: %s: %zu events on %s in %.1f s\n", tag, events, topic,
		(double)(mono_ms() - t0) / 1000.0);
	rd_kafka_t *rk = group_reader(prefix);
	pid_t emu = stack_pid("emu-fo.pid");
	double emu0 = emu ? cpu_s(emu) : -1, pg0 = pg_cpu_s();
	long long start = mono_ms();
	pid_t w = worker_start(prefix, batch_max, tag);
	long long end = wait_drained(rk, topic, PARTITIONS, w);
	double emu1 = emu ? cpu_s(emu) : -1, pg1 = pg_cpu_s();
	rd_kafka_destroy(rk);
	worker_stop(w, tag);
	if (emu0 >= 0 && emu1 >= 0 && pg0 >= 0 && pg1 >= 0)
		printf("apply %-8s CPU during the drain: FO emulator %.1f s, PostgreSQL %.1f s (every backend of the "
		       "stack's server: the worker's state and the emulators' stores)\n",
		       tag, emu1 - emu0, pg1 - pg0);
	check_last(tag, events, records);
	double secs = (double)(end - start) / 1000.0;
	double rate = (double)events / secs;
	const char *env_max = getenv("DW_APPLY_BATCH_MAX"), *env_par = getenv("DW_APPLY_HTTP_PARALLEL");
	printf("apply %-8s %zu events over %ld accounts in %.1f s: %.0f events/s (batch max %s, http parallel %s)\n", tag,
	       events, records, secs, rate, batch_max ? batch_max : env_max && *env_max ? env_max : "default",
	       env_par && *env_par ? env_par : "default");
	return rate;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

static void latency_phase(void)
{
	long rate = env_long("BENCH_APPLY_RATE", 1000), secs = env_long("BENCH_APPLY_LAT_S", 30);
	long records = 1000;
	size_t events = (size_t)(rate * secs);
	char prefix[64], topic[128];
	snprintf(prefix, sizeof(prefix), "bench%ulat", run_id);
	snprintf(topic, sizeof(topic), "%s.ce.account", prefix);
	make_topic(topic, PARTITIONS);
	sent = calloc(events, sizeof(*sent));
	long long *lat = calloc(events, sizeof(*lat));
	if (!sent || !lat)
		exit(1);
	for (size_t i = 0; i < events; i++)
		sent[i].partition = -2; /* not yet delivered */
	rd_kafka_t *rk = group_reader(prefix);
	/* the worker is up and has its partitions before the clock starts: warm-up events drained */
	pid_t w = worker_start(prefix, NULL, "latency");
	struct kafka_producer *p = producer_new();
	for (size_t i = 0; i < (size_t)records; i++) /* creates every account: the timed events are updates */
		produce_update(p, topic, "lat", i, records, 0);
	if (kafka_producer_flush(p, 30000, err, sizeof(err)) != 0)
		die("flush");
	wait_drained(rk, topic, PARTITIONS, w);
	nsent = events;
	size_t acked = 0;
	size_t next_unacked = 0;
	long long t_start = mono_ms();
	size_t produced = 0;
	int64_t c[PARTITIONS];
	long long last_poll = 0;
	long long deadline = t_start + secs * 1000 + 120000;
	while (acked < events && mono_ms() < deadline) {
		long long now = mono_ms();
		size_t due = (size_t)((now - t_start) * rate / 1000);
		if (due > events)
			due = events;
		for (; produced < due; produced++) {
			produce_update(p, topic, "lat", (size_t)records + produced, records, produced + 1);
		}
		if (kafka_producer_poll(p, 0) < 0)
			die("producer poll");
		if (now - last_poll >= 5 && committed(rk, topic, PARTITIONS, c) == 0) {
			long long t = wall_ms();
			last_poll = now;
			for (size_t i = next_unacked; i < produced; i++) {
				if (lat[i] || sent[i].partition < 0)
					continue;
				if (c[sent[i].partition] > sent[i].offset) {
					lat[i] = t - sent[i].t_ms;
					if (lat[i] <= 0)
						lat[i] = 1;
					acked++;
				}
			}
			while (next_unacked < produced && lat[next_unacked])
				next_unacked++;
		}
		int st;
		if (waitpid(w, &st, WNOHANG) == w) {
			snprintf(err, sizeof(err), "status %d", st);
			die("worker exited");
		}
		sleep_ms(1);
	}
	producer_done(p);
	rd_kafka_destroy(rk);
	worker_stop(w, "latency");
	if (acked < events) {
		snprintf(err, sizeof(err), "%zu of %zu events acknowledged", acked, events);
		die("latency");
	}
	check_last("lat", events + (size_t)records, records);
	qsort(lat, events, sizeof(*lat), cmp_ll);
	printf("apply latency at %ld events/s offered for %ld s (%zu events, 3 partitions): p50 %lld ms, p99 %lld ms, "
	       "max %lld ms (target p99 < 250 ms; source ts -> offset committed after target ack)\n",
	       rate, secs, events, lat[events / 2], lat[events * 99 / 100], lat[events - 1]);
	free(lat);
	free(sent);
	sent = NULL;
	nsent = 0;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	setup();
	const char *phases = getenv("BENCH_APPLY_PHASES");
	if (!phases || !*phases)
		phases = "batched,single,latency";
	size_t events = (size_t)env_long("BENCH_APPLY_EVENTS", 100000);
	size_t single_events = (size_t)env_long("BENCH_APPLY_SINGLE_EVENTS", (long)events);
	long records = env_long("BENCH_APPLY_RECORDS", 10000);
	double batched = 0, single = 0;
	if (strstr(phases, "batched"))
		batched = drain_phase("batched", NULL, events, records);
	if (strstr(phases, "single"))
		single = drain_phase("single", "1", single_events,
				     records * (long)single_events / (long)events > 0 ? records * (long)single_events / (long)events : 1);
	if (batched > 0 && single > 0)
		printf("apply batched / single: %.1fx (target >= 10x)\n", batched / single);
	if (strstr(phases, "latency"))
		latency_phase();
	free(fo_token);
	exec_admin("DROP DATABASE", " WITH (FORCE)");
	curl_global_cleanup();
	return 0;
}
