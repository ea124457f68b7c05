#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "sha256.h"

#define SCHEMA_PATH "schemas/change-event.schema.json"

/* printf 'fo\nCustomersV3\nCustomerAccount=US-001,dataAreaId=usmf\n42' | sha256sum */
#define ID_FO_CUSTOMERSV3_42 "5a9d9e54617857ade832efcef79a414cd6ea8399b982c424710d321e1fca757d"

/* ---- helpers ---- */

/* A complete event with every optional member present; id not yet set. */
static cJSON *sample(void)
{
	const char *text =
		"{\"v\":1,\"id\":\"\",\"source\":{\"side\":\"fo\",\"env\":\"prod-eu\",\"entity\":\"CustomersV3\","
		"\"entity_set\":\"CustomersV3\",\"version\":42,\"ts\":1764464400000,\"user\":\"svc-integration\","
		"\"own\":true},\"op\":\"update\",\"key\":{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"US-001\"},"
		"\"data\":{\"CustomerAccount\":\"US-001\",\"Name\":\"Contoso \xc3\x9cn\xc3\xaf" "c\xc3\xb8" "d\xc3\xa9 "
		"\xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x9a\x80\",\"CreditLimit\":1500.5,\"Blocked\":false,"
		"\"Tags\":[\"a\",\"b\"],\"Parent\":null},\"changed\":[\"Name\",\"CreditLimit\"],"
		"\"txn\":{\"id\":\"T-1\",\"total\":2,\"order\":1}}";
	cJSON *j = cJSON_Parse(text);
	assert_non_null(j);
	return j;
}

/* The object at a dotted path's parent, and the last name. */
static cJSON *parent_of(cJSON *root, const char *path, char *last, size_t lastlen)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	cJSON *obj = root;
	char *p = buf;
	for (char *dot; (dot = strchr(p, '.')) != NULL; p = dot + 1) {
		*dot = '\0';
		obj = cJSON_GetObjectItemCaseSensitive(obj, p);
		assert_non_null(obj);
	}
	size_t n = strlen(p);
	assert_true(n < lastlen);
	memcpy(last, p, n + 1);
	return obj;
}

/* Sets path to the JSON value in `json` (replacing or adding). Numbers are kept as raw text so
 * they print exactly as written (cJSON's printer rounds 16-digit integers). */
static void set_json(cJSON *root, const char *path, const char *json)
{
	char last[128];
	cJSON *obj = parent_of(root, path, last, sizeof(last));
	cJSON *v = cJSON_Parse(json);
	assert_non_null(v);
	if (cJSON_IsNumber(v)) {
		cJSON_Delete(v);
		v = cJSON_CreateRaw(json);
	}
	if (cJSON_GetObjectItemCaseSensitive(obj, last))
		assert_true(cJSON_ReplaceItemInObjectCaseSensitive(obj, last, v));
	else
		assert_true(cJSON_AddItemToObject(obj, last, v));
}

static void del_path(cJSON *root, const char *path)
{
	char last[128];
	cJSON *obj = parent_of(root, path, last, sizeof(last));
	cJSON_DeleteItemFromObjectCaseSensitive(obj, last);
}

/* Sets "id" to the hash of the tree's side, entity, key and version, computed here from the
 * documented formula. */
static void fix_id(cJSON *root)
{
	char *printed = cJSON_PrintUnformatted(root); /* turns raw numbers back into numbers */
	cJSON *copy = cJSON_Parse(printed);
	free(printed);
	assert_non_null(copy);
	cJSON *src = cJSON_GetObjectItemCaseSensitive(copy, "source");
	char *key = NULL, err[256];
	assert_int_equal(0, event_key_string(cJSON_GetObjectItemCaseSensitive(copy, "key"), &key, err, sizeof(err)));
	char input[4096];
	snprintf(input, sizeof(input), "%s\n%s\n%s\n%lld", cJSON_GetObjectItemCaseSensitive(src, "side")->valuestring,
		 cJSON_GetObjectItemCaseSensitive(src, "entity")->valuestring, key,
		 (long long)cJSON_GetObjectItemCaseSensitive(src, "version")->valuedouble);
	free(key);
	cJSON_Delete(copy);
	char hex[SHA256_HEX_LEN + 1];
	sha256_hex(input, strlen(input), hex);
	set_json(root, "id", "\"\"");
	cJSON_SetValuestring(cJSON_GetObjectItemCaseSensitive(root, "id"), hex);
}

/* Decodes text[0..len) from an exact-size heap copy (no NUL after it, so ASan sees over-reads). */
static int decode_bytes(const char *text, size_t len, size_t cap, int flags, struct event *ev, char *err,
			size_t errlen)
{
	char *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	memcpy(copy, text, len);
	err[0] = '\0';
	int rc = event_decode(copy, len, cap, flags, ev, err, errlen);
	free(copy);
	return rc;
}

static int decode_tree(cJSON *root, int flags, struct event *ev, char *err, size_t errlen)
{
	char *text = cJSON_PrintUnformatted(root);
	assert_non_null(text);
	int rc = decode_bytes(text, strlen(text), 0, flags, ev, err, errlen);
	free(text);
	return rc;
}

static void assert_prefix(const char *expected, const char *err)
{
	if (strncmp(err, expected, strlen(expected)) != 0)
		fail_msg("error \"%s\" does not start with \"%s\"", err, expected);
}

/* Decoding fails with an error starting with `expected`; takes ownership of root. */
static void expect_rejected(cJSON *root, int do_fix_id, const char *expected)
{
	struct event ev;
	char err[512];
	if (do_fix_id)
		fix_id(root);
	int rc = decode_tree(root, 0, &ev, err, sizeof(err));
	cJSON_Delete(root);
	if (rc == 0) {
		event_clear(&ev);
		fail_msg("accepted; expected \"%s\"", expected);
	}
	assert_prefix(expected, err);
}

static void expect_accepted(cJSON *root)
{
	struct event ev;
	char err[512];
	fix_id(root);
	int rc = decode_tree(root, 0, &ev, err, sizeof(err));
	cJSON_Delete(root);
	if (rc != 0)
		fail_msg("rejected: %s", err);
	event_clear(&ev);
}

static void expect_text_rejected(const char *text, const char *expected)
{
	struct event ev;
	char err[512];
	if (decode_bytes(text, strlen(text), 0, 0, &ev, err, sizeof(err)) == 0) {
		event_clear(&ev);
		fail_msg("accepted \"%s\"", text);
	}
	if (strcmp(err, expected) != 0)
		fail_msg("error \"%s\", expected \"%s\"", err, expected);
}

static char *repeat(const char *unit, size_t n)
{
	size_t u = strlen(unit);
	char *s = malloc(u * n + 3);
	assert_non_null(s);
	s[0] = '"';
	for (size_t i = 0; i < n; i++)
		memcpy(s + 1 + i * u, unit, u);
	s[1 + u * n] = '"';
	s[2 + u * n] = '\0';
	return s;
}

/* Fills a struct event by hand, as a producer would. */
static void build_event(struct event *ev)
{
	char err[256];
	memset(ev, 0, sizeof(*ev));
	ev->v = 1;
	ev->source.side = EVENT_SIDE_CE;
	ev->source.env = strdup("contoso-prod");
	ev->source.entity = strdup("msdyn_customerasset");
	ev->source.entity_set = strdup("msdyn_customerassets");
	ev->source.version = EVENT_INT_MAX;
	ev->source.ts = 1764464400123;
	ev->source.user = strdup("J\xc3\xbcrgen");
	ev->source.own = 1;
	ev->op = EVENT_OP_CREATE;
	ev->key = cJSON_Parse("{\"msdyn_customerassetid\":\"6f1c8a2e-0b4d-4f8e-9a7b-1c2d3e4f5a6b\","
			      "\"RecId\":9007199254740991,\"Neg\":-9007199254740991,\"odd,=%\":\"a=b,c%d\"}");
	ev->data = cJSON_Parse("{\"msdyn_name\":\"Pump \xe2\x84\x96" "7 \xf0\x9f\x94\xa7\",\"qty\":3,"
			       "\"nested\":{\"list\":[1,2.25,\"x\",null,true]},\"esc\":\"tab\\tquote\\\"nl\\n\"}");
	ev->changed = cJSON_Parse("[\"msdyn_name\",\"qty\"]");
	ev->has_txn = 1;
	ev->txn.id = strdup("txn-0001");
	ev->txn.total = 3;
	ev->txn.order = 3;
	assert_non_null(ev->key);
	assert_non_null(ev->data);
	assert_non_null(ev->changed);
	assert_int_equal(0, event_compute_id(ev, err, sizeof(err)));
}

static void assert_events_equal(const struct event *a, const struct event *b)
{
	assert_int_equal(a->v, b->v);
	assert_string_equal(a->id, b->id);
	assert_int_equal(a->source.side, b->source.side);
	assert_string_equal(a->source.env, b->source.env);
	assert_string_equal(a->source.entity, b->source.entity);
	assert_string_equal(a->source.entity_set, b->source.entity_set);
	assert_true(a->source.version == b->source.version);
	assert_true(a->source.ts == b->source.ts);
	if (a->source.user || b->source.user)
		assert_string_equal(a->source.user, b->source.user);
	assert_int_equal(a->source.own, b->source.own);
	assert_int_equal(a->op, b->op);
	assert_true(cJSON_Compare(a->key, b->key, 1));
	if (a->data || b->data)
		assert_true(cJSON_Compare(a->data, b->data, 1));
	if (a->changed || b->changed)
		assert_true(cJSON_Compare(a->changed, b->changed, 1));
	assert_int_equal(a->has_txn, b->has_txn);
	if (a->has_txn) {
		assert_string_equal(a->txn.id, b->txn.id);
		assert_int_equal(a->txn.total, b->txn.total);
		assert_int_equal(a->txn.order, b->txn.order);
	}
}

/* ---- round trip ---- */

static void test_round_trip_every_member(void **state)
{
	(void)state;
	struct event in, out;
	char *text = NULL, *text2 = NULL, err[512];
	size_t len = 0, len2 = 0;
	build_event(&in);
	assert_int_equal(0, event_encode(&in, &text, &len, err, sizeof(err)));
	assert_int_equal(strlen(text), len);
	/* Large integers are written exactly (cJSON's printer would round 2^53-1 to 15 digits). */
	assert_non_null(strstr(text, "\"version\":9007199254740991"));
	assert_non_null(strstr(text, "\"RecId\":9007199254740991"));
	assert_non_null(strstr(text, "\"Neg\":-9007199254740991"));
	assert_int_equal(0, decode_bytes(text, len, 0, 0, &out, err, sizeof(err)));
	assert_events_equal(&in, &out);
	/* Encoding the decoded event gives the same bytes. */
	assert_int_equal(0, event_encode(&out, &text2, &len2, err, sizeof(err)));
	assert_int_equal(len, len2);
	assert_memory_equal(text, text2, len);
	free(text);
	free(text2);
	event_clear(&in);
	event_clear(&out);
}

/* cJSON_Compare tolerates a difference of a few units in the last place; this does not. */
static void assert_numbers_identical(const cJSON *a, const cJSON *b)
{
	assert_int_equal(a->type & 0xff, b->type & 0xff);
	if (cJSON_IsNumber(a))
		assert_memory_equal(&a->valuedouble, &b->valuedouble, sizeof(double));
	const cJSON *x = a->child, *y = b->child;
	for (; x && y; x = x->next, y = y->next)
		assert_numbers_identical(x, y);
	assert_true(x == NULL && y == NULL);
}

static void test_round_trip_numbers_bit_exact(void **state)
{
	(void)state;
	struct event in, out;
	char *text = NULL, err[512];
	size_t len = 0;
	build_event(&in);
	cJSON_Delete(in.data);
	in.data = cJSON_Parse("{\"n\":[9007199254740991,-9007199254740991,9007199254740993,0.1,0.3,1e300,-1e-300,"
			      "123456.789,5e-324,1.7976931348623157e308,12345678901234567890,2.5,-0.0,0,"
			      "1234567890123.4567,0.000001,100000000000000000000]}");
	assert_non_null(in.data);
	assert_int_equal(0, event_encode(&in, &text, &len, err, sizeof(err)));
	assert_non_null(strstr(text, "[9007199254740991,-9007199254740991,"));
	assert_int_equal(0, decode_bytes(text, len, 0, 0, &out, err, sizeof(err)));
	assert_numbers_identical(in.data, out.data);
	assert_true(signbit(cJSON_GetArrayItem(cJSON_GetObjectItem(out.data, "n"), 12)->valuedouble));
	free(text);
	event_clear(&in);
	event_clear(&out);
}

static void test_round_trip_minimal_delete(void **state)
{
	(void)state;
	struct event in, out;
	char *text = NULL, err[512];
	size_t len = 0;
	memset(&in, 0, sizeof(in));
	in.v = 1;
	in.source.side = EVENT_SIDE_FO;
	in.source.env = strdup("usmf-test");
	in.source.entity = strdup("CustomersV3");
	in.source.entity_set = strdup("CustomersV3");
	in.source.version = 0;
	in.source.ts = 0;
	in.op = EVENT_OP_DELETE;
	in.key = cJSON_Parse("{\"CustomerAccount\":\"US-001\",\"dataAreaId\":\"usmf\"}");
	assert_int_equal(0, event_compute_id(&in, err, sizeof(err)));
	assert_int_equal(0, event_encode(&in, &text, &len, err, sizeof(err)));
	/* Absent optional members stay absent; data is an explicit null. */
	assert_null(strstr(text, "\"own\""));
	assert_null(strstr(text, "\"user\""));
	assert_null(strstr(text, "\"txn\""));
	assert_null(strstr(text, "\"changed\""));
	assert_non_null(strstr(text, "\"data\":null"));
	assert_int_equal(0, decode_bytes(text, len, 0, 0, &out, err, sizeof(err)));
	assert_null(out.data);
	assert_null(out.changed);
	assert_null(out.source.user);
	assert_int_equal(0, out.source.own);
	assert_int_equal(0, out.has_txn);
	assert_events_equal(&in, &out);
	free(text);
	event_clear(&in);
	event_clear(&out);
}

static void test_round_trip_each_op(void **state)
{
	(void)state;
	for (int op = EVENT_OP_CREATE; op <= EVENT_OP_SNAPSHOT; op++) {
		struct event in, out;
		char *text = NULL, err[512];
		size_t len = 0;
		build_event(&in);
		in.op = (enum event_op)op;
		if (op == EVENT_OP_DELETE) {
			cJSON_Delete(in.data);
			in.data = NULL;
		}
		assert_int_equal(0, event_encode(&in, &text, &len, err, sizeof(err)));
		assert_int_equal(0, decode_bytes(text, len, 0, 0, &out, err, sizeof(err)));
		assert_int_equal(op, out.op);
		assert_non_null(strstr(text, event_op_name(in.op)));
		assert_events_equal(&in, &out);
		free(text);
		event_clear(&in);
		event_clear(&out);
	}
}

static void test_sample_decodes_with_every_field(void **state)
{
	(void)state;
	cJSON *root = sample();
	struct event ev;
	char err[512];
	fix_id(root);
	assert_int_equal(0, decode_tree(root, 0, &ev, err, sizeof(err)));
	assert_int_equal(EVENT_SIDE_FO, ev.source.side);
	assert_string_equal("prod-eu", ev.source.env);
	assert_true(ev.source.version == 42);
	assert_true(ev.source.ts == 1764464400000LL);
	assert_string_equal("svc-integration", ev.source.user);
	assert_int_equal(1, ev.source.own);
	assert_int_equal(EVENT_OP_UPDATE, ev.op);
	assert_string_equal("Contoso \xc3\x9cn\xc3\xaf" "c\xc3\xb8" "d\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x9a\x80",
			    cJSON_GetObjectItem(ev.data, "Name")->valuestring);
	assert_int_equal(2, cJSON_GetArraySize(ev.changed));
	assert_int_equal(1, ev.has_txn);
	assert_string_equal("T-1", ev.txn.id);
	assert_int_equal(2, ev.txn.total);
	assert_int_equal(1, ev.txn.order);
	assert_string_equal(cJSON_GetObjectItem(root, "id")->valuestring, ev.id);
	event_clear(&ev);
	cJSON_Delete(root);
}

/* JSON Schema's "integer" is any number with a zero fraction; the decoder agrees. */
static void test_integral_numbers_with_fraction_or_exponent_accepted(void **state)
{
	(void)state;
	cJSON *root = sample();
	set_json(root, "source.ts", "1.7644644e12");
	set_json(root, "txn.total", "2.0");
	struct event ev;
	char err[512];
	fix_id(root);
	assert_int_equal(0, decode_tree(root, 0, &ev, err, sizeof(err)));
	assert_true(ev.source.ts == 1764464400000LL);
	assert_int_equal(2, ev.txn.total);
	event_clear(&ev);
	cJSON_Delete(root);
}

/* ---- canonical key and id ---- */

static void test_canonical_key_sorted_by_name_bytes(void **state)
{
	(void)state;
	char *s = NULL, err[256];
	cJSON *key = cJSON_Parse("{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"US-001\"}");
	assert_int_equal(0, event_key_string(key, &s, err, sizeof(err)));
	assert_string_equal("CustomerAccount=US-001,dataAreaId=usmf", s);
	free(s);
	cJSON_Delete(key);

	/* Byte order: upper case before lower case, multi-byte UTF-8 after ASCII. */
	key = cJSON_Parse("{\"\xc3\xa9t\xc3\xa9\":\"x\",\"b\":\"2\",\"B\":\"1\",\"a\":\"0\",\"_\":\"u\"}");
	assert_int_equal(0, event_key_string(key, &s, err, sizeof(err)));
	assert_string_equal("B=1,_=u,a=0,b=2,\xc3\xa9t\xc3\xa9=x", s);
	free(s);
	cJSON_Delete(key);
}

static void test_canonical_key_escapes_and_integers(void **state)
{
	(void)state;
	char *s = NULL, err[256];
	cJSON *key = cJSON_Parse("{\"n\":42,\"a=b\":\"x,y%z\",\"B\":-7,\"e\":\"\",\"big\":9007199254740991}");
	assert_int_equal(0, event_key_string(key, &s, err, sizeof(err)));
	assert_string_equal("B=-7,a%3Db=x%2Cy%25z,big=9007199254740991,e=,n=42", s);
	free(s);
	cJSON_Delete(key);

	/* Escaping keeps distinct keys distinct: {"a":"b,c=d"} vs {"a":"b","c":"d"}. */
	char *s1 = NULL, *s2 = NULL;
	cJSON *k1 = cJSON_Parse("{\"a\":\"b,c=d\"}"), *k2 = cJSON_Parse("{\"a\":\"b\",\"c\":\"d\"}");
	assert_int_equal(0, event_key_string(k1, &s1, err, sizeof(err)));
	assert_int_equal(0, event_key_string(k2, &s2, err, sizeof(err)));
	assert_string_equal("a=b%2Cc%3Dd", s1);
	assert_string_equal("a=b,c=d", s2);
	free(s1);
	free(s2);
	cJSON_Delete(k1);
	cJSON_Delete(k2);
}

static void test_canonical_key_rejects_bad_keys(void **state)
{
	(void)state;
	static const struct {
		const char *key, *err;
	} cases[] = {
		{ "{}", "key: must have at least one field" },
		{ "[]", "key: must be an object, got an array" },
		{ "{\"a\":true}", "key.a: must be a string or an integer, got true" },
		{ "{\"a\":null}", "key.a: must be a string or an integer, got null" },
		{ "{\"a\":{}}", "key.a: must be a string or an integer, got an object" },
		{ "{\"a\":1.5}", "key.a: must be an integer from -9007199254740991 to 9007199254740991, got 1.5" },
		{ "{\"a\":9007199254740992}",
		  "key.a: must be an integer from -9007199254740991 to 9007199254740991, got 9007199254740992" },
		{ "{\"a\":1,\"a\":2}", "key.a: duplicate field" },
		{ "{\"\":\"x\"}", "key.\"\": field name must be 1 to 128 characters long, got 0" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = NULL, err[256] = "";
		cJSON *key = cJSON_Parse(cases[i].key);
		assert_non_null(key);
		assert_int_equal(-1, event_key_string(key, &s, err, sizeof(err)));
		assert_null(s);
		assert_string_equal(cases[i].err, err);
		cJSON_Delete(key);
	}
	assert_int_equal(-1, event_key_string(NULL, &(char *){ NULL }, (char[64]){ 0 }, 64));
}

/* The id is sha256 over exactly: side \n entity \n canonical key \n version. The expected value
 * below was computed independently with
 *   printf 'fo\nCustomersV3\nCustomerAccount=US-001,dataAreaId=usmf\n42' | sha256sum */
static void test_id_is_sha256_of_documented_input(void **state)
{
	(void)state;
	struct event ev;
	char err[256];
	memset(&ev, 0, sizeof(ev));
	ev.source.side = EVENT_SIDE_FO;
	ev.source.entity = strdup("CustomersV3");
	ev.source.version = 42;
	ev.key = cJSON_Parse("{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"US-001\"}");
	assert_int_equal(0, event_compute_id(&ev, err, sizeof(err)));
	assert_string_equal(ID_FO_CUSTOMERSV3_42, ev.id);
	event_clear(&ev);
}

static void test_id_deterministic_and_sensitive_to_each_input(void **state)
{
	(void)state;
	struct event a, b;
	char err[256];
	build_event(&a);
	build_event(&b);
	assert_string_equal(a.id, b.id);

	/* Fields outside the id's inputs do not change it. */
	b.source.ts += 1000;
	free(b.source.env);
	b.source.env = strdup("other-env");
	cJSON_ReplaceItemInObject(b.data, "qty", cJSON_CreateNumber(4));
	b.op = EVENT_OP_UPDATE;
	assert_int_equal(0, event_compute_id(&b, err, sizeof(err)));
	assert_string_equal(a.id, b.id);

	/* Key fields in another order: same canonical key, same id. */
	const cJSON *fields[EVENT_KEY_FIELDS_MAX];
	int nfields = 0;
	for (const cJSON *f = a.key->child; f; f = f->next)
		fields[nfields++] = f;
	cJSON *rev = cJSON_CreateObject();
	for (int i = nfields - 1; i >= 0; i--)
		cJSON_AddItemToObject(rev, fields[i]->string, cJSON_Duplicate(fields[i], 1));
	cJSON_Delete(b.key);
	b.key = rev;
	assert_int_equal(0, event_compute_id(&b, err, sizeof(err)));
	assert_string_equal(a.id, b.id);

	char base[SHA256_HEX_LEN + 1];
	memcpy(base, a.id, sizeof(base));
	b.source.side = EVENT_SIDE_FO;
	assert_int_equal(0, event_compute_id(&b, err, sizeof(err)));
	assert_string_not_equal(base, b.id);
	b.source.side = EVENT_SIDE_CE;

	free(b.source.entity);
	b.source.entity = strdup("msdyn_customerasset2");
	assert_int_equal(0, event_compute_id(&b, err, sizeof(err)));
	assert_string_not_equal(base, b.id);
	free(b.source.entity);
	b.source.entity = strdup("msdyn_customerasset");

	b.source.version -= 1;
	assert_int_equal(0, event_compute_id(&b, err, sizeof(err)));
	assert_string_not_equal(base, b.id);
	b.source.version += 1;

	cJSON_ReplaceItemInObject(b.key, "RecId", cJSON_CreateNumber(9007199254740990.0));
	assert_int_equal(0, event_compute_id(&b, err, sizeof(err)));
	assert_string_not_equal(base, b.id);
	cJSON_ReplaceItemInObject(b.key, "RecId", cJSON_CreateNumber(9007199254740991.0));

	assert_int_equal(0, event_compute_id(&b, err, sizeof(err)));
	assert_string_equal(base, b.id);

	/* Invalid inputs: no id, the field named. */
	b.source.version = -1;
	assert_int_equal(-1, event_compute_id(&b, err, sizeof(err)));
	assert_prefix("source.version: ", err);
	event_clear(&a);
	event_clear(&b);
}

/* ---- rejections ---- */

static void test_truncated_at_every_cut_point(void **state)
{
	(void)state;
	cJSON *root = sample();
	fix_id(root);
	char *text = cJSON_PrintUnformatted(root);
	size_t len = strlen(text);
	struct event ev;
	char err[512];
	assert_int_equal(0, decode_bytes(text, len, 0, 0, &ev, err, sizeof(err)));
	event_clear(&ev);
	assert_int_equal(-1, decode_bytes(text, 0, 0, 0, &ev, err, sizeof(err)));
	assert_string_equal("payload: is empty", err);
	for (size_t cut = 1; cut < len; cut++) {
		assert_int_equal(-1, decode_bytes(text, cut, 0, 0, &ev, err, sizeof(err)));
		/* A cut inside a multi-byte character is an encoding error at its lead byte; any other
		 * cut is JSON that ends too early, reported at the cut. */
		size_t lead = cut;
		while (lead > 0 && ((unsigned char)text[lead] & 0xc0) == 0x80)
			lead--;
		char expected[160];
		if (lead < cut && ((unsigned char)text[lead] & 0xc0) == 0xc0 && ((unsigned char)text[cut] & 0xc0) == 0x80)
			snprintf(expected, sizeof(expected), "payload: invalid UTF-8 at byte %zu", lead);
		else
			snprintf(expected, sizeof(expected),
				 "payload: not valid JSON at byte %zu of %zu: unexpected end of input", cut, cut);
		if (strcmp(expected, err) != 0)
			fail_msg("cut %zu: got \"%s\", expected \"%s\"", cut, err, expected);
		assert_int_equal(0, ev.v); /* *out left zeroed */
		assert_null(ev.key);
	}
	free(text);
	cJSON_Delete(root);
}

static void test_trailing_garbage_rejected_whitespace_allowed(void **state)
{
	(void)state;
	cJSON *root = sample();
	fix_id(root);
	char *text = cJSON_PrintUnformatted(root);
	size_t len = strlen(text);
	char *buf = malloc(len + 16);
	struct event ev;
	char err[512], expected[160];
	memcpy(buf, text, len);

	memcpy(buf + len, " \r\n\t", 4);
	assert_int_equal(0, decode_bytes(buf, len + 4, 0, 0, &ev, err, sizeof(err)));
	event_clear(&ev);

	static const char *const tails[] = { "x", " {}", ",", "}", "\"\"", " 1" };
	for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
		size_t n = strlen(tails[i]);
		memcpy(buf + len, tails[i], n);
		assert_int_equal(-1, decode_bytes(buf, len + n, 0, 0, &ev, err, sizeof(err)));
		size_t at = len + (tails[i][0] == ' ');
		snprintf(expected, sizeof(expected), "payload: not valid JSON at byte %zu of %zu: unexpected data after the JSON value", at, len + n);
		assert_string_equal(expected, err);
	}
	free(buf);
	free(text);
	cJSON_Delete(root);
}

static void test_top_level_not_an_object(void **state)
{
	(void)state;
	expect_text_rejected("[]", "payload: must be a JSON object, got an array");
	expect_text_rejected("\"event\"", "payload: must be a JSON object, got \"event\"");
	expect_text_rejected("1", "payload: must be a JSON object, got 1");
	expect_text_rejected("null", "payload: must be a JSON object, got null");
	expect_text_rejected("true", "payload: must be a JSON object, got true");
	expect_text_rejected("  ", "payload: not valid JSON at byte 2 of 2: unexpected end of input");
}

static void test_every_required_member_missing(void **state)
{
	(void)state;
	static const char *const required[] = { "v", "id", "source", "op", "key", "data", "source.side",
						"source.env", "source.entity", "source.entity_set",
						"source.version", "source.ts", "txn.id", "txn.total", "txn.order" };
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		cJSON *root = sample();
		fix_id(root);
		del_path(root, required[i]);
		char expected[128];
		snprintf(expected, sizeof(expected), "%s: required member is missing", required[i]);
		expect_rejected(root, 0, expected);
	}
}

static void test_optional_members_may_be_absent(void **state)
{
	(void)state;
	static const char *const optional[] = { "changed", "txn", "source.user", "source.own" };
	for (size_t i = 0; i < sizeof(optional) / sizeof(optional[0]); i++) {
		cJSON *root = sample();
		del_path(root, optional[i]);
		expect_accepted(root);
	}
}

static void test_wrong_type_for_every_field(void **state)
{
	(void)state;
	static const struct {
		const char *path, *value, *err;
	} cases[] = {
		{ "v", "\"1\"", "v: must be an integer from 0 to 9007199254740991, got \"1\"" },
		{ "v", "true", "v: must be an integer from 0 to 9007199254740991, got true" },
		{ "id", "42", "id: must be 64 lowercase hex digits, got 42" },
		{ "source", "[]", "source: must be an object, got an array" },
		{ "source", "null", "source: must be an object, got null" },
		{ "source.side", "1", "source.side: must be one of \"ce\", \"fo\", got 1" },
		{ "source.env", "5", "source.env: must be a string, got 5" },
		{ "source.entity", "null", "source.entity: must be a string, got null" },
		{ "source.entity_set", "true", "source.entity_set: must be a string, got true" },
		{ "source.version", "\"12\"", "source.version: must be an integer from 0 to 9007199254740991, got \"12\"" },
		{ "source.ts", "{}", "source.ts: must be an integer from 0 to 9007199254740991, got an object" },
		{ "source.user", "5", "source.user: must be a string, got 5" },
		{ "source.user", "null", "source.user: must be a string, got null" },
		{ "source.own", "\"true\"", "source.own: must be true or false, got \"true\"" },
		{ "source.own", "1", "source.own: must be true or false, got 1" },
		{ "op", "1", "op: must be one of \"create\", \"update\", \"delete\", \"snapshot\", got 1" },
		{ "key", "[]", "key: must be an object, got an array" },
		{ "key", "\"US-001\"", "key: must be an object, got \"US-001\"" },
		{ "key.dataAreaId", "false", "key.dataAreaId: must be a string or an integer, got false" },
		{ "key.dataAreaId", "[\"usmf\"]", "key.dataAreaId: must be a string or an integer, got an array" },
		{ "data", "[]", "data: must be an object or null, got an array" },
		{ "data", "\"x\"", "data: must be an object or null, got \"x\"" },
		{ "changed", "{}", "changed: must be an array of field names, got an object" },
		{ "changed", "\"Name\"", "changed: must be an array of field names, got \"Name\"" },
		{ "changed", "[\"Name\",5]", "changed[1]: must be a string, got 5" },
		{ "txn", "1", "txn: must be an object, got 1" },
		{ "txn.id", "1", "txn.id: must be a string, got 1" },
		{ "txn.total", "\"2\"", "txn.total: must be an integer from 1 to 10000, got \"2\"" },
		{ "txn.order", "null", "txn.order: must be an integer from 1 to 10000, got null" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *root = sample();
		fix_id(root);
		set_json(root, cases[i].path, cases[i].value);
		struct event ev;
		char err[512];
		int rc = decode_tree(root, 0, &ev, err, sizeof(err));
		cJSON_Delete(root);
		if (rc == 0) {
			event_clear(&ev);
			fail_msg("%s=%s accepted", cases[i].path, cases[i].value);
		}
		if (strcmp(cases[i].err, err) != 0)
			fail_msg("%s=%s: got \"%s\", expected \"%s\"", cases[i].path, cases[i].value, err, cases[i].err);
	}
}

static void test_out_of_range_and_fractional_integers(void **state)
{
	(void)state;
	static const struct {
		const char *path, *value, *err;
	} cases[] = {
		{ "source.version", "-1", "source.version: must be an integer from 0 to 9007199254740991, got -1" },
		{ "source.version", "9007199254740992",
		  "source.version: must be an integer from 0 to 9007199254740991, got 9007199254740992" },
		{ "source.version", "1e300", "source.version: must be an integer from 0 to 9007199254740991, got 1e+300" },
		{ "source.version", "1.5", "source.version: must be an integer from 0 to 9007199254740991, got 1.5" },
		{ "source.version", "-0.5", "source.version: must be an integer from 0 to 9007199254740991, got -0.5" },
		{ "source.ts", "-1764464400000", "source.ts: must be an integer from 0 to 9007199254740991, got -1764464400000" },
		{ "source.ts", "0.001", "source.ts: must be an integer from 0 to 9007199254740991, got 0.001" },
		{ "v", "2", "v: unsupported envelope version 2 (this build reads 1)" },
		{ "v", "0", "v: unsupported envelope version 0 (this build reads 1)" },
		{ "v", "1.5", "v: must be an integer from 0 to 9007199254740991, got 1.5" },
		{ "txn.total", "0", "txn.total: must be an integer from 1 to 10000, got 0" },
		{ "txn.total", "10001", "txn.total: must be an integer from 1 to 10000, got 10001" },
		{ "txn.order", "0", "txn.order: must be an integer from 1 to 10000, got 0" },
		{ "txn.order", "1.25", "txn.order: must be an integer from 1 to 10000, got 1.25" },
		{ "txn.order", "3", "txn.order: must be an integer from 1 to txn.total (2), got 3" },
		{ "key.dataAreaId", "-9007199254740992",
		  "key.dataAreaId: must be an integer from -9007199254740991 to 9007199254740991, got -9007199254740992" },
		{ "key.dataAreaId", "2.5",
		  "key.dataAreaId: must be an integer from -9007199254740991 to 9007199254740991, got 2.5" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *root = sample();
		fix_id(root);
		set_json(root, cases[i].path, cases[i].value);
		struct event ev;
		char err[512];
		int rc = decode_tree(root, 0, &ev, err, sizeof(err));
		cJSON_Delete(root);
		if (rc == 0) {
			event_clear(&ev);
			fail_msg("%s=%s accepted", cases[i].path, cases[i].value);
		}
		if (strcmp(cases[i].err, err) != 0)
			fail_msg("%s=%s: got \"%s\", expected \"%s\"", cases[i].path, cases[i].value, err, cases[i].err);
	}
	/* The largest allowed values are accepted. */
	cJSON *root = sample();
	set_json(root, "source.version", "9007199254740991");
	set_json(root, "source.ts", "9007199254740991");
	set_json(root, "txn.total", "10000");
	set_json(root, "txn.order", "10000");
	set_json(root, "key.dataAreaId", "-9007199254740991");
	expect_accepted(root);
}

static void test_bad_enum_values(void **state)
{
	(void)state;
	static const struct {
		const char *path, *value, *err;
	} cases[] = {
		{ "source.side", "\"CE\"", "source.side: must be one of \"ce\", \"fo\", got \"CE\"" },
		{ "source.side", "\"crm\"", "source.side: must be one of \"ce\", \"fo\", got \"crm\"" },
		{ "source.side", "\"\"", "source.side: must be one of \"ce\", \"fo\", got \"\"" },
		{ "op", "\"upsert\"", "op: must be one of \"create\", \"update\", \"delete\", \"snapshot\", got \"upsert\"" },
		{ "op", "\"Update\"", "op: must be one of \"create\", \"update\", \"delete\", \"snapshot\", got \"Update\"" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *root = sample();
		fix_id(root);
		set_json(root, cases[i].path, cases[i].value);
		struct event ev;
		char err[512];
		assert_int_equal(-1, decode_tree(root, 0, &ev, err, sizeof(err)));
		cJSON_Delete(root);
		assert_string_equal(cases[i].err, err);
	}
	/* Long or odd values are quoted, escaped and shortened in the message. */
	char *long_side = repeat("\xe6\x9d\xb1\\\"\\n", 500);
	cJSON *root = sample();
	fix_id(root);
	set_json(root, "source.side", long_side);
	struct event ev;
	char err[512];
	assert_int_equal(-1, decode_tree(root, 0, &ev, err, sizeof(err)));
	cJSON_Delete(root);
	free(long_side);
	assert_prefix("source.side: must be one of \"ce\", \"fo\", got \"\xe6\x9d\xb1\\\"\\u000a\xe6\x9d\xb1", err);
	assert_true(strlen(err) < 200);
	assert_string_equal("...\"", err + strlen(err) - 4);

	assert_int_equal(-1, event_op_parse("UPDATE"));
	assert_int_equal(-1, event_op_parse(NULL));
	assert_int_equal(EVENT_OP_SNAPSHOT, event_op_parse("snapshot"));
	assert_int_equal(EVENT_SIDE_FO, event_side_parse("fo"));
	assert_int_equal(-1, event_side_parse("f"));
	assert_null(event_op_name((enum event_op)0));
	assert_null(event_side_name((enum event_side)3));
}

static void test_unknown_members_rejected(void **state)
{
	(void)state;
	static const struct {
		const char *path, *err;
	} cases[] = {
		{ "extra", "extra: unknown member" },
		{ "ID", "ID: unknown member" },
		{ "source.foo", "source.foo: unknown member" },
		{ "source.Version", "source.Version: unknown member" },
		{ "txn.parts", "txn.parts: unknown member" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *root = sample();
		set_json(root, cases[i].path, "1");
		expect_rejected(root, 1, cases[i].err);
	}
	/* Names that are not plain identifiers are quoted and escaped in the message. */
	cJSON *root = sample();
	cJSON_AddNumberToObject(root, "a b\n\"", 1);
	expect_rejected(root, 1, "\"a b\\u000a\\\"\": unknown member");
}

static void test_duplicate_members_rejected(void **state)
{
	(void)state;
	cJSON *root = sample();
	fix_id(root);
	char *text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	/* Insert a second "op" at the top level, a second "ts" in source, a second key field. */
	static const struct {
		const char *after, *insert, *err;
	} cases[] = {
		{ "{", "\"op\":\"delete\",", "op: duplicate member" },
		{ "\"source\":{", "\"ts\":1,", "source.ts: duplicate member" },
		{ "\"txn\":{", "\"order\":2,", "txn.order: duplicate member" },
		{ "\"key\":{", "\"dataAreaId\":\"other\",", "key.dataAreaId: duplicate field" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *at = strstr(text, cases[i].after);
		assert_non_null(at);
		size_t head = (size_t)(at - text) + strlen(cases[i].after);
		char buf[2048];
		snprintf(buf, sizeof(buf), "%.*s%s%s", (int)head, text, cases[i].insert, text + head);
		struct event ev;
		char err[512];
		assert_int_equal(-1, decode_bytes(buf, strlen(buf), 0, 0, &ev, err, sizeof(err)));
		assert_string_equal(cases[i].err, err);
	}
	free(text);
}

static void test_key_field_count_limits(void **state)
{
	(void)state;
	cJSON *root = sample();
	fix_id(root);
	set_json(root, "key", "{}");
	expect_rejected(root, 0, "key: must have at least one field");

	char name[16];
	root = sample();
	set_json(root, "key", "{}");
	for (int i = 0; i < EVENT_KEY_FIELDS_MAX; i++) {
		snprintf(name, sizeof(name), "f%02d", i);
		cJSON_AddStringToObject(cJSON_GetObjectItem(root, "key"), name, "x");
	}
	expect_accepted(root);

	root = sample();
	fix_id(root);
	set_json(root, "key", "{}");
	for (int i = 0; i <= EVENT_KEY_FIELDS_MAX; i++) {
		snprintf(name, sizeof(name), "f%02d", i);
		cJSON_AddNumberToObject(cJSON_GetObjectItem(root, "key"), name, i);
	}
	expect_rejected(root, 0, "key: must have at most 16 fields");
}

static void test_string_length_limits(void **state)
{
	(void)state;
	static const struct {
		const char *path;
		size_t min, max;
	} cases[] = {
		{ "source.env", 1, EVENT_ENV_MAX },         { "source.entity", 1, EVENT_ENTITY_MAX },
		{ "source.entity_set", 1, EVENT_ENTITY_MAX }, { "source.user", 0, EVENT_USER_MAX },
		{ "txn.id", 1, EVENT_TXN_ID_MAX },          { "key.dataAreaId", 0, EVENT_KEY_VALUE_MAX },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* Limits count characters: the two-byte "\xc3\xa9" counts once. */
		char *ok = repeat("\xc3\xa9", cases[i].max);
		char *too_long = repeat("e", cases[i].max + 1);
		cJSON *root = sample();
		set_json(root, cases[i].path, ok);
		expect_accepted(root);
		root = sample();
		fix_id(root);
		set_json(root, cases[i].path, too_long);
		char expected[160];
		snprintf(expected, sizeof(expected), "%s: must be ", cases[i].path);
		expect_rejected(root, 0, expected);
		if (cases[i].min == 1) {
			root = sample();
			fix_id(root);
			set_json(root, cases[i].path, "\"\"");
			snprintf(expected, sizeof(expected), "%s: must be 1 to %zu characters long, got 0", cases[i].path,
				 cases[i].max);
			expect_rejected(root, 0, expected);
		} else {
			root = sample();
			set_json(root, cases[i].path, "\"\"");
			expect_accepted(root);
		}
		free(ok);
		free(too_long);
	}

	/* Key field names 1..128, changed entries 1..128. */
	cJSON *root = sample();
	char *n128 = repeat("n", EVENT_KEY_NAME_MAX);
	n128[strlen(n128) - 1] = '\0';
	cJSON_AddStringToObject(cJSON_GetObjectItem(root, "key"), n128 + 1, "v");
	expect_accepted(root);
	root = sample();
	fix_id(root);
	char *n129 = repeat("n", EVENT_KEY_NAME_MAX + 1);
	n129[strlen(n129) - 1] = '\0';
	cJSON_AddStringToObject(cJSON_GetObjectItem(root, "key"), n129 + 1, "v");
	expect_rejected(root, 0, "key.\"nnnnn");
	free(n128);
	free(n129);

	root = sample();
	cJSON_AddItemToArray(cJSON_GetObjectItem(root, "changed"), cJSON_CreateString(""));
	expect_rejected(root, 1, "changed[2]: must be 1 to 128 characters long, got 0");
}

static void test_changed_entry_count_limit(void **state)
{
	(void)state;
	cJSON *root = sample();
	cJSON *changed = cJSON_GetObjectItem(root, "changed");
	while (cJSON_GetArraySize(changed) < EVENT_CHANGED_MAX)
		cJSON_AddItemToArray(changed, cJSON_CreateString("f"));
	expect_accepted(cJSON_Duplicate(root, 1));
	cJSON_AddItemToArray(changed, cJSON_CreateString("f"));
	expect_rejected(root, 1, "changed: must have at most 1024 entries");

	root = sample();
	set_json(root, "changed", "[]");
	expect_accepted(root);
}

static void test_data_null_exactly_when_delete(void **state)
{
	(void)state;
	cJSON *root = sample();
	set_json(root, "op", "\"delete\"");
	expect_rejected(root, 1, "data: must be null when op is delete");

	root = sample();
	set_json(root, "op", "\"delete\"");
	set_json(root, "data", "null");
	expect_accepted(root);

	static const char *const ops[] = { "create", "update", "snapshot" };
	for (size_t i = 0; i < 3; i++) {
		char op[32], expected[80];
		snprintf(op, sizeof(op), "\"%s\"", ops[i]);
		snprintf(expected, sizeof(expected), "data: must be an object when op is %s", ops[i]);
		root = sample();
		set_json(root, "op", op);
		set_json(root, "data", "null");
		expect_rejected(root, 1, expected);
		root = sample();
		set_json(root, "op", op);
		set_json(root, "data", "{}");
		expect_accepted(root);
	}
}

static void test_id_mismatch_and_skip_flag(void **state)
{
	(void)state;
	cJSON *root = sample();
	fix_id(root);
	char good[SHA256_HEX_LEN + 1];
	snprintf(good, sizeof(good), "%s", cJSON_GetObjectItem(root, "id")->valuestring);
	char expected[256];
	snprintf(expected, sizeof(expected), "id: does not match sha256 of side, entity, key and version (expected %s)", good);

	/* Each input changed after the id was computed makes it a mismatch. */
	static const struct {
		const char *path, *value;
	} changes[] = { { "source.side", "\"ce\"" },       { "source.entity", "\"CustomersV2\"" },
			{ "source.version", "43" },        { "key.dataAreaId", "\"usrt\"" },
			{ "id", "\"0000000000000000000000000000000000000000000000000000000000000000\"" } };
	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		cJSON *r = cJSON_Duplicate(root, 1);
		set_json(r, changes[i].path, changes[i].value);
		struct event ev;
		char err[512];
		assert_int_equal(-1, decode_tree(r, 0, &ev, err, sizeof(err)));
		assert_prefix("id: does not match sha256 of side, entity, key and version (expected ", err);
		/* The caller may skip the check. */
		assert_int_equal(0, decode_tree(r, EVENT_SKIP_ID_CHECK, &ev, err, sizeof(err)));
		event_clear(&ev);
		cJSON_Delete(r);
	}
	cJSON *r = cJSON_Duplicate(root, 1);
	set_json(r, "id", "\"0000000000000000000000000000000000000000000000000000000000000000\"");
	struct event ev;
	char err[512];
	assert_int_equal(-1, decode_tree(r, 0, &ev, err, sizeof(err)));
	assert_string_equal(expected, err);
	cJSON_Delete(r);

	/* A malformed id is rejected even when the hash check is skipped. */
	static const char *const bad[] = { "\"\"", "\"ABCDEF0000000000000000000000000000000000000000000000000000000000\"",
					   "\"00000000000000000000000000000000000000000000000000000000000000\"",
					   "\"000000000000000000000000000000000000000000000000000000000000000g\"" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = cJSON_Duplicate(root, 1);
		set_json(r, "id", bad[i]);
		assert_int_equal(-1, decode_tree(r, EVENT_SKIP_ID_CHECK, &ev, err, sizeof(err)));
		assert_prefix("id: must be 64 lowercase hex digits, got ", err);
		cJSON_Delete(r);
	}
	cJSON_Delete(root);
}

/* A valid event whose encoding is exactly `size` bytes (padding a data string). */
static char *event_of_size(size_t size)
{
	cJSON *root = sample();
	fix_id(root);
	set_json(root, "data.Pad", "\"\"");
	char *text = cJSON_PrintUnformatted(root);
	size_t base = strlen(text);
	free(text);
	assert_true(size >= base);
	char *pad = malloc(size - base + 1);
	memset(pad, 'p', size - base);
	pad[size - base] = '\0';
	cJSON_SetValuestring(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "data"), "Pad"), pad);
	free(pad);
	text = cJSON_PrintUnformatted(root);
	assert_int_equal(size, strlen(text));
	cJSON_Delete(root);
	return text;
}

static void test_size_cap_exact_and_one_over(void **state)
{
	(void)state;
	struct event ev;
	char err[512];
	char *text = event_of_size(2000);
	assert_int_equal(0, decode_bytes(text, 2000, 2000, 0, &ev, err, sizeof(err)));
	event_clear(&ev);
	assert_int_equal(-1, decode_bytes(text, 2000, 1999, 0, &ev, err, sizeof(err)));
	assert_string_equal("payload: 2000 bytes exceeds the 1999-byte cap", err);
	free(text);

	/* The default cap (max_bytes 0) is 1 MiB: exactly 1 MiB decodes, one byte more does not, and
	 * the encoder refuses to produce more. */
	text = event_of_size(EVENT_MAX_BYTES);
	assert_int_equal(0, decode_bytes(text, EVENT_MAX_BYTES, 0, 0, &ev, err, sizeof(err)));
	char *again = NULL;
	size_t len = 0;
	assert_int_equal(0, event_encode(&ev, &again, &len, err, sizeof(err)));
	assert_int_equal(EVENT_MAX_BYTES, len);
	free(again);
	cJSON_SetValuestring(cJSON_GetObjectItem(ev.data, "CustomerAccount"), "US-0012");
	assert_int_equal(-1, event_encode(&ev, &again, &len, err, sizeof(err)));
	assert_string_equal("payload: 1048577 bytes exceeds the 1048576-byte cap", err);
	assert_null(again);
	event_clear(&ev);
	free(text);

	text = event_of_size(EVENT_MAX_BYTES + 1);
	assert_int_equal(-1, decode_bytes(text, EVENT_MAX_BYTES + 1, 0, 0, &ev, err, sizeof(err)));
	assert_string_equal("payload: 1048577 bytes exceeds the 1048576-byte cap", err);
	free(text);
}

static void test_invalid_utf8_reported_at_offset(void **state)
{
	(void)state;
	static const struct {
		const char *bytes;
		size_t len, bad; /* offset of the bad byte within `bytes` */
		const char *what;
	} cases[] = {
		{ "\xc0\xaf", 2, 0, "overlong 2-byte" },
		{ "\xc1\xbf", 2, 0, "overlong 2-byte (C1)" },
		{ "\xe0\x80\xaf", 3, 1, "overlong 3-byte" },
		{ "\xf0\x80\x80\xaf", 4, 1, "overlong 4-byte" },
		{ "\xed\xa0\x80", 3, 1, "high surrogate U+D800" },
		{ "\xed\xbf\xbf", 3, 1, "low surrogate U+DFFF" },
		{ "\xf4\x90\x80\x80", 4, 1, "above U+10FFFF" },
		{ "\xf5\x80\x80\x80", 4, 0, "F5 lead byte" },
		{ "\xff", 1, 0, "FF byte" },
		{ "\x80", 1, 0, "lone continuation byte" },
		{ "a\xbf", 2, 1, "lone continuation after ASCII" },
		{ "\xe2\x82", 2, 2, "truncated 3-byte sequence" },
		{ "\xf0\x9f\x9a", 3, 3, "truncated 4-byte sequence" },
		{ "\xc3", 1, 1, "truncated 2-byte sequence" },
		{ "x\0y", 3, 1, "NUL byte" },
	};
	cJSON *root = sample();
	fix_id(root);
	char *text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	const char *marker = "\"Parent\":null";
	char *at = strstr(text, marker);
	assert_non_null(at);
	size_t head = (size_t)(at - text) + strlen("\"Parent\":\""); /* start of the string body */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* Replace null with "<bytes>". */
		char buf[2048];
		size_t o = 0;
		memcpy(buf, text, head - 1);
		o = head - 1;
		buf[o++] = '"';
		memcpy(buf + o, cases[i].bytes, cases[i].len);
		o += cases[i].len;
		buf[o++] = '"';
		const char *rest = at + strlen(marker);
		memcpy(buf + o, rest, strlen(rest));
		o += strlen(rest);
		struct event ev;
		char err[512], expected[128];
		assert_int_equal(-1, decode_bytes(buf, o, 0, 0, &ev, err, sizeof(err)));
		snprintf(expected, sizeof(expected), "payload: invalid UTF-8 at byte %zu", head + cases[i].bad);
		if (strcmp(expected, err) != 0)
			fail_msg("%s: got \"%s\", expected \"%s\"", cases[i].what, err, expected);
	}
	/* Valid boundary characters pass: U+007F, U+0080, U+07FF, U+0800, U+FFFF, U+10000, U+10FFFF. */
	char buf[2048];
	const char *valid = "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf";
	snprintf(buf, sizeof(buf), "%.*s\"%s\"%s", (int)(head - 1), text, valid, at + strlen(marker));
	struct event ev;
	char err[512];
	if (decode_bytes(buf, strlen(buf), 0, 0, &ev, err, sizeof(err)) != 0)
		fail_msg("valid boundary characters rejected: %s", err);
	assert_int_equal(19, strlen(cJSON_GetObjectItem(ev.data, "Parent")->valuestring));
	event_clear(&ev);
	free(text);
}

static void test_strict_json_syntax_with_offsets(void **state)
{
	(void)state;
	/* Things cJSON alone would accept or mangle. */
	expect_text_rejected("{\"v\":01}", "payload: not valid JSON at byte 6 of 8: leading zero in number");
	expect_text_rejected("{\"v\":1.}", "payload: not valid JSON at byte 7 of 8: invalid number (digit expected after '.')");
	expect_text_rejected("{\"v\":1e}", "payload: not valid JSON at byte 7 of 8: invalid number (digit expected in exponent)");
	expect_text_rejected("{\"v\":+1}", "payload: not valid JSON at byte 5 of 8: expected a value");
	expect_text_rejected("{\"v\":\"a\tb\"}", "payload: not valid JSON at byte 7 of 11: control character in string (must be escaped)");
	expect_text_rejected("{\"v\":\"a\\u0000b\"}", "payload: not valid JSON at byte 7 of 16: \\u0000 is not allowed in strings");
	expect_text_rejected("{\"v\":\"\\ud800x\"}", "payload: not valid JSON at byte 6 of 15: unpaired high surrogate in \\u escape");
	expect_text_rejected("{\"v\":\"\\udc00\"}", "payload: not valid JSON at byte 6 of 14: unpaired low surrogate in \\u escape");
	expect_text_rejected("{\"v\":\"\\x\"}", "payload: not valid JSON at byte 6 of 10: invalid escape in string");
	expect_text_rejected("{\"v\":\"\\u12g4\"}", "payload: not valid JSON at byte 10 of 14: invalid \\u escape (needs 4 hex digits)");
	expect_text_rejected("{\"v\":1,}", "payload: not valid JSON at byte 7 of 8: expected a member name in double quotes");
	expect_text_rejected("{v:1}", "payload: not valid JSON at byte 1 of 5: expected a member name in double quotes");
	expect_text_rejected("{\"v\" 1}", "payload: not valid JSON at byte 5 of 7: expected ':'");
	expect_text_rejected("{\"v\":[1 2]}", "payload: not valid JSON at byte 8 of 11: expected ',' or ']'");
	expect_text_rejected("{\"v\":1 \"id\":2}", "payload: not valid JSON at byte 7 of 14: expected ',' or '}'");
	expect_text_rejected("{\"v\":nul}", "payload: not valid JSON at byte 8 of 9: expected a value");
	expect_text_rejected("{\"v\":NaN}", "payload: not valid JSON at byte 5 of 9: expected a value");
	expect_text_rejected("\xef\xbb\xbf{}", "payload: not valid JSON at byte 0 of 5: expected a value");

	/* Nesting beyond 512 levels is refused before cJSON sees it. */
	char deep[1100];
	size_t o = 0;
	for (int i = 0; i < 513; i++)
		deep[o++] = '[';
	for (int i = 0; i < 513; i++)
		deep[o++] = ']';
	struct event ev;
	char err[512];
	assert_int_equal(-1, decode_bytes(deep, o, 0, 0, &ev, err, sizeof(err)));
	assert_string_equal("payload: not valid JSON at byte 512 of 1026: nested deeper than 512 levels", err);

	/* Valid escapes, including a surrogate pair, decode to the right UTF-8. */
	cJSON *root = sample();
	fix_id(root);
	char *text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	char *at = strstr(text, "\"Parent\":null");
	assert_non_null(at);
	char buf[2048];
	snprintf(buf, sizeof(buf), "%.*s\"Parent\":\"\\ud83d\\ude80 \\u00e9\\/\\b\\f\\n\\r\\t\\\"\\\\\"%s", (int)(at - text),
		 text, at + strlen("\"Parent\":null"));
	if (decode_bytes(buf, strlen(buf), 0, 0, &ev, err, sizeof(err)) != 0)
		fail_msg("valid escapes rejected: %s", err);
	assert_string_equal("\xf0\x9f\x9a\x80 \xc3\xa9/\b\f\n\r\t\"\\", cJSON_GetObjectItem(ev.data, "Parent")->valuestring);
	event_clear(&ev);
	free(text);
}

static void test_encode_rejects_invalid_events(void **state)
{
	(void)state;
	struct event ev;
	char *text = NULL, err[512];
	size_t len = 0;

	memset(&ev, 0, sizeof(ev));
	assert_int_equal(-1, event_encode(&ev, &text, &len, err, sizeof(err)));
	assert_string_equal("v: must be 1, got 0", err);

	build_event(&ev);
	ev.op = EVENT_OP_DELETE;
	assert_int_equal(-1, event_encode(&ev, &text, &len, err, sizeof(err)));
	assert_string_equal("data: must be null when op is delete", err);
	ev.op = EVENT_OP_CREATE;

	cJSON_AddNumberToObject(cJSON_GetObjectItem(ev.data, "nested"), "bad", NAN);
	assert_int_equal(-1, event_encode(&ev, &text, &len, err, sizeof(err)));
	assert_string_equal("data.nested.bad: number must be finite", err);
	cJSON_DeleteItemFromObject(cJSON_GetObjectItem(ev.data, "nested"), "bad");

	cJSON_AddStringToObject(ev.data, "latin1", "caf\xe9");
	assert_int_equal(-1, event_encode(&ev, &text, &len, err, sizeof(err)));
	assert_string_equal("data.latin1: invalid UTF-8 at byte 3 of the string", err);
	cJSON_DeleteItemFromObject(ev.data, "latin1");

	ev.txn.order = 4;
	assert_int_equal(-1, event_encode(&ev, &text, &len, err, sizeof(err)));
	assert_string_equal("txn.order: must be an integer from 1 to txn.total (3), got 4", err);
	ev.txn.order = 3;

	ev.source.version -= 1; /* id no longer matches */
	assert_int_equal(-1, event_encode(&ev, &text, &len, err, sizeof(err)));
	assert_prefix("id: does not match", err);
	ev.source.version += 1;

	ev.source.own = 2;
	assert_int_equal(-1, event_encode(&ev, &text, &len, err, sizeof(err)));
	assert_string_equal("source.own: must be true or false", err);
	ev.source.own = 1;

	assert_null(text);
	assert_int_equal(0, event_encode(&ev, &text, &len, err, sizeof(err)));
	free(text);
	event_clear(&ev);
	event_clear(&ev); /* idempotent */
	event_clear(NULL);
}

/* ---- the schema file states the same rules ---- */

static cJSON *load_schema(void)
{
	FILE *f = fopen(SCHEMA_PATH, "rb");
	if (!f)
		fail_msg("cannot open %s (run from the repository root)", SCHEMA_PATH);
	char *buf = malloc(65536);
	size_t n = fread(buf, 1, 65536, f);
	fclose(f);
	assert_true(n > 0 && n < 65536);
	cJSON *j = cJSON_ParseWithLength(buf, n);
	free(buf);
	if (!j)
		fail_msg("%s is not valid JSON", SCHEMA_PATH);
	return j;
}

static cJSON *schema_at(cJSON *schema, const char *dotted)
{
	cJSON *s = schema;
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", dotted);
	for (char *p = buf, *dot; p; p = dot ? dot + 1 : NULL) {
		dot = strchr(p, '.');
		if (dot)
			*dot = '\0';
		s = cJSON_GetObjectItem(cJSON_GetObjectItem(s, "properties"), p);
		if (!s)
			fail_msg("schema has no property %s", dotted);
	}
	return s;
}

/* For one object of the envelope: every `required` name, removed, is reported missing; every other
 * property, removed, still decodes; the sample has exactly the schema's properties; an unknown
 * member is refused as additionalProperties:false says. */
static void check_object_against_schema(cJSON *schema_obj, const char *prefix)
{
	cJSON *required = cJSON_GetObjectItem(schema_obj, "required");
	cJSON *props = cJSON_GetObjectItem(schema_obj, "properties");
	assert_true(cJSON_IsArray(required));
	assert_true(cJSON_IsObject(props));
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(schema_obj, "additionalProperties")));
	char path[128], expected[160];
	size_t nreq = 0, nprops = 0;
	for (cJSON *r = required->child; r; r = r->next, nreq++) {
		snprintf(path, sizeof(path), "%s%s", prefix, r->valuestring);
		assert_non_null(cJSON_GetObjectItem(props, r->valuestring));
		cJSON *root = sample();
		fix_id(root);
		del_path(root, path);
		snprintf(expected, sizeof(expected), "%s: required member is missing", path);
		expect_rejected(root, 0, expected);
	}
	cJSON *root = sample();
	cJSON *obj = root;
	if (*prefix) {
		char last[64];
		snprintf(path, sizeof(path), "%sx", prefix);
		obj = parent_of(root, path, last, sizeof(last));
	}
	for (cJSON *p = props->child; p; p = p->next, nprops++) {
		if (!cJSON_GetObjectItem(obj, p->string))
			fail_msg("schema property %s%s missing from the full sample", prefix, p->string);
		int req = 0;
		for (cJSON *r = required->child; r; r = r->next)
			req |= strcmp(r->valuestring, p->string) == 0;
		if (!req) {
			snprintf(path, sizeof(path), "%s%s", prefix, p->string);
			cJSON *r2 = sample();
			del_path(r2, path);
			expect_accepted(r2);
		}
	}
	assert_int_equal(nprops, cJSON_GetArraySize(obj));
	cJSON_Delete(root);
	root = sample();
	snprintf(path, sizeof(path), "%sundeclared", prefix);
	set_json(root, path, "0");
	snprintf(expected, sizeof(expected), "%s: unknown member", path);
	expect_rejected(root, 1, expected);
	(void)nreq;
}

static void assert_schema_number(cJSON *schema, const char *dotted, const char *kw, double value)
{
	cJSON *n = cJSON_GetObjectItem(schema_at(schema, dotted), kw);
	if (!cJSON_IsNumber(n) || n->valuedouble != value)
		fail_msg("schema %s.%s is not %.17g", dotted, kw, value);
}

static void test_schema_matches_decoder(void **state)
{
	(void)state;
	cJSON *schema = load_schema();
	assert_string_equal("https://json-schema.org/draft/2020-12/schema",
			    cJSON_GetObjectItem(schema, "$schema")->valuestring);
	check_object_against_schema(schema, "");
	check_object_against_schema(schema_at(schema, "source"), "source.");
	check_object_against_schema(schema_at(schema, "txn"), "txn.");

	/* Limits in the schema are the decoder's limits. */
	assert_schema_number(schema, "v", "const", EVENT_FORMAT_VERSION);
	assert_schema_number(schema, "source.env", "maxLength", EVENT_ENV_MAX);
	assert_schema_number(schema, "source.env", "minLength", 1);
	assert_schema_number(schema, "source.entity", "maxLength", EVENT_ENTITY_MAX);
	assert_schema_number(schema, "source.entity_set", "maxLength", EVENT_ENTITY_MAX);
	assert_schema_number(schema, "source.user", "maxLength", EVENT_USER_MAX);
	assert_schema_number(schema, "source.version", "maximum", (double)EVENT_INT_MAX);
	assert_schema_number(schema, "source.version", "minimum", 0);
	assert_schema_number(schema, "source.ts", "maximum", (double)EVENT_INT_MAX);
	assert_schema_number(schema, "key", "minProperties", 1);
	assert_schema_number(schema, "key", "maxProperties", EVENT_KEY_FIELDS_MAX);
	assert_schema_number(schema, "changed", "maxItems", EVENT_CHANGED_MAX);
	assert_schema_number(schema, "txn.id", "maxLength", EVENT_TXN_ID_MAX);
	assert_schema_number(schema, "txn.total", "maximum", EVENT_TXN_TOTAL_MAX);
	assert_schema_number(schema, "txn.order", "minimum", 1);
	cJSON *names = cJSON_GetObjectItem(schema_at(schema, "key"), "propertyNames");
	assert_int_equal(EVENT_KEY_NAME_MAX, cJSON_GetObjectItem(names, "maxLength")->valueint);
	cJSON *alts = cJSON_GetObjectItem(cJSON_GetObjectItem(schema_at(schema, "key"), "additionalProperties"), "oneOf");
	assert_int_equal(EVENT_KEY_VALUE_MAX, cJSON_GetObjectItem(cJSON_GetArrayItem(alts, 0), "maxLength")->valueint);
	assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(alts, 1), "maximum")->valuedouble == (double)EVENT_INT_MAX);

	/* Enumerations: exactly the names the C code parses. */
	cJSON *sides = cJSON_GetObjectItem(schema_at(schema, "source.side"), "enum");
	assert_int_equal(2, cJSON_GetArraySize(sides));
	for (cJSON *s = sides->child; s; s = s->next)
		assert_true(event_side_parse(s->valuestring) > 0);
	cJSON *ops = cJSON_GetObjectItem(schema_at(schema, "op"), "enum");
	assert_int_equal(4, cJSON_GetArraySize(ops));
	for (cJSON *s = ops->child; s; s = s->next)
		assert_true(event_op_parse(s->valuestring) > 0);

	/* data is null exactly when op is delete. */
	cJSON *cond = cJSON_GetObjectItem(schema, "if");
	assert_string_equal("delete", cJSON_GetObjectItem(schema_at(cond, "op"), "const")->valuestring);
	assert_string_equal("null", cJSON_GetObjectItem(schema_at(cJSON_GetObjectItem(schema, "then"), "data"), "type")->valuestring);
	assert_string_equal("object", cJSON_GetObjectItem(schema_at(cJSON_GetObjectItem(schema, "else"), "data"), "type")->valuestring);
	cJSON_Delete(schema);
}

/* ---- robustness ---- */

/* Thousands of byte-level mutations of a valid payload (fixed seed, so the run is repeatable):
 * the decoder never crashes or leaks, always explains a rejection, and whatever it accepts
 * encodes again and decodes to the same event. */
static void test_mutated_payloads_rejected_cleanly_or_round_trip(void **state)
{
	(void)state;
	cJSON *root = sample();
	fix_id(root);
	char *text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	size_t len = strlen(text);
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	char *buf = malloc(len + 8);
	int accepted = 0, rejected = 0;
	for (int iter = 0; iter < 20000; iter++) {
		memcpy(buf, text, len);
		size_t n = len;
		int edits = 1 + iter % 3;
		for (int e = 0; e < edits; e++) {
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			size_t pos = (size_t)(seed >> 33) % n;
			uint8_t byte = (uint8_t)(seed >> 13);
			switch ((seed >> 60) % 3) {
			case 0:
				buf[pos] = (char)byte;
				break;
			case 1: /* delete */
				memmove(buf + pos, buf + pos + 1, n - pos - 1);
				n--;
				break;
			default: /* insert */
				memmove(buf + pos + 1, buf + pos, n - pos);
				buf[pos] = (char)byte;
				n++;
				break;
			}
		}
		struct event ev;
		char err[512];
		int flags = iter % 2 ? EVENT_SKIP_ID_CHECK : 0;
		if (decode_bytes(buf, n, 0, flags, &ev, err, sizeof(err)) < 0) {
			assert_true(strlen(err) > 3);
			assert_non_null(strstr(err, ": "));
			rejected++;
			continue;
		}
		accepted++;
		if (!flags) {
			char *again = NULL;
			size_t alen = 0;
			struct event ev2;
			assert_int_equal(0, event_encode(&ev, &again, &alen, err, sizeof(err)));
			assert_int_equal(0, decode_bytes(again, alen, 0, 0, &ev2, err, sizeof(err)));
			assert_events_equal(&ev, &ev2);
			event_clear(&ev2);
			free(again);
		}
		event_clear(&ev);
	}
	/* Both outcomes occur, so the loop exercised the decoder's accept path too. */
	assert_true(rejected > 10000);
	assert_true(accepted > 0);
	free(buf);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_every_member),
		cmocka_unit_test(test_round_trip_numbers_bit_exact),
		cmocka_unit_test(test_round_trip_minimal_delete),
		cmocka_unit_test(test_round_trip_each_op),
		cmocka_unit_test(test_sample_decodes_with_every_field),
		cmocka_unit_test(test_integral_numbers_with_fraction_or_exponent_accepted),
		cmocka_unit_test(test_canonical_key_sorted_by_name_bytes),
		cmocka_unit_test(test_canonical_key_escapes_and_integers),
		cmocka_unit_test(test_canonical_key_rejects_bad_keys),
		cmocka_unit_test(test_id_is_sha256_of_documented_input),
		cmocka_unit_test(test_id_deterministic_and_sensitive_to_each_input),
		cmocka_unit_test(test_truncated_at_every_cut_point),
		cmocka_unit_test(test_trailing_garbage_rejected_whitespace_allowed),
		cmocka_unit_test(test_top_level_not_an_object),
		cmocka_unit_test(test_every_required_member_missing),
		cmocka_unit_test(test_optional_members_may_be_absent),
		cmocka_unit_test(test_wrong_type_for_every_field),
		cmocka_unit_test(test_out_of_range_and_fractional_integers),
		cmocka_unit_test(test_bad_enum_values),
		cmocka_unit_test(test_unknown_members_rejected),
		cmocka_unit_test(test_duplicate_members_rejected),
		cmocka_unit_test(test_key_field_count_limits),
		cmocka_unit_test(test_string_length_limits),
		cmocka_unit_test(test_changed_entry_count_limit),
		cmocka_unit_test(test_data_null_exactly_when_delete),
		cmocka_unit_test(test_id_mismatch_and_skip_flag),
		cmocka_unit_test(test_size_cap_exact_and_one_over),
		cmocka_unit_test(test_invalid_utf8_reported_at_offset),
		cmocka_unit_test(test_strict_json_syntax_with_offsets),
		cmocka_unit_test(test_encode_rejects_invalid_events),
		cmocka_unit_test(test_schema_matches_decoder),
		cmocka_unit_test(test_mutated_payloads_rejected_cleanly_or_round_trip),
	};
	return cmocka_run_group_tests_name("event", tests, NULL, NULL);
}
