/*
 * Proves the $filter/$orderby translation on the real PostgreSQL: rows go into a temporary table
 * with a JSONB column, each query string is parsed and translated, the SQL runs with its
 * parameters, and the ids it returns are compared with the rows the OData semantics select.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "query.h"

static char err[512];

static const char *const ROWS[] = {
	/* 1 */ "{\"name\":\"Contoso\",\"revenue\":100.5,\"employees\":10,\"ratio\":0.5,\"active\":true,"
		"\"createdon\":\"2025-01-31T10:00:00Z\",\"due\":\"2025-02-01\","
		"\"accountid\":\"aaaaaaaa-0000-0000-0000-000000000001\",\"Blocked\":\"No\"}",
	/* 2 */ "{\"name\":\"O'Brien & Sons\",\"revenue\":-5,\"employees\":0,\"active\":false,"
		"\"createdon\":\"2024-12-31T23:59:59+01:00\",\"due\":\"2024-02-29\","
		"\"accountid\":\"AAAAAAAA-0000-0000-0000-000000000002\",\"Blocked\":\"All\"}",
	/* 3 */ "{\"name\":\"100% Retail_Co\",\"revenue\":null,\"employees\":250,\"active\":true,"
		"\"createdon\":\"2025-06-01T00:00:00Z\",\"Blocked\":\"Invoice\"}",
	/* 4: values of the wrong JSON type must not break a query */
	"{\"name\":\"contoso retail\",\"employees\":\"12\",\"active\":\"yes\",\"createdon\":\"2025-01-31T10:00:00Z trailing junk\","
	"\"due\":\"soon\",\"Blocked\":\"No\"}",
	/* 5 */ "{\"name\":null}",
	/* 6 */ "{\"name\":\"\xc3\x9cn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9/slash\\\\back\",\"revenue\":1e3,\"ratio\":2.25,"
		"\"active\":false,\"Blocked\":\"Invoice\"}",
};
#define NROWS (sizeof(ROWS) / sizeof(ROWS[0]))

static enum query_type types(void *ctx, const char *name)
{
	(void)ctx;
	static const struct {
		const char *name;
		enum query_type t;
	} f[] = {
		{ "name", QUERY_T_STRING },   { "revenue", QUERY_T_DECIMAL },   { "employees", QUERY_T_INT },
		{ "ratio", QUERY_T_DOUBLE },  { "active", QUERY_T_BOOL },       { "createdon", QUERY_T_DATETIME },
		{ "due", QUERY_T_DATE },      { "accountid", QUERY_T_GUID },    { "Blocked", QUERY_T_ENUM },
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (strcmp(f[i].name, name) == 0)
			return f[i].t;
	return QUERY_T_UNKNOWN;
}

static int setup(void **state)
{
	PGconn *c = PQconnectdb(harness_env("DW_PG_DSN"));
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("connect: %s", PQerrorMessage(c));
	PGresult *r = PQexec(c, "SET statement_timeout = '10s'; "
				"CREATE TEMP TABLE qrows (id int PRIMARY KEY, tag text NOT NULL, data jsonb NOT NULL)");
	assert_int_equal(PGRES_COMMAND_OK, PQresultStatus(r));
	PQclear(r);
	for (size_t i = 0; i < NROWS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "%zu", i + 1);
		const char *vals[] = { id, ROWS[i] };
		r = PQexecParams(c, "INSERT INTO qrows VALUES ($1::int, 'mine', $2::jsonb)", 2, NULL, vals, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			fail_msg("insert row %zu: %s", i + 1, PQerrorMessage(c));
		PQclear(r);
	}
	/* a row of another tag that no filter may return: proves the $1 placeholder stays the caller's */
	const char *other[] = { "{\"name\":\"Contoso\"}" };
	r = PQexecParams(c, "INSERT INTO qrows VALUES (99, 'other', $1::jsonb)", 1, NULL, other, NULL, NULL, 0);
	assert_int_equal(PGRES_COMMAND_OK, PQresultStatus(r));
	PQclear(r);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	PQfinish(*state);
	return 0;
}

/* Runs the query string and returns the ids, comma-separated (static buffer). */
static const char *run(PGconn *c, enum query_flavour fl, const char *qs)
{
	static char ids[256];
	struct query q;
	struct query_sql s;
	if (query_parse(qs, strlen(qs), fl, &q, err, sizeof(err)) != 0)
		fail_msg("parse '%s': %s", qs, err);
	if (query_to_sql(&q, fl, "r.data", 2, types, NULL, NULL, &s, err, sizeof(err)) != 0)
		fail_msg("to_sql '%s': %s", qs, err);
	char sql[8192];
	snprintf(sql, sizeof(sql), "SELECT id FROM qrows r WHERE r.tag = $1 AND (%s) ORDER BY %s%sid", s.where,
		 s.order_by ? s.order_by : "", s.order_by ? ", " : "");
	const char *params[64];
	assert_true(s.nparams < 63);
	params[0] = "mine";
	for (size_t i = 0; i < s.nparams; i++)
		params[i + 1] = s.params[i];
	PGresult *r = PQexecParams(c, sql, (int)s.nparams + 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("'%s' -> %s: %s", qs, sql, PQerrorMessage(c));
	size_t o = 0;
	ids[0] = '\0';
	for (int i = 0; i < PQntuples(r); i++)
		o += (size_t)snprintf(ids + o, sizeof(ids) - o, "%s%s", i ? "," : "", PQgetvalue(r, i, 0));
	PQclear(r);
	query_sql_clear(&s);
	query_clear(&q);
	return ids;
}

struct qcase {
	enum query_flavour fl;
	const char *qs;
	const char *ids;
};

static void check(PGconn *c, const struct qcase *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *got = run(c, cases[i].fl, cases[i].qs);
		if (strcmp(got, cases[i].ids) != 0)
			fail_msg("%s: got [%s], want [%s]", cases[i].qs, got, cases[i].ids);
	}
}

static void test_strings_and_nulls(void **state)
{
	static const struct qcase cases[] = {
		{ QUERY_CE, "$filter=name eq 'contoso'", "1" },
		{ QUERY_CE, "$filter=name ne 'contoso'", "2,3,4,5,6" },
		{ QUERY_CE, "$filter=name eq null", "5" },
		{ QUERY_CE, "$filter=name ne null", "1,2,3,4,6" },
		{ QUERY_CE, "$filter=name%20eq%20'O''Brien%20%26%20Sons'", "2" },
		{ QUERY_CE, "$filter=name eq 'x'' OR 1=1 --'", "" },
		{ QUERY_CE, "$filter=name eq '%C3%9Cn%C3%AFc%C3%B6d%C3%A9%2Fslash%5Cback'", "6" },
		{ QUERY_CE, "$filter=name gt 'm'", "2,6" },
		{ QUERY_CE, "$filter=contains(name,'retail')", "3,4" },
		{ QUERY_CE, "$filter=contains(name,'%25')", "3" },
		{ QUERY_CE, "$filter=contains(name,'_')", "3" },
		{ QUERY_CE, "$filter=contains(name,'\\')", "6" },
		{ QUERY_CE, "$filter=startswith(name,'CON')", "1,4" },
		{ QUERY_CE, "$filter=endswith(name,'sons')", "2" },
		{ QUERY_CE, "$filter=not contains(name,'o')", "5,6" },
		{ QUERY_CE, "$filter=name eq '*retail*'", "" },
		{ QUERY_FO, "$filter=name eq '*retail*'", "3,4" },
		{ QUERY_FO, "$filter=name eq '100%25*'", "3" },
		{ QUERY_FO, "$filter=name eq '*_co'", "3" },
		{ QUERY_FO, "$filter=name ne '*retail*'", "1,2,5,6" },
		{ QUERY_FO, "$filter=name eq 'CONTOSO'", "1" },
	};
	check(*state, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_numbers_bools_dates_guids_enums(void **state)
{
	static const struct qcase cases[] = {
		{ QUERY_CE, "$filter=revenue gt 0", "1,6" },
		{ QUERY_CE, "$filter=revenue le 0", "2" },
		{ QUERY_CE, "$filter=revenue eq 1000", "6" },
		{ QUERY_CE, "$filter=revenue eq 1e3", "6" },
		{ QUERY_CE, "$filter=revenue eq null", "3,4,5" },
		{ QUERY_CE, "$filter=not (revenue gt 0)", "2,3,4,5" },
		{ QUERY_CE, "$filter=revenue ne 100.5", "2,3,4,5,6" },
		{ QUERY_CE, "$filter=employees ge 10 and employees lt 100", "1" },
		{ QUERY_CE, "$filter=employees eq 12", "" },
		{ QUERY_CE, "$filter=ratio gt 0.75", "6" },
		{ QUERY_CE, "$filter=active eq true", "1,3" },
		{ QUERY_CE, "$filter=active ne true", "2,4,5,6" },
		{ QUERY_CE, "$filter=active eq false", "2,6" },
		{ QUERY_CE, "$filter=createdon gt 2025-01-01", "1,3" },
		{ QUERY_CE, "$filter=createdon lt 2025-01-01T00:00:00%2B01:00", "2" },
		{ QUERY_CE, "$filter=createdon ge 2025-01-31T10:00:00Z and createdon le 2025-01-31T10:00:00.000Z", "1" },
		{ QUERY_CE, "$filter=createdon eq null", "5,6" },
		{ QUERY_CE, "$filter=due eq 2024-02-29", "2" },
		{ QUERY_CE, "$filter=due gt 2024-03-01", "1" },
		{ QUERY_CE, "$filter=accountid eq AAAAAAAA-0000-0000-0000-000000000001", "1" },
		{ QUERY_CE, "$filter=accountid eq aaaaaaaa-0000-0000-0000-000000000002", "2" },
		{ QUERY_CE, "$filter=accountid ne aaaaaaaa-0000-0000-0000-000000000002", "1,3,4,5,6" },
		{ QUERY_FO, "$filter=Blocked eq Microsoft.Dynamics.DataEntities.CustVendorBlocked'All'", "2" },
		{ QUERY_FO, "$filter=Blocked ne Microsoft.Dynamics.DataEntities.CustVendorBlocked'No'", "2,3,5,6" },
		{ QUERY_FO, "$filter=Blocked eq 'invoice'", "3,6" },
		{ QUERY_CE, "$filter=(name eq 'contoso' or revenue lt 0) and active eq false", "2" },
		{ QUERY_CE, "$filter=name eq 'contoso' or revenue lt 0 and active eq true", "1" },
		{ QUERY_CE, "$filter=not (active eq true or revenue gt 500)", "2,4,5" },
	};
	check(*state, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_orderby(void **state)
{
	static const struct qcase cases[] = {
		{ QUERY_CE, "$orderby=revenue desc", "6,1,2,3,4,5" },
		{ QUERY_CE, "$orderby=revenue", "3,4,5,2,1,6" },
		{ QUERY_CE, "$orderby=name", "5,3,1,4,2,6" },
		{ QUERY_CE, "$orderby=createdon desc,name", "3,1,2,5,4,6" },
		{ QUERY_CE, "$filter=active eq true&$orderby=employees desc", "3,1" },
		{ QUERY_FO, "$orderby=due asc", "3,4,5,6,2,1" },
	};
	check(*state, cases, sizeof(cases) / sizeof(cases[0]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strings_and_nulls),
		cmocka_unit_test(test_numbers_bools_dates_guids_enums),
		cmocka_unit_test(test_orderby),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
