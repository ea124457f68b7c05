#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "jsoncheck.h"

/* Checks text from an exact-size heap copy so that reading past the end shows under ASan. */
static int check(const char *text, size_t len, size_t *off, char *why, size_t whylen)
{
	char *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	memcpy(copy, text, len);
	int rc = jsoncheck_validate(copy, len, off, why, whylen);
	free(copy);
	return rc;
}

/* Valid JSON of every shape is accepted, and cJSON parses each to the same kind of value. */
static void test_valid_documents_accepted_and_parse_with_cjson(void **state)
{
	(void)state;
	static const char *const docs[] = {
		"0", "-0", "1", "-1", "10", "0.5", "-0.5e-3", "1E+2", "1e2", "123456789012345678901234567890",
		"true", "false", "null", "\"\"", "\"a\\\"\\\\\\/\\b\\f\\n\\r\\tz\"", "\"\\u00e9\\ud83d\\ude80\"",
		"\"\xc3\xa9\xf0\x9f\x9a\x80\"", "[]", "{}", "[[]]", "{\"a\":{}}", " \t\r\n{ \"a\" : [ 1 , 2 ] } \n",
		"{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}", "[1,\"2\",[3],{\"4\":5}]", "\"\\u0001\"",
	};
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		size_t off = 0;
		char why[96] = "";
		if (check(docs[i], strlen(docs[i]), &off, why, sizeof(why)) != 0)
			fail_msg("\"%s\" rejected at %zu: %s", docs[i], off, why);
		cJSON *j = cJSON_ParseWithLength(docs[i], strlen(docs[i]));
		if (!j)
			fail_msg("cJSON cannot parse \"%s\"", docs[i]);
		cJSON_Delete(j);
	}
}

static void test_invalid_documents_rejected_at_offset(void **state)
{
	(void)state;
	static const struct {
		const char *doc;
		size_t off;
		const char *why;
	} cases[] = {
		{ "", 0, "unexpected end of input" },
		{ " ", 1, "unexpected end of input" },
		{ "01", 1, "leading zero in number" },
		{ "-01", 2, "leading zero in number" },
		{ "1.", 2, "unexpected end of input" },
		{ "1.e3", 2, "invalid number (digit expected after '.')" },
		{ "1e", 2, "unexpected end of input" },
		{ "1e+", 3, "unexpected end of input" },
		{ "1ex", 2, "invalid number (digit expected in exponent)" },
		{ "-", 1, "unexpected end of input" },
		{ "-a", 1, "invalid number" },
		{ "+1", 0, "expected a value" },
		{ ".5", 0, "expected a value" },
		{ "Infinity", 0, "expected a value" },
		{ "tru", 3, "unexpected end of input" },
		{ "trUe", 2, "expected a value" },
		{ "nulll", 4, "unexpected data after the JSON value" },
		{ "\"abc", 4, "unexpected end of input" },
		{ "\"a\nb\"", 2, "control character in string (must be escaped)" },
		{ "\"\\a\"", 1, "invalid escape in string" },
		{ "\"\\u00\"", 5, "invalid \\u escape (needs 4 hex digits)" },
		{ "\"\\u0000\"", 1, "\\u0000 is not allowed in strings" },
		{ "\"\\ud83d\"", 7, "unexpected end of input" },
		{ "\"\\ud83d\\u0041\"", 1, "unpaired high surrogate in \\u escape" },
		{ "\"\\ude80\"", 1, "unpaired low surrogate in \\u escape" },
		{ "[1,]", 3, "expected a value" },
		{ "[1 2]", 3, "expected ',' or ']'" },
		{ "[1}", 2, "expected ',' or ']'" },
		{ "{\"a\"}", 4, "expected ':'" },
		{ "{\"a\":1]", 6, "expected ',' or '}'" },
		{ "{,}", 1, "expected a member name in double quotes" },
		{ "{'a':1}", 1, "expected a member name in double quotes" },
		{ "{} {}", 3, "unexpected data after the JSON value" },
		{ "[", 1, "unexpected end of input" },
		{ "{\"a\":", 5, "unexpected end of input" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t off = 99;
		char why[96] = "";
		assert_int_equal(-1, check(cases[i].doc, strlen(cases[i].doc), &off, why, sizeof(why)));
		if (off != cases[i].off || strcmp(why, cases[i].why) != 0)
			fail_msg("\"%s\": got %zu \"%s\", expected %zu \"%s\"", cases[i].doc, off, why, cases[i].off,
				 cases[i].why);
	}
}

static void test_limits_depth_and_number_length(void **state)
{
	(void)state;
	char buf[2 * JSONCHECK_MAX_DEPTH + 4];
	size_t off = 0;
	char why[96];
	for (size_t depth = JSONCHECK_MAX_DEPTH; depth <= JSONCHECK_MAX_DEPTH + 1; depth++) {
		memset(buf, '[', depth);
		memset(buf + depth, ']', depth);
		int rc = check(buf, 2 * depth, &off, why, sizeof(why));
		if (depth == JSONCHECK_MAX_DEPTH) {
			assert_int_equal(0, rc);
			cJSON *j = cJSON_ParseWithLength(buf, 2 * depth);
			assert_non_null(j); /* within cJSON's own nesting limit */
			cJSON_Delete(j);
		} else {
			assert_int_equal(-1, rc);
			assert_int_equal(JSONCHECK_MAX_DEPTH, off);
			assert_string_equal("nested deeper than 512 levels", why);
		}
	}
	memset(buf, '9', JSONCHECK_NUMBER_MAX + 1);
	assert_int_equal(0, check(buf, JSONCHECK_NUMBER_MAX, &off, why, sizeof(why)));
	cJSON *j = cJSON_ParseWithLength(buf, JSONCHECK_NUMBER_MAX);
	assert_non_null(j);
	cJSON_Delete(j);
	assert_int_equal(-1, check(buf, JSONCHECK_NUMBER_MAX + 1, &off, why, sizeof(why)));
	assert_int_equal(0, off);
	assert_string_equal("number longer than 63 characters", why);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_documents_accepted_and_parse_with_cjson),
		cmocka_unit_test(test_invalid_documents_rejected_at_offset),
		cmocka_unit_test(test_limits_depth_and_number_length),
	};
	return cmocka_run_group_tests_name("jsoncheck", tests, NULL, NULL);
}
