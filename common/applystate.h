#ifndef DW_APPLYSTATE_H
#define DW_APPLYSTATE_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/*
 * The apply worker's PostgreSQL state (DESIGN sections 5 and 6; tables in schemas/sql/001 and 002):
 * per target record the highest source version applied, the hash of the mapped content last
 * written to or seen on the target, the target's ETag and id; the idempotency keys of events whose
 * outcome is recorded; parked events; staged transaction parts; map state.
 *
 * One struct applystate serves one map and one target side over a borrowed connection. Every
 * statement is parameterised. Decisions read; outcomes of a whole poll batch are written in ONE
 * transaction (applystate_record), which the caller runs BEFORE storing and committing Kafka
 * offsets, so a crash at any point re-delivers events whose outcome is either recorded (then the
 * decision skips them) or not (then they are decided again).
 *
 * Return codes: 0, or STORE_ERR / STORE_ERR_RETRY (see store.h: the latter means the caller may
 * retry the whole step) with errbuf filled. Not thread-safe: one struct per thread.
 */

#define APPLYSTATE_BATCH_MAX 10000 /* items per decide/record call */
#define APPLYSTATE_TEXT_MAX (1024 * 1024) /* cap on any one text value (keys, hashes, event JSON) */

struct applystate;

/* Creates the state handle for map `map_name` writing to `target_side` ("ce" or "fo"). Borrows
 * conn for the handle's life (the caller closes it after applystate_free); copies the names.
 * Fails (STORE_ERR) on an empty map name or a side other than ce/fo. *out is new; free with
 * applystate_free(). */
int applystate_new(PGconn *conn, const char *map_name, const char *target_side, struct applystate **out,
		   char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Frees the handle (not the connection); NULL-safe. */
void applystate_free(struct applystate *s);

/* ---- decisions (rules 2, 3, 6) ------------------------------------------------------------ */

enum applystate_decision {
	APPLYSTATE_WRITE = 1,          /* write to the target */
	APPLYSTATE_SKIP_DUPLICATE = 2, /* this event id's outcome is already recorded */
	APPLYSTATE_SKIP_STALE = 3,     /* version <= the highest version applied to the record */
	APPLYSTATE_SKIP_ECHO = 4,      /* same mapped content as last written/seen (or a delete of a
					* record already deleted there) */
	APPLYSTATE_QUEUE_PARKED = 5,   /* the record has parked events: this one queues behind them */
};

/* "write", "duplicate", "stale", "echo", "queued"; NULL for an invalid value. */
const char *applystate_decision_name(enum applystate_decision d);

/* What is recorded about one target record. Strings are NULL when not known. */
struct applystate_record {
	int64_t source_version;
	char *content_hash;
	char *etag;
	char *target_id;
	int deleted;
	char *seen_hash; /* hash of the record's image as that side holds it */
	char *image;     /* the known image of the record on that side (JSON text, see fieldmerge.h;
			  * schemas/sql/004), NULL when none is known or the record is deleted there */
	char *image_rev; /* the revision of that image (schemas/sql/006; decimal text): a guard for
			  * applystate_outcome.image_guard */
};

/* One event to decide on. The caller fills the inputs (borrowed for the call); applystate_decide
 * fills the outputs, whose strings the item owns until applystate_item_clear(). */
struct applystate_item {
	/* inputs */
	const char *record_key;   /* the target record's key string, 1..APPLYSTATE_TEXT_MAX bytes */
	const char *event_id;     /* the event's id */
	int64_t version;          /* the event's source version */
	const char *content_hash; /* hash of the mapped content in target terms; NULL for a delete */
	int is_delete;
	const char *source_key;   /* optional: the record's key on the event's source side ... */
	const char *source_hash;  /* ... and the hash of the event's image there (see SKIP_ECHO) */
	const char *park_key;     /* optional: the key parked events of this record are filed under
				   * (the worker uses the event's source key, known even when mapping
				   * failed); NULL: record_key */
	int redrive;              /* the item is a parked event being re-driven: the duplicate and
				   * parked checks are skipped (its id is recorded, its row is the head) */
	/* outputs */
	enum applystate_decision decision;
	int has_prev; /* a state row exists for the record; then prev holds it */
	struct applystate_record prev;
	char *src_image; /* the known image of source_key on the source side (JSON text), or NULL */
	char *src_image_rev; /* the revision of src_image when it is not NULL */
};

/*
 * Decides each of n items with three or four reads in all (not per item), in this order: event id
 * already recorded -> SKIP_DUPLICATE; the record (park_key, else record_key) has parked events ->
 * QUEUE_PARKED (both checks skipped for a redrive item); version <=
 * recorded version -> SKIP_STALE; source_hash equal to the seen_hash recorded for source_key on
 * the source side (the event is the echo of an image already known there, typically our own
 * write) -> SKIP_ECHO; not a delete and content_hash equal to the content_hash of a target
 * record not marked deleted (the same payload again: a no-op write), or a delete of a record
 * marked deleted -> SKIP_ECHO; else WRITE.
 * Items with the same record key are decided independently against the stored state (collapse
 * them before). Fills decision/has_prev/prev/src_image of every item (clear them with
 * applystate_item_clear even on failure). n <= APPLYSTATE_BATCH_MAX.
 */
int applystate_decide(struct applystate *s, struct applystate_item *items, size_t n, char *errbuf,
		      size_t errlen) __attribute__((warn_unused_result));

/* Frees the outputs of one item and zeroes them; NULL-safe. */
void applystate_item_clear(struct applystate_item *item);

/* Reads the state of one record. Returns 0 with *found 1 and *out filled (caller frees its
 * strings with applystate_record_clear), or 0 with *found 0, or an error. */
int applystate_get(struct applystate *s, const char *record_key, int *found, struct applystate_record *out,
		   char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Frees the strings of a record and zeroes it; NULL-safe. */
void applystate_record_clear(struct applystate_record *r);

/* ---- outcomes (rule 1) -------------------------------------------------------------------- */

enum applystate_result {
	APPLYSTATE_APPLIED = 1,     /* written to the target; state updated */
	APPLYSTATE_ECHO = 2,        /* skipped as echo; state version advanced, content unchanged */
	APPLYSTATE_DUPLICATE = 3,   /* skipped: already recorded or stale; no state change */
	APPLYSTATE_DEAD_LETTER = 4, /* sent to the dead-letter topic; no state change */
	APPLYSTATE_PARKED = 5,      /* parked (event JSON kept in dw_parked_event); no state change */
	APPLYSTATE_SEEN = 6,        /* image seen on the event's SOURCE side: that side's row gets
				     * seen_hash/deleted, and its content_hash is cleared when the
				     * image differs from the one known (a new row: version -1) */
	APPLYSTATE_FILTERED = 7,    /* outside the map's filter: nothing to write; no state change */
};

/* "applied", "echo", "duplicate", "dead_letter", "parked", "seen", "filtered"; NULL when invalid. */
const char *applystate_result_name(enum applystate_result r);

/* One recorded outcome. Strings are borrowed for the call. */
struct applystate_outcome {
	enum applystate_result result;
	const char *record_key;
	const char *event_id;     /* NULL for SEEN (nothing goes to dw_applied_event), else required */
	int64_t version;          /* APPLIED/ECHO: the version now applied */
	const char *content_hash; /* APPLIED: the written payload's hash (ignored for a delete) */
	const char *seen_hash;    /* APPLIED: hash of the target's image after the write (NULL: not
				   * known); SEEN: hash of the source event's image */
	const char *etag;         /* APPLIED: the target's new ETag, NULL keeps the old one */
	const char *target_id;    /* APPLIED: the target's record id, NULL keeps the old one */
	int64_t source_ts_ms;     /* source change time (0: unknown) */
	int deleted;              /* APPLIED/SEEN: the record is now deleted on that side */
	const char *event_json;   /* PARKED: the event document (valid JSON) */
	const char *reason;       /* PARKED: why (required) */
	const char *image;        /* APPLIED/SEEN: known-image entries (JSON object text, see
				   * fieldmerge.h) merged field by field into the row's image, the
				   * newer time winning; NULL leaves it; a delete clears it */
	const char *image_guard;  /* APPLIED/SEEN, optional: the revision applystate_decide read with
				   * the row's image (applystate_record.image_rev, applystate_item.
				   * src_image_rev) when every entry of image wins against that image
				   * (fieldmerge_wins_all). While the row's image is still at that
				   * revision, the entries are laid over it as they are (which is what
				   * the merge would give, for less work); an image changed since is
				   * merged as without a guard. */
};

/*
 * Records n outcomes in one transaction: every event id goes to dw_applied_event (an id already
 * there is left as it is); APPLIED replaces the target record's state and ECHO advances its
 * version, each only when its version is higher than the stored one (the newest wins when one
 * key occurs several times); SEEN sets the source side's seen_hash; APPLIED and SEEN merge their
 * image entries into the row's known image; PARKED events are added
 * to dw_parked_event. All or nothing: on failure
 * the transaction is rolled back and nothing is recorded. The connection must not be inside a
 * transaction. n <= APPLYSTATE_BATCH_MAX; n == 0 does nothing.
 */
int applystate_record(struct applystate *s, const struct applystate_outcome *o, size_t n, char *errbuf,
		      size_t errlen) __attribute__((warn_unused_result));

/* ---- parked events (rule 6) ---------------------------------------------------------------- */

/* One parked event, as read back. Strings owned by the struct (applystate_parked_clear). */
struct applystate_parked {
	int64_t id;
	char *record_key;
	char *event_id;
	char *event_json;
	char *reason;
	int attempts;
	long long age_ms; /* how long ago it was parked */
};

/*
 * Lists up to max parked events that are due (next_attempt_at <= now) and are the first (oldest)
 * parked event of their record, oldest first. *out is a new array of *n entries the caller frees
 * with applystate_parked_free(*out, *n).
 */
int applystate_parked_due(struct applystate *s, size_t max, struct applystate_parked **out, size_t *n,
			  char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Frees an array from applystate_parked_due; NULL-safe. */
void applystate_parked_free(struct applystate_parked *p, size_t n);

/* Number of parked events of this map and side. */
int applystate_parked_count(struct applystate *s, int64_t *count, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Removes parked event `id` (it was re-driven). Returns 0 also when it was already gone. */
int applystate_unpark(struct applystate *s, int64_t id, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Counts one more failed attempt of parked event `id` and sets its next attempt delay_ms from now. */
int applystate_park_retry_later(struct applystate *s, int64_t id, long long delay_ms, char *errbuf,
				size_t errlen) __attribute__((warn_unused_result));

/* ---- transaction parts (rule 5) ------------------------------------------------------------ */

/*
 * Stages one part of source transaction (source_side, txn_id): order 1..total, the event id and
 * document. A part already staged (same order) is kept as it was (re-delivery). Then counts the
 * parts staged: *staged receives the count and *complete 1 when all `total` parts are there.
 * Stagings of one unit are serialised (a transaction-scoped advisory lock), so when several
 * workers stage its last parts at once, the last to commit sees it complete.
 * Fails when a part with a different total was staged before (the unit is inconsistent).
 */
int applystate_txn_stage(struct applystate *s, const char *source_side, const char *txn_id, int order,
			 int total, const char *event_id, const char *event_json, int *staged, int *complete,
			 char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* The staged parts of a unit in order: *events becomes a new array of *n new strings (event
 * documents) the caller frees with applystate_strings_free(*events, *n). */
int applystate_txn_parts(struct applystate *s, const char *source_side, const char *txn_id, char ***events,
			 size_t *n, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Removes the staged parts of a unit (after it was applied or dead-lettered). */
int applystate_txn_clear(struct applystate *s, const char *source_side, const char *txn_id, char *errbuf,
			 size_t errlen) __attribute__((warn_unused_result));

/*
 * Up to max units with parts staged by this map from the other side than the target, whose first
 * part was staged more than older_than_ms ago, oldest first: *sides and *ids become new arrays of
 * *n new strings (free with applystate_strings_free), *staged and *total new arrays of *n ints
 * (parts staged, parts expected; free()).
 */
int applystate_txn_expired(struct applystate *s, long long older_than_ms, size_t max, char ***sides, char ***ids,
			   int **staged, int **total, size_t *n, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees an array of strings; NULL-safe. */
void applystate_strings_free(char **v, size_t n);

/* ---- map state (rule 8) -------------------------------------------------------------------- */

enum applystate_map_state { APPLYSTATE_MAP_RUNNING = 1, APPLYSTATE_MAP_PAUSED = 2, APPLYSTATE_MAP_FAILED = 3 };

/* "running", "paused", "failed"; NULL for an invalid value. */
const char *applystate_map_state_name(enum applystate_map_state st);

/* Reads the map's state: a map with no row is running. *reason is NULL or a new string the caller
 * frees (reason may be NULL when not wanted). */
int applystate_map_get(struct applystate *s, enum applystate_map_state *st, char **reason, char *errbuf,
		       size_t errlen) __attribute__((warn_unused_result));

/* Sets the map's state and reason (NULL clears it). */
int applystate_map_set(struct applystate *s, enum applystate_map_state st, const char *reason, char *errbuf,
		       size_t errlen) __attribute__((warn_unused_result));

/*
 * Deletes up to `limit` idempotency keys (dw_applied_event rows) of this map and target recorded
 * more than older_than_ms ago (DESIGN section 6: pruned after the topic retention; the version
 * check still stops an older event replayed later). *deleted is how many went.
 */
int applystate_prune_applied(struct applystate *s, long long older_than_ms, long limit, long *deleted, char *errbuf,
			     size_t errlen) __attribute__((warn_unused_result));

#endif
