#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"

static char err[512];

static enum query_type types(void *ctx, const char *name)
{
	(void)ctx;
	static const struct {
		const char *name;
		enum query_type t;
	} f[] = {
		{ "name", QUERY_T_STRING },     { "revenue", QUERY_T_DECIMAL },   { "employees", QUERY_T_INT },
		{ "ratio", QUERY_T_DOUBLE },    { "active", QUERY_T_BOOL },       { "createdon", QUERY_T_DATETIME },
		{ "due", QUERY_T_DATE },        { "accountid", QUERY_T_GUID },    { "Blocked", QUERY_T_ENUM },
		{ "_parentaccountid_value", QUERY_T_GUID },
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (strcmp(f[i].name, name) == 0)
			return f[i].t;
	return QUERY_T_UNKNOWN;
}

static void parse_ok(const char *qs, enum query_flavour fl, struct query *q)
{
	if (query_parse(qs, strlen(qs), fl, q, err, sizeof(err)) != 0)
		fail_msg("parse of '%s' failed: %s", qs, err);
}

static void parse_bad(const char *qs, enum query_flavour fl, const char *words)
{
	struct query q;
	err[0] = '\0';
	if (query_parse(qs, strlen(qs), fl, &q, err, sizeof(err)) != -1)
		fail_msg("'%s' was accepted", qs);
	assert_null(q.filter);
	assert_null(q.select);
	assert_null(q.extra);
	assert_int_equal(-1, q.top);
	if (!strstr(err, words))
		fail_msg("'%s': expected '%s' in: %s", qs, words, err);
}

/* The canonical form of a $filter (given decoded, encoded here as a client would). */
static char *canon(const char *filter, enum query_flavour fl)
{
	char qs[4096];
	size_t o = 0;
	o += (size_t)snprintf(qs, sizeof(qs), "$filter=");
	for (const char *c = filter; *c && o + 4 < sizeof(qs); c++) {
		unsigned char u = (unsigned char)*c;
		if (u == ' ' || u == '&' || u == '#' || u == '%' || u == '+' || u >= 0x80)
			o += (size_t)snprintf(qs + o, sizeof(qs) - o, "%%%02X", u);
		else
			qs[o++] = *c;
	}
	qs[o] = '\0';
	struct query q;
	parse_ok(qs, fl, &q);
	char *out = NULL;
	assert_int_equal(0, query_filter_format(&q, &out, err, sizeof(err)));
	query_clear(&q);
	return out;
}

static void expect_canon(const char *filter, enum query_flavour fl, const char *want)
{
	char *got = canon(filter, fl);
	if (strcmp(got, want) != 0)
		fail_msg("'%s' -> '%s', want '%s'", filter, got, want);
	free(got);
}

static void test_parse_options(void **state)
{
	(void)state;
	struct query q;
	parse_ok("$select=name,%20revenue&$top=10&$count=true&$orderby=name%20desc,revenue&code=a+b%2Fc&flag&&"
		 "$skiptoken=%3Ccookie%3E&$deltatoken=919042%2108",
		 QUERY_CE, &q);
	assert_int_equal(2, q.nselect);
	assert_string_equal("name", q.select[0]);
	assert_string_equal("revenue", q.select[1]);
	assert_int_equal(10, q.top);
	assert_int_equal(-1, q.skip);
	assert_int_equal(1, q.count);
	assert_int_equal(2, q.norderby);
	assert_string_equal("name", q.orderby[0].field);
	assert_int_equal(1, q.orderby[0].desc);
	assert_string_equal("revenue", q.orderby[1].field);
	assert_int_equal(0, q.orderby[1].desc);
	assert_int_equal(2, q.nextra);
	assert_string_equal("code", q.extra[0].name);
	assert_string_equal("a+b/c", q.extra[0].value); /* '+' is not a space */
	assert_string_equal("flag", q.extra[1].name);
	assert_string_equal("", q.extra[1].value);
	assert_string_equal("<cookie>", q.skiptoken);
	assert_string_equal("919042!08", q.deltatoken);
	assert_null(q.filter);
	assert_int_equal(0, q.cross_company);
	query_clear(&q);
	query_clear(&q);
	query_clear(NULL);
	assert_int_equal(-1, q.top);

	parse_ok("cross-company=false", QUERY_FO, &q);
	assert_int_equal(0, q.cross_company);
	assert_int_equal(0, q.nextra);
	query_clear(&q);
	parse_ok("cross-company=TRUE&$skip=20&$top=0&$count=false", QUERY_FO, &q);
	assert_int_equal(1, q.cross_company);
	assert_int_equal(20, q.skip);
	assert_int_equal(0, q.top);
	assert_int_equal(0, q.count);
	assert_int_equal(0, q.nextra);
	query_clear(&q);
	/* on Dataverse cross-company is an ordinary parameter */
	parse_ok("cross-company=true", QUERY_CE, &q);
	assert_int_equal(0, q.cross_company);
	assert_int_equal(1, q.nextra);
	query_clear(&q);
	parse_ok("", QUERY_CE, &q);
	assert_int_equal(-1, q.count);
	query_clear(&q);
	assert_int_equal(0, query_parse(NULL, 0, QUERY_FO, &q, err, sizeof(err)));
	query_clear(&q);
}

static void test_parse_option_errors(void **state)
{
	(void)state;
	parse_bad("$expand=primarycontactid", QUERY_CE, "$expand is not supported by the emulator");
	parse_bad("$expand=x", QUERY_FO, "$expand is not supported");
	parse_bad("$search=x", QUERY_CE, "The query parameter $search is not supported");
	parse_bad("$x%C3%A9%0A=1", QUERY_CE, "The query parameter $x??? is not supported");
	parse_bad("$Filter=name eq 'x'", QUERY_CE, "$Filter is not supported");
	parse_bad("$top=1&$top=2", QUERY_CE, "$top is specified more than once");
	parse_bad("$filter=name eq 'a'&$filter=name eq 'b'", QUERY_CE, "more than once");
	parse_bad("$skip=1", QUERY_CE, "$skip is not supported");
	parse_bad("$top=-1", QUERY_CE, "non-negative");
	parse_bad("$top=abc", QUERY_CE, "non-negative");
	parse_bad("$top=99999999999", QUERY_CE, "non-negative");
	parse_bad("$top=", QUERY_CE, "non-negative");
	parse_bad("$count=yes", QUERY_CE, "$count must be true or false");
	parse_bad("cross-company=1", QUERY_FO, "cross-company must be true or false");
	parse_bad("$select=na%2", QUERY_CE, "offset 2");
	parse_bad("$select=name,,revenue", QUERY_CE, "empty item");
	parse_bad("$select=name;drop", QUERY_CE, "not a property name");
	parse_bad("$select=a'b", QUERY_CE, "not a property name");
	parse_bad("$orderby=name%20up", QUERY_CE, "expected 'asc' or 'desc'");
	parse_bad("$orderby=1name", QUERY_CE, "not a property name");
	parse_bad("a=%zz", QUERY_CE, "bad percent-escape");
	parse_bad("$filter=name eq 'x'&$select=", QUERY_CE, "empty item");
	parse_bad("%zz=1", QUERY_CE, "query parameter name: bad percent-escape at offset 0");
	/* item and parameter counts */
	char *list = malloc(8 * (QUERY_SELECT_MAX + 2) + 32);
	assert_non_null(list);
	size_t o = (size_t)snprintf(list, 32, "$select=a");
	for (int i = 0; i < QUERY_SELECT_MAX; i++)
		o += (size_t)snprintf(list + o, 8, ",a");
	parse_bad(list, QUERY_CE, "more than 500 items");
	o = (size_t)snprintf(list, 32, "p=1");
	for (int i = 0; i < QUERY_SELECT_MAX; i++)
		o += (size_t)snprintf(list + o, 8, "&p=1");
	parse_bad(list, QUERY_CE, "more than 500 query parameters");
	free(list);
	char *big = malloc(QUERY_STRING_MAX + 2);
	assert_non_null(big);
	memset(big, 'a', QUERY_STRING_MAX + 1);
	big[QUERY_STRING_MAX + 1] = '\0';
	parse_bad(big, QUERY_CE, "over the limit");
	free(big);
}

static void test_filter_precedence_and_literals(void **state)
{
	(void)state;
	expect_canon("name eq 'x' or revenue gt 1 and not active eq true", QUERY_CE,
		     "((name eq 'x') or ((revenue gt 1) and (not (active eq true))))");
	expect_canon("(name eq 'x' or revenue gt 1) and active ne false", QUERY_CE,
		     "(((name eq 'x') or (revenue gt 1)) and (active ne false))");
	expect_canon("a eq 1 and b eq 2 and c eq 3", QUERY_CE, "(((a eq 1) and (b eq 2)) and (c eq 3))");
	expect_canon("not not a eq null", QUERY_CE, "(not (not (a eq null)))");
	expect_canon("name eq 'O''Brien / 100% #1 & co + \xc3\xa9'", QUERY_CE,
		     "(name eq 'O''Brien / 100% #1 & co + \xc3\xa9')");
	expect_canon("name eq ''", QUERY_CE, "(name eq '')");
	expect_canon("revenue ge -12.50 and ratio lt 1.5e-3 and employees le 42", QUERY_CE,
		     "(((revenue ge -12.50) and (ratio lt 1.5e-3)) and (employees le 42))");
	expect_canon("accountid eq 0000000A-0000-0000-0000-00000000000B", QUERY_CE,
		     "(accountid eq 0000000a-0000-0000-0000-00000000000b)");
	expect_canon("accountid eq aabbccdd-0000-0000-0000-000000000000", QUERY_CE,
		     "(accountid eq aabbccdd-0000-0000-0000-000000000000)");
	expect_canon("due eq 2024-02-29 or createdon gt 2025-01-31T10:00:00Z or createdon lt 2025-01-31T10:00:00.123+02:00"
		     " or createdon lt 2025-01-31T10:00-05:00",
		     QUERY_CE,
		     "((((due eq 2024-02-29) or (createdon gt 2025-01-31T10:00:00Z)) or (createdon lt "
		     "2025-01-31T10:00:00.123+02:00)) or (createdon lt 2025-01-31T10:00-05:00))");
	expect_canon("Blocked eq Microsoft.Dynamics.DataEntities.CustVendorBlocked'No'", QUERY_FO,
		     "(Blocked eq Microsoft.Dynamics.DataEntities.CustVendorBlocked'No')");
	expect_canon("contains(name,'a''b') and startswith( name , 'x') or not endswith(name,'%')", QUERY_CE,
		     "((contains(name,'a''b') and startswith(name,'x')) or (not endswith(name,'%')))");
	expect_canon("  ( ( name eq 'x' ) )  ", QUERY_CE, "(name eq 'x')");
	/* keywords are case-sensitive: 'contains' without '(' is just a property name */
	expect_canon("contains eq 'x'", QUERY_CE, "(contains eq 'x')");
	expect_canon("name eq '*retail*'", QUERY_FO, "(name eq '*retail*')");
}

struct bad_filter {
	enum query_flavour fl;
	const char *filter; /* already percent-encoded where needed */
	const char *words;
};

static void test_filter_syntax_errors(void **state)
{
	(void)state;
	static const struct bad_filter cases[] = {
		{ QUERY_CE, "", "$filter is empty" },
		{ QUERY_CE, "name%20eq%20'abc", "position 8" },
		{ QUERY_CE, "name%20eq%20'abc", "unbalanced quote" },
		{ QUERY_CE, "name%20'x'", "position 5" },
		{ QUERY_CE, "name%20equals%20'x'", "expected a comparison operator" },
		{ QUERY_CE, "name%20eq", "expected a literal after 'eq'" },
		{ QUERY_CE, "name%20eq%20other", "expected a literal" },
		{ QUERY_CE, "(name%20eq%20'x'", "expected ')' to close the '(' at position 0" },
		{ QUERY_CE, "name%20eq%20'x')", "unbalanced ')'" },
		{ QUERY_CE, "name%20eq%20'x'%20junk", "position 12" },
		{ QUERY_CE, "name%20eq%20'x'%20and", "the filter ended" },
		{ QUERY_CE, "eq%20'x'", "found the operator 'eq'" },
		{ QUERY_CE, "tolower(name)%20eq%20'x'", "unknown or unsupported function 'tolower'" },
		{ QUERY_FO, "contains(name,'x')", "not supported by Finance and Operations" },
		{ QUERY_CE, "contains(name)", "expected ','" },
		{ QUERY_CE, "contains(name,1)", "expected a string literal" },
		{ QUERY_CE, "contains('x',name)", "expected a property name as the first argument" },
		{ QUERY_CE, "contains(name,'x'", "expected ')' to close contains(" },
		{ QUERY_CE, "name%20has%20'x'", "the operator 'has' is not supported" },
		{ QUERY_CE, "name%20in%20('x')", "the operator 'in' is not supported" },
		{ QUERY_FO, "revenue%20add%201%20eq%202", "arithmetic operators are not supported" },
		{ QUERY_CE, "due%20eq%202025-02-30", "not a valid date" },
		{ QUERY_CE, "createdon%20eq%202025-01-31T25:00:00Z", "not a valid date or time" },
		{ QUERY_CE, "createdon%20eq%202025-01-31T10:00:00", "expected a date" },
		{ QUERY_CE, "revenue%20eq%2012.", "digits after the decimal point" },
		{ QUERY_CE, "revenue%20eq%2012abc", "not a valid number" },
		{ QUERY_CE, "revenue%20eq%201e", "exponent" },
		{ QUERY_CE, "primarycontactid/fullname%20eq%20'x'", "navigation paths" },
		{ QUERY_CE, "name%20eq%20Enum'x'", "expected an enum literal" },
		{ QUERY_CE, "a.b%20eq%201", "is not a property name" },
		{ QUERY_CE, "name%20eq%20@p1", "unexpected character '@'" },
		{ QUERY_CE, ",", "expected a property name, a function or '('" },
		{ QUERY_CE, "'x'%20eq%20name", "expected a property name, a function or '('" },
		{ QUERY_CE, "b%20eq%2012345678901234567890123456789012345678901", "longer than 40" },
		{ QUERY_CE, "not", "the filter ended" },
		{ QUERY_CE, "name%20eq%20%C3%A9", "unexpected byte 0xC3" },
		{ QUERY_FO, "Blocked%20eq%20Microsoft.Dynamics.DataEntities.NoYes''", "empty enum member" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char qs[512];
		snprintf(qs, sizeof(qs), "$filter=%s", cases[i].filter);
		parse_bad(qs, cases[i].fl, cases[i].words);
	}
}

static void test_filter_caps(void **state)
{
	(void)state;
	/* nesting */
	char *qs = malloc(QUERY_FILTER_MAX * 2);
	assert_non_null(qs);
	size_t o = (size_t)snprintf(qs, 64, "$filter=");
	for (int i = 0; i < QUERY_DEPTH_MAX + 1; i++)
		qs[o++] = '(';
	o += (size_t)snprintf(qs + o, 64, "a%%20eq%%201");
	for (int i = 0; i < QUERY_DEPTH_MAX + 1; i++)
		qs[o++] = ')';
	qs[o] = '\0';
	parse_bad(qs, QUERY_CE, "nesting deeper than 32");
	/* QUERY_DEPTH_MAX levels are fine */
	o = (size_t)snprintf(qs, 64, "$filter=");
	for (int i = 0; i < QUERY_DEPTH_MAX; i++)
		qs[o++] = '(';
	o += (size_t)snprintf(qs + o, 64, "a%%20eq%%201");
	for (int i = 0; i < QUERY_DEPTH_MAX; i++)
		qs[o++] = ')';
	qs[o] = '\0';
	struct query q;
	parse_ok(qs, QUERY_CE, &q);
	query_clear(&q);
	/* not-chains count as nesting too */
	o = (size_t)snprintf(qs, 64, "$filter=");
	for (int i = 0; i < QUERY_DEPTH_MAX + 1; i++)
		o += (size_t)snprintf(qs + o, 16, "not%%20");
	o += (size_t)snprintf(qs + o, 64, "a%%20eq%%201");
	parse_bad(qs, QUERY_CE, "nesting deeper");
	/* comparison count */
	o = (size_t)snprintf(qs, 64, "$filter=a eq 1");
	for (int i = 0; i < QUERY_NODES_MAX; i++)
		o += (size_t)snprintf(qs + o, 16, " or a eq 1");
	parse_bad(qs, QUERY_CE, "more than 1000 comparisons");
	/* function calls count as comparisons too */
	o = (size_t)snprintf(qs, 64, "$filter=contains(a,'x')");
	for (int i = 0; i < QUERY_NODES_MAX; i++)
		o += (size_t)snprintf(qs + o, 32, " or contains(a,'x')");
	parse_bad(qs, QUERY_CE, "more than 1000 comparisons");
	/* a long name */
	o = (size_t)snprintf(qs, 64, "$filter=");
	memset(qs + o, 'n', 300);
	snprintf(qs + o + 300, 16, " eq 1");
	parse_bad(qs, QUERY_CE, "name longer than 256");
	/* length */
	o = (size_t)snprintf(qs, 64, "$filter=name eq '");
	memset(qs + o, 'x', QUERY_FILTER_MAX);
	o += QUERY_FILTER_MAX;
	snprintf(qs + o, 8, "'");
	parse_bad(qs, QUERY_CE, "over the limit of 32768");
	free(qs);
}

static void sql_ok(const char *qs, enum query_flavour fl, int first, struct query_sql *s)
{
	struct query q;
	parse_ok(qs, fl, &q);
	if (query_to_sql(&q, fl, "r.data", first, types, NULL, "Microsoft.Dynamics.CRM.account", s, err,
			 sizeof(err)) != 0)
		fail_msg("to_sql of '%s' failed: %s", qs, err);
	query_clear(&q);
}

static void sql_bad(const char *qs, enum query_flavour fl, const char *type_name, const char *words)
{
	struct query q;
	struct query_sql s;
	parse_ok(qs, fl, &q);
	err[0] = '\0';
	if (query_to_sql(&q, fl, "r.data", 1, types, NULL, type_name, &s, err, sizeof(err)) != -1)
		fail_msg("'%s' translated", qs);
	assert_null(s.where);
	assert_null(s.params);
	query_clear(&q);
	if (!strstr(err, words))
		fail_msg("'%s': expected '%s' in: %s", qs, words, err);
}

static void test_sql_text_and_params(void **state)
{
	(void)state;
	struct query_sql s;
	sql_ok("$filter=name eq 'x''); DROP TABLE t; --' and employees gt 5&$orderby=createdon desc,name", QUERY_CE, 3,
	       &s);
	assert_string_equal("(COALESCE(lower(r.data->>'name') = lower($3::text), FALSE) AND "
			    "COALESCE((CASE WHEN jsonb_typeof(r.data->'employees') = 'number' THEN "
			    "(r.data->>'employees')::numeric END) > $4::numeric, FALSE))",
			    s.where);
	assert_int_equal(2, s.nparams);
	assert_string_equal("x'); DROP TABLE t; --", s.params[0]);
	assert_string_equal("5", s.params[1]);
	assert_null(strstr(s.where, "DROP"));
	assert_string_equal("(CASE WHEN (r.data->>'createdon') ~ "
			    "'^\\d{4}-\\d{2}-\\d{2}([Tt ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)?$' THEN "
			    "(r.data->>'createdon')::timestamptz END) DESC NULLS LAST, lower(r.data->>'name') ASC NULLS FIRST",
			    s.order_by);
	query_sql_clear(&s);
	query_sql_clear(&s);
	query_sql_clear(NULL);

	{
		/* a long column expression goes through the long-format path */
		char col[700];
		memset(col, 'c', sizeof(col) - 1);
		col[sizeof(col) - 1] = '\0';
		struct query q;
		parse_ok("$filter=revenue gt 1", QUERY_CE, &q);
		assert_int_equal(0, query_to_sql(&q, QUERY_CE, col, 1, types, NULL, NULL, &s, err, sizeof(err)));
		assert_non_null(strstr(s.where, col));
		assert_true(strlen(s.where) > 2 * sizeof(col));
		query_sql_clear(&s);
		query_clear(&q);
	}
	sql_ok("$select=name", QUERY_CE, 1, &s);
	assert_string_equal("TRUE", s.where);
	assert_null(s.order_by);
	assert_int_equal(0, s.nparams);
	query_sql_clear(&s);

	sql_ok("$filter=name eq null or name ne null", QUERY_CE, 1, &s);
	assert_string_equal("(((r.data->>'name') IS NULL) OR ((r.data->>'name') IS NOT NULL))", s.where);
	assert_int_equal(0, s.nparams);
	query_sql_clear(&s);

	sql_ok("$filter=name ne 'a'", QUERY_CE, 1, &s);
	assert_string_equal("(lower(r.data->>'name') IS DISTINCT FROM lower($1::text))", s.where);
	query_sql_clear(&s);

	/* a date literal on a date-time property means midnight UTC */
	sql_ok("$filter=createdon ge 2025-01-31", QUERY_CE, 1, &s);
	assert_string_equal("2025-01-31T00:00:00Z", s.params[0]);
	query_sql_clear(&s);

	/* enum literal compares its member name */
	sql_ok("$filter=Blocked eq Microsoft.Dynamics.DataEntities.CustVendorBlocked'All'", QUERY_FO, 1, &s);
	assert_string_equal("All", s.params[0]);
	query_sql_clear(&s);
}

static void test_sql_like_patterns(void **state)
{
	(void)state;
	struct query_sql s;
	sql_ok("$filter=contains(name,'50%25_a\\b') or startswith(name,'x') or endswith(name,'y')", QUERY_CE, 1, &s);
	assert_int_equal(3, s.nparams);
	assert_string_equal("%50\\%\\_a\\\\b%", s.params[0]);
	assert_string_equal("x%", s.params[1]);
	assert_string_equal("%y", s.params[2]);
	assert_non_null(strstr(s.where, "LIKE lower($1::text)"));
	query_sql_clear(&s);
	/* FO wildcard */
	sql_ok("$filter=name eq '*re%25tail*' and name ne 'a*'", QUERY_FO, 1, &s);
	assert_string_equal("%re\\%tail%", s.params[0]);
	assert_string_equal("a%", s.params[1]);
	assert_non_null(strstr(s.where, "(NOT COALESCE(lower(r.data->>'name') LIKE lower($2::text), FALSE))"));
	query_sql_clear(&s);
	/* on Dataverse '*' is just a character */
	sql_ok("$filter=name eq '*x*'", QUERY_CE, 1, &s);
	assert_string_equal("*x*", s.params[0]);
	assert_null(strstr(s.where, "LIKE"));
	query_sql_clear(&s);
}

static void test_sql_errors(void **state)
{
	(void)state;
	sql_bad("$filter=nope eq 1", QUERY_CE, "Microsoft.Dynamics.CRM.account",
		"Could not find a property named 'nope' on type 'Microsoft.Dynamics.CRM.account'.");
	sql_bad("$filter=nope eq 1", QUERY_CE, NULL, "Could not find a property named 'nope'.");
	sql_bad("$select=name,nope", QUERY_CE, NULL, "'nope'");
	sql_bad("$orderby=nope", QUERY_CE, NULL, "'nope'");
	sql_bad("$filter=contains(nope,'x')", QUERY_CE, NULL, "'nope'");
	sql_bad("$filter=createdon gt '2025-01-01'", QUERY_CE, NULL,
		"A binary operator with incompatible types was detected. Found operand types 'Edm.DateTimeOffset' and "
		"'Edm.String' for operator kind 'GreaterThan'.");
	sql_bad("$filter=name eq 1", QUERY_CE, NULL, "'Edm.String' and 'Edm.Int32' for operator kind 'Equal'");
	sql_bad("$filter=employees ne 'x'", QUERY_CE, NULL, "'Edm.Int32' and 'Edm.String' for operator kind 'NotEqual'");
	sql_bad("$filter=active eq 1", QUERY_CE, NULL, "'Edm.Boolean' and 'Edm.Int32'");
	sql_bad("$filter=accountid eq '00000000-0000-0000-0000-000000000001'", QUERY_CE, NULL, "'Edm.Guid' and 'Edm.String'");
	sql_bad("$filter=due eq 2025-01-01T00:00:00Z", QUERY_CE, NULL, "'Edm.Date' and 'Edm.DateTimeOffset'");
	sql_bad("$filter=Blocked eq 1", QUERY_FO, NULL, "'Edm.Enum' and 'Edm.Int32'");
	sql_bad("$filter=name eq Microsoft.Dynamics.DataEntities.NoYes'Yes'", QUERY_FO, NULL,
		"'Edm.String' and 'Microsoft.Dynamics.DataEntities.NoYes'");
	sql_bad("$filter=active gt true", QUERY_CE, NULL, "The operator 'gt' cannot be used on the Edm.Boolean property");
	sql_bad("$filter=Blocked lt Microsoft.Dynamics.DataEntities.NoYes'Yes'", QUERY_FO, NULL, "use eq or ne");
	sql_bad("$filter=accountid ge 00000000-0000-0000-0000-000000000001", QUERY_CE, NULL, "Edm.Guid");
	sql_bad("$filter=name gt null", QUERY_CE, NULL, "null can only be compared with eq or ne");
	sql_bad("$filter=contains(employees,'1')", QUERY_CE, NULL, "needs a string property");
	struct query q;
	struct query_sql s;
	parse_ok("", QUERY_CE, &q);
	assert_int_equal(-1, query_to_sql(&q, QUERY_CE, "r.data", 0, types, NULL, NULL, &s, err, sizeof(err)));
	assert_int_equal(-1, query_to_sql(&q, QUERY_CE, "", 1, types, NULL, NULL, &s, err, sizeof(err)));
	assert_int_equal(-1, query_to_sql(&q, QUERY_CE, "r.data", 1, NULL, NULL, NULL, &s, err, sizeof(err)));
	query_clear(&q);
}

static void test_type_names(void **state)
{
	(void)state;
	assert_string_equal("Edm.String", query_type_edm(QUERY_T_STRING));
	assert_string_equal("Edm.DateTimeOffset", query_type_edm(QUERY_T_DATETIME));
	assert_string_equal("Edm.Guid", query_type_edm(QUERY_T_GUID));
	assert_string_equal("Edm.Untyped", query_type_edm(QUERY_T_UNKNOWN));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_options),
		cmocka_unit_test(test_parse_option_errors),
		cmocka_unit_test(test_filter_precedence_and_literals),
		cmocka_unit_test(test_filter_syntax_errors),
		cmocka_unit_test(test_filter_caps),
		cmocka_unit_test(test_sql_text_and_params),
		cmocka_unit_test(test_sql_like_patterns),
		cmocka_unit_test(test_sql_errors),
		cmocka_unit_test(test_type_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
