/* Unit tests of the name index of a JSON object's members (common/jsonidx.c): every lookup must
 * find what cJSON_GetObjectItemCaseSensitive finds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonidx.h"

static cJSON *json(const char *text)
{
	cJSON *j = cJSON_Parse(text);
	assert_non_null(j);
	return j;
}

/* The index of obj agrees with cJSON's lookup for every name of obj and for the names given. */
static void assert_agrees(const cJSON *obj, const char *const *names, size_t n)
{
	struct jsonidx idx;
	assert_int_equal(0, jsonidx_build(&idx, obj));
	for (const cJSON *c = obj ? obj->child : NULL; c; c = c->next)
		if (c->string)
			assert_ptr_equal(cJSON_GetObjectItemCaseSensitive(obj, c->string), jsonidx_get(&idx, c->string));
	for (size_t i = 0; i < n; i++)
		assert_ptr_equal(cJSON_GetObjectItemCaseSensitive(obj, names[i]), jsonidx_get(&idx, names[i]));
	jsonidx_clear(&idx);
}

static void test_finds_every_member_and_nothing_else(void **state)
{
	(void)state;
	cJSON *o = json("{\"name\":\"n\",\"city\":1,\"v\":null,\"\":true,\"t\":[1]}");
	const char *const other[] = { "Name", "nam", "names", "x", "cit", "cityy", "T", " " };
	assert_agrees(o, other, sizeof(other) / sizeof(other[0]));
	struct jsonidx idx;
	assert_int_equal(0, jsonidx_build(&idx, o));
	assert_int_equal(5, idx.n);
	assert_string_equal("n", jsonidx_get(&idx, "name")->valuestring);
	assert_true(cJSON_IsTrue(jsonidx_get(&idx, "")));
	assert_null(jsonidx_get(&idx, "Name"));
	assert_null(jsonidx_get(&idx, NULL));
	jsonidx_clear(&idx);
	cJSON_Delete(o);
}

/* Names that are prefixes of one another are told apart. */
static void test_prefix_names(void **state)
{
	(void)state;
	cJSON *o = json("{\"a\":1,\"ab\":2,\"abc\":3,\"abcd\":4,\"b\":5,\"ba\":6}");
	const char *const other[] = { "", "abcde", "aa", "bab", "c" };
	assert_agrees(o, other, sizeof(other) / sizeof(other[0]));
	struct jsonidx idx;
	assert_int_equal(0, jsonidx_build(&idx, o));
	assert_int_equal(1, jsonidx_get(&idx, "a")->valueint);
	assert_int_equal(3, jsonidx_get(&idx, "abc")->valueint);
	assert_int_equal(4, jsonidx_get(&idx, "abcd")->valueint);
	assert_null(jsonidx_get(&idx, "abcde"));
	jsonidx_clear(&idx);
	cJSON_Delete(o);
}

/* A name given twice finds its first member, as cJSON does. */
static void test_duplicates_find_the_first(void **state)
{
	(void)state;
	cJSON *o = json("{\"x\":1,\"y\":2,\"x\":3,\"y\":4,\"x\":5}");
	assert_agrees(o, NULL, 0);
	struct jsonidx idx;
	assert_int_equal(0, jsonidx_build(&idx, o));
	assert_int_equal(2, idx.n);
	assert_int_equal(1, jsonidx_get(&idx, "x")->valueint);
	assert_int_equal(2, jsonidx_get(&idx, "y")->valueint);
	assert_int_equal(0, jsonidx_add(&idx, o->child->next->next)); /* the second x: the first stays */
	assert_int_equal(1, jsonidx_get(&idx, "x")->valueint);
	jsonidx_clear(&idx);
	cJSON_Delete(o);
}

/* Empty objects, NULL, values without members and arrays find nothing. */
static void test_empty_and_not_objects(void **state)
{
	(void)state;
	const char *const names[] = { "", "a", "0" };
	const char *texts[] = { "{}", "[]", "[1,{\"a\":1}]", "\"a\"", "1", "null" };
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		cJSON *v = json(texts[i]);
		assert_agrees(v, names, 3);
		struct jsonidx idx;
		assert_int_equal(0, jsonidx_build(&idx, v));
		assert_int_equal(0, idx.n);
		assert_null(jsonidx_get(&idx, "a"));
		jsonidx_clear(&idx);
		cJSON_Delete(v);
	}
	struct jsonidx idx;
	assert_int_equal(0, jsonidx_build(&idx, NULL));
	assert_null(jsonidx_get(&idx, "a"));
	jsonidx_clear(&idx);
	jsonidx_clear(NULL);
}

/* Past a member without a name cJSON finds nothing; neither does the index. */
static void test_stops_at_a_member_without_name(void **state)
{
	(void)state;
	cJSON *o = json("{\"a\":1}");
	cJSON *b = cJSON_CreateNumber(2);
	assert_non_null(b);
	assert_true(cJSON_AddItemToObject(o, "b", b));
	cJSON *anon = cJSON_CreateNumber(3);
	assert_non_null(anon);
	assert_true(cJSON_AddItemToArray(o, anon)); /* no name */
	assert_true(cJSON_AddNumberToObject(o, "c", 4) != NULL);
	const char *const names[] = { "a", "b", "c" };
	assert_agrees(o, names, 3);
	struct jsonidx idx;
	assert_int_equal(0, jsonidx_build(&idx, o));
	assert_null(jsonidx_get(&idx, "c"));
	assert_int_equal(0, jsonidx_add(&idx, anon));
	jsonidx_clear(&idx);
	cJSON_Delete(o);
}

/* Objects larger than the inline table (allocated), with names alike but for one character. */
static void test_large_objects(void **state)
{
	(void)state;
	const size_t sizes[] = { 1, 63, 64, 65, 200, 1000 };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		cJSON *o = cJSON_CreateObject();
		assert_non_null(o);
		char name[32];
		for (size_t i = 0; i < sizes[s]; i++) {
			snprintf(name, sizeof(name), "field%zu", i);
			assert_non_null(cJSON_AddNumberToObject(o, name, (double)i));
		}
		struct jsonidx idx;
		assert_int_equal(0, jsonidx_build(&idx, o));
		assert_int_equal(sizes[s], idx.n);
		for (size_t i = 0; i < sizes[s]; i++) {
			snprintf(name, sizeof(name), "field%zu", i);
			const cJSON *v = jsonidx_get(&idx, name);
			assert_non_null(v);
			assert_int_equal(i, v->valueint);
			snprintf(name, sizeof(name), "field%zux", i);
			assert_null(jsonidx_get(&idx, name));
		}
		snprintf(name, sizeof(name), "field%zu", sizes[s]);
		assert_null(jsonidx_get(&idx, name));
		assert_null(jsonidx_get(&idx, "field"));
		jsonidx_clear(&idx);
		cJSON_Delete(o);
	}
}

/* An index filled member by member takes up to its room, refuses more, keeps the first of a name. */
static void test_add_up_to_room(void **state)
{
	(void)state;
	cJSON *o = json("{\"k\":1,\"kk\":2,\"k\":3,\"kkk\":4}");
	struct jsonidx idx;
	assert_int_equal(0, jsonidx_init(&idx, 2));
	const cJSON *k1 = o->child, *kk = k1->next, *k3 = kk->next, *kkk = k3->next;
	assert_null(jsonidx_get(&idx, "k"));
	assert_int_equal(1, jsonidx_add(&idx, k1));
	assert_int_equal(1, jsonidx_add(&idx, kk));
	assert_int_equal(0, jsonidx_add(&idx, k3));  /* a name it has: not an error when full */
	assert_int_equal(-1, jsonidx_add(&idx, kkk)); /* full */
	assert_ptr_equal(k1, jsonidx_get(&idx, "k"));
	assert_ptr_equal(kk, jsonidx_get(&idx, "kk"));
	assert_null(jsonidx_get(&idx, "kkk"));
	jsonidx_clear(&idx);
	assert_int_equal(0, jsonidx_init(&idx, 0));
	assert_int_equal(-1, jsonidx_add(&idx, k1));
	assert_null(jsonidx_get(&idx, "k"));
	jsonidx_clear(&idx);
	cJSON_Delete(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_finds_every_member_and_nothing_else),
		cmocka_unit_test(test_prefix_names),
		cmocka_unit_test(test_duplicates_find_the_first),
		cmocka_unit_test(test_empty_and_not_objects),
		cmocka_unit_test(test_stops_at_a_member_without_name),
		cmocka_unit_test(test_large_objects),
		cmocka_unit_test(test_add_up_to_room),
	};
	return cmocka_run_group_tests_name("jsonidx", tests, NULL, NULL);
}
