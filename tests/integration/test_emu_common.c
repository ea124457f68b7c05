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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_endpoint_success_and_identity_platform_errors),
		cmocka_unit_test(test_missing_and_unknown_tokens_get_401_with_challenge),
		cmocka_unit_test(test_expired_token_gets_401),
		cmocka_unit_test(test_request_limit_gives_429_with_retry_after_and_code),
		cmocka_unit_test(test_outage_and_error_rate_faults),
		cmocka_unit_test(test_stats_shape_and_request_count),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
