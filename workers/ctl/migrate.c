/* `ctl migrate`: brings the PostgreSQL schema up to date, or reports where it stands. */
#include <getopt.h>
#include <stdio.h>

#include "config.h"
#include "ctl.h"
#include "migrate.h"
#include "store.h"

#define MIGRATE_STATEMENT_TIMEOUT_MS (15L * 60 * 1000) /* a migration may rebuild an index */

static const char usage[] =
	"usage: ctl migrate [--status]\n"
	"\n"
	"Applies the PostgreSQL migrations this program carries (schemas/sql/NNN_*.sql, compiled in)\n"
	"that the database does not have yet, each in its own transaction, and prints what it applied\n"
	"or \"schema is up to date (version N)\". Running it again applies nothing. Concurrent runs are\n"
	"safe (an advisory lock serialises them). A database at a newer version than this program\n"
	"knows is refused.\n"
	"\n"
	"options:\n"
	"  --status    print the database's version and the latest this program knows; change nothing\n"
	"  -h, --help  this text\n"
	"\n"
	"settings: DW_PG_DSN or DW_PG_DSN_FILE (libpq connection string or postgresql:// URI)\n"
	"exit status: 0 done, 1 failed, 2 usage error\n";

static int run(int argc, char **argv, const struct config_common *cfg)
{
	static const struct option longopts[] = {
		{ "status", no_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	int status_only = 0, opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (opt == 's')
			status_only = 1;
		else
			return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "ctl migrate: unexpected argument '%s' (see ctl migrate --help)\n", argv[optind]);
		return 2;
	}
	if (!cfg->pg_dsn) {
		fprintf(stderr, "ctl migrate: DW_PG_DSN (or DW_PG_DSN_FILE) is not set\n");
		return 1;
	}

	int rc = 1;
	char err[1024];
	PGconn *conn = NULL;
	const struct store_opts opts = {
		.application_name = "dualwrite-ctl-migrate",
		.statement_timeout_ms = MIGRATE_STATEMENT_TIMEOUT_MS,
	};
	if (store_connect(cfg->pg_dsn, &opts, &conn, err, sizeof(err)) != 0) {
		fprintf(stderr, "ctl migrate: %s\n", err);
		goto out;
	}
	if (status_only) {
		int current, latest;
		if (migrate_status(conn, migrate_files, migrate_files_len, &current, &latest, err, sizeof(err)) != 0) {
			fprintf(stderr, "ctl migrate: %s\n", err);
			goto out;
		}
		printf("database schema version: %d\nlatest known version:    %d\n", current, latest);
		if (current < latest)
			printf("migrations pending: run `ctl migrate`\n");
		else if (current > latest)
			printf("the database is newer than this program\n");
		rc = 0;
		goto out;
	}
	struct migrate_result res;
	int mrc = migrate_run(conn, migrate_files, migrate_files_len, &res, err, sizeof(err));
	for (unsigned i = 0; i < migrate_files_len; i++) {
		int v;
		if (migrate_version(migrate_files[i].name, &v) == 0 && v > res.from_version && v <= res.to_version)
			printf("applied %s\n", migrate_files[i].name);
	}
	if (mrc != 0) {
		fprintf(stderr, "ctl migrate: %s\n", err);
		goto out;
	}
	if (res.applied == 0)
		printf("schema is up to date (version %d)\n", res.to_version);
	else
		printf("schema is now at version %d\n", res.to_version);
	rc = 0;
out:
	store_close(conn);
	return rc;
}

const struct ctl_command ctl_migrate_command = {
	.name = "migrate",
	.summary = "apply pending PostgreSQL migrations (--status: show versions)",
	.usage = usage,
	.run = run,
};
