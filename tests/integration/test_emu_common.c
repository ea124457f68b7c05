/*
 * What both emulators share: the OAuth 2.0 client-credentials endpoint, bearer tokens (missing,
 * unknown, expired), service-protection limits (429 + Retry-After + documented codes), fault
 * injection (outage, error rate) and the admin API, spoken as raw HTTP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#include "emu_client.h"

static int group_setup(void **state)
{
	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!getenv("DW_CE_URL") || !getenv("DW_FO_URL")) {
		fprintf(stderr, "DW_CE_URL / DW_FO_URL are not set: run through tests/run.sh (make test)\n");
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	curl_global_cleanup();
	return 0;
}

/* After a test that changes the stack emulators' limits, faults or token lifetime: back to the
 * defaults even when the test failed half-way, so later tests and suites see a plain emulator. */
static int restore_defaults(void **state)
{
	(void)state;
	const char *const bases[] = {getenv("DW_CE_URL"), getenv("DW_FO_URL")};
	for (size_t i = 0; i < 2; i++) {
		struct emu_resp r;
		emu_admin(bases[i], "POST", "limits", "{\"max_requests\":0,\"max_concurrent\":0}", &r);
		emu_resp_free(&r);
		emu_admin(bases[i], "POST", "faults",
			  "{\"latency_ms\":0,\"error_status\":0,\"error_rate\":0,\"outage\":false}", &r);
		emu_resp_free(&r);
		emu_admin(bases[i], "POST", "auth", "{\"token_ttl_s\":3600}", &r);
		emu_resp_free(&r);
	}
	return 0;
}

/* GET of the flavour's service root with the given Authorization header (may be NULL). */
static void get_root(const char *flavour, const char *auth, struct emu_resp *r)
{
	char url[512], name[32];
	snprintf(name, sizeof(name), "DW_%s_URL", flavour);
	snprintf(url, sizeof(url), "%s%s", getenv(name), strcmp(flavour, "CE") == 0 ? "/api/data/v9.2/" : "/data/");
	const char *h[] = {auth, NULL};
	emu_http("GET", url, auth ? h : NULL, NULL, r);
}

static void token_request(const char *form, struct emu_resp *r)
{
	const char *h[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
	emu_http("POST", harness_env("DW_CE_TOKEN_URL"), h, form, r);
}

static void test_token_endpoint_success_and_identity_platform_errors(void **state)
{
	(void)state;
	char *tok = emu_token("CE");
	assert_int_equal(strlen(tok) > 20, 1);
	free(tok);

	struct emu_resp r;
	char form[1024];
	snprintf(form, sizeof(form), "grant_type=client_credentials&client_id=%s&client_secret=wrong&scope=x%%2F.default",
		 harness_env("DW_CE_CLIENT_ID"));
	token_request(form, &r);
	assert_int_equal(r.status, 401);
	cJSON *j = emu_json(&r);
	assert_string_equal(cJSON_GetObjectItem(j, "error")->valuestring, "invalid_client");
	assert_non_null(strstr(cJSON_GetObjectItem(j, "error_description")->valuestring, "AADSTS7000215"));
	/* the secret never comes back */
	assert_null(strstr(r.body, harness_env("DW_CE_CLIENT_SECRET")));
	cJSON_Delete(j);
	emu_resp_free(&r);

	/* Client credentials in HTTP Basic instead of the form. */
	{
		char cred[512], b64[1024], hdr[1100];
		snprintf(cred, sizeof(cred), "%s:%s", harness_env("DW_CE_CLIENT_ID"), harness_env("DW_CE_CLIENT_SECRET"));
		static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		size_t n = strlen(cred), o = 0;
		for (size_t i = 0; i < n; i += 3) {
			unsigned v = (unsigned)(unsigned char)cred[i] << 16;
			if (i + 1 < n)
				v |= (unsigned)(unsigned char)cred[i + 1] << 8;
			if (i + 2 < n)
				v |= (unsigned char)cred[i + 2];
			b64[o++] = al[(v >> 18) & 63];
			b64[o++] = al[(v >> 12) & 63];
			b64[o++] = i + 1 < n ? al[(v >> 6) & 63] : '=';
			b64[o++] = i + 2 < n ? al[v & 63] : '=';
		}
		b64[o] = '\0';
		snprintf(hdr, sizeof(hdr), "Authorization: Basic %s", b64);
		const char *h[] = {"Content-Type: application/x-www-form-urlencoded", hdr, NULL};
		emu_http("POST", harness_env("DW_CE_TOKEN_URL"), h, "grant_type=client_credentials&scope=x%2F.default", &r);
		assert_int_equal(r.status, 200);
		emu_resp_free(&r);
	}

	token_request("grant_type=password&client_id=a&client_secret=b&scope=x%2F.default", &r);
	assert_int_equal(r.status, 400);
	j = emu_json(&r);
	assert_string_equal(cJSON_GetObjectItem(j, "error")->valuestring, "unsupported_grant_type");
	cJSON_Delete(j);
	emu_resp_free(&r);

	snprintf(form, sizeof(form), "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=https%%3A%%2F%%2Fx",
		 harness_env("DW_CE_CLIENT_ID"), harness_env("DW_CE_CLIENT_SECRET"));
	token_request(form, &r);
	assert_int_equal(r.status, 400);
	j = emu_json(&r);
	assert_string_equal(cJSON_GetObjectItem(j, "error")->valuestring, "invalid_scope");
	cJSON_Delete(j);
	emu_resp_free(&r);
}

static void test_missing_and_unknown_tokens_get_401_with_challenge(void **state)
{
	(void)state;
	const char *flavours[] = {"CE", "FO"};
	for (int i = 0; i < 2; i++) {
		struct emu_resp r;
		char www[512];
		get_root(flavours[i], NULL, &r);
		assert_int_equal(r.status, 401);
		assert_non_null(emu_header(&r, "WWW-Authenticate", www, sizeof(www)));
		assert_true(strncmp(www, "Bearer", 6) == 0);
		emu_resp_free(&r);
		get_root(flavours[i], "Authorization: Bearer 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			 &r);
		assert_int_equal(r.status, 401);
		emu_resp_free(&r);
	}
}

static void test_expired_token_gets_401(void **state)
{
	(void)state;
	struct emu_resp r;
	emu_admin(harness_env("DW_FO_URL"), "POST", "auth", "{\"token_ttl_s\":1}", &r);
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);
	char *tok = emu_token("FO");
	emu_admin(harness_env("DW_FO_URL"), "POST", "auth", "{\"token_ttl_s\":3600}", &r);
	emu_resp_free(&r);
	char auth[256];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
	get_root("FO", auth, &r);
	assert_int_equal(r.status, 200); /* fresh */
	emu_resp_free(&r);
	long long deadline = harness_now_ms() + 5000;
	long status = 200;
	while (status == 200 && harness_now_ms() < deadline) {
		usleep(100 * 1000);
		get_root("FO", auth, &r);
		status = r.status;
		emu_resp_free(&r);
	}
	assert_int_equal(status, 401);
	free(tok);
}

static void test_request_limit_gives_429_with_retry_after_and_code(void **state)
{
	(void)state;
	const char *flavours[] = {"CE", "FO"};
	for (int i = 0; i < 2; i++) {
		char name[32];
		snprintf(name, sizeof(name), "DW_%s_URL", flavours[i]);
		const char *base = harness_env(name);
		char *tok = emu_token(flavours[i]);
		char auth[256];
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
		struct emu_resp r;
		emu_admin(base, "POST", "limits", "{\"max_requests\":3,\"window_s\":60}", &r);
		assert_int_equal(r.status, 200);
		emu_resp_free(&r);
		int ok = 0, throttled = 0;
		for (int k = 0; k < 5; k++) {
			get_root(flavours[i], auth, &r);
			if (r.status == 200)
				ok++;
			if (r.status == 429) {
				throttled++;
				char ra[32], code[32];
				assert_non_null(emu_header(&r, "Retry-After", ra, sizeof(ra)));
				assert_true(strtol(ra, NULL, 10) >= 1);
				emu_error_code(&r, code, sizeof(code));
				if (i == 0)
					assert_string_equal(code, "0x80072322");
			}
			emu_resp_free(&r);
		}
		assert_int_equal(ok, 3);
		assert_int_equal(throttled, 2);
		emu_admin(base, "POST", "limits", "{\"max_requests\":0}", &r);
		emu_resp_free(&r);
		get_root(flavours[i], auth, &r);
		assert_int_equal(r.status, 200);
		emu_resp_free(&r);
		free(tok);
	}
}

static void test_concurrency_limit_gives_429_with_0x80072326(void **state)
{
	(void)state;
	const char *base = harness_env("DW_CE_URL");
	char *tok = emu_token("CE");
	char auth[256], url[512];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
	snprintf(url, sizeof(url), "%s/api/data/v9.2/", base);
	struct emu_resp r;
	emu_admin(base, "POST", "limits", "{\"max_concurrent\":1}", &r);
	assert_int_equal(r.status, 200);
	emu_resp_free(&r);
	emu_admin(base, "POST", "faults", "{\"latency_ms\":500}", &r);
	emu_resp_free(&r);
	/* Three requests at once: one is served (slowly), the others exceed the concurrency limit. */
	CURLM *m = curl_multi_init();
	CURL *c[3];
	struct emu_resp out[3];
	struct curl_slist *h = curl_slist_append(NULL, auth);
	for (int i = 0; i < 3; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		c[i] = curl_easy_init();
		curl_easy_setopt(c[i], CURLOPT_URL, url);
		curl_easy_setopt(c[i], CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c[i], CURLOPT_WRITEFUNCTION, emu_body_cb);
		curl_easy_setopt(c[i], CURLOPT_WRITEDATA, &out[i]);
		curl_easy_setopt(c[i], CURLOPT_HEADERFUNCTION, emu_header_cb);
		curl_easy_setopt(c[i], CURLOPT_HEADERDATA, &out[i]);
		curl_easy_setopt(c[i], CURLOPT_TIMEOUT_MS, 10000L);
		curl_multi_add_handle(m, c[i]);
	}
	int running = 1;
	while (running) {
		curl_multi_perform(m, &running);
		if (running)
			curl_multi_poll(m, NULL, 0, 100, NULL);
	}
	int ok = 0, throttled = 0;
	for (int i = 0; i < 3; i++) {
		curl_easy_getinfo(c[i], CURLINFO_RESPONSE_CODE, &out[i].status);
		if (out[i].status == 200)
			ok++;
		if (out[i].status == 429) {
			char code[32], ra[16];
			assert_string_equal(emu_error_code(&out[i], code, sizeof(code)), "0x80072326");
			assert_non_null(emu_header(&out[i], "Retry-After", ra, sizeof(ra)));
			throttled++;
		}
		curl_multi_remove_handle(m, c[i]);
		curl_easy_cleanup(c[i]);
		emu_resp_free(&out[i]);
	}
	curl_slist_free_all(h);
	curl_multi_cleanup(m);
	emu_admin(base, "POST", "limits", "{\"max_concurrent\":0}", &r);
	emu_resp_free(&r);
	emu_admin(base, "POST", "faults", "{\"latency_ms\":0}", &r);
	emu_resp_free(&r);
	assert_true(ok >= 1);
	assert_true(throttled >= 1);
	assert_int_equal(ok + throttled, 3);
	free(tok);
}

static void test_many_parallel_reads_all_served(void **state)
{
	(void)state;
	/* More parallel requests than the emulator has PostgreSQL connections (16): each must still
	 * be answered (no request may wait for a second connection while holding one). */
	enum { N = 40 };
	char *tok = emu_token("CE");
	char auth[256], url[512];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
	snprintf(url, sizeof(url), "%s/api/data/v9.2/cdm_companies?$top=5&$count=true", harness_env("DW_CE_URL"));
	CURLM *m = curl_multi_init();
	CURL *c[N];
	struct curl_slist *h = curl_slist_append(NULL, auth);
	for (int i = 0; i < N; i++) {
		c[i] = curl_easy_init();
		curl_easy_setopt(c[i], CURLOPT_URL, url);
		curl_easy_setopt(c[i], CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c[i], CURLOPT_WRITEFUNCTION, emu_body_cb);
		curl_easy_setopt(c[i], CURLOPT_WRITEDATA, NULL);
		curl_easy_setopt(c[i], CURLOPT_TIMEOUT_MS, 20000L);
		curl_multi_add_handle(m, c[i]);
	}
	int running = 1;
	while (running) {
		curl_multi_perform(m, &running);
		if (running)
			curl_multi_poll(m, NULL, 0, 100, NULL);
	}
	int ok = 0;
	for (int i = 0; i < N; i++) {
		long status = 0;
		curl_easy_getinfo(c[i], CURLINFO_RESPONSE_CODE, &status);
		ok += status == 200;
		curl_multi_remove_handle(m, c[i]);
		curl_easy_cleanup(c[i]);
	}
	curl_slist_free_all(h);
	curl_multi_cleanup(m);
	assert_int_equal(ok, N);
	free(tok);
}

static void test_outage_and_error_rate_faults(void **state)
{
	(void)state;
	const char *base = harness_env("DW_CE_URL");
	char *tok = emu_token("CE");
	char auth[256];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
	struct emu_resp r;
	emu_admin(base, "POST", "faults", "{\"outage\":true}", &r);
	assert_int_equal(r.status, 200);
	emu_resp_free(&r);
	get_root("CE", auth, &r);
	assert_int_equal(r.status, 503);
	emu_resp_free(&r);
	emu_admin(base, "POST", "faults", "{\"outage\":false,\"error_status\":500,\"error_rate\":1}", &r);
	emu_resp_free(&r);
	get_root("CE", auth, &r);
	assert_int_equal(r.status, 500);
	emu_resp_free(&r);
	emu_admin(base, "POST", "faults", "{\"error_rate\":0,\"error_status\":0}", &r);
	emu_resp_free(&r);
	get_root("CE", auth, &r);
	assert_int_equal(r.status, 200);
	emu_resp_free(&r);
	/* Bad settings are refused and change nothing. */
	emu_admin(base, "POST", "faults", "{\"error_rate\":2}", &r);
	assert_int_equal(r.status, 400);
	emu_resp_free(&r);
	free(tok);
}

static void test_stats_shape_and_request_count(void **state)
{
	(void)state;
	const char *base = harness_env("DW_FO_URL");
	struct emu_resp r;
	emu_admin(base, "GET", "stats", NULL, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	assert_true(cJSON_IsObject(cJSON_GetObjectItem(j, "writes")));
	double before = cJSON_GetObjectItem(j, "requests")->valuedouble;
	cJSON_Delete(j);
	emu_resp_free(&r);
	char *tok = emu_token("FO");
	char auth[256];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
	get_root("FO", auth, &r);
	emu_resp_free(&r);
	emu_admin(base, "GET", "stats", NULL, &r);
	j = emu_json(&r);
	assert_true(cJSON_GetObjectItem(j, "requests")->valuedouble >= before + 1);
	cJSON_Delete(j);
	emu_resp_free(&r);
	emu_admin(base, "GET", "nosuch", NULL, &r);
	assert_int_equal(r.status, 404);
	emu_resp_free(&r);
	free(tok);
}

static void test_body_over_the_cap_gets_413(void **state)
{
	(void)state;
	char url[512];
	snprintf(url, sizeof(url), "%s/api/data/v9.2/accounts", harness_env("DW_CE_URL"));
	/* Announces 70 MB (the cap is 64 MiB): refused from the headers, before any body is read. */
	const char *h[] = {"Content-Type: application/json", "Content-Length: 70000000", NULL};
	struct emu_resp r;
	emu_http("POST", url, h, "", &r);
	assert_int_equal(r.status, 413);
	emu_resp_free(&r);
}

/* ---- reset and seed: on private emulators, so the stack's emulators keep their data ---- */

static struct emu_private pce, pfo;

static int private_setup(void **state)
{
	(void)state;
	emu_private_init(&pce, "ce", "seed");
	emu_private_init(&pfo, "fo", "seed");
	return 0;
}

static int private_teardown(void **state)
{
	(void)state;
	emu_private_destroy(&pce);
	emu_private_destroy(&pfo);
	return 0;
}

/* POST /_emulator/seed on p; returns "created", fills *failed. */
static double seed_once(const struct emu_private *p, const char *body, double *failed)
{
	struct emu_resp r;
	emu_admin(p->base, "POST", "seed", body, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	double created = cJSON_GetObjectItem(j, "created")->valuedouble;
	*failed = cJSON_GetObjectItem(j, "failed")->valuedouble;
	if (*failed != 0)
		print_message("# %s seed: %s\n", p->flavour, r.body);
	cJSON_Delete(j);
	emu_resp_free(&r);
	return created;
}

/* stats.writes.<set>.<op> on p (0 when absent). */
static double stat_writes(const struct emu_private *p, const char *set, const char *op)
{
	struct emu_resp r;
	emu_admin(p->base, "GET", "stats", NULL, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "writes"), set), op);
	double n = cJSON_IsNumber(v) ? v->valuedouble : 0;
	cJSON_Delete(j);
	emu_resp_free(&r);
	return n;
}

/* The sorted, comma-joined values of `field` in a GET on p (a collection URL relative to its base). */
static void collect_field(const struct emu_private *p, const char *rel, const char *field, char *out, size_t len)
{
	char url[1024];
	snprintf(url, sizeof(url), "%s%s", p->base, rel);
	const char *h[] = {p->auth, "Accept: application/json", NULL};
	struct emu_resp r;
	emu_http("GET", url, h, NULL, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	char vals[64][64];
	int n = 0;
	const cJSON *row;
	cJSON_ArrayForEach(row, cJSON_GetObjectItem(j, "value"))
	{
		const cJSON *v = cJSON_GetObjectItem(row, field);
		assert_true(cJSON_IsString(v));
		assert_true(n < 64);
		snprintf(vals[n++], sizeof(vals[0]), "%s", v->valuestring);
	}
	qsort(vals, (size_t)n, sizeof(vals[0]), (int (*)(const void *, const void *))strcmp);
	size_t o = 0;
	out[0] = '\0';
	for (int i = 0; i < n && o < len; i++)
		o += (size_t)snprintf(out + o, len - o, "%s%s", i ? "," : "", vals[i]);
	cJSON_Delete(j);
	emu_resp_free(&r);
}

static void test_reset_empties_the_emulator_and_zeroes_counters(void **state)
{
	(void)state;
	emu_private_start(&pce);
	char url[512];
	snprintf(url, sizeof(url), "%s/api/data/v9.2/cdm_companies(cdm_companycode='RST')", pce.base);
	const char *h[] = {pce.auth, "Content-Type: application/json", NULL};
	struct emu_resp r;
	emu_http("PATCH", url, h, "{\"cdm_name\":\"to be reset\"}", &r);
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);
	assert_true(stat_writes(&pce, "cdm_companies", "create") == 1);
	emu_admin(pce.base, "POST", "reset", NULL, &r);
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);
	emu_admin(pce.base, "GET", "stats", NULL, &r);
	cJSON *st = emu_json(&r);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(st, "writes")), 0);
	cJSON_Delete(st);
	emu_resp_free(&r);
	emu_http("GET", url, h, NULL, &r);
	assert_int_equal(r.status, 404);
	emu_resp_free(&r);
}

static void test_seed_twice_is_idempotent_on_both_sides_and_consistent(void **state)
{
	(void)state;
	emu_private_start(&pce);
	emu_private_start(&pfo);
	const char *body = "{\"n\":2,\"seed\":7,\"side\":\"both\",\"companies\":[\"usmf\",\"demf\"]}";
	double failed = 0, created[2][2];
	const struct emu_private *ps[2] = {&pce, &pfo};
	for (int f = 0; f < 2; f++) {
		for (int i = 0; i < 2; i++) {
			created[f][i] = seed_once(ps[f], body, &failed);
			assert_true(failed == 0);
		}
		assert_true(created[f][0] > 0);
		assert_true(created[f][0] == created[f][1]);
	}
	/* The second seeding updated what the first created: 2 customers per company, created once. */
	assert_true(stat_writes(&pfo, "CustomersV3", "create") == 4);
	assert_true(stat_writes(&pfo, "CustomersV3", "update") == 4);
	assert_true(stat_writes(&pce, "accounts", "create") > 0);
	/* Both sides hold the same customers. */
	char fo_accounts[1024], ce_accounts[1024];
	collect_field(&pfo, "/data/CustomersV3?cross-company=true&$select=CustomerAccount", "CustomerAccount", fo_accounts,
		      sizeof(fo_accounts));
	collect_field(&pce,
		      "/api/data/v9.2/accounts?$select=accountnumber&$filter=customertypecode%20eq%203", "accountnumber",
		      ce_accounts, sizeof(ce_accounts));
	assert_true(strlen(fo_accounts) > 0);
	assert_string_equal(fo_accounts, ce_accounts);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_endpoint_success_and_identity_platform_errors),
		cmocka_unit_test(test_missing_and_unknown_tokens_get_401_with_challenge),
		cmocka_unit_test_teardown(test_expired_token_gets_401, restore_defaults),
		cmocka_unit_test_teardown(test_request_limit_gives_429_with_retry_after_and_code, restore_defaults),
		cmocka_unit_test_teardown(test_concurrency_limit_gives_429_with_0x80072326, restore_defaults),
		cmocka_unit_test(test_many_parallel_reads_all_served),
		cmocka_unit_test_teardown(test_outage_and_error_rate_faults, restore_defaults),
		cmocka_unit_test(test_stats_shape_and_request_count),
		cmocka_unit_test(test_body_over_the_cap_gets_413),
		cmocka_unit_test_setup_teardown(test_reset_empties_the_emulator_and_zeroes_counters, private_setup,
						private_teardown),
		cmocka_unit_test_setup_teardown(test_seed_twice_is_idempotent_on_both_sides_and_consistent, private_setup,
						private_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
