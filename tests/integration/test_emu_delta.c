/*
 * Change tracking and persistence of the Dataverse emulator, spoken as raw HTTP:
 *  - a reader following delta links while several threads write (single PATCHes and multi-record
 *    $batch changesets) sees every write: for each record, its final version is in some delta page;
 *  - records, ETags and versions survive a restart of the emulator process, and a delta token
 *    issued before the restart still works after it (a private emulator on a spare port with its
 *    own database, started and stopped by the test).
 * Writes use GUIDs and codes unique to this run; nothing depends on data left by another suite.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#include "emu_client.h"

#define API "/api/data/v9.2/"

static char auth_header[512];
static const char *base;

static int group_setup(void **state)
{
	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	base = getenv("DW_CE_URL");
	if (!base || !*base) {
		fprintf(stderr, "DW_CE_URL is not set: run through tests/run.sh (make test)\n");
		return -1;
	}
	char *token = emu_token("CE");
	snprintf(auth_header, sizeof(auth_header), "Authorization: Bearer %s", token);
	free(token);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	curl_global_cleanup();
	return 0;
}

/* ---- a thread-safe client (no cmocka calls: failures are counted, the main thread asserts) ---- */

struct xbuf {
	char *p;
	size_t n;
};

static size_t xsink(char *p, size_t sz, size_t n, void *ud)
{
	struct xbuf *b = ud;
	size_t add = sz * n;
	if (b->n + add > EMU_BODY_MAX)
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

/* One request on handle c (kept alive between calls); out->p is replaced. Returns the status or -1. */
static long xreq(CURL *c, const char *auth, const char *method, const char *url, const char *ctype, const char *prefer,
		 const char *body, struct xbuf *out)
{
	struct curl_slist *h = NULL;
	h = curl_slist_append(h, auth);
	h = curl_slist_append(h, "OData-Version: 4.0");
	h = curl_slist_append(h, "Accept: application/json");
	h = curl_slist_append(h, "Expect:");
	if (ctype)
		h = curl_slist_append(h, ctype);
	if (prefer)
		h = curl_slist_append(h, prefer);
	free(out->p);
	out->p = NULL;
	out->n = 0;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, xsink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	} else {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	}
	long status = -1;
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	return status;
}

/* Version from an ETag W/"n"; -1 when it is not one. */
static long long etag_version(const char *etag)
{
	if (!etag || strncmp(etag, "W/\"", 3) != 0)
		return -1;
	char *end;
	long long v = strtoll(etag + 3, &end, 10);
	return *end == '"' ? v : -1;
}

/* ---- concurrent writers and a delta follower ---- */

struct seen {
	char id[37];
	long long version;
};

struct seen_list {
	struct seen *v;
	size_t n, alloc;
};

static int seen_add(struct seen_list *l, const char *id, long long version)
{
	if (l->n == l->alloc) {
		size_t na = l->alloc ? l->alloc * 2 : 1024;
		struct seen *nv = realloc(l->v, na * sizeof(*nv));
		if (!nv)
			return -1;
		l->v = nv;
		l->alloc = na;
	}
	snprintf(l->v[l->n].id, sizeof(l->v[l->n].id), "%s", id);
	l->v[l->n].version = version;
	l->n++;
	return 0;
}

static int seen_cmp(const void *a, const void *b)
{
	const struct seen *x = a, *y = b;
	int c = strcmp(x->id, y->id);
	if (c)
		return c;
	return x->version < y->version ? -1 : x->version > y->version;
}

#define DW_SINGLE_THREADS 3
#define DW_BATCH_THREADS 2
#define DW_SINGLE_RECORDS 40
#define DW_BATCH_RECORDS 400
#define DW_CHANGESET 50

static unsigned run_id;
static volatile int writers_done;

static void run_guid(unsigned t, unsigned i, char out[37])
{
	snprintf(out, 37, "%08x-%04x-4000-8000-%012x", run_id, t & 0xffff, i);
}

struct writer {
	unsigned t;
	long ok, failed;
	long long until_ms;
};

static void *single_writer(void *arg)
{
	struct writer *w = arg;
	CURL *c = curl_easy_init();
	struct xbuf b = {0};
	char url[1024], body[256], id[37];
	for (unsigned k = 0; harness_now_ms() < w->until_ms || k < DW_SINGLE_RECORDS; k++) {
		unsigned i = k % DW_SINGLE_RECORDS;
		run_guid(w->t, i, id);
		snprintf(url, sizeof(url), "%s" API "cdm_companies(%s)", base, id);
		snprintf(body, sizeof(body), "{\"cdm_companycode\":\"Q%08x-%u-%u\",\"cdm_name\":\"v%u\"}", run_id, w->t, i,
			 k);
		if (xreq(c, auth_header, "PATCH", url, "Content-Type: application/json", NULL, body, &b) == 204)
			w->ok++;
		else
			w->failed++;
	}
	free(b.p);
	curl_easy_cleanup(c);
	return NULL;
}

/* Each request is one changeset of DW_CHANGESET upserts (one transaction) over the thread's records. */
static void *batch_writer(void *arg)
{
	struct writer *w = arg;
	CURL *c = curl_easy_init();
	struct xbuf b = {0};
	char url[1024], id[37];
	size_t cap = DW_CHANGESET * 512 + 1024;
	char *req = malloc(cap);
	snprintf(url, sizeof(url), "%s" API "$batch", base);
	for (unsigned round = 0; req && harness_now_ms() < w->until_ms; round++) {
		size_t o = (size_t)snprintf(req, cap, "--batch_D\r\nContent-Type: multipart/mixed; boundary=cs_D\r\n\r\n");
		for (unsigned j = 0; j < DW_CHANGESET; j++) {
			unsigned i = (round * DW_CHANGESET + j) % DW_BATCH_RECORDS;
			run_guid(w->t, i, id);
			o += (size_t)snprintf(req + o, cap - o,
					      "--cs_D\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
					      "Content-ID: %u\r\n\r\nPATCH " API "cdm_companies(%s) HTTP/1.1\r\n"
					      "Content-Type: application/json; type=entry\r\n\r\n"
					      "{\"cdm_companycode\":\"Q%08x-%u-%u\",\"cdm_name\":\"r%u\"}\r\n",
					      j + 1, id, run_id, w->t, i, round);
		}
		snprintf(req + o, cap - o, "--cs_D--\r\n--batch_D--\r\n");
		long st = xreq(c, auth_header, "POST", url, "Content-Type: multipart/mixed; boundary=batch_D", NULL, req, &b);
		if (st == 200 && b.p && !strstr(b.p, "HTTP/1.1 4") && !strstr(b.p, "HTTP/1.1 5"))
			w->ok += DW_CHANGESET;
		else
			w->failed++;
	}
	if (!req)
		w->failed++;
	free(req);
	free(b.p);
	curl_easy_cleanup(c);
	return NULL;
}

struct reader {
	char link[2048];
	struct seen_list seen;
	long reads, failed;
};

/* Follows one delta link through its pages, recording this run's rows; ends on the deltaLink,
 * which replaces r->link. Returns 0 or -1. */
static int follow_delta(CURL *c, struct reader *r, struct xbuf *b)
{
	char prefix[16];
	snprintf(prefix, sizeof(prefix), "%08x-", run_id);
	for (;;) {
		long st = xreq(c, auth_header, "GET", r->link, NULL, "Prefer: odata.maxpagesize=5000", NULL, b);
		r->reads++;
		if (st != 200)
			return -1;
		cJSON *j = cJSON_ParseWithLength(b->p, b->n);
		if (!j)
			return -1;
		const cJSON *row;
		cJSON_ArrayForEach(row, cJSON_GetObjectItem(j, "value"))
		{
			const cJSON *id = cJSON_GetObjectItem(row, "cdm_companyid");
			const cJSON *etag = cJSON_GetObjectItem(row, "@odata.etag");
			if (cJSON_IsString(id) && strncmp(id->valuestring, prefix, 9) == 0 &&
			    (!cJSON_IsString(etag) || seen_add(&r->seen, id->valuestring, etag_version(etag->valuestring)) < 0)) {
				cJSON_Delete(j);
				return -1;
			}
		}
		const cJSON *next = cJSON_GetObjectItem(j, "@odata.nextLink");
		const cJSON *delta = cJSON_GetObjectItem(j, "@odata.deltaLink");
		int done = !cJSON_IsString(next);
		const cJSON *link = done ? delta : next;
		if (!cJSON_IsString(link) || strlen(link->valuestring) >= sizeof(r->link)) {
			cJSON_Delete(j);
			return -1;
		}
		snprintf(r->link, sizeof(r->link), "%s", link->valuestring);
		cJSON_Delete(j);
		if (done)
			return 0;
	}
}

static void *delta_reader(void *arg)
{
	struct reader *r = arg;
	CURL *c = curl_easy_init();
	struct xbuf b = {0};
	while (!__atomic_load_n(&writers_done, __ATOMIC_ACQUIRE)) {
		if (follow_delta(c, r, &b) < 0)
			r->failed++;
	}
	/* Everything is committed now: one more pass picks up the rest. */
	if (follow_delta(c, r, &b) < 0)
		r->failed++;
	free(b.p);
	curl_easy_cleanup(c);
	return NULL;
}

/* The delta link for the whole table now (following the pages of the initial read). */
static void start_tracking(const char *api_base, const char *auth, char *link, size_t len)
{
	CURL *c = curl_easy_init();
	struct xbuf b = {0};
	char url[2048];
	snprintf(url, sizeof(url), "%s" API "cdm_companies?$select=cdm_companycode", api_base);
	for (;;) {
		long st = xreq(c, auth, "GET", url, NULL, "Prefer: odata.track-changes,odata.maxpagesize=5000", NULL, &b);
		assert_int_equal(st, 200);
		cJSON *j = cJSON_ParseWithLength(b.p, b.n);
		assert_non_null(j);
		const cJSON *next = cJSON_GetObjectItem(j, "@odata.nextLink");
		const cJSON *delta = cJSON_GetObjectItem(j, "@odata.deltaLink");
		if (cJSON_IsString(next)) {
			snprintf(url, sizeof(url), "%s", next->valuestring);
			cJSON_Delete(j);
			continue;
		}
		assert_true(cJSON_IsString(delta));
		assert_true(strlen(delta->valuestring) < len);
		snprintf(link, len, "%s", delta->valuestring);
		cJSON_Delete(j);
		break;
	}
	free(b.p);
	curl_easy_cleanup(c);
}

/* Owned by the test, freed by its teardown (an assertion leaves the test by longjmp). */
static struct reader rd;
static struct seen_list final;

static int delta_teardown(void **state)
{
	(void)state;
	free(rd.seen.v);
	free(final.v);
	memset(&rd, 0, sizeof(rd));
	memset(&final, 0, sizeof(final));
	return 0;
}

static void test_delta_links_never_lose_a_committed_write(void **state)
{
	(void)state;
	run_id = ((unsigned)getpid() << 12) ^ (unsigned)harness_now_ms();
	writers_done = 0;
	memset(&rd, 0, sizeof(rd));
	memset(&final, 0, sizeof(final));
	start_tracking(base, auth_header, rd.link, sizeof(rd.link));

	struct writer w[DW_SINGLE_THREADS + DW_BATCH_THREADS];
	pthread_t th[DW_SINGLE_THREADS + DW_BATCH_THREADS], rth;
	long long until = harness_now_ms() + 4000;
	assert_int_equal(pthread_create(&rth, NULL, delta_reader, &rd), 0);
	for (unsigned t = 0; t < DW_SINGLE_THREADS + DW_BATCH_THREADS; t++) {
		w[t] = (struct writer){.t = t, .until_ms = until};
		assert_int_equal(pthread_create(&th[t], NULL, t < DW_SINGLE_THREADS ? single_writer : batch_writer, &w[t]), 0);
	}
	long writes = 0, failed = 0;
	for (unsigned t = 0; t < DW_SINGLE_THREADS + DW_BATCH_THREADS; t++) {
		pthread_join(th[t], NULL);
		writes += w[t].ok;
		failed += w[t].failed;
	}
	__atomic_store_n(&writers_done, 1, __ATOMIC_RELEASE);
	pthread_join(rth, NULL);
	assert_int_equal(failed, 0);
	assert_int_equal(rd.failed, 0);

	/* The final version of every record this run wrote, from a plain query. */
	CURL *c = curl_easy_init();
	struct xbuf b = {0};
	char url[2048];
	snprintf(url, sizeof(url),
		 "%s" API "cdm_companies?$select=cdm_companycode&$filter=startswith(cdm_companycode,'Q%08x-')", base,
		 run_id);
	for (;;) {
		long st = xreq(c, auth_header, "GET", url, NULL, "Prefer: odata.maxpagesize=5000", NULL, &b);
		assert_int_equal(st, 200);
		cJSON *j = cJSON_ParseWithLength(b.p, b.n);
		assert_non_null(j);
		const cJSON *row;
		cJSON_ArrayForEach(row, cJSON_GetObjectItem(j, "value"))
		{
			const cJSON *id = cJSON_GetObjectItem(row, "cdm_companyid");
			const cJSON *etag = cJSON_GetObjectItem(row, "@odata.etag");
			assert_true(cJSON_IsString(id) && cJSON_IsString(etag));
			assert_int_equal(seen_add(&final, id->valuestring, etag_version(etag->valuestring)), 0);
		}
		const cJSON *next = cJSON_GetObjectItem(j, "@odata.nextLink");
		int more = cJSON_IsString(next);
		if (more)
			snprintf(url, sizeof(url), "%s", next->valuestring);
		cJSON_Delete(j);
		if (!more)
			break;
	}
	free(b.p);
	curl_easy_cleanup(c);

	size_t expect_records = DW_SINGLE_THREADS * DW_SINGLE_RECORDS;
	for (unsigned t = DW_SINGLE_THREADS; t < DW_SINGLE_THREADS + DW_BATCH_THREADS; t++)
		expect_records += (size_t)(w[t].ok < DW_BATCH_RECORDS ? w[t].ok : DW_BATCH_RECORDS);
	assert_int_equal(final.n, expect_records);
	qsort(rd.seen.v, rd.seen.n, sizeof(*rd.seen.v), seen_cmp);
	size_t missing = 0;
	for (size_t i = 0; i < final.n; i++) {
		if (!bsearch(&final.v[i], rd.seen.v, rd.seen.n, sizeof(*rd.seen.v), seen_cmp)) {
			if (missing < 5)
				print_message("# not in any delta page: %s version %lld\n", final.v[i].id, final.v[i].version);
			missing++;
		}
	}
	print_message("# %ld writes (%d single-PATCH and %d $batch threads), %ld delta reads, %zu rows seen, "
		      "%zu records, %zu final versions missing\n",
		      writes, DW_SINGLE_THREADS, DW_BATCH_THREADS, rd.reads, rd.seen.n, final.n, missing);
	assert_int_equal(missing, 0);
}

/* ---- restart persistence: a private emulator ---- */

static struct emu_private emu;

static int restart_setup(void **state)
{
	(void)state;
	emu_private_init(&emu, "ce", "restart");
	return 0;
}

static int restart_teardown(void **state)
{
	(void)state;
	emu_private_destroy(&emu);
	return 0;
}

struct rec_state {
	char id[37];
	char etag[64];
	char name[64];
};

/* GET cdm_companies(id) on the private emulator; status, and ETag/name when 200. */
static long private_get(CURL *c, struct xbuf *b, const char *id, char *etag, size_t elen, char *name, size_t nlen)
{
	char url[512];
	snprintf(url, sizeof(url), "%s" API "cdm_companies(%s)?$select=cdm_name,cdm_companycode", emu.base, id);
	long st = xreq(c, emu.auth, "GET", url, NULL, NULL, NULL, b);
	if (st != 200)
		return st;
	cJSON *j = cJSON_ParseWithLength(b->p, b->n);
	assert_non_null(j);
	const cJSON *e = cJSON_GetObjectItem(j, "@odata.etag");
	const cJSON *n = cJSON_GetObjectItem(j, "cdm_name");
	assert_true(cJSON_IsString(e) && cJSON_IsString(n));
	snprintf(etag, elen, "%s", e->valuestring);
	snprintf(name, nlen, "%s", n->valuestring);
	cJSON_Delete(j);
	return st;
}

static void test_records_etags_versions_and_delta_tokens_survive_a_restart(void **state)
{
	(void)state;
	emu_private_start(&emu);
	CURL *c = curl_easy_init();
	struct xbuf b = {0};
	char url[1024], body[512];
	struct rec_state recs[4];
	/* Three creates (one in a changeset with the fourth), an update, a delete. */
	for (int i = 0; i < 4; i++) {
		snprintf(recs[i].id, sizeof(recs[i].id), "%08x-0000-4000-8000-%012x", (unsigned)getpid(), i);
		snprintf(recs[i].name, sizeof(recs[i].name), "name %d", i);
	}
	for (int i = 0; i < 2; i++) {
		snprintf(url, sizeof(url), "%s" API "cdm_companies(%s)", emu.base, recs[i].id);
		snprintf(body, sizeof(body), "{\"cdm_companycode\":\"R%d\",\"cdm_name\":\"%s\"}", i, recs[i].name);
		assert_int_equal(xreq(c, emu.auth, "PATCH", url, "Content-Type: application/json", NULL, body, &b), 204);
	}
	char batch[4096];
	size_t o = (size_t)snprintf(batch, sizeof(batch), "--batch_R\r\nContent-Type: multipart/mixed; boundary=cs_R\r\n\r\n");
	for (int i = 2; i < 4; i++)
		o += (size_t)snprintf(batch + o, sizeof(batch) - o,
				      "--cs_R\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
				      "Content-ID: %d\r\n\r\nPATCH " API "cdm_companies(%s) HTTP/1.1\r\n"
				      "Content-Type: application/json; type=entry\r\n\r\n"
				      "{\"cdm_companycode\":\"R%d\",\"cdm_name\":\"%s\"}\r\n",
				      i, recs[i].id, i, recs[i].name);
	snprintf(batch + o, sizeof(batch) - o, "--cs_R--\r\n--batch_R--\r\n");
	snprintf(url, sizeof(url), "%s" API "$batch", emu.base);
	assert_int_equal(xreq(c, emu.auth, "POST", url, "Content-Type: multipart/mixed; boundary=batch_R", NULL, batch, &b),
			 200);
	assert_null(strstr(b.p, "HTTP/1.1 4"));
	/* A delta token now; then changes after it: an update of 0 and a delete of 3. */
	char delta[2048];
	start_tracking(emu.base, emu.auth, delta, sizeof(delta));
	snprintf(recs[0].name, sizeof(recs[0].name), "renamed");
	snprintf(url, sizeof(url), "%s" API "cdm_companies(%s)", emu.base, recs[0].id);
	assert_int_equal(xreq(c, emu.auth, "PATCH", url, "Content-Type: application/json", NULL,
			      "{\"cdm_name\":\"renamed\"}", &b),
			 204);
	snprintf(url, sizeof(url), "%s" API "cdm_companies(%s)", emu.base, recs[3].id);
	assert_int_equal(xreq(c, emu.auth, "DELETE", url, NULL, NULL, NULL, &b), 204);
	long long max_before = 0;
	for (int i = 0; i < 3; i++) {
		char name[64];
		assert_int_equal(private_get(c, &b, recs[i].id, recs[i].etag, sizeof(recs[i].etag), name, sizeof(name)), 200);
		assert_string_equal(name, recs[i].name);
		long long v = etag_version(recs[i].etag);
		assert_true(v > 0);
		if (v > max_before)
			max_before = v;
	}

	/* Restart: a clean stop (exit 0), a new process on the same port and database. */
	curl_easy_cleanup(c);
	int status = emu_private_stop(&emu);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	emu_private_start(&emu);
	c = curl_easy_init();

	/* Same records, same ETags (hence versions), the deleted one still gone. */
	for (int i = 0; i < 3; i++) {
		char etag[64], name[64];
		assert_int_equal(private_get(c, &b, recs[i].id, etag, sizeof(etag), name, sizeof(name)), 200);
		assert_string_equal(etag, recs[i].etag);
		assert_string_equal(name, recs[i].name);
	}
	char etag[64], name[64];
	assert_int_equal(private_get(c, &b, recs[3].id, etag, sizeof(etag), name, sizeof(name)), 404);

	/* The delta token issued before the restart gives exactly the changes made after it. */
	char dl[2048];
	snprintf(dl, sizeof(dl), "%s", delta);
	assert_int_equal(xreq(c, emu.auth, "GET", dl, NULL, NULL, NULL, &b), 200);
	cJSON *j = cJSON_ParseWithLength(b.p, b.n);
	assert_non_null(j);
	int live = 0, deleted = 0, rows = 0;
	const cJSON *row;
	cJSON_ArrayForEach(row, cJSON_GetObjectItem(j, "value"))
	{
		rows++;
		const cJSON *id = cJSON_GetObjectItem(row, "cdm_companyid");
		const cJSON *did = cJSON_GetObjectItem(row, "id");
		if (cJSON_IsString(id) && strcmp(id->valuestring, recs[0].id) == 0) {
			live++;
			assert_string_equal(cJSON_GetObjectItem(row, "@odata.etag")->valuestring, recs[0].etag);
		} else if (cJSON_IsString(did) && strcmp(did->valuestring, recs[3].id) == 0) {
			deleted++;
		}
	}
	assert_int_equal(live, 1);
	assert_int_equal(deleted, 1);
	assert_int_equal(rows, 2);
	const cJSON *next_dl = cJSON_GetObjectItem(j, "@odata.deltaLink");
	assert_true(cJSON_IsString(next_dl));
	snprintf(dl, sizeof(dl), "%s", next_dl->valuestring);
	cJSON_Delete(j);

	/* Versions go on increasing after the restart, and the new delta link carries the new write. */
	snprintf(url, sizeof(url), "%s" API "cdm_companies(%s)", emu.base, recs[1].id);
	assert_int_equal(xreq(c, emu.auth, "PATCH", url, "Content-Type: application/json", NULL,
			      "{\"cdm_name\":\"after restart\"}", &b),
			 204);
	assert_int_equal(private_get(c, &b, recs[1].id, etag, sizeof(etag), name, sizeof(name)), 200);
	assert_true(etag_version(etag) > max_before);
	assert_int_equal(xreq(c, emu.auth, "GET", dl, NULL, NULL, NULL, &b), 200);
	j = cJSON_ParseWithLength(b.p, b.n);
	assert_non_null(j);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "value")), 1);
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "value"), 0), "cdm_companyid")
				    ->valuestring,
			    recs[1].id);
	cJSON_Delete(j);
	free(b.p);
	curl_easy_cleanup(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_delta_links_never_lose_a_committed_write, delta_teardown),
		cmocka_unit_test_setup_teardown(test_records_etags_versions_and_delta_tokens_survive_a_restart,
						restart_setup, restart_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
