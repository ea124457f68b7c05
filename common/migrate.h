#ifndef DW_MIGRATE_H
#define DW_MIGRATE_H

/* One SQL migration compiled into the programs (see deploy/tools/embed-sql.sh). `name` is the file
 * name, "NNN_description.sql"; NNN is the schema version it brings the database to. */
struct migrate_file {
	const char *name;
	const char *sql;
};

extern const struct migrate_file migrate_files[]; /* sorted by version */
extern const unsigned migrate_files_len;

#endif
