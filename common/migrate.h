#ifndef DW_MIGRATE_H
#define DW_MIGRATE_H

#include <stddef.h>

#include <libpq-fe.h>

/* One SQL migration compiled into the programs (see deploy/tools/embed-sql.sh). `name` is the file
 * name, "NNN_description.sql"; NNN is the schema version it brings the database to. */
struct migrate_file {
	const char *name;
	const char *sql;
};

extern const struct migrate_file migrate_files[]; /* sorted by version */
extern const unsigned migrate_files_len;

/*
 * The migration runner. The database records applied versions in dw_schema_version (version,
 * file name, md5 of the SQL, time). A run takes a PostgreSQL advisory lock (so concurrent
 * migrators queue instead of racing), refuses a database whose version is newer than the newest
 * file given, refuses one whose applied migrations differ from the files (renamed or edited after
 * they were applied), then applies each pending file in its own transaction together with its
 * version row. A run with nothing pending changes nothing.
 */

#define MIGRATE_LOCK_KEY 0x6477000000000001LL /* "dw" + 1: the advisory lock the runner holds */

struct migrate_result {
	int from_version; /* the database's version before the run (0: empty) */
	int to_version;   /* its version afterwards */
	unsigned applied; /* how many files were applied */
};

/* The version of a file name "NNN_description.sql": NNN is 1 to 9 digits, value >= 1, followed by
 * '_'. Returns 0 with *out set, or -1 when the name does not have that form. Pure. */
int migrate_version(const char *name, int *out) __attribute__((warn_unused_result));

/* Checks that every file has a version and that versions strictly increase in the order given.
 * Returns 0, or -1 with errbuf naming the offending file. Pure. */
int migrate_check(const struct migrate_file *files, unsigned n, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Brings the database on `conn` up to the newest of the n files (see above). Borrows conn and
 * files; conn must not be inside a transaction. Fills *res (also on failure: what was done
 * before it). Returns 0, or -1 with errbuf (a failing migration is named and rolled back; the
 * ones before it stay applied). */
int migrate_run(PGconn *conn, const struct migrate_file *files, unsigned n, struct migrate_result *res, char *errbuf,
		size_t errlen) __attribute__((warn_unused_result));

/* Reads the database's current version (0 when never migrated) and the newest version among the
 * files. Returns 0, or -1 with errbuf. */
int migrate_status(PGconn *conn, const struct migrate_file *files, unsigned n, int *current, int *latest,
		   char *errbuf, size_t errlen) __attribute__((warn_unused_result));

#endif
