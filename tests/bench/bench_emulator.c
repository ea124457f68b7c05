/*
 * Emulator throughput: single-record PATCH/s (client threads with keep-alive connections) and
 * records/s through $batch (changesets of upserts), against the Dataverse flavour the stack started
 * (DW_CE_URL, DW_CE_TOKEN_URL, DW_CE_CLIENT_ID, DW_CE_CLIENT_SECRET, DW_CE_SCOPE).
 * Knobs: BENCH_THREADS (4), BENCH_SECONDS (5), BENCH_RECORDS per thread (50), BENCH_BATCH_OPS (1000),
 * BENCH_CHANGESET (100). Prints one line per figure; exits non-zero when a request fails.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

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
	char *np = realloc(b->p, b->n + add + 1);
	if (!np)
		return 0;
	b->p = np;
	memcpy(b->p + b->n, p, add);
	b->n += add;
	b->p[b->n] = '\0';
	return add;
}

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
		fprintf(stderr, "bench_emulator: %s is not set (run tests/bench/run.sh)\n", name);
		exit(2);
	}
	return v;
}

static char auth_header[256];
static char api[512];
static double seconds;
static long records_per_thread;

static int fetch_token(void)
{
	CURL *c = curl_easy_init();
	char *id = curl_easy_escape(c, need("DW_CE_CLIENT_ID"), 0);
	char *secret = curl_easy_escape(c, need("DW_CE_CLIENT_SECRET"), 0);
	char *scope = curl_easy_escape(c, need("DW_CE_SCOPE"), 0);
	char form[2048];
	snprintf(form, sizeof(form), "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s", id, secret,
		 scope);
	curl_free(id);
	curl_free(secret);
	curl_free(scope);
	struct buf b = {0};
	curl_easy_setopt(c, CURLOPT_URL, need("DW_CE_TOKEN_URL"));
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	int rc = -1;
	if (curl_easy_perform(c) == CURLE_OK && b.p) {
		cJSON *j = cJSON_Parse(b.p);
		const cJSON *t = cJSON_GetObjectItem(j, "access_token");
		if (cJSON_IsString(t)) {
			snprintf(auth_header, sizeof(auth_header), "Authorization: Bearer %s", t->valuestring);
			rc = 0;
		}
		cJSON_Delete(j);
	}
	free(b.p);
	curl_easy_cleanup(c);
	return rc;
}

static struct curl_slist *headers(const char *content_type)
{
	struct curl_slist *h = NULL;
	h = curl_slist_append(h, auth_header);
	h = curl_slist_append(h, "OData-Version: 4.0");
	h = curl_slist_append(h, "Accept: application/json");
	h = curl_slist_append(h, content_type);
	h = curl_slist_append(h, "Expect:");
	return h;
}

/* GUID for (thread, record) so each thread owns its rows. */
static void guid_for(unsigned run, long t, long i, char out[37])
{
	char tmp[64];
	snprintf(tmp, sizeof(tmp), "%08x-%04lx-4000-8000-%012lx", run, (unsigned long)t & 0xffff,
		 (unsigned long)i & 0xffffffffffffUL);
	memcpy(out, tmp, 36);
	out[36] = '\0';
}

static unsigned run_id;

struct worker {
	long t;
	long ok;
	long failed;
};

static void *patch_worker(void *arg)
{
	struct worker *w = arg;
	CURL *c = curl_easy_init();
	struct curl_slist *h = headers("Content-Type: application/json");
	char url[1024], body[256], id[37];
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PATCH");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, NULL);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	/* Create the thread's rows first (upserts), then time updates of them. */
	for (long i = 0; i < records_per_thread; i++) {
		guid_for(run_id, w->t, i, id);
		snprintf(url, sizeof(url), "%scdm_companies(%s)", api, id);
		snprintf(body, sizeof(body), "{\"cdm_companycode\":\"B%x-%ld-%ld\",\"cdm_name\":\"init\"}", run_id, w->t, i);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		long status = 0;
		if (curl_easy_perform(c) != CURLE_OK ||
		    (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status), status != 204))
			w->failed++;
	}
	double end = now_s() + seconds;
	long k = 0;
	while (now_s() < end) {
		guid_for(run_id, w->t, k % records_per_thread, id);
		snprintf(url, sizeof(url), "%scdm_companies(%s)", api, id);
		snprintf(body, sizeof(body), "{\"cdm_name\":\"v%ld\"}", k);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		long status = 0;
		if (curl_easy_perform(c) == CURLE_OK && (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status), status == 204))
			w->ok++;
		else
			w->failed++;
		k++;
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return NULL;
}

static long batch_ops, changeset_size;

/* One $batch body of batch_ops upserts in changesets of changeset_size. */
static char *batch_body(long t, long round)
{
	size_t cap = (size_t)batch_ops * 400 + 1024;
	char *b = malloc(cap);
	if (!b)
		return NULL;
	size_t o = 0;
	char id[37];
	for (long i = 0; i < batch_ops; i++) {
		if (i % changeset_size == 0) {
			if (i > 0)
				o += (size_t)snprintf(b + o, cap - o, "--cs_%ld--\r\n", i / changeset_size - 1);
			o += (size_t)snprintf(b + o, cap - o,
					      "--batch_B\r\nContent-Type: multipart/mixed; boundary=cs_%ld\r\n\r\n",
					      i / changeset_size);
		}
		guid_for(run_id ^ 0x80000000u, t, round * batch_ops + i, id);
		o += (size_t)snprintf(b + o, cap - o,
				      "--cs_%ld\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
				      "Content-ID: %ld\r\n\r\nPATCH cdm_companies(%s) HTTP/1.1\r\n"
				      "Content-Type: application/json; type=entry\r\n\r\n"
				      "{\"cdm_companycode\":\"Q%x-%ld-%ld\"}\r\n",
				      i / changeset_size, i + 1, id, run_id, t, round * batch_ops + i);
	}
	o += (size_t)snprintf(b + o, cap - o, "--cs_%ld--\r\n--batch_B--\r\n", (batch_ops - 1) / changeset_size);
	return b;
}

static void *batch_worker(void *arg)
{
	struct worker *w = arg;
	CURL *c = curl_easy_init();
	struct curl_slist *h = headers("Content-Type: multipart/mixed; boundary=batch_B");
	char url[1024];
	snprintf(url, sizeof(url), "%s$batch", api);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, NULL);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 120000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	double end = now_s() + seconds;
	for (long round = 0; now_s() < end; round++) {
		char *body = batch_body(w->t, round);
		if (!body) {
			w->failed++;
			break;
		}
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
		long status = 0;
		if (curl_easy_perform(c) == CURLE_OK && (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status), status == 200))
			w->ok += batch_ops;
		else
			w->failed++;
		free(body);
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return NULL;
}

static int run(const char *name, void *(*fn)(void *), long threads, const char *unit)
{
	struct worker *ws = calloc((size_t)threads, sizeof(*ws));
	pthread_t *ts = calloc((size_t)threads, sizeof(*ts));
	if (!ws || !ts)
		return -1;
	double start = now_s();
	for (long i = 0; i < threads; i++) {
		ws[i].t = i;
		pthread_create(&ts[i], NULL, fn, &ws[i]);
	}
	long ok = 0, failed = 0;
	for (long i = 0; i < threads; i++) {
		pthread_join(ts[i], NULL);
		ok += ws[i].ok;
		failed += ws[i].failed;
	}
	double elapsed = now_s() - start;
	(void)elapsed;
	printf("%-28s %10.0f %s  (%ld ok, %ld failed, %ld threads, %.0f s)\n", name, (double)ok / seconds, unit, ok,
	       failed, threads, seconds);
	fflush(stdout);
	free(ws);
	free(ts);
	return failed ? -1 : 0;
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(api, sizeof(api), "%s/api/data/v9.2/", need("DW_CE_URL"));
	long threads = env_long("BENCH_THREADS", 4);
	seconds = (double)env_long("BENCH_SECONDS", 5);
	records_per_thread = env_long("BENCH_RECORDS", 50);
	batch_ops = env_long("BENCH_BATCH_OPS", 1000);
	changeset_size = env_long("BENCH_CHANGESET", 100);
	if (batch_ops > 1000)
		batch_ops = 1000;
	run_id = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
	if (fetch_token() < 0) {
		fprintf(stderr, "bench_emulator: no token from %s\n", need("DW_CE_TOKEN_URL"));
		return 2;
	}
	int rc = 0;
	rc |= run("ce single-record PATCH", patch_worker, threads, "PATCH/s") < 0;
	rc |= run("ce $batch upserts", batch_worker, threads, "records/s") < 0;
	curl_global_cleanup();
	return rc;
}
