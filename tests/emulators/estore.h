#ifndef DW_EMU_ESTORE_H
#define DW_EMU_ESTORE_H

#include <stddef.h>

#include <cjson/cJSON.h>

/*
 * The emulators' record store in PostgreSQL. One database per emulator instance (created through
 * the DSN's role when missing), so records survive a restart. Tables:
 *   emu_record(entity, id uuid, data jsonb, version bigint, created_at, modified_at, deleted, writes)
 *     one row per record; `version` comes from one global sequence and increases on every write
 *     (the ETag and the change-tracking position); deletes keep a tombstone (deleted = true) so
 *     that delta reads can report them.
 *   emu_key(entity, keyname, keyvalue, id)  unique per (entity, keyname, keyvalue): primary (FO)
 *     and alternate (CE) keys. Values are compared case-insensitively (lower()), as SQL Server's
 *     default collation does on both services.
 * Change tracking never loses a write: a writing transaction holds a shared advisory lock (the
 * write fence) from before its first version to its commit, and the change-tracking reads
 * (estore_changes, estore_max_version) only reach up to a version read while briefly holding it
 * exclusively, so every version they hand out a token for is already committed or rolled back.
 * Every statement is parameterised. A transaction (estore_tx) holds one pooled connection; a
 * $batch changeset is one transaction. Write counters per entity and operation count committed
 * writes only. Thread-safe: any thread may open transactions concurrently (the pool blocks when
 * every connection is in use).
 *
 * Return codes: 0 success, ESTORE_NOTFOUND (1) "no such record", ESTORE_EDUP (-2) unique key
 * violation (the transaction must then be rolled back), ESTORE_EDEFER (-3) deferred creates could
 * not be written (estore_put_deferred), ESTORE_EDB (-1) any other failure, with errbuf filled.
 */

#define ESTORE_NOTFOUND 1
#define ESTORE_EDB (-1)
#define ESTORE_EDUP (-2)
#define ESTORE_EDEFER (-3)

enum estore_op { ESTORE_OP_CREATE = 0, ESTORE_OP_UPDATE = 1, ESTORE_OP_DELETE = 2 };

struct estore;
struct estore_tx;

/* One record as read. `data` is owned by the record (estore_record_clear frees it). */
struct estore_record {
	char id[37];
	cJSON *data;
	long long version;
	long long created_ms;
	long long modified_ms;
	int deleted;
	long long writes;
};

/*
 * Connects with `dsn` (libpq string or URI), creates database `dbname` when missing, and opens
 * `pool_size` connections to it (synchronous_commit off: an emulator trades the last few
 * milliseconds of writes on a crash for speed; a clean shutdown loses nothing). Creates the tables.
 * Returns 0 and *out (estore_close frees it) or -1 with errbuf filled (the DSN is never copied into
 * errbuf).
 */
int estore_open(const char *dsn, const char *dbname, int pool_size, struct estore **out, char *errbuf,
		size_t errlen) __attribute__((warn_unused_result));

/* Closes every connection and frees; NULL-safe. No transaction may be open. */
void estore_close(struct estore *s);

/* Starts a transaction on a pooled connection. 0 and *out, or ESTORE_EDB. */
int estore_begin(struct estore *s, struct estore_tx **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Commits and frees the transaction (whatever the outcome). 0 or ESTORE_EDB (rolled back). */
int estore_commit(struct estore_tx *tx, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Rolls back and frees; NULL-safe. */
void estore_rollback(struct estore_tx *tx);

/* Reads a live (not deleted) record by id and locks it for the transaction. 0 with *out filled
 * (clear it with estore_record_clear), ESTORE_NOTFOUND or ESTORE_EDB. */
int estore_get(struct estore_tx *tx, const char *entity, const char *id, struct estore_record *out, char *errbuf,
	       size_t errlen) __attribute__((warn_unused_result));

/* Finds the id of the live record whose key `keyname` has canonical value `keyvalue`. 0 with
 * id_out filled, ESTORE_NOTFOUND or ESTORE_EDB. */
int estore_find(struct estore_tx *tx, const char *entity, const char *keyname, const char *keyvalue,
		char id_out[37], char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* estore_find and estore_get in one round trip: reads and locks the live record whose key
 * `keyname` has canonical value `keyvalue`. 0 with *out filled (clear it with
 * estore_record_clear), ESTORE_NOTFOUND or ESTORE_EDB. */
int estore_find_get(struct estore_tx *tx, const char *entity, const char *keyname, const char *keyvalue,
		    struct estore_record *out, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* As estore_find_get, for a record about to be written in tx: also allocates the version its
 * write will carry (*next_version, for estore_put_at; unused when the request fails). */
int estore_find_get_next(struct estore_tx *tx, const char *entity, const char *keyname, const char *keyvalue,
			 struct estore_record *out, long long *next_version, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/*
 * Replaces the data of live record `id`, read and locked in tx by estore_find_get_next, giving it
 * `version` (that call's *next_version); keys are left as they are. The statement is queued and
 * goes to PostgreSQL with the transaction's next statement or together with its COMMIT in one
 * round trip; if it fails then, that statement or the commit fails (and the transaction is rolled
 * back). 0 or ESTORE_EDB. Counts as an update once committed. Borrows data.
 */
int estore_put_at(struct estore_tx *tx, const char *entity, const char *id, const cJSON *data, long long version,
		  char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/*
 * Creates (op CREATE) or replaces the data of (op UPDATE) record `id`. `keys` (may be NULL to
 * leave an update's keys as they are) is a JSON object {keyname: canonical value text}; the
 * record's key rows become exactly those. A create over a tombstone revives the id. Returns 0 with
 * *version_out = the new version; ESTORE_EDUP when a key (or, for a create, the id) is taken by
 * another live record (errbuf names the key); ESTORE_NOTFOUND for an update of a missing record;
 * ESTORE_EDB. Borrows data and keys.
 */
int estore_put(struct estore_tx *tx, enum estore_op op, const char *entity, const char *id, const cJSON *data,
	       const cJSON *keys, long long *version_out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/*
 * Queues the create of record `id` (with `keys`, may be NULL) in tx instead of writing it now: the
 * queued creates go to PostgreSQL as one multi-row statement before the transaction's next
 * statement, at estore_flush, or at commit (a $batch changeset of creates then costs one statement
 * instead of one per record). For callers that need neither the version nor an answer to "is the
 * id or a key taken" before the transaction ends: when any queued record turns out to clash with
 * a live id or key (or another queued one), the write fails as a whole, the transaction is marked
 * (estore_deferred_failed) and must be rolled back; the caller then redoes the work without
 * deferring to get the precise outcome. 0 queued (or flushed), ESTORE_EDEFER, ESTORE_EDB.
 * Counts as a create in the write counters once committed. Borrows data and keys.
 */
int estore_put_deferred(struct estore_tx *tx, const char *entity, const char *id, const cJSON *data,
			const cJSON *keys, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Writes the queued creates now. 0, ESTORE_EDEFER (roll back and redo without deferring) or
 * ESTORE_EDB. */
int estore_flush(struct estore_tx *tx, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Whether writing this transaction's deferred creates failed (it must be rolled back). NULL-safe. */
int estore_deferred_failed(const struct estore_tx *tx);

/* Merges `patch` (top-level members replace the stored ones) into live record `id` in one
 * statement, without reading it first; for updates that touch no key. 0 with *version_out,
 * ESTORE_NOTFOUND or ESTORE_EDB. Borrows patch. */
int estore_merge(struct estore_tx *tx, const char *entity, const char *id, const cJSON *patch, long long *version_out,
		 char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/*
 * One write of estore_patch_many: merges `fields` (a JSON object's text; top-level members replace
 * the stored ones) into the live record of `entity` whose key row `keyname` holds `keyvalue`
 * (compared case-insensitively), when its version is `if_version` (0: any version). The caller
 * fills the first five members; the call fills the rest: rc 0 with `rec` (the record after the
 * write) and, when want_old, `old` (the record before it; its data NULL when not wanted), ESTORE_NOTFOUND when
 * nothing was written (no such live record, or another version: the caller finds out which the
 * usual way), or ESTORE_EDB.
 */
struct estore_patch {
	const char *entity;
	const char *keyname;
	const char *keyvalue;
	const char *fields;
	long long if_version;
	int want_old;
	int rc;
	struct estore_record rec;
	struct estore_record old;
};

/*
 * Runs each patch as a transaction of its own (write fence, then one statement that locks, checks
 * and writes the record), all of them pipelined on one pooled connection: one PostgreSQL round trip
 * for a run of patches instead of two per patch. The patches must be of different records (their
 * order is not kept). Each committed patch counts as an update. Returns 0 (see each patch's rc) or
 * ESTORE_EDB when the connection failed before any result could be read (every rc is then
 * ESTORE_EDB too). Clear the results with estore_patch_clear.
 */
int estore_patch_many(struct estore *s, struct estore_patch *p, size_t n, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees what a patch's results hold (rec, old). */
void estore_patch_clear(struct estore_patch *p);

/* Deletes a live record (tombstone with a new version, key rows removed). 0, ESTORE_NOTFOUND or
 * ESTORE_EDB. */
int estore_delete(struct estore_tx *tx, const char *entity, const char *id, long long *version_out, char *errbuf,
		  size_t errlen) __attribute__((warn_unused_result));

/*
 * A page of live records of `entity`: `where_sql` (NULL for none) is a boolean SQL fragment over
 * the jsonb column named `data`, whose parameters are numbered from $2 (params[0] is $2);
 * `order_sql` (NULL for none) an ORDER BY list; rows are ordered by it, then by id. Returns up to
 * `limit` records after skipping `offset`, in *out (array of n records; estore_records_free), or
 * ESTORE_EDB. Runs in `tx` when not NULL, else on a pooled connection (never pass NULL while the
 * calling thread holds a transaction: the pool could run dry).
 */
int estore_query(struct estore *s, struct estore_tx *tx, const char *entity, const char *where_sql,
		 const char *const *params, int nparams, const char *order_sql, long limit, long offset,
		 struct estore_record **out, size_t *n, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Number of live records of `entity` matching where_sql (as for estore_query; in `tx` when not
 * NULL). 0 or ESTORE_EDB. */
int estore_count(struct estore *s, struct estore_tx *tx, const char *entity, const char *where_sql,
		 const char *const *params, int nparams, long long *out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/*
 * Change tracking: the first `limit` records of `entity` (live and tombstones, in version order)
 * written after version `since` and up to the highest version visible when the call starts,
 * returned live ones first then tombstones. *max_version_out gets the next token: that highest
 * version, or, when the page is full, the highest version returned. Runs in `tx` when not NULL.
 * Same ownership as estore_query.
 */
int estore_changes(struct estore *s, struct estore_tx *tx, const char *entity, long long since, long limit,
		   struct estore_record **out, size_t *n, long long *max_version_out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Highest version of `entity` visible now (0 when none), in `tx` when not NULL. 0 or ESTORE_EDB. */
int estore_max_version(struct estore *s, struct estore_tx *tx, const char *entity, long long *out, char *errbuf,
		       size_t errlen) __attribute__((warn_unused_result));

/* Per-record write count: reads the record (live or tombstone) by id. Same codes as estore_get. */
int estore_peek(struct estore *s, const char *entity, const char *id, struct estore_record *out, char *errbuf,
		size_t errlen) __attribute__((warn_unused_result));

/* Deletes every record and key and zeroes the counters. 0 or ESTORE_EDB. */
int estore_reset(struct estore *s, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Committed write counters: {"<entity>":{"create":n,"update":n,"delete":n},...}; new tree. */
cJSON *estore_stats(struct estore *s);

/* Frees what a record holds and zeroes it. */
void estore_record_clear(struct estore_record *r);

/* Frees an array from estore_query/estore_changes; NULL-safe. */
void estore_records_free(struct estore_record *recs, size_t n);

/* A new random (version 4) GUID, lower case, into out. */
void estore_new_guid(char out[37]);

#endif
