/* PostgreSQL helpers against the real server: session settings, parameters, errors, secrecy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "log.h"
#include "store.h"

static char err[1024];

static PGconn *connect_default(const struct store_opts *opts)
{
	PGconn *conn = NULL;
	if (store_connect(harness_env("DW_PG_DSN"), opts, &conn, err, sizeof(err)) != 0)
		fail_msg("connect: %s", err);
	return conn;
}

/* First cell of a one-row query, copied into out. */
static void query_text(PGconn *conn, const char *sql, int n, const char *const *params, char *out, size_t outlen)
{
	PGresult *r = NULL;
	if (store_exec(conn, sql, n, params, &r, err, sizeof(err)) != 0)
		fail_msg("%s: %s", sql, err);
	assert_int_equal(1, PQntuples(r));
	snprintf(out, outlen, "%s", PQgetisnull(r, 0, 0) ? "(null)" : PQgetvalue(r, 0, 0));
	PQclear(r);
}

static void test_session_settings(void **state)
{
	(void)state;
	const struct store_opts opts = { .application_name = "dw-test-store", .statement_timeout_ms = 1500 };
	PGconn *conn = connect_default(&opts);
	char v[256];
	query_text(conn, "SELECT current_setting('application_name')", 0, NULL, v, sizeof(v));
	assert_string_equal("dw-test-store", v);
	query_text(conn, "SELECT current_setting('statement_timeout')", 0, NULL, v, sizeof(v));
	assert_string_equal("1500ms", v);
	/* and the timeout really cancels a long statement */
	long long t0 = harness_now_ms();
	assert_int_equal(STORE_ERR, store_exec(conn, "SELECT pg_sleep(5)", 0, NULL, NULL, err, sizeof(err)));
	assert_true(harness_now_ms() - t0 < 4000);
	assert_non_null(strstr(err, "SQLSTATE 57014"));
	/* the connection is still usable afterwards */
	query_text(conn, "SELECT 1", 0, NULL, v, sizeof(v));
	assert_string_equal("1", v);
	store_close(conn);
}

static void test_dbname_override(void **state)
{
	(void)state;
	const struct store_opts opts = { .dbname = "postgres" };
	PGconn *conn = connect_default(&opts);
	char v[256];
	query_text(conn, "SELECT current_database()", 0, NULL, v, sizeof(v));
	assert_string_equal("postgres", v);
	store_close(conn);
}

static void test_parameters_pass_verbatim(void **state)
{
	(void)state;
	PGconn *conn = connect_default(NULL);
	const char *tricky = "O'Brien'); DROP TABLE x; -- \"quoted\" \\ backslash";
	const char *params[] = { tricky };
	const char *null_param[] = { NULL };
	char v[256];
	query_text(conn, "SELECT $1::text", 1, params, v, sizeof(v));
	assert_string_equal(tricky, v);
	query_text(conn, "SELECT $1::text", 1, null_param, v, sizeof(v));
	assert_string_equal("(null)", v);
	store_close(conn);
}

static void test_error_has_sqlstate_and_message(void **state)
{
	(void)state;
	PGconn *conn = connect_default(NULL);
	PGresult *r = (PGresult *)0x1; /* must be left alone on failure */
	assert_int_equal(STORE_ERR, store_exec(conn, "SELECT * FROM no_such_table_xyz", 0, NULL, &r, err, sizeof(err)));
	assert_ptr_equal((PGresult *)0x1, r);
	assert_non_null(strstr(err, "SQLSTATE 42P01"));
	assert_non_null(strstr(err, "no_such_table_xyz"));
	assert_null(strchr(err, '\n'));
	store_close(conn);
}

static void test_transactions(void **state)
{
	(void)state;
	PGconn *conn = connect_default(NULL);
	char v[64];
	assert_int_equal(0, store_exec(conn, "CREATE TEMP TABLE t (x int)", 0, NULL, NULL, err, sizeof(err)));
	assert_int_equal(0, store_begin(conn, err, sizeof(err)));
	assert_int_equal(0, store_exec(conn, "INSERT INTO t VALUES (1)", 0, NULL, NULL, err, sizeof(err)));
	assert_int_equal(0, store_rollback(conn, err, sizeof(err)));
	query_text(conn, "SELECT count(*) FROM t", 0, NULL, v, sizeof(v));
	assert_string_equal("0", v);
	assert_int_equal(0, store_begin(conn, err, sizeof(err)));
	assert_int_equal(0, store_exec(conn, "INSERT INTO t VALUES (2)", 0, NULL, NULL, err, sizeof(err)));
	assert_int_equal(0, store_commit(conn, err, sizeof(err)));
	query_text(conn, "SELECT count(*) FROM t", 0, NULL, v, sizeof(v));
	assert_string_equal("1", v);
	/* a failed statement aborts the transaction; rollback recovers it */
	assert_int_equal(0, store_begin(conn, err, sizeof(err)));
	assert_int_equal(STORE_ERR, store_exec(conn, "SELECT 1/0", 0, NULL, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "SQLSTATE 22012"));
	assert_int_equal(0, store_rollback(conn, err, sizeof(err)));
	assert_int_equal(0, store_rollback(conn, err, sizeof(err))); /* no transaction: harmless */
	query_text(conn, "SELECT count(*) FROM t", 0, NULL, v, sizeof(v));
	assert_string_equal("1", v);
	store_close(conn);
}

static void test_lost_connection_is_retryable_then_reopened(void **state)
{
	(void)state;
	PGconn *victim = connect_default(NULL);
	PGconn *killer = connect_default(NULL);
	char pid[16], v[16];
	snprintf(pid, sizeof(pid), "%d", PQbackendPID(victim));
	const char *params[] = { pid };
	query_text(killer, "SELECT pg_terminate_backend($1::int)::text", 1, params, v, sizeof(v));
	assert_string_equal("true", v);
	assert_int_equal(STORE_ERR_RETRY, store_exec(victim, "SELECT 1", 0, NULL, NULL, err, sizeof(err)));
	assert_int_equal(0, store_rollback(victim, err, sizeof(err)));
	/* the next statement opens the connection again: a new session, the statement timeout kept */
	assert_int_equal(0, store_exec(victim, "SELECT 1", 0, NULL, NULL, err, sizeof(err)));
	assert_int_equal(CONNECTION_OK, PQstatus(victim));
	char pid2[16];
	snprintf(pid2, sizeof(pid2), "%d", PQbackendPID(victim));
	assert_string_not_equal(pid, pid2);
	query_text(victim, "SELECT current_setting('statement_timeout')", 0, NULL, v, sizeof(v));
	assert_string_not_equal("0", v);
	/* a transaction started after the reset is a whole one */
	assert_int_equal(0, store_begin(victim, err, sizeof(err)));
	assert_int_equal(PQTRANS_INTRANS, PQtransactionStatus(victim));
	assert_int_equal(0, store_commit(victim, err, sizeof(err)));
	store_close(victim);
	store_close(killer);
}

/* The DSN's password must never show up in an error, whatever went wrong. */
static void test_password_never_in_errors(void **state)
{
	(void)state;
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(harness_env("DW_PG_DSN"), &perr);
	assert_non_null(opts);
	const char *host = "127.0.0.1", *port = "5432", *user = "dualwrite";
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (o->val && strcmp(o->keyword, "host") == 0)
			host = o->val;
		if (o->val && strcmp(o->keyword, "port") == 0)
			port = o->val;
		if (o->val && strcmp(o->keyword, "user") == 0)
			user = o->val;
	}
	const char *secret = "Wr0ngPassw0rd-Zq9";
	char dsn[512];
	PGconn *conn = NULL;

	snprintf(dsn, sizeof(dsn), "host=%s port=%s user=%s dbname=dualwrite password=%s", host, port, user, secret);
	assert_int_equal(STORE_ERR, store_connect(dsn, NULL, &conn, err, sizeof(err)));
	assert_null(conn);
	assert_non_null(strstr(err, "password authentication failed"));
	assert_null(strstr(err, secret));

	snprintf(dsn, sizeof(dsn), "postgresql://%s:%s@%s:%s/dualwrite", user, secret, host, port);
	assert_int_equal(STORE_ERR, store_connect(dsn, NULL, &conn, err, sizeof(err)));
	assert_null(strstr(err, secret));

	snprintf(dsn, sizeof(dsn), "host=%s password=%s nonsense", host, secret);
	assert_int_equal(STORE_ERR, store_connect(dsn, NULL, &conn, err, sizeof(err)));
	assert_non_null(strstr(err, "not valid"));
	assert_null(strstr(err, secret));

	snprintf(dsn, sizeof(dsn), "postgresql://%s:%s@%s:%s/dualwrite?bogus_option=1", user, secret, host, port);
	assert_int_equal(STORE_ERR, store_connect(dsn, NULL, &conn, err, sizeof(err)));
	assert_null(strstr(err, secret));
	PQconninfoFree(opts);
}

int main(void)
{
	log_init("test_store", LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session_settings),
		cmocka_unit_test(test_dbname_override),
		cmocka_unit_test(test_parameters_pass_verbatim),
		cmocka_unit_test(test_error_has_sqlstate_and_message),
		cmocka_unit_test(test_transactions),
		cmocka_unit_test(test_lost_connection_is_retryable_then_reopened),
		cmocka_unit_test(test_password_never_in_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
