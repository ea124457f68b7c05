#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonout.h"

/* Texts whose compact form jsonout_print must give back byte for byte: what cJSON_PrintUnformatted
 * gives for them too, except where a comment says otherwise. */
static const char *const SAME[] = {
	"null",
	"true",
	"false",
	"0",
	"-1",
	"2147483647",
	"2147483648",
	"1764500000123",
	"-1764500000123",
	"0.5",
	"-0.25",
	"0.1",
	"3.14159",
	"1e+300",
	"\"\"",
	"\"plain\"",
	"\"quote \\\" backslash \\\\ slash /\"",
	"\"\\b\\f\\n\\r\\t\"",
	"\"\\u0001\\u001f\"",
	"\"Grüße, 東京, 🙂\"",
	"[]",
	"{}",
	"[1,\"a\",null,true,[{}],{\"k\":[]}]",
	"{\"Name\":{\"v\":\"Contoso\",\"t\":1764500000123,\"o\":\"ce\",\"n\":12},\"Phone\":{\"v\":null,\"t\":1764500000999}}",
	"{\"a\":{\"b\":{\"c\":{\"d\":[0,1.5,-2]}}}}",
};

static void test_same_text_as_cjson(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(SAME) / sizeof(SAME[0]); i++) {
		cJSON *v = cJSON_Parse(SAME[i]);
		assert_non_null(v);
		char *ours = jsonout_print(v), *theirs = cJSON_PrintUnformatted(v);
		assert_non_null(ours);
		assert_string_equal(SAME[i], ours);
		assert_string_equal(theirs, ours);
		free(ours);
		cJSON_free(theirs);
		cJSON_Delete(v);
	}
}

/* Every double reads back as itself; integral ones within 2^53 are plain digits. */
static void test_numbers_round_trip(void **state)
{
	(void)state;
	const double ds[] = { 0.0, -0.0, 1.0, -1.0, 1e15, 1764500000123.0, 9007199254740992.0, 9007199254740993.0 * 2,
			      0.1, 1.0 / 3.0, 2.0 / 3.0, 123456.789, 5e-324, 1.7976931348623157e308, -2.5e-10,
			      4503599627370497.5 };
	for (size_t i = 0; i < sizeof(ds) / sizeof(ds[0]); i++) {
		char buf[40];
		jsonout_number(ds[i], buf, sizeof(buf));
		assert_true(strtod(buf, NULL) == ds[i]);
		if (ds[i] == trunc(ds[i]) && fabs(ds[i]) <= 9007199254740992.0)
			assert_null(strpbrk(buf, ".eE"));
	}
	char buf[40];
	jsonout_number(-0.0, buf, sizeof(buf));
	assert_string_equal("-0", buf); /* reads back with its sign (cJSON prints 0) */
	jsonout_number(0.0, buf, sizeof(buf));
	assert_string_equal("0", buf);
	jsonout_number(NAN, buf, sizeof(buf));
	assert_string_equal("null", buf);
	jsonout_number(-INFINITY, buf, sizeof(buf));
	assert_string_equal("null", buf);
	/* cJSON prints 16 digits as 9.00719925474099e+15 (its check allows a rounding): exact here */
	jsonout_number(-9007199254740992.0, buf, sizeof(buf));
	assert_string_equal("-9007199254740992", buf);
}

/* A tree built in code (numbers no text ever held, raw members) prints as valid JSON equal to it. */
static void test_built_tree_parses_back_equal(void **state)
{
	(void)state;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "third", 1.0 / 3.0);
	cJSON_AddNumberToObject(o, "big", 1e21);
	cJSON_AddStringToObject(o, "ctl", "a\x02z");
	cJSON_AddItemToObject(o, "raw", cJSON_CreateRaw("{\"x\":[1,2]}"));
	cJSON *arr = cJSON_AddArrayToObject(o, "arr");
	for (int i = 0; i < 5; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateNumber(i * 1000000007.0));
	char *text = jsonout_print(o);
	assert_non_null(text);
	cJSON *back = cJSON_Parse(text);
	assert_non_null(back);
	/* the raw member parses as the object it holds */
	cJSON_ReplaceItemInObject(o, "raw", cJSON_Parse("{\"x\":[1,2]}"));
	assert_true(cJSON_Compare(o, back, 1));
	free(text);
	cJSON_Delete(back);
	cJSON_Delete(o);
}

static void test_refuses_invalid_and_too_deep(void **state)
{
	(void)state;
	assert_null(jsonout_print(NULL));
	cJSON *inv = cJSON_CreateObject();
	cJSON *bad = cJSON_CreateNull();
	bad->type = cJSON_Invalid;
	cJSON_AddItemToObject(inv, "bad", bad);
	assert_null(jsonout_print(inv));
	cJSON_Delete(inv);
	cJSON *root = cJSON_CreateArray(), *cur = root;
	for (int i = 0; i < 70; i++) {
		cJSON *next = cJSON_CreateArray();
		cJSON_AddItemToArray(cur, next);
		cur = next;
	}
	assert_null(jsonout_print(root));
	cJSON_Delete(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_text_as_cjson),
		cmocka_unit_test(test_numbers_round_trip),
		cmocka_unit_test(test_built_tree_parses_back_equal),
		cmocka_unit_test(test_refuses_invalid_and_too_deep),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
