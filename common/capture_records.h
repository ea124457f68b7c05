#ifndef DW_CAPTURE_RECORDS_H
#define DW_CAPTURE_RECORDS_H

#include <stddef.h>

#include <libpq-fe.h>

/*
 * Capture state in PostgreSQL: checkpoints (dw_capture_checkpoint) and the capture record table
 * (dw_capture_record); see
 * schemas/sql/003_capture.sql and docs/capture.md. A small pool of connections serves the
 * webhook threads, the poller and the transaction flusher; every function is thread-safe and
 * takes a connection for the duration of the call. A lost connection is reset once and the
 * statement retried.
 *
 * Return codes: 0 or -1 with errbuf (SQLSTATE and the server's message; never the DSN).
 */

struct capture_records;

/*
 * Statements on a caller's own connection (ctl initial-sync runs them inside its own PostgreSQL
 * transaction); the same SQL the pooled functions below use. Return 0 or -1 with errbuf.
 */

/* Checkpoint of (side, env, entity, kind): *pos is a new string (free()) or NULL when none. */
int capture_records_checkpoint_load(PGconn *c, const char *side, const char *env, const char *entity,
				    const char *kind, char **pos, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Stores (upserts) the checkpoint position. */
int capture_records_checkpoint_save(PGconn *c, const char *side, const char *env, const char *entity,
				    const char *kind, const char *pos, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Removes the checkpoint (no error when there is none). */
int capture_records_checkpoint_drop(PGconn *c, const char *side, const char *env, const char *entity,
				    const char *kind, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Records published create/update/snapshot rows, rows_json = [{"id","key","version","alive"?}]
 * (alive optional, default false); the rules of capture_records_confirm. */
int capture_records_confirm_json(PGconn *c, const char *side, const char *env, const char *entity,
				 const char *rows_json, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* FO: assigns the versions of a page of images, rows_json = [{"i","id","key","hash","modified"?}],
 * one statement, with the rules of capture_records_fo_version; *res (caller PQclear()s) holds one
 * row (i, version) per row versioned; a row missing from it is older than what was recorded and must
 * not be published. */
int capture_records_fo_versions_json(PGconn *c, const char *env, const char *entity, const char *rows_json,
				     PGresult **res, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Opens `nconn` connections to dsn. On success *out is new (free with capture_records_free). */
int capture_records_new(const char *dsn, int nconn, struct capture_records **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Closes every connection and frees; NULL-safe. No call may be running. */
void capture_records_free(struct capture_records *r);

/* The checkpoint position of (side, env, entity, kind) into *pos (new string, free()), or *pos
 * NULL when there is none. */
int capture_records_checkpoint_get(struct capture_records *r, const char *side, const char *env, const char *entity,
			   const char *kind, char **pos, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Stores (upserts) the checkpoint position. */
int capture_records_checkpoint_set(struct capture_records *r, const char *side, const char *env, const char *entity,
			   const char *kind, const char *pos, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* What capture knows of one record. */
struct capture_records_state {
	int known;          /* 0: never captured */
	long long version;  /* highest create/update version published */
	long long deleted;  /* tombstone version, 0 when alive */
};

/* Looks up ids[0..n) of (side, env, entity) in one statement; out[i] for ids[i]. */
int capture_records_state(struct capture_records *r, const char *side, const char *env, const char *entity, const char *const *ids,
		  size_t n, struct capture_records_state *out, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Records published create/update events in one statement: for each i, record ids[i] with key
 * keys_json[i] (a JSON object) and versions[i]: version = max(old, new) (the key follows the newer
 * version); the tombstone is cleared when alive[i] is non-zero (the row was seen to exist) or the
 * new version is above it. */
int capture_records_confirm(struct capture_records *r, const char *side, const char *env, const char *entity, size_t n,
		    const char *const *ids, const char *const *keys_json, const long long *versions, const int *alive,
		    char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Assigns the delete version of record id: the existing tombstone when there is one, else last
 * version + 1 (1 for an unknown record, whose key is then key_json); and never below `floor` (0:
 * none; a webhook's pre-image gives the row's last version + 1, which orders the delete after an
 * update whose event is still being published). A tombstone below the floor is raised to it.
 * *version and *key_json_out (new string, free(): the record's last key) are set. */
int capture_records_delete(struct capture_records *r, const char *side, const char *env, const char *entity, const char *id,
		   const char *key_json, long long floor, long long *version, char **key_json_out, char *errbuf,
		   size_t errlen) __attribute__((warn_unused_result));

/* FO: the version of an image with content hash `hash` for record id: the last version when the
 * hash is unchanged and the record is alive, else max(last version, tombstone) + 1 (1 when new);
 * stores key, hash, version and `modified` (the image's modified-time value, NULL when the table
 * has none) and clears the tombstone, atomically. Returns 0 with *version; 2 with *version when the
 * image is the one last recorded (unchanged: a poll need not publish it again); 1 when the image is
 * older than the one recorded (its modified time is earlier, or not later than a captured delete):
 * nothing is changed and it must not be published; -1 with errbuf. */
int capture_records_fo_version(struct capture_records *r, const char *env, const char *entity, const char *id, const char *key_json,
		       const char *hash, const char *modified, long long *version, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

#endif
