/* Target writers against the emulators: CE upsert by alternate key, FO PATCH-then-POST, deletes,
 * If-Match conflicts, per-write outcomes inside one $batch, outages, reads; write counts are read
 * from the emulator's admin API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "harness.h"
#include "emu_client.h"
#include "http.h"
#include "oauth.h"
#include "target.h"

static char err[1024];

struct fixture {
	struct http_client *http;
	struct oauth *oauth;
	struct target *t;
	const char *base;
};

static struct fixture *fixture_new_parallel(const char *side, size_t batch_max, size_t parallel);

static struct fixture *fixture_new(const char *side, size_t batch_max)
{
	return fixture_new_parallel(side, batch_max, 1);
}

static struct fixture *fixture_new_parallel(const char *side, size_t batch_max, size_t parallel)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	const char *SIDE = strcmp(side, "ce") == 0 ? "CE" : "FO";
	char name[32];
	snprintf(name, sizeof(name), "DW_%s_URL", SIDE);
	f->base = harness_env(name);
	struct oauth_config oc;
	if (oauth_config_load(SIDE, &oc, err, sizeof(err)) != 0)
		fail_msg("oauth config: %s", err);
	if (oauth_new(&oc, NULL, &f->oauth, err, sizeof(err)) != 0)
		fail_msg("oauth: %s", err);
	oauth_config_free(&oc);
	if (http_client_new(NULL, &f->http, err, sizeof(err)) != 0)
		fail_msg("http: %s", err);
	struct target_opts o = { .side = side, .base_url = f->base, .http = f->http, .oauth = f->oauth,
				 .timeout_ms = 20000, .batch_max = batch_max, .parallel = parallel };
	if (target_new(&o, &f->t, err, sizeof(err)) != 0)
		fail_msg("target: %s", err);
	return f;
}

static void fixture_free(struct fixture *f)
{
	target_free(f->t);
	http_client_free(f->http);
	oauth_free(f->oauth);
	free(f);
}

/* A key value unique to this run, at most 12 characters. */
static void unique_code(char *out, size_t len)
{
	static unsigned n;
	snprintf(out, len, "T%05d%03u%02u", (int)(getpid() % 100000), (unsigned)(harness_now_ms() % 1000), n++ % 100);
}

/* The emulator's write count of one record addressed by a key predicate; -1 when it has none. */
static long record_writes(const char *base, const char *set, const char *pred, int *deleted)
{
	CURL *c = curl_easy_init();
	char *e = curl_easy_escape(c, pred, 0);
	char path[512];
	snprintf(path, sizeof(path), "records/%s?key=%s", set, e);
	curl_free(e);
	curl_easy_cleanup(c);
	struct emu_resp r;
	emu_admin(base, "GET", path, NULL, &r);
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

static void apply_ok(struct fixture *f, struct target_write *w, size_t n)
{
	if (target_apply(f->t, w, n, err, sizeof(err)) != 0)
		fail_msg("target_apply: %s", err);
}

#define NCOMP 5

static void test_ce_batch_upsert_creates_then_updates_with_if_match(void **state)
{
	(void)state;
	struct fixture *f = fixture_new("ce", 50);
	char codes[NCOMP][16], bodies[NCOMP][128];
	struct odata_key_part keys[NCOMP];
	struct target_write w[NCOMP];
	memset(w, 0, sizeof(w));
	for (int i = 0; i < NCOMP; i++) {
		unique_code(codes[i], sizeof(codes[i]));
		keys[i] = (struct odata_key_part){ .name = "cdm_companycode", .value = codes[i] };
		snprintf(bodies[i], sizeof(bodies[i]), "{\"cdm_name\":\"Company %d\"}", i);
		w[i] = (struct target_write){ .op = TARGET_UPSERT, .entity_set = "cdm_companies", .key = &keys[i],
					      .nkey = 1, .body = bodies[i] };
	}
	unsigned long before = target_request_count(f->t);
	apply_ok(f, w, NCOMP);
	assert_int_equal(before + 1, target_request_count(f->t)); /* one $batch */
	char etags[NCOMP][64];
	for (int i = 0; i < NCOMP; i++) {
		assert_int_equal(TARGET_OK, w[i].outcome);
		assert_int_equal(1, w[i].created);
		assert_non_null(w[i].etag);
		assert_non_null(w[i].target_id);
		assert_int_equal(36, strlen(w[i].target_id));
		assert_non_null(w[i].representation);
		assert_non_null(strstr(w[i].representation, w[i].target_id));
		snprintf(etags[i], sizeof(etags[i]), "%s", w[i].etag);
		target_write_clear(&w[i]);
		snprintf(bodies[i], sizeof(bodies[i]), "{\"cdm_name\":\"Company %d renamed\"}", i);
		w[i].if_match = etags[i];
	}
	apply_ok(f, w, NCOMP);
	for (int i = 0; i < NCOMP; i++) {
		assert_int_equal(TARGET_OK, w[i].outcome);
		assert_int_equal(0, w[i].created);
		assert_non_null(w[i].etag);
		assert_string_not_equal(etags[i], w[i].etag);
		char pred[160];
		snprintf(pred, sizeof(pred), "(cdm_companycode='%s')", codes[i]);
		assert_int_equal(2, record_writes(f->base, "cdm_companies", pred, NULL));
		target_write_clear(&w[i]);
	}
	fixture_free(f);
}

static void test_ce_one_bad_write_affects_only_itself(void **state)
{
	(void)state;
	struct fixture *f = fixture_new("ce", 50);
	char c0[16], c1[16], c2[16];
	unique_code(c0, sizeof(c0));
	unique_code(c1, sizeof(c1));
	unique_code(c2, sizeof(c2));
	struct odata_key_part k0 = { "cdm_companycode", c0, ODATA_KIND_STRING, NULL };
	struct odata_key_part k1 = { "cdm_companycode", c1, ODATA_KIND_STRING, NULL };
	struct odata_key_part k2 = { "cdm_companycode", c2, ODATA_KIND_STRING, NULL };
	/* create c1 to get a stale etag for it */
	struct target_write first = { .op = TARGET_UPSERT, .entity_set = "cdm_companies", .key = &k1, .nkey = 1,
				      .body = "{\"cdm_name\":\"one\"}" };
	apply_ok(f, &first, 1);
	assert_int_equal(TARGET_OK, first.outcome);
	char stale[64];
	snprintf(stale, sizeof(stale), "%s", first.etag);
	target_write_clear(&first);
	first.body = "{\"cdm_name\":\"one changed elsewhere\"}";
	apply_ok(f, &first, 1);
	assert_int_equal(TARGET_OK, first.outcome);
	target_write_clear(&first);

	char longname[200];
	memset(longname, 'x', 170);
	longname[170] = '\0';
	char badbody[300];
	snprintf(badbody, sizeof(badbody), "{\"cdm_name\":\"%s\"}", longname); /* cdm_name max 100 */
	char acct_body[256];
	char missing_company[32];
	unique_code(missing_company, sizeof(missing_company));
	snprintf(acct_body, sizeof(acct_body),
		 "{\"name\":\"A\",\"msdyn_company@odata.bind\":\"/cdm_companies(cdm_companycode='%s')\"}",
		 missing_company);
	struct odata_key_part ka = { "accountid", "6f1c2a44-1111-4e5b-9d1a-0c0ffee00001", ODATA_KIND_GUID, NULL };
	struct target_write w[] = {
		{ .op = TARGET_UPSERT, .entity_set = "cdm_companies", .key = &k0, .nkey = 1, .body = "{\"cdm_name\":\"ok\"}" },
		{ .op = TARGET_UPSERT, .entity_set = "cdm_companies", .key = &k1, .nkey = 1,
		  .body = "{\"cdm_name\":\"stale\"}", .if_match = stale },
		{ .op = TARGET_UPSERT, .entity_set = "cdm_companies", .key = &k2, .nkey = 1, .body = badbody },
		{ .op = TARGET_UPSERT, .entity_set = "accounts", .key = &ka, .nkey = 1, .body = acct_body },
	};
	apply_ok(f, w, 4);
	assert_int_equal(TARGET_OK, w[0].outcome);
	assert_int_equal(TARGET_CONFLICT, w[1].outcome);
	assert_int_equal(412, w[1].status);
	assert_int_equal(TARGET_INVALID, w[2].outcome);
	assert_int_equal(400, w[2].status);
	assert_non_null(w[2].error_body);
	assert_non_null(strstr(w[2].error_body, "0x80044331")); /* the target's own error body */
	assert_non_null(strstr(w[2].error, "cdm_name"));
	assert_int_equal(TARGET_MISSING_DEP, w[3].outcome);
	/* nothing was written for the failed ones; c1 keeps its two writes */
	char pred[160];
	snprintf(pred, sizeof(pred), "(cdm_companycode='%s')", c2);
	assert_int_equal(-1, record_writes(f->base, "cdm_companies", pred, NULL));
	snprintf(pred, sizeof(pred), "(cdm_companycode='%s')", c1);
	assert_int_equal(2, record_writes(f->base, "cdm_companies", pred, NULL));
	for (size_t i = 0; i < 4; i++)
		target_write_clear(&w[i]);
	fixture_free(f);
}

#define NPAR 400

/* Code number i of a run of up to 1,000,000 distinct codes (12 characters). */
static void run_code(unsigned run, int i, char *out, size_t len)
{
	snprintf(out, len, "Q%05u%06u", run % 100000, (unsigned)i % 1000000);
}

/* parallel 4: 400 writes go as 4 $batch requests of 100 at once; each write gets its own answer */
static void test_parallel_requests_answer_every_write(void **state)
{
	(void)state;
	struct fixture *f = fixture_new_parallel("ce", 1000, 4);
	unsigned run = (unsigned)(harness_now_ms() % 100000);
	char codes[NPAR][16], bodies[NPAR][64];
	struct odata_key_part keys[NPAR];
	struct target_write w[NPAR];
	memset(w, 0, sizeof(w));
	for (int i = 0; i < NPAR; i++) {
		run_code(run, i, codes[i], sizeof(codes[i]));
		keys[i] = (struct odata_key_part){ .name = "cdm_companycode", .value = codes[i] };
		snprintf(bodies[i], sizeof(bodies[i]), "{\"cdm_name\":\"Parallel %d\"}", i);
		w[i] = (struct target_write){ .op = TARGET_UPSERT, .entity_set = "cdm_companies", .key = &keys[i],
					      .nkey = 1, .body = bodies[i] };
	}
	unsigned long before = target_request_count(f->t);
	apply_ok(f, w, NPAR);
	assert_int_equal(before + 4, target_request_count(f->t));
	for (int i = 0; i < NPAR; i++) {
		assert_int_equal(TARGET_OK, w[i].outcome);
		assert_int_equal(1, w[i].created);
		assert_non_null(w[i].representation);
		char want[64];
		snprintf(want, sizeof(want), "\"Parallel %d\"", i); /* its own answer, not a neighbour's */
		assert_non_null(strstr(w[i].representation, want));
		char pred[160];
		snprintf(pred, sizeof(pred), "(cdm_companycode='%.15s')", codes[i]);
		assert_int_equal(1, record_writes(f->base, "cdm_companies", pred, NULL));
		target_write_clear(&w[i]);
	}
	fixture_free(f);
}

/* parallel 4 over 200 writes: requests of at least 100 writes, and a unit spread over the input
 * stays in one request (one changeset): its bad member rolls all of it back, nothing else */
static void test_parallel_requests_keep_units_whole(void **state)
{
	(void)state;
	struct fixture *f = fixture_new_parallel("ce", 1000, 4);
	unsigned run = (unsigned)(harness_now_ms() % 100000);
	enum { N = 200 };
	char codes[N][16], bodies[N][300];
	struct odata_key_part keys[N];
	struct target_write w[N];
	memset(w, 0, sizeof(w));
	for (int i = 0; i < N; i++) {
		run_code(run, i, codes[i], sizeof(codes[i]));
		keys[i] = (struct odata_key_part){ .name = "cdm_companycode", .value = codes[i] };
		if (i == 150) { /* cdm_name max 100: the target rejects it */
			char longname[171];
			memset(longname, 'x', 170);
			longname[170] = '\0';
			snprintf(bodies[i], sizeof(bodies[i]), "{\"cdm_name\":\"%s\"}", longname);
		} else {
			snprintf(bodies[i], sizeof(bodies[i]), "{\"cdm_name\":\"Unit %d\"}", i);
		}
		w[i] = (struct target_write){ .op = TARGET_UPSERT, .entity_set = "cdm_companies", .key = &keys[i],
					      .nkey = 1, .body = bodies[i], .unit = i % 50 == 0 ? 7 : 0 };
	}
	unsigned long before = target_request_count(f->t);
	apply_ok(f, w, N);
	assert_int_equal(before + 2, target_request_count(f->t));
	for (int i = 0; i < N; i++) {
		char pred[160];
		snprintf(pred, sizeof(pred), "(cdm_companycode='%.15s')", codes[i]);
		if (i % 50 == 0) {
			assert_int_equal(TARGET_INVALID, w[i].outcome);
			assert_int_equal(-1, record_writes(f->base, "cdm_companies", pred, NULL));
		} else {
			assert_int_equal(TARGET_OK, w[i].outcome);
			assert_int_equal(1, record_writes(f->base, "cdm_companies", pred, NULL));
		}
		target_write_clear(&w[i]);
	}
	fixture_free(f);
}

static void fo_patch_then_post(size_t batch_max)
{
	struct fixture *f = fixture_new("fo", batch_max);
	char a0[16], a1[16];
	unique_code(a0, sizeof(a0));
	unique_code(a1, sizeof(a1));
	struct odata_key_part k0[] = { { "dataAreaId", "usmf", ODATA_KIND_STRING, NULL },
				       { "CustomerAccount", a0, ODATA_KIND_STRING, NULL } };
	struct odata_key_part k1[] = { { "dataAreaId", "usmf", ODATA_KIND_STRING, NULL },
				       { "CustomerAccount", a1, ODATA_KIND_STRING, NULL } };
	struct target_write w[] = {
		{ .op = TARGET_UPSERT, .entity_set = "CustomersV3", .key = k0, .nkey = 2,
		  .body = "{\"OrganizationName\":\"O'Brien & Sons\"}" },
		{ .op = TARGET_UPSERT, .entity_set = "CustomersV3", .key = k1, .nkey = 2,
		  .body = "{\"OrganizationName\":\"Second\"}" },
	};
	unsigned long before = target_request_count(f->t);
	apply_ok(f, w, 2);
	/* batched: one $batch of PATCHes (404) and one of POSTs; single: 2 requests per write */
	assert_int_equal(before + (batch_max > 1 ? 2 : 4), target_request_count(f->t));
	for (int i = 0; i < 2; i++) {
		assert_int_equal(TARGET_OK, w[i].outcome);
		assert_int_equal(1, w[i].created);
		assert_non_null(w[i].etag);
		assert_non_null(w[i].target_id);
		assert_non_null(strstr(w[i].target_id, "CustomerAccount="));
	}
	char etag0[128];
	snprintf(etag0, sizeof(etag0), "%s", w[0].etag);
	target_write_clear(&w[0]);
	target_write_clear(&w[1]);
	w[0].body = "{\"OrganizationName\":\"Renamed\"}";
	w[0].if_match = etag0;
	apply_ok(f, w, 1);
	assert_int_equal(TARGET_OK, w[0].outcome);
	assert_int_equal(0, w[0].created);
	assert_int_equal(200, w[0].status); /* with the representation asked for */
	assert_non_null(w[0].representation);
	assert_non_null(strstr(w[0].representation, "\"OrganizationName\":\"Renamed\""));
	char pred[160];
	snprintf(pred, sizeof(pred), "(dataAreaId='usmf',CustomerAccount='%s')", a0);
	assert_int_equal(2, record_writes(f->base, "CustomersV3", pred, NULL));
	/* stale etag now: conflict, no write */
	target_write_clear(&w[0]);
	apply_ok(f, w, 1);
	assert_int_equal(TARGET_CONFLICT, w[0].outcome);
	assert_int_equal(2, record_writes(f->base, "CustomersV3", pred, NULL));
	/* delete, then delete again: both done; the record is gone */
	target_write_clear(&w[0]);
	w[0] = (struct target_write){ .op = TARGET_DELETE, .entity_set = "CustomersV3", .key = k0, .nkey = 2 };
	apply_ok(f, w, 1);
	assert_int_equal(TARGET_OK, w[0].outcome);
	assert_int_equal(204, w[0].status);
	int found = -1;
	char *body = NULL, *etag = NULL;
	if (target_read(f->t, "CustomersV3", k0, 2, &found, &body, &etag, NULL, err, sizeof(err)) != 0)
		fail_msg("read: %s", err);
	assert_int_equal(0, found);
	target_write_clear(&w[0]);
	apply_ok(f, w, 1);
	assert_int_equal(TARGET_OK, w[0].outcome);
	assert_int_equal(404, w[0].status);
	target_write_clear(&w[0]);
	fixture_free(f);
}

static void test_fo_patch_then_post_batched(void **state)
{
	(void)state;
	fo_patch_then_post(100);
}

static void test_fo_patch_then_post_single(void **state)
{
	(void)state;
	fo_patch_then_post(1);
}

static void test_outage_is_retryable_with_retry_after(void **state)
{
	(void)state;
	for (int batched = 0; batched < 2; batched++) {
		struct fixture *f = fixture_new("fo", batched ? 10 : 1);
		struct emu_resp r;
		emu_admin(f->base, "POST", "faults", "{\"outage\":true}", &r);
		assert_int_equal(200, r.status);
		emu_resp_free(&r);
		char a0[16];
		unique_code(a0, sizeof(a0));
		struct odata_key_part k0[] = { { "dataAreaId", "usmf", ODATA_KIND_STRING, NULL },
					       { "CustomerAccount", a0, ODATA_KIND_STRING, NULL } };
		struct target_write w = { .op = TARGET_UPSERT, .entity_set = "CustomersV3", .key = k0, .nkey = 2,
					  .body = "{\"OrganizationName\":\"x\"}" };
		int rc = target_apply(f->t, &w, 1, err, sizeof(err));
		emu_admin(f->base, "POST", "faults", "{\"outage\":false}", &r);
		emu_resp_free(&r);
		assert_int_equal(0, rc);
		assert_int_equal(TARGET_RETRY, w.outcome);
		assert_int_equal(503, w.status);
		assert_int_equal(1000, w.retry_after_ms);
		target_write_clear(&w);
		fixture_free(f);
	}
}

static void test_unreachable_target_is_retryable(void **state)
{
	(void)state;
	struct fixture *f = fixture_new("ce", 10);
	target_free(f->t);
	/* a port nothing listens on, on this host; the token still comes from the emulator */
	struct target_opts o = { .side = "ce", .base_url = "http://127.0.0.1:1", .http = f->http, .oauth = f->oauth,
				 .timeout_ms = 2000, .batch_max = 10 };
	if (target_new(&o, &f->t, err, sizeof(err)) != 0)
		fail_msg("target: %s", err);
	struct odata_key_part k = { "cdm_companycode", "X", ODATA_KIND_STRING, NULL };
	struct target_write w = { .op = TARGET_UPSERT, .entity_set = "cdm_companies", .key = &k, .nkey = 1,
				  .body = "{}" };
	apply_ok(f, &w, 1);
	assert_int_equal(TARGET_RETRY, w.outcome);
	assert_int_equal(0, w.status);
	assert_non_null(w.error);
	target_write_clear(&w);
	fixture_free(f);
}

static void test_read_by_key(void **state)
{
	(void)state;
	struct fixture *f = fixture_new("ce", 1);
	char code[16];
	unique_code(code, sizeof(code));
	struct odata_key_part k = { "cdm_companycode", code, ODATA_KIND_STRING, NULL };
	int found = -1, retryable = -1;
	char *body = NULL, *etag = NULL;
	if (target_read(f->t, "cdm_companies", &k, 1, &found, &body, &etag, &retryable, err, sizeof(err)) != 0)
		fail_msg("read: %s", err);
	assert_int_equal(0, found);
	struct target_write w = { .op = TARGET_UPSERT, .entity_set = "cdm_companies", .key = &k, .nkey = 1,
				  .body = "{\"cdm_name\":\"read me\"}" };
	apply_ok(f, &w, 1);
	assert_int_equal(TARGET_OK, w.outcome);
	if (target_read(f->t, "cdm_companies", &k, 1, &found, &body, &etag, &retryable, err, sizeof(err)) != 0)
		fail_msg("read: %s", err);
	assert_int_equal(1, found);
	assert_non_null(strstr(body, "\"read me\""));
	assert_string_equal(w.etag, etag);
	free(body);
	free(etag);
	target_write_clear(&w);
	fixture_free(f);
}

static void test_bad_arguments(void **state)
{
	(void)state;
	struct fixture *f = fixture_new("ce", 10);
	struct odata_key_part k = { "cdm_companycode", "X", ODATA_KIND_STRING, NULL };
	struct target_write w = { .op = TARGET_UPSERT, .entity_set = "bad set", .key = &k, .nkey = 1, .body = "{}" };
	assert_int_equal(-1, target_apply(f->t, &w, 1, err, sizeof(err)));
	assert_non_null(strstr(err, "write 0: entity set"));
	w.entity_set = "cdm_companies";
	w.body = NULL;
	assert_int_equal(-1, target_apply(f->t, &w, 1, err, sizeof(err)));
	struct target *t = NULL;
	struct target_opts o = { .side = "xx", .base_url = "http://h", .http = f->http, .oauth = f->oauth };
	assert_int_equal(-1, target_new(&o, &t, err, sizeof(err)));
	o.side = "fo";
	o.batch_max = TARGET_BATCH_MAX + 1;
	assert_int_equal(-1, target_new(&o, &t, err, sizeof(err)));
	assert_null(t);
	o.batch_max = 10;
	o.parallel = TARGET_PARALLEL_MAX + 1;
	assert_int_equal(-1, target_new(&o, &t, err, sizeof(err)));
	assert_non_null(strstr(err, "parallel"));
	assert_null(t);
	fixture_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ce_batch_upsert_creates_then_updates_with_if_match),
		cmocka_unit_test(test_ce_one_bad_write_affects_only_itself),
		cmocka_unit_test(test_parallel_requests_answer_every_write),
		cmocka_unit_test(test_parallel_requests_keep_units_whole),
		cmocka_unit_test(test_fo_patch_then_post_batched),
		cmocka_unit_test(test_fo_patch_then_post_single),
		cmocka_unit_test(test_outage_is_retryable_with_retry_after),
		cmocka_unit_test(test_unreachable_target_is_retryable),
		cmocka_unit_test(test_read_by_key),
		cmocka_unit_test(test_bad_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
