/* The PostgreSQL migration runner; see migrate.h for the contract. */
#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"

static const char create_version_table[] =
	"CREATE TABLE IF NOT EXISTS dw_schema_version ("
	" version integer PRIMARY KEY CHECK (version > 0),"
	" name text NOT NULL,"
	" checksum text NOT NULL,"
	" applied_at timestamptz NOT NULL DEFAULT now())";

int migrate_version(const char *name, int *out)
{
	long v = 0;
	size_t i = 0;
	for (; name[i] >= '0' && name[i] <= '9'; i++) {
		if (i == 9)
			return -1;
		v = v * 10 + (name[i] - '0');
	}
	if (i == 0 || name[i] != '_' || v < 1)
		return -1;
	*out = (int)v;
	return 0;
}

int migrate_check(const struct migrate_file *files, unsigned n, char *errbuf, size_t errlen)
{
	int prev = 0;
	for (unsigned i = 0; i < n; i++) {
		int v;
		if (migrate_version(files[i].name, &v) != 0) {
			snprintf(errbuf, errlen, "migration '%s' is not named NNN_description.sql (NNN >= 1)",
				 files[i].name);
			return -1;
		}
		if (v <= prev) {
			snprintf(errbuf, errlen, "migration '%s' (version %d) does not come after version %d",
				 files[i].name, v, prev);
			return -1;
		}
		prev = v;
	}
	return 0;
}

static int latest_version(const struct migrate_file *files, unsigned n)
{
	int v = 0;
	if (n > 0 && migrate_version(files[n - 1].name, &v) != 0)
		v = 0;
	return v;
}

/* Reads one integer from the first cell of a query's result. */
static int query_int(PGconn *conn, const char *sql, int nparams, const char *const *params, int *out, char *errbuf,
		     size_t errlen)
{
	PGresult *r = NULL;
	if (store_exec(conn, sql, nparams, params, &r, errbuf, errlen) != 0)
		return -1;
	int rc = -1;
	if (PQntuples(r) == 1 && PQnfields(r) == 1 && !PQgetisnull(r, 0, 0)) {
		*out = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
		rc = 0;
	} else {
		snprintf(errbuf, errlen, "unexpected result from PostgreSQL");
	}
	PQclear(r);
	return rc;
}

static int current_version(PGconn *conn, int *out, char *errbuf, size_t errlen)
{
	int exists = 0;
	if (query_int(conn, "SELECT (to_regclass('dw_schema_version') IS NOT NULL)::int", 0, NULL, &exists, errbuf,
		      errlen) != 0)
		return -1;
	if (!exists) {
		*out = 0;
		return 0;
	}
	return query_int(conn, "SELECT COALESCE(max(version), 0) FROM dw_schema_version", 0, NULL, out, errbuf, errlen);
}

/* Every applied version must be one of the files, with the same name and SQL. */
static int verify_applied(PGconn *conn, const struct migrate_file *files, unsigned n, char *errbuf, size_t errlen)
{
	PGresult *r = NULL;
	int rc = -1;
	if (store_exec(conn, "SELECT version, name, checksum FROM dw_schema_version ORDER BY version", 0, NULL, &r,
		       errbuf, errlen) != 0)
		goto out;
	for (int row = 0; row < PQntuples(r); row++) {
		int v = (int)strtol(PQgetvalue(r, row, 0), NULL, 10);
		const char *name = PQgetvalue(r, row, 1);
		const struct migrate_file *f = NULL;
		for (unsigned i = 0; i < n && !f; i++) {
			int fv;
			if (migrate_version(files[i].name, &fv) == 0 && fv == v)
				f = &files[i];
		}
		if (!f) {
			snprintf(errbuf, errlen, "database has migration %d (%s) applied, which this program does not have",
				 v, name);
			goto out;
		}
		if (strcmp(f->name, name) != 0) {
			snprintf(errbuf, errlen, "database has migration %d applied as '%s', this program calls it '%s'",
				 v, name, f->name);
			goto out;
		}
		int same = 0;
		const char *params[] = { f->sql, PQgetvalue(r, row, 2) };
		if (query_int(conn, "SELECT (md5($1) = $2)::int", 2, params, &same, errbuf, errlen) != 0)
			goto out;
		if (!same) {
			snprintf(errbuf, errlen,
				 "migration %s was changed after it was applied to this database; "
				 "add a new migration instead of editing an applied one",
				 f->name);
			goto out;
		}
	}
	rc = 0;
out:
	PQclear(r);
	return rc;
}

static int apply_one(PGconn *conn, const struct migrate_file *f, int version, char *errbuf, size_t errlen)
{
	char why[768], v[16];
	snprintf(v, sizeof(v), "%d", version);
	const char *params[] = { v, f->name, f->sql };
	if (store_begin(conn, why, sizeof(why)) != 0 || store_exec_script(conn, f->sql, why, sizeof(why)) != 0 ||
	    store_exec(conn, "INSERT INTO dw_schema_version (version, name, checksum) VALUES ($1::int, $2, md5($3))", 3,
		       params, NULL, why, sizeof(why)) != 0 ||
	    store_commit(conn, why, sizeof(why)) != 0) {
		char ignored[256];
		(void)store_rollback(conn, ignored, sizeof(ignored));
		snprintf(errbuf, errlen, "migration %s failed and was rolled back: %s", f->name, why);
		return -1;
	}
	return 0;
}

int migrate_run(PGconn *conn, const struct migrate_file *files, unsigned n, struct migrate_result *res, char *errbuf,
		size_t errlen)
{
	int rc = -1, locked = 0;
	char key[24];
	snprintf(key, sizeof(key), "%lld", (long long)MIGRATE_LOCK_KEY);
	const char *lock_params[] = { key };
	memset(res, 0, sizeof(*res));

	if (migrate_check(files, n, errbuf, errlen) != 0)
		goto out;
	int latest = latest_version(files, n);
	if (store_exec(conn, "SELECT pg_advisory_lock($1::bigint)", 1, lock_params, NULL, errbuf, errlen) != 0)
		goto out;
	locked = 1;
	if (store_exec(conn, create_version_table, 0, NULL, NULL, errbuf, errlen) != 0)
		goto out;
	if (current_version(conn, &res->from_version, errbuf, errlen) != 0)
		goto out;
	res->to_version = res->from_version;
	if (res->from_version > latest) {
		snprintf(errbuf, errlen,
			 "database schema is at version %d, newer than this program knows (latest %d); "
			 "refusing to run: use the dualwrite release that brought it to version %d or later",
			 res->from_version, latest, res->from_version);
		goto out;
	}
	if (verify_applied(conn, files, n, errbuf, errlen) != 0)
		goto out;
	for (unsigned i = 0; i < n; i++) {
		int v;
		if (migrate_version(files[i].name, &v) != 0 || v <= res->to_version)
			continue;
		if (apply_one(conn, &files[i], v, errbuf, errlen) != 0)
			goto out;
		res->to_version = v;
		res->applied++;
		log_info("migration applied", "migration", files[i].name);
	}
	rc = 0;
out:
	if (locked) {
		char ignored[256];
		(void)store_rollback(conn, ignored, sizeof(ignored));
		if (store_exec(conn, "SELECT pg_advisory_unlock($1::bigint)", 1, lock_params, NULL, ignored,
			       sizeof(ignored)) != 0)
			log_warn("could not release the migration lock (it goes with the connection)", "reason",
				 ignored);
	}
	return rc;
}

int migrate_status(PGconn *conn, const struct migrate_file *files, unsigned n, int *current, int *latest,
		   char *errbuf, size_t errlen)
{
	if (migrate_check(files, n, errbuf, errlen) != 0)
		return -1;
	*latest = latest_version(files, n);
	return current_version(conn, current, errbuf, errlen);
}
