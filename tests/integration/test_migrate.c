/* The migration runner against the real PostgreSQL, one fresh database per test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "log.h"
#include "migrate.h"
#include "store.h"

static char err[1024];

struct fixture {
	char dbname[64];
	PGconn *conn; /* connected to dbname */
};

static PGconn *connect_to(const char *dbname)
{
	const struct store_opts opts = { .application_name = "dw-test-migrate", .dbname = dbname };
	PGconn *conn = NULL;
	if (store_connect(harness_env("DW_PG_DSN"), &opts, &conn, err, sizeof(err)) != 0)
		fail_msg("connect to %s: %s", dbname ? dbname : "(default)", err);
	return conn;
}

/* Runs a statement on the DSN's own database (CREATE/DROP DATABASE cannot be parameterised: the
 * name is generated here and quoted as an identifier). */
static void admin_exec(const char *verb, const char *dbname, const char *suffix)
{
	PGconn *admin = connect_to(NULL);
	char *ident = PQescapeIdentifier(admin, dbname, strlen(dbname));
	assert_non_null(ident);
	char sql[256];
	snprintf(sql, sizeof(sql), "%s %s%s", verb, ident, suffix);
	PQfreemem(ident);
	if (store_exec(admin, sql, 0, NULL, NULL, err, sizeof(err)) != 0)
		fail_msg("%s: %s", sql, err);
	store_close(admin);
}

static int setup(void **state)
{
	static unsigned n;
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dbname, sizeof(f->dbname), "dwt_migrate_%d_%lld_%u", (int)getpid(), harness_now_ms(), n++);
	admin_exec("CREATE DATABASE", f->dbname, "");
	f->conn = connect_to(f->dbname);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	store_close(f->conn);
	admin_exec("DROP DATABASE", f->dbname, " WITH (FORCE)");
	free(f);
	return 0;
}

static long long query_ll(PGconn *conn, const char *sql)
{
	PGresult *r = NULL;
	if (store_exec(conn, sql, 0, NULL, &r, err, sizeof(err)) != 0)
		fail_msg("%s: %s", sql, err);
	assert_int_equal(1, PQntuples(r));
	long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

/* A digest of the public schema: columns, constraints and indexes, as the catalog describes them. */
static void schema_digest(PGconn *conn, char *out, size_t outlen)
{
	static const char sql[] =
		"SELECT md5(coalesce((SELECT string_agg(format('%s.%s %s %s %s %s', table_name, column_name, data_type,"
		"   is_nullable, coalesce(column_default, '-'), ordinal_position), ';' ORDER BY table_name, column_name)"
		"   FROM information_schema.columns WHERE table_schema = 'public'), '') || '|' ||"
		" coalesce((SELECT string_agg(format('%s %s %s', c.conrelid::regclass, c.conname,"
		"   pg_get_constraintdef(c.oid)), ';' ORDER BY c.conrelid::regclass::text, c.conname)"
		"   FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public'), '')"
		" || '|' || coalesce((SELECT string_agg(indexdef, ';' ORDER BY indexname) FROM pg_indexes"
		"   WHERE schemaname = 'public'), '')),"
		" (SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public')";
	PGresult *r = NULL;
	if (store_exec(conn, sql, 0, NULL, &r, err, sizeof(err)) != 0)
		fail_msg("digest: %s", err);
	assert_true(strtol(PQgetvalue(r, 0, 1), NULL, 10) > 0);
	snprintf(out, outlen, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
}

static int shipped_latest(void)
{
	int v = 0;
	assert_int_equal(0, migrate_version(migrate_files[migrate_files_len - 1].name, &v));
	return v;
}

static void test_apply_on_empty_then_again_changes_nothing(void **state)
{
	struct fixture *f = *state;
	struct migrate_result res;
	int latest = shipped_latest();

	assert_int_equal(0, query_ll(f->conn, "SELECT (to_regclass('dw_schema_version') IS NOT NULL)::int"));
	if (migrate_run(f->conn, migrate_files, migrate_files_len, &res, err, sizeof(err)) != 0)
		fail_msg("first run: %s", err);
	assert_int_equal(0, res.from_version);
	assert_int_equal(latest, res.to_version);
	assert_int_equal(migrate_files_len, res.applied);
	/* the state tables of DESIGN section 6 exist */
	static const char *const tables[] = { "dw_map_state",  "dw_record_state",     "dw_applied_event",
					      "dw_txn_part",   "dw_parked_event",     "dw_capture_checkpoint",
					      "dw_schema_version" };
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		char sql[128];
		snprintf(sql, sizeof(sql), "SELECT (to_regclass('%s') IS NOT NULL)::int", tables[i]);
		if (query_ll(f->conn, sql) != 1)
			fail_msg("table %s missing after migration", tables[i]);
	}
	assert_int_equal(migrate_files_len, query_ll(f->conn, "SELECT count(*) FROM dw_schema_version"));
	char before[64], after[64];
	schema_digest(f->conn, before, sizeof(before));
	long long applied_at = query_ll(f->conn, "SELECT extract(epoch FROM max(applied_at))*1000000 FROM dw_schema_version");

	if (migrate_run(f->conn, migrate_files, migrate_files_len, &res, err, sizeof(err)) != 0)
		fail_msg("second run: %s", err);
	assert_int_equal(latest, res.from_version);
	assert_int_equal(latest, res.to_version);
	assert_int_equal(0, res.applied);
	schema_digest(f->conn, after, sizeof(after));
	assert_string_equal(before, after);
	assert_int_equal(migrate_files_len, query_ll(f->conn, "SELECT count(*) FROM dw_schema_version"));
	assert_int_equal(applied_at,
			 query_ll(f->conn, "SELECT extract(epoch FROM max(applied_at))*1000000 FROM dw_schema_version"));

	int current = -1, known = -1;
	assert_int_equal(0, migrate_status(f->conn, migrate_files, migrate_files_len, &current, &known, err, sizeof(err)));
	assert_int_equal(latest, current);
	assert_int_equal(latest, known);
}

static void test_status_of_empty_database(void **state)
{
	struct fixture *f = *state;
	int current = -1, known = -1;
	assert_int_equal(0, migrate_status(f->conn, migrate_files, migrate_files_len, &current, &known, err, sizeof(err)));
	assert_int_equal(0, current);
	assert_int_equal(shipped_latest(), known);
	/* status changes nothing */
	assert_int_equal(0, query_ll(f->conn, "SELECT (to_regclass('dw_schema_version') IS NOT NULL)::int"));
}

/* Two migrators start together on one database. The first migration sleeps so they overlap;
 * without the lock the second would fail on an existing table or a duplicate version row. */
static const struct migrate_file slow_files[] = {
	{ "001_slow.sql", "CREATE TABLE slow_a (x int); SELECT pg_sleep(1);\n" },
	{ "002_next.sql", "CREATE TABLE slow_b (x int);\n" },
};

struct racer {
	const char *dbname;
	pthread_barrier_t *start;
	int rc;
	struct migrate_result res;
	char err[1024];
};

static void *race(void *arg)
{
	struct racer *r = arg;
	const struct store_opts opts = { .application_name = "dw-test-racer", .dbname = r->dbname };
	PGconn *conn = NULL;
	r->rc = store_connect(getenv("DW_PG_DSN"), &opts, &conn, r->err, sizeof(r->err));
	pthread_barrier_wait(r->start);
	if (r->rc == 0)
		r->rc = migrate_run(conn, slow_files, 2, &r->res, r->err, sizeof(r->err));
	store_close(conn);
	return NULL;
}

static void test_concurrent_migrators(void **state)
{
	struct fixture *f = *state;
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, 2);
	struct racer racers[2] = { { .dbname = f->dbname, .start = &start }, { .dbname = f->dbname, .start = &start } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(0, pthread_create(&th[i], NULL, race, &racers[i]));
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&start);
	for (int i = 0; i < 2; i++)
		if (racers[i].rc != 0)
			fail_msg("migrator %d failed: %s", i, racers[i].err);
	/* one applied both, the other found nothing to do */
	assert_int_equal(2, racers[0].res.applied + racers[1].res.applied);
	assert_true(racers[0].res.applied == 0 || racers[1].res.applied == 0);
	assert_int_equal(2, racers[0].res.to_version);
	assert_int_equal(2, racers[1].res.to_version);
	assert_int_equal(2, query_ll(f->conn, "SELECT count(*) FROM dw_schema_version"));
	assert_int_equal(1, query_ll(f->conn, "SELECT (to_regclass('slow_b') IS NOT NULL)::int"));
	/* and the lock was released */
	assert_int_equal(0, query_ll(f->conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"));
}

static void test_newer_database_refused(void **state)
{
	struct fixture *f = *state;
	struct migrate_result res;
	if (migrate_run(f->conn, migrate_files, migrate_files_len, &res, err, sizeof(err)) != 0)
		fail_msg("run: %s", err);
	assert_int_equal(0, store_exec(f->conn,
				       "INSERT INTO dw_schema_version (version, name, checksum) "
				       "VALUES (999, '999_future.sql', 'x')",
				       0, NULL, NULL, err, sizeof(err)));
	char before[64], after[64];
	schema_digest(f->conn, before, sizeof(before));
	err[0] = '\0';
	assert_int_equal(-1, migrate_run(f->conn, migrate_files, migrate_files_len, &res, err, sizeof(err)));
	assert_non_null(strstr(err, "version 999"));
	assert_non_null(strstr(err, "newer"));
	assert_int_equal(999, res.from_version);
	assert_int_equal(0, res.applied);
	schema_digest(f->conn, after, sizeof(after));
	assert_string_equal(before, after);
	int current = 0, known = 0;
	assert_int_equal(0, migrate_status(f->conn, migrate_files, migrate_files_len, &current, &known, err, sizeof(err)));
	assert_int_equal(999, current);
}

static void test_failing_migration_rolls_back(void **state)
{
	struct fixture *f = *state;
	const struct migrate_file files[] = {
		{ "001_good.sql", "CREATE TABLE good (x int);\n" },
		{ "002_bad.sql", "CREATE TABLE half (x int);\nSELECT no_such_function();\n" },
	};
	struct migrate_result res;
	assert_int_equal(-1, migrate_run(f->conn, files, 2, &res, err, sizeof(err)));
	assert_non_null(strstr(err, "002_bad.sql"));
	assert_non_null(strstr(err, "SQLSTATE 42883"));
	assert_int_equal(1, res.applied);
	assert_int_equal(1, res.to_version);
	assert_int_equal(1, query_ll(f->conn, "SELECT (to_regclass('good') IS NOT NULL)::int"));
	assert_int_equal(0, query_ll(f->conn, "SELECT (to_regclass('half') IS NOT NULL)::int"));
	assert_int_equal(1, query_ll(f->conn, "SELECT max(version) FROM dw_schema_version"));
	/* the connection is usable and idle afterwards, and the lock is free */
	assert_int_equal(PQTRANS_IDLE, PQtransactionStatus(f->conn));
	assert_int_equal(0, query_ll(f->conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"));
}

static void test_edited_or_unknown_migration_refused(void **state)
{
	struct fixture *f = *state;
	const struct migrate_file v1[] = { { "001_a.sql", "CREATE TABLE a (x int);\n" } };
	const struct migrate_file edited[] = { { "001_a.sql", "CREATE TABLE a (x bigint);\n" },
					       { "002_b.sql", "CREATE TABLE b (x int);\n" } };
	const struct migrate_file renamed[] = { { "001_first.sql", "CREATE TABLE a (x int);\n" } };
	struct migrate_result res;
	assert_int_equal(0, migrate_run(f->conn, v1, 1, &res, err, sizeof(err)));
	assert_int_equal(-1, migrate_run(f->conn, edited, 2, &res, err, sizeof(err)));
	assert_non_null(strstr(err, "001_a.sql was changed"));
	assert_int_equal(0, query_ll(f->conn, "SELECT (to_regclass('b') IS NOT NULL)::int"));
	assert_int_equal(-1, migrate_run(f->conn, renamed, 1, &res, err, sizeof(err)));
	assert_non_null(strstr(err, "001_first.sql"));
}

/* Migration 005 drops capture's old PostgreSQL staging table, but never with events in it: it
 * stops, names the table and the count, and leaves the schema at version 4; emptied, it goes on. */
static void test_capture_pending_not_dropped_with_events(void **state)
{
	struct fixture *f = *state;
	struct migrate_result res;
	unsigned upto4 = 0;
	int v = 0;
	while (upto4 < migrate_files_len && migrate_version(migrate_files[upto4].name, &v) == 0 && v <= 4)
		upto4++;
	assert_int_equal(4, upto4);
	if (migrate_run(f->conn, migrate_files, upto4, &res, err, sizeof(err)) != 0)
		fail_msg("up to 4: %s", err);
	if (store_exec(f->conn,
		       "INSERT INTO dw_capture_pending (side, environment, txn_id, event_id, event) "
		       "VALUES ('ce', 'prod', 't1', 'e1', '{}')",
		       0, NULL, NULL, err, sizeof(err)) != 0)
		fail_msg("insert: %s", err);
	assert_int_equal(-1, migrate_run(f->conn, migrate_files, migrate_files_len, &res, err, sizeof(err)));
	assert_non_null(strstr(err, "005_"));
	assert_non_null(strstr(err, "dw_capture_pending holds 1 event(s)"));
	assert_int_equal(4, query_ll(f->conn, "SELECT max(version) FROM dw_schema_version"));
	assert_int_equal(1, query_ll(f->conn, "SELECT count(*) FROM dw_capture_pending"));
	if (store_exec(f->conn, "DELETE FROM dw_capture_pending", 0, NULL, NULL, err, sizeof(err)) != 0)
		fail_msg("delete: %s", err);
	if (migrate_run(f->conn, migrate_files, migrate_files_len, &res, err, sizeof(err)) != 0)
		fail_msg("after emptying: %s", err);
	assert_int_equal(0, query_ll(f->conn, "SELECT (to_regclass('dw_capture_pending') IS NOT NULL)::int"));
}

static void test_out_of_order_files_refused_before_touching_db(void **state)
{
	struct fixture *f = *state;
	const struct migrate_file files[] = { { "002_b.sql", "CREATE TABLE b (x int);\n" },
					      { "001_a.sql", "CREATE TABLE a (x int);\n" } };
	struct migrate_result res;
	assert_int_equal(-1, migrate_run(f->conn, files, 2, &res, err, sizeof(err)));
	assert_non_null(strstr(err, "001_a.sql"));
	assert_int_equal(0, query_ll(f->conn, "SELECT (to_regclass('dw_schema_version') IS NOT NULL)::int"));
	assert_int_equal(0, query_ll(f->conn, "SELECT (to_regclass('b') IS NOT NULL)::int"));
}

int main(void)
{
	log_init("test_migrate", LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_apply_on_empty_then_again_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_of_empty_database, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_migrators, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_database_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failing_migration_rolls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edited_or_unknown_migration_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_order_files_refused_before_touching_db, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capture_pending_not_dropped_with_events, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
