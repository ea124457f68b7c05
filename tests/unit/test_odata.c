#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "odata.h"

static char err[512];

static void test_pct_encode_keeps_unreserved_only(void **state)
{
	(void)state;
	char *out = NULL;
	const char *in = "AZaz09-._~ /?#%'+\xc3\xa9";
	assert_int_equal(0, odata_pct_encode(in, strlen(in), &out, err, sizeof(err)));
	assert_string_equal("AZaz09-._~%20%2F%3F%23%25%27%2B%C3%A9", out);
	free(out);
	assert_int_equal(0, odata_pct_encode("", 0, &out, err, sizeof(err)));
	assert_string_equal("", out);
	free(out);
}

static void test_pct_decode_round_trip_and_plus(void **state)
{
	(void)state;
	char *enc = NULL, *dec = NULL;
	size_t n = 0;
	const char *in = "O'Brien / 100% #1 ?x=y&z \xe2\x82\xac+";
	assert_int_equal(0, odata_pct_encode(in, strlen(in), &enc, err, sizeof(err)));
	assert_int_equal(0, odata_pct_decode(enc, strlen(enc), &dec, &n, err, sizeof(err)));
	assert_string_equal(in, dec);
	assert_int_equal(strlen(in), n);
	free(enc);
	free(dec);
	/* '+' is not a space; lower-case hex is accepted */
	assert_int_equal(0, odata_pct_decode("a+b%2fc%C3%a9", 13, &dec, NULL, err, sizeof(err)));
	assert_string_equal("a+b/c\xc3\xa9", dec);
	free(dec);
}

static void test_pct_decode_rejects_bad_escapes_with_offset(void **state)
{
	(void)state;
	char *dec = (char *)1;
	assert_int_equal(-1, odata_pct_decode("abc%2", 5, &dec, NULL, err, sizeof(err)));
	assert_null(dec);
	assert_non_null(strstr(err, "offset 3"));
	assert_int_equal(-1, odata_pct_decode("%zz", 3, &dec, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "offset 0"));
	assert_int_equal(-1, odata_pct_decode("ab%00", 5, &dec, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "%00"));
	assert_non_null(strstr(err, "offset 2"));
	assert_int_equal(-1, odata_pct_decode("x%", 2, &dec, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "offset 1"));
}

static void test_caps(void **state)
{
	(void)state;
	size_t big = ODATA_TEXT_MAX + 1;
	char *s = malloc(big + 1);
	assert_non_null(s);
	memset(s, 'a', big);
	s[big] = '\0';
	char *out = NULL;
	assert_int_equal(-1, odata_pct_encode(s, big, &out, err, sizeof(err)));
	assert_non_null(strstr(err, "limit"));
	assert_int_equal(-1, odata_pct_decode(s, big, &out, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "limit"));
	assert_int_equal(-1, odata_quote_literal(s, &out, err, sizeof(err)));
	assert_non_null(strstr(err, "limit"));
	struct odata_key k;
	assert_int_equal(-1, odata_key_parse(s, big, NULL, &k, err, sizeof(err)));
	assert_non_null(strstr(err, "limit"));
	free(s);
}

static void test_odd_inputs(void **state)
{
	(void)state;
	char *out = NULL;
	assert_int_equal(-1, odata_pct_decode("ab\0c", 4, &out, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "NUL byte at offset 2"));
	struct odata_key k;
	assert_int_equal(-1, odata_key_parse("('a\0')", 6, NULL, &k, err, sizeof(err)));
	assert_non_null(strstr(err, "offset 3: NUL byte"));
	assert_string_equal("string", odata_kind_name(ODATA_KIND_STRING));
	assert_string_equal("int", odata_kind_name(ODATA_KIND_INT));
	assert_string_equal("guid", odata_kind_name(ODATA_KIND_GUID));
	assert_string_equal("enum", odata_kind_name(ODATA_KIND_ENUM));
	struct odata_key_part odd = { "a", "1", (enum odata_kind)42, NULL };
	assert_int_equal(-1, odata_key_build(&odd, 1, &out, err, sizeof(err)));
	assert_non_null(strstr(err, "unknown kind"));
	size_t big = ODATA_TEXT_MAX + 1;
	char *s = malloc(big + 1);
	assert_non_null(s);
	memset(s, 'a', big);
	s[big] = '\0';
	struct odata_key_part huge = { "a", s, ODATA_KIND_STRING, NULL };
	assert_int_equal(-1, odata_key_build(&huge, 1, &out, err, sizeof(err)));
	assert_non_null(strstr(err, "limit"));
	char *set = NULL;
	assert_int_equal(-1, odata_entity_ref_parse(s, big, &set, &k, err, sizeof(err)));
	assert_non_null(strstr(err, "limit"));
	assert_null(set);
	free(s);
	/* a bad enum type name in a key predicate */
	assert_int_equal(-1, odata_key_parse("(a=Ns..X'Y')", 12, NULL, &k, err, sizeof(err)));
}

static void test_quote_literal(void **state)
{
	(void)state;
	char *out = NULL;
	assert_int_equal(0, odata_quote_literal("O'Brien", &out, err, sizeof(err)));
	assert_string_equal("'O''Brien'", out);
	free(out);
	assert_int_equal(0, odata_quote_literal("", &out, err, sizeof(err)));
	assert_string_equal("''", out);
	free(out);
	assert_int_equal(0, odata_quote_literal("''", &out, err, sizeof(err)));
	assert_string_equal("''''''", out);
	free(out);
}

static void test_key_build_single_values(void **state)
{
	(void)state;
	char *out = NULL;
	struct odata_key_part g = { NULL, "00000000-0000-0000-0000-00000000000A", ODATA_KIND_GUID, NULL };
	assert_int_equal(0, odata_key_build(&g, 1, &out, err, sizeof(err)));
	assert_string_equal("(00000000-0000-0000-0000-00000000000A)", out);
	free(out);
	struct odata_key_part s = { NULL, "O'Brien & Sons", ODATA_KIND_STRING, NULL };
	assert_int_equal(0, odata_key_build(&s, 1, &out, err, sizeof(err)));
	assert_string_equal("('O''Brien%20%26%20Sons')", out);
	free(out);
	struct odata_key_part i = { NULL, "-42", ODATA_KIND_INT, NULL };
	assert_int_equal(0, odata_key_build(&i, 1, &out, err, sizeof(err)));
	assert_string_equal("(-42)", out);
	free(out);
	struct odata_key_part named = { "accountid", "11111111-2222-3333-4444-555555555555", ODATA_KIND_GUID,
					NULL };
	assert_int_equal(0, odata_key_build(&named, 1, &out, err, sizeof(err)));
	assert_string_equal("(accountid=11111111-2222-3333-4444-555555555555)", out);
	free(out);
}

static void test_key_build_composite_nasty(void **state)
{
	(void)state;
	char *out = NULL;
	struct odata_key_part p[] = {
		{ "dataAreaId", "usmf", ODATA_KIND_STRING, NULL },
		{ "CustomerAccount", "US/001", ODATA_KIND_STRING, NULL },
	};
	assert_int_equal(0, odata_key_build(p, 2, &out, err, sizeof(err)));
	assert_string_equal("(dataAreaId='usmf',CustomerAccount='US%2F001')", out);
	free(out);
	struct odata_key_part q[] = {
		{ "a", "it's 100% #1?", ODATA_KIND_STRING, NULL },
		{ "b", "\xc3\x9c" "ber,(x)=y", ODATA_KIND_STRING, NULL },
		{ "c", "Yes", ODATA_KIND_ENUM, "Microsoft.Dynamics.DataEntities.NoYes" },
		{ "d", "", ODATA_KIND_STRING, NULL },
	};
	assert_int_equal(0, odata_key_build(q, 4, &out, err, sizeof(err)));
	assert_string_equal("(a='it''s%20100%25%20%231%3F',b='%C3%9Cber%2C%28x%29%3Dy',"
			    "c=Microsoft.Dynamics.DataEntities.NoYes'Yes',d='')",
			    out);
	free(out);
}

static void test_key_build_errors(void **state)
{
	(void)state;
	char *out = NULL;
	assert_int_equal(-1, odata_key_build(NULL, 0, &out, err, sizeof(err)));
	struct odata_key_part two_unnamed[] = { { NULL, "a", ODATA_KIND_STRING, NULL },
						{ NULL, "b", ODATA_KIND_STRING, NULL } };
	assert_int_equal(-1, odata_key_build(two_unnamed, 2, &out, err, sizeof(err)));
	assert_non_null(strstr(err, "name"));
	struct odata_key_part dup[] = { { "a", "1", ODATA_KIND_INT, NULL }, { "a", "2", ODATA_KIND_INT, NULL } };
	assert_int_equal(-1, odata_key_build(dup, 2, &out, err, sizeof(err)));
	assert_non_null(strstr(err, "duplicate"));
	struct odata_key_part badname = { "a b", "1", ODATA_KIND_INT, NULL };
	assert_int_equal(-1, odata_key_build(&badname, 1, &out, err, sizeof(err)));
	struct odata_key_part badint = { "a", "12x", ODATA_KIND_INT, NULL };
	assert_int_equal(-1, odata_key_build(&badint, 1, &out, err, sizeof(err)));
	assert_non_null(strstr(err, "integer"));
	struct odata_key_part badguid = { NULL, "0000-0000", ODATA_KIND_GUID, NULL };
	assert_int_equal(-1, odata_key_build(&badguid, 1, &out, err, sizeof(err)));
	assert_non_null(strstr(err, "GUID"));
	struct odata_key_part badenum = { "e", "Yes", ODATA_KIND_ENUM, "NoYes" };
	assert_int_equal(-1, odata_key_build(&badenum, 1, &out, err, sizeof(err)));
	assert_non_null(strstr(err, "enum"));
	struct odata_key_part nullval = { "e", NULL, ODATA_KIND_STRING, NULL };
	assert_int_equal(-1, odata_key_build(&nullval, 1, &out, err, sizeof(err)));
	assert_null(out);
}

static void parse_ok(const char *text, struct odata_key *k)
{
	int rc = odata_key_parse(text, strlen(text), NULL, k, err, sizeof(err));
	if (rc != 0)
		fail_msg("parse of %s failed: %s", text, err);
}

static void test_key_parse_forms(void **state)
{
	(void)state;
	struct odata_key k;
	parse_ok("(00000000-0000-0000-0000-00000000ABCD)", &k);
	assert_int_equal(1, k.nparts);
	assert_null(k.parts[0].name);
	assert_int_equal(ODATA_KIND_GUID, k.parts[0].kind);
	assert_string_equal("00000000-0000-0000-0000-00000000abcd", k.parts[0].value);
	odata_key_clear(&k);

	parse_ok("(accountid=00000000-0000-0000-0000-000000000001)", &k);
	assert_string_equal("accountid", k.parts[0].name);
	assert_int_equal(ODATA_KIND_GUID, k.parts[0].kind);
	odata_key_clear(&k);

	parse_ok("(42)", &k);
	assert_int_equal(ODATA_KIND_INT, k.parts[0].kind);
	assert_string_equal("42", k.parts[0].value);
	odata_key_clear(&k);

	parse_ok("('O''Brien')", &k);
	assert_int_equal(ODATA_KIND_STRING, k.parts[0].kind);
	assert_string_equal("O'Brien", k.parts[0].value);
	odata_key_clear(&k);

	parse_ok("(dataAreaId='usmf',CustomerAccount='US%2F001',Flag=Microsoft.Dynamics.DataEntities.NoYes'Yes',"
		 "Empty='',Line=-3)",
		 &k);
	assert_int_equal(5, k.nparts);
	assert_string_equal("usmf", odata_key_find(&k, "dataAreaId")->value);
	assert_string_equal("US/001", odata_key_find(&k, "CustomerAccount")->value);
	const struct odata_key_part *f = odata_key_find(&k, "Flag");
	assert_int_equal(ODATA_KIND_ENUM, f->kind);
	assert_string_equal("Microsoft.Dynamics.DataEntities.NoYes", f->enum_type);
	assert_string_equal("Yes", f->value);
	assert_string_equal("", odata_key_find(&k, "Empty")->value);
	assert_int_equal(ODATA_KIND_INT, odata_key_find(&k, "Line")->kind);
	assert_null(odata_key_find(&k, "dataareaid"));
	odata_key_clear(&k);
	odata_key_clear(&k); /* idempotent */
	odata_key_clear(NULL);

	/* an encoded quote counts as a quote; encoded parentheses and commas inside strings are data */
	parse_ok("(name=%27a%27%27b%29%2C%27)", &k);
	assert_string_equal("a'b),", k.parts[0].value);
	odata_key_clear(&k);
	/* literal '(', ')', ',' and '=' inside a quoted string */
	parse_ok("(a='x,y)=(z',b='')", &k);
	assert_string_equal("x,y)=(z", k.parts[0].value);
	odata_key_clear(&k);
}

static void test_key_round_trip_nasty(void **state)
{
	(void)state;
	static const char *const values[] = {
		"O'Brien", "''", "a b", "US/001", "100%", "#?&=+", "\xe6\x97\xa5\xe6\x9c\xac", "(x)", ",", "",
		"tab\there", "back\\slash", "%27", "a'",
	};
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		struct odata_key_part p[] = { { "dataAreaId", "usmf", ODATA_KIND_STRING, NULL },
					      { "Key", values[i], ODATA_KIND_STRING, NULL } };
		char *seg = NULL;
		assert_int_equal(0, odata_key_build(p, 2, &seg, err, sizeof(err)));
		/* nothing but the structural characters stays unencoded */
		for (const char *c = seg; *c; c++)
			assert_non_null(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%'(),=", *c));
		struct odata_key k;
		parse_ok(seg, &k);
		assert_int_equal(2, k.nparts);
		assert_string_equal(values[i], odata_key_find(&k, "Key")->value);
		/* and the parsed struct builds the same text again */
		char *again = NULL;
		assert_int_equal(0, odata_key_build(k.parts, k.nparts, &again, err, sizeof(err)));
		assert_string_equal(seg, again);
		free(again);
		odata_key_clear(&k);
		free(seg);
	}
}

static void test_key_parse_consumed(void **state)
{
	(void)state;
	struct odata_key k;
	size_t used = 0;
	const char *t = "(accountnumber='A%2FB')/primarycontactid/$ref";
	assert_int_equal(0, odata_key_parse(t, strlen(t), &used, &k, err, sizeof(err)));
	assert_int_equal(strlen("(accountnumber='A%2FB')"), used);
	assert_string_equal("A/B", k.parts[0].value);
	odata_key_clear(&k);
	assert_int_equal(-1, odata_key_parse(t, strlen(t), NULL, &k, err, sizeof(err)));
	assert_non_null(strstr(err, "offset 23"));
	assert_non_null(strstr(err, "after ')'"));
}

struct bad_case {
	const char *text;
	const char *offset; /* "offset N" expected in the message, or NULL */
	const char *words;  /* another fragment expected */
};

static void test_key_parse_errors(void **state)
{
	(void)state;
	static const struct bad_case cases[] = {
		{ "", "offset 0", "expected '('" },
		{ "accountid=1", "offset 0", "expected '('" },
		{ "()", "offset 1", "expected a key value" },
		{ "('abc)", "offset 1", "unbalanced quote" },
		{ "(a='x'',b='y')", "offset 11", "expected ',' or ')'" },
		{ "(a='x''')x", "offset 9", "after ')'" },
		{ "(a='x''", "offset 3", "unbalanced quote" },
		{ "(a='x',a='y')", "offset 7", "duplicate" },
		{ "(='x')", "offset 1", "property name" },
		{ "(1a=2)", "offset 1", "property name" },
		{ "(a=,b='y')", "offset 3", "expected a key value" },
		{ "(a='x',b)", "offset 7", "mixed" },
		{ "(a='x','y')", "offset 7", "mixed" },
		{ "('x',a='y')", "offset 5", "mixed" },
		{ "('x','y')", NULL, "must name each" },
		{ "(a='x'", "offset 6", "text ended" },
		{ "(a='x';b='y')", "offset 6", "expected ',' or ')'" },
		{ "(a='x')junk", "offset 7", "after ')'" },
		{ "(a='x%2')", "offset 5", "percent-escape" },
		{ "(a='x%00')", "offset 5", "percent-escape" },
		{ "(a=x'y')", "offset 3", "enum literal" },
		{ "(a=12.5)", "offset 3", "expected a GUID" },
		{ "(a= 'x')", "offset 3", "expected a key value" },
		{ "(a=00000000-0000-0000-0000-00000000000)", "offset 3", "expected a GUID" },
		{ "(a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8,i=9,j=10,k=11,l=12,m=13,n=14,o=15,p=16,q=17)", "offset",
		  "more than 16" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct odata_key k;
		err[0] = '\0';
		int rc = odata_key_parse(cases[i].text, strlen(cases[i].text), NULL, &k, err, sizeof(err));
		if (rc != -1)
			fail_msg("'%s' was accepted", cases[i].text);
		assert_int_equal(0, k.nparts);
		assert_null(k.buf_);
		if (cases[i].offset && !strstr(err, cases[i].offset))
			fail_msg("'%s': expected '%s' in: %s", cases[i].text, cases[i].offset, err);
		if (!strstr(err, cases[i].words))
			fail_msg("'%s': expected '%s' in: %s", cases[i].text, cases[i].words, err);
	}
}

static void test_entity_ref_parse(void **state)
{
	(void)state;
	static const char *const ok[] = {
		"accounts(00000000-0000-0000-0000-000000000001)",
		"/accounts(00000000-0000-0000-0000-000000000001)",
		"/api/data/v9.2/accounts(00000000-0000-0000-0000-000000000001)",
		"https://org.crm.dynamics.com/api/data/v9.2/accounts(00000000-0000-0000-0000-000000000001)",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char *set = NULL;
		struct odata_key k;
		if (odata_entity_ref_parse(ok[i], strlen(ok[i]), &set, &k, err, sizeof(err)) != 0)
			fail_msg("%s: %s", ok[i], err);
		assert_string_equal("accounts", set);
		assert_int_equal(1, k.nparts);
		assert_int_equal(ODATA_KIND_GUID, k.parts[0].kind);
		free(set);
		odata_key_clear(&k);
	}
	/* a raw '/' inside the key literal (as JSON bind values often carry) is data, not a path */
	const char *t = "/products(msdyn_productnumber='P/100',x='a(b')";
	char *set = NULL;
	struct odata_key k;
	assert_int_equal(0, odata_entity_ref_parse(t, strlen(t), &set, &k, err, sizeof(err)));
	assert_string_equal("products", set);
	assert_string_equal("P/100", odata_key_find(&k, "msdyn_productnumber")->value);
	assert_string_equal("a(b", odata_key_find(&k, "x")->value);
	free(set);
	odata_key_clear(&k);

	static const struct {
		const char *text;
		const char *words;
	} bad[] = {
		{ "accounts", "expected EntitySet(key)" },
		{ "/(1)", "offset 1: expected an entity set name" },
		{ "/api/9x(1)", "offset 5: expected an entity set name" },
		{ "accounts(1)?$select=name", "after ')'" },
		{ "accounts('x)", "unbalanced quote" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		set = (char *)1;
		if (odata_entity_ref_parse(bad[i].text, strlen(bad[i].text), &set, &k, err, sizeof(err)) != -1)
			fail_msg("%s accepted", bad[i].text);
		assert_null(set);
		assert_null(k.buf_);
		if (!strstr(err, bad[i].words))
			fail_msg("%s: expected '%s' in: %s", bad[i].text, bad[i].words, err);
	}
}

static void test_error_parse_dataverse(void **state)
{
	(void)state;
	const char *body = "{\"error\":{\"code\":\"0x80044331\",\"message\":\"A validation error occurred.\","
			   "\"@Microsoft.PowerApps.CDS.InnerError.Message\":\"inner text\"}}";
	struct odata_error e;
	assert_int_equal(0, odata_error_parse(body, strlen(body), &e));
	assert_string_equal("0x80044331", e.code);
	assert_string_equal("A validation error occurred.", e.message);
	assert_string_equal("inner text", e.inner_message);
	odata_error_clear(&e);
	odata_error_clear(&e);
	odata_error_clear(NULL);
	const char *plain = "{\"error\":{\"code\":\"\",\"message\":\"account With Id = x Does Not Exist\"}}";
	assert_int_equal(0, odata_error_parse(plain, strlen(plain), &e));
	assert_string_equal("", e.code);
	assert_string_equal("", e.inner_message);
	assert_string_equal("account With Id = x Does Not Exist", e.message);
	odata_error_clear(&e);
}

static void test_error_parse_fo_and_build_round_trip(void **state)
{
	(void)state;
	char *body = NULL;
	assert_int_equal(0, odata_error_build("", "An error has occurred.", "Customer 'X' already exists.",
					      "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException",
					      &body, err, sizeof(err)));
	assert_non_null(strstr(body, "\"innererror\":{\"message\":\"Customer 'X' already exists.\""));
	struct odata_error e;
	assert_int_equal(0, odata_error_parse(body, strlen(body), &e));
	assert_string_equal("", e.code);
	assert_string_equal("An error has occurred.", e.message);
	assert_string_equal("Customer 'X' already exists.", e.inner_message);
	odata_error_clear(&e);
	free(body);
	assert_int_equal(0, odata_error_build("0x80040237", "A record with matching key values already exists.",
					      NULL, NULL, &body, err, sizeof(err)));
	assert_string_equal("{\"error\":{\"code\":\"0x80040237\",\"message\":\"A record with matching key values "
			    "already exists.\"}}",
			    body);
	free(body);
}

static void test_error_parse_tolerates_non_json(void **state)
{
	(void)state;
	struct odata_error e;
	const char *html = "<html>\r\n<body>502 Bad Gateway</body></html>";
	assert_int_equal(1, odata_error_parse(html, strlen(html), &e));
	assert_string_equal("", e.code);
	assert_string_equal("<html>  <body>502 Bad Gateway</body></html>", e.message);
	odata_error_clear(&e);
	assert_int_equal(1, odata_error_parse(NULL, 0, &e));
	assert_string_equal("", e.message);
	odata_error_clear(&e);
	const char *wrong = "{\"error\":\"invalid_client\"}";
	assert_int_equal(1, odata_error_parse(wrong, strlen(wrong), &e));
	assert_string_equal(wrong, e.message);
	odata_error_clear(&e);
	/* not NUL-terminated and longer than the cap */
	size_t big = ODATA_ERROR_RAW_MAX * 3;
	char *raw = malloc(big);
	assert_non_null(raw);
	memset(raw, 'x', big);
	assert_int_equal(1, odata_error_parse(raw, big, &e));
	assert_int_equal(ODATA_ERROR_RAW_MAX, strlen(e.message));
	odata_error_clear(&e);
	free(raw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pct_encode_keeps_unreserved_only),
		cmocka_unit_test(test_pct_decode_round_trip_and_plus),
		cmocka_unit_test(test_pct_decode_rejects_bad_escapes_with_offset),
		cmocka_unit_test(test_caps),
		cmocka_unit_test(test_odd_inputs),
		cmocka_unit_test(test_quote_literal),
		cmocka_unit_test(test_key_build_single_values),
		cmocka_unit_test(test_key_build_composite_nasty),
		cmocka_unit_test(test_key_build_errors),
		cmocka_unit_test(test_key_parse_forms),
		cmocka_unit_test(test_key_round_trip_nasty),
		cmocka_unit_test(test_key_parse_consumed),
		cmocka_unit_test(test_key_parse_errors),
		cmocka_unit_test(test_entity_ref_parse),
		cmocka_unit_test(test_error_parse_dataverse),
		cmocka_unit_test(test_error_parse_fo_and_build_round_trip),
		cmocka_unit_test(test_error_parse_tolerates_non_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
