#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static int setup(void **state)
{
	(void)state;
	log_secret_clear();
	log_init("unit", LOG_INFO);
	return 0;
}

/* Parses a formatted line; fails the test unless it is one JSON object ending in a newline. */
static cJSON *parse_line(const char *line, size_t len)
{
	assert_true(len > 2);
	assert_int_equal('\n', line[len - 1]);
	assert_null(memchr(line, '\n', len - 1));
	cJSON *j = cJSON_ParseWithLength(line, len);
	assert_non_null(j);
	return j;
}

static void test_line_is_json_with_context(void **state)
{
	(void)state;
	char line[1024];
	size_t n = log_format(line, sizeof(line), LOG_WARN, "partition \"3\" lagging\n", "topic", "dw.ce.account",
			      "offset", "42", "none", NULL, NULL);
	cJSON *j = parse_line(line, n);
	assert_string_equal("warn", cJSON_GetObjectItem(j, "level")->valuestring);
	assert_string_equal("unit", cJSON_GetObjectItem(j, "program")->valuestring);
	assert_string_equal("partition \"3\" lagging\n", cJSON_GetObjectItem(j, "msg")->valuestring);
	assert_string_equal("dw.ce.account", cJSON_GetObjectItem(j, "topic")->valuestring);
	assert_string_equal("42", cJSON_GetObjectItem(j, "offset")->valuestring);
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "none")));
	const char *ts = cJSON_GetObjectItem(j, "ts")->valuestring;
	assert_int_equal(24, strlen(ts));
	assert_int_equal('Z', ts[23]);
	cJSON_Delete(j);
}

static void test_registered_secret_masked_everywhere(void **state)
{
	(void)state;
	assert_int_equal(0, log_secret_add("Tr0ub4dor&3"));
	char line[1024];
	size_t n = log_format(line, sizeof(line), LOG_ERROR, "login failed for Tr0ub4dor&3", "detail",
			      "body={\"client_secret\":\"Tr0ub4dor&3\"}", NULL);
	assert_null(strstr(line, "Tr0ub4dor&3"));
	cJSON *j = parse_line(line, n);
	assert_string_equal("login failed for ***", cJSON_GetObjectItem(j, "msg")->valuestring);
	cJSON_Delete(j);
}

static void test_secret_keys_masked_whole(void **state)
{
	(void)state;
	char line[1024];
	size_t n = log_format(line, sizeof(line), LOG_INFO, "cfg", "client_secret", "abc", "Authorization",
			      "Bearer eyJ0", "pg_dsn", "host=x", "topic", "t", NULL);
	cJSON *j = parse_line(line, n);
	assert_string_equal("***", cJSON_GetObjectItem(j, "client_secret")->valuestring);
	assert_string_equal("***", cJSON_GetObjectItem(j, "Authorization")->valuestring);
	assert_string_equal("***", cJSON_GetObjectItem(j, "pg_dsn")->valuestring);
	assert_string_equal("t", cJSON_GetObjectItem(j, "topic")->valuestring);
	cJSON_Delete(j);
}

static void test_uri_password_masked(void **state)
{
	(void)state;
	char out[256];
	log_redact("cannot connect to postgresql://dw:pa55word@db:5432/dw (timeout)", out, sizeof(out));
	assert_string_equal("cannot connect to postgresql://dw:***@db:5432/dw (timeout)", out);
	log_redact("https://host/path?x=1 and postgres://u:pw@h/", out, sizeof(out));
	assert_string_equal("https://host/path?x=1 and postgres://u:**@h/", out);
	log_redact("no userinfo: https://user@host/", out, sizeof(out));
	assert_string_equal("no userinfo: https://user@host/", out);
}

static void test_levels_filter(void **state)
{
	(void)state;
	log_init("unit", LOG_WARN);
	assert_false(log_enabled(LOG_INFO));
	assert_true(log_enabled(LOG_WARN));
	assert_true(log_enabled(LOG_ERROR));
	assert_int_equal(LOG_DEBUG, log_level_parse("DEBUG"));
	assert_int_equal(LOG_WARN, log_level_parse("warning"));
	assert_int_equal(-1, log_level_parse("loud"));
	assert_int_equal(-1, log_level_parse(NULL));
}

static void test_long_line_truncated_but_valid(void **state)
{
	(void)state;
	char *big = malloc(20000);
	assert_non_null(big);
	memset(big, 'x', 19999);
	big[19999] = '\0';
	char line[LOG_LINE_MAX];
	size_t n = log_format(line, sizeof(line), LOG_INFO, "big", "body", big, NULL);
	free(big);
	assert_true(n < sizeof(line));
	cJSON *j = parse_line(line, n);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "truncated")));
	cJSON_Delete(j);
}

static void test_control_characters_escaped(void **state)
{
	(void)state;
	char line[512];
	size_t n = log_format(line, sizeof(line), LOG_INFO, "a\x01" "b\tc\\d", NULL);
	cJSON *j = parse_line(line, n);
	assert_string_equal("a\x01" "b\tc\\d", cJSON_GetObjectItem(j, "msg")->valuestring);
	cJSON_Delete(j);
}

static void test_rotating_secrets_never_push_out_permanent_ones(void **state)
{
	(void)state;
	assert_int_equal(0, log_secret_add("client-secret-value"));
	char token[32];
	for (int i = 0; i < 100; i++) {
		snprintf(token, sizeof(token), "token-%03d-abcdef", i);
		assert_int_equal(0, log_secret_add_rotating(token));
	}
	char out[256];
	log_redact("client-secret-value token-099-abcdef token-090-abcdef", out, sizeof(out));
	assert_string_equal("*** *** ***", out);
	/* The oldest tokens were forgotten: only 16 rotating secrets are kept. */
	log_redact("token-000-abcdef", out, sizeof(out));
	assert_string_equal("token-000-abcdef", out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_line_is_json_with_context, setup),
		cmocka_unit_test_setup(test_registered_secret_masked_everywhere, setup),
		cmocka_unit_test_setup(test_secret_keys_masked_whole, setup),
		cmocka_unit_test_setup(test_uri_password_masked, setup),
		cmocka_unit_test_setup(test_levels_filter, setup),
		cmocka_unit_test_setup(test_long_line_truncated_but_valid, setup),
		cmocka_unit_test_setup(test_control_characters_escaped, setup),
		cmocka_unit_test_setup(test_rotating_secrets_never_push_out_permanent_ones, setup),
	};
	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
