#ifndef DW_WORKERS_APPLY_H
#define DW_WORKERS_APPLY_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "applystate.h"
#include "config.h"
#include "event.h"
#include "fieldmerge.h"
#include "httpd.h"
#include "kafka.h"
#include "map.h"
#include "metrics.h"
#include "target.h"

/*
 * The apply worker (`apply --map NAME --to ce|fo`): consumes <prefix>.<other side>.<entity>, maps
 * each event, decides with the PostgreSQL state, writes to the target, records the outcomes of
 * the whole poll batch in one transaction and only then stores and commits the offsets (DESIGN 5).
 * Internal to the program: main.c wires, batch.c processes poll batches, resolve.c turns CE GUIDs
 * into alternate-key values and back.
 */

/* ---- resolve.c: CE lookups for the map engine and for CE target keys ------------------------ */

#define RESOLVE_CACHE_MAX 4096

struct resolver;

/* Creates a resolver reading CE through `ce` (borrowed; a target whose side is ce). Caches up to
 * RESOLVE_CACHE_MAX answers (oldest replaced first). *out new; free with resolver_free. */
int resolver_new(struct target *ce, struct resolver **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));
void resolver_free(struct resolver *r);

/* The map engine's resolver callback (struct map_resolver.resolve) with ctx = struct resolver. */
int resolver_map_cb(void *ctx, enum event_side side, const char *entity_set, const char *guid, const char *key_field,
		    char *out, size_t outlen, char *err, size_t errlen);

/* The GUID of the CE row of `entity_set` whose alternate key `key_field` is `value`, into
 * out[37]. Returns MAP_OK, MAP_NOT_FOUND, or MAP_ERR_RESOLVE with err. */
int resolver_guid(struct resolver *r, const char *entity_set, const char *key_field, const char *value,
		  char out[37], char *err, size_t errlen) __attribute__((warn_unused_result));

/* Tells the resolver that the row of entity_set with key_field = value (and, when company_field
 * is not NULL, that company GUID) has GUID guid: for a row about to be created with that id in
 * the same changeset. Later look-ups answer guid without reading CE. */
void resolver_assume(struct resolver *r, const char *entity_set, const char *key_field, const char *value,
		     const char *company_field, const char *company_guid, const char *guid);

/* resolver_guid as the map engine's struct map_resolver.guid callback (ctx = struct resolver). */
int resolver_guid_cb(void *ctx, const char *entity_set, const char *key_field, const char *value, char out[37],
		     char *err, size_t errlen);

/* As resolver_guid, for a row whose alternate key is key_field + the company lookup column
 * company_field (its value the company's GUID company_guid). */
int resolver_guid_company(struct resolver *r, const char *entity_set, const char *key_field, const char *value,
			  const char *company_field, const char *company_guid, char out[37], char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* ---- batch.c: one poll batch ---------------------------------------------------------------- */

struct apply_metrics {
	struct metrics_family *events;     /* counter{outcome} */
	struct metrics_family *conflicts;  /* counter{outcome} */
	struct metrics_family *retries;    /* counter{reason} */
	struct metrics_family *http;       /* counter{status} */
	struct metrics_family *batch_s;    /* histogram */
	struct metrics_family *e2e_s;      /* histogram: source change time to target ack */
	struct metrics_family *batches;    /* counter */
	struct metrics_family *lag;        /* gauge{partition}: messages behind the partition's end */
	struct metrics_family *parked;     /* gauge: events parked for this map and side */
};

/* One record's run of conflict waits (batch.c): a hash of its target key, how many waits in a row,
 * and the time of the last (monotonic ms). */
#define APPLY_WAITS_MAX 256
struct apply_wait {
	uint64_t key;
	unsigned n;
	long long last_ms;
};

struct apply {
	/* settings */
	const struct config_common *cfg;
	const struct map *map;
	enum event_side to, from;
	const char *to_name, *from_name;
	char source_topic[256];
	char dlq_topic[256];
	size_t batch_max;     /* events per poll batch */
	long batch_wait_ms;   /* how long to wait for a batch to fill */
	long backoff_min_ms;  /* first retry delay */
	long backoff_max_ms;  /* cap on the retry delay */
	/* parts (borrowed) */
	struct kafka_consumer *consumer;
	struct kafka_producer *dlq;
	struct applystate *state;
	struct target *target;
	struct resolver *resolver; /* NULL when CE is not reachable (no lookups needed) */
	struct httpd *httpd;       /* may be NULL */
	const struct map_set *maps; /* the maps directory (siblings of a unit); may be NULL */
	PGconn *pg;                 /* the state connection (a sibling map's state); may be NULL */
	struct target *fo_reads;    /* F&O reads of an aggregated map's groups; NULL otherwise */
	struct apply_metrics m;
	/* loop state */
	long long resume_at_ms;     /* paused partitions are resumed at this monotonic time */
	rd_kafka_topic_partition_list_t *paused;
	rd_kafka_topic_partition_list_t *owed; /* per partition: the offset sought back to for a retry
						* and not applied again yet (NULL: none); opaque: the
						* seek_gen of that seek */
	uint64_t seek_gen;  /* counts the seeks back for retries */
	uint64_t batch_gen; /* seek_gen when the batch being filled got its first message (main loop) */
	unsigned consecutive_retries;
	struct apply_wait waits[APPLY_WAITS_MAX]; /* records whose write waits for the target's change
						    * event after a 412 (rule 4); key 0: free */
	volatile sig_atomic_t *stop;
	/* map state (rule 8) */
	int map_paused;              /* the map is paused or failed: nothing is consumed */
	long state_check_ms;         /* how often dw_map_state is read */
	long long next_state_check_ms;
	long long *err_times;        /* ring of the last threshold.count error times (ms) */
	size_t err_next, err_count;
	/* parked events (rule 6) */
	long redrive_ms;             /* how often due parked events are re-driven */
	long long park_max_age_ms;   /* a parked event that still cannot be applied this long after it
				      * was parked goes to dead letters (0: never) */
	long long next_redrive_ms;
	long long next_parked_gauge_ms; /* when the parked gauge is read again at the latest */
	/* atomic units (rule 5) */
	long txn_timeout_ms;         /* a unit still incomplete this long after its first part is
				      * dead-lettered */
	long long next_txn_check_ms;
	/* idempotency keys (DESIGN 6: pruned after the topic retention) */
	long long applied_retention_ms; /* dw_applied_event rows older than this are deleted */
	long long prune_interval_ms;    /* how often */
	long long next_prune_ms;
	/* pipelining: a batch's outcomes are recorded on record_state (a connection of its own) in a
	 * thread while the next batch is decided and written; NULL: each batch is recorded in line */
	struct applystate *record_state;
	struct batch *inflight; /* the batch being recorded; its offsets are not stored yet */
};

/* The batch result. */
enum { APPLY_OK = 0, APPLY_RETRY = 1, APPLY_FATAL = -1 };

/*
 * Processes n polled messages (the messages are taken: freed when done; the array stays the
 * caller's): decode, map, collapse per record, decide, write, dead-letter, record outcomes in
 * one transaction, then store offsets up to the first message that must be retried in each
 * partition and commit. Partitions with such a message are sought back to it and paused until
 * the back-off ends (apply_resume_due resumes them). With a->record_state, a batch without
 * retries, parked events or parts of units returns once written: its outcomes are recorded in a
 * thread, and its offsets stored once that is done (apply_reap, apply_flush, or the next batch,
 * which first waits for it when it stages unit parts or touches one of its records).
 * Returns APPLY_OK, APPLY_RETRY (some events wait for a retry; nothing lost) or APPLY_FATAL with
 * errbuf (Kafka fatal error; stop).
 */
int apply_batch(struct apply *a, struct kafka_message **msgs, size_t n, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Waits for the batch being recorded (if any), then stores and commits its offsets (or, when
 * recording failed, seeks its partitions back for a retry). Call before a rebalance takes
 * partitions away and before shutting down. APPLY_OK, APPLY_RETRY or APPLY_FATAL with errbuf. */
int apply_flush(struct apply *a, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* apply_flush when the batch being recorded is done; APPLY_OK at once otherwise. */
int apply_reap(struct apply *a, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/*
 * Re-drives parked events when due (every redrive_ms; not while the map is paused): the oldest
 * parked event of each record whose next attempt is due goes through the same pipeline as a
 * polled message (the duplicate and parked checks excepted). Recorded -> unparked, so the
 * record's next queued event becomes due; parked again or retryable -> its attempt count grows
 * and its next attempt is backed off (backoff_min doubled per attempt, capped at backoff_max).
 * Passes repeat while they unpark something. Returns 0, or -1 with errbuf on a fatal Kafka error
 * of the dead-letter producer (stop, as for apply_batch).
 */
int apply_redrive(struct apply *a, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/*
 * Dead-letters units staged for this map whose first part is older than txn_timeout_ms and that
 * are still incomplete (checked every few seconds, not while the map is paused): every staged
 * part goes to the dead-letter topic with reason txn_timeout, its outcome is recorded and the
 * parts are cleared. Returns 0, or -1 with errbuf on a fatal dead-letter producer error.
 */
int apply_expire_units(struct apply *a, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Every prune_interval_ms: deletes this map and target's idempotency keys older than
 * applied_retention_ms, a bounded number per call so the loop stays responsive. A database error
 * is logged and retried at the next interval (never fatal). */
void apply_prune(struct apply *a);

/* Resumes the partitions paused for a back-off once it has passed. */
void apply_resume_due(struct apply *a);

/* Reads the map's state when due (every state_check_ms) and pauses the whole assignment while the
 * map is paused or failed, resuming it when it runs again. Returns 0, or -1 with errbuf when the
 * state cannot be read (the caller goes on: the last known state holds). */
int apply_check_map_state(struct apply *a, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* A message polled while the map is paused goes back: seek its partition to it. */
void apply_seek_back(struct apply *a, const struct kafka_message *m);

/* Pauses partitions just assigned when the map is paused (call from the rebalance callback). */
void apply_on_assigned(struct apply *a, const rd_kafka_topic_partition_list_t *parts);

/* Registers the worker's metric families in reg. Returns 0 or -1 with errbuf. */
int apply_metrics_init(struct metrics *reg, struct apply_metrics *m, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Monotonic milliseconds. */
long long apply_now_ms(void);

/* Wall-clock milliseconds since the epoch (the timeline of event source times). */
long long apply_wall_ms(void);

/* ---- aggregate.c: aggregated maps (product inventory) --------------------------------------- */

/*
 * For a map with `aggregate` and an FO event: re-reads the event's group (the rows sharing its
 * group_by values, cross-company) from F&O through a->fo_reads and turns the event into the
 * group's current state: its image (data, or the key for a delete) with every `sum` field
 * replaced by the sum over the group's rows, op update (a delete rewrites what remains, zeros
 * when nothing does), and version now_ms (a later re-read supersedes an earlier one, so the
 * result does not depend on the order or repetition of events). Other maps and events: nothing.
 * Returns MAP_OK, MAP_ERR_RESOLVE with err (F&O not readable now: retry) or MAP_ERR_EVENT with
 * err (the event or the group cannot be summed: dead-letter).
 */
int apply_aggregate(struct apply *a, struct event *ev, long long now_ms, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* ---- batch.c internals shared with unit.c: one event through the pipeline ------------------- */

enum st { ST_PENDING = 0, ST_DONE, ST_RETRY };

struct item {
	struct kafka_message *msg;
	struct event ev;
	int decoded;
	struct map_write w;
	int mapped;
	char *tkey; /* canonical key of the target record */
	char *skey; /* the record's key on the source side, in the map's terms (for echoes) */
	char *skey_fallback;
	uint64_t tkey_kh, park_kh; /* key_hash of tkey and skey_fallback (0 when NULL), set in front */
	char shash[SHA256_HEX_LEN + 1]; /* image hash of the event on its source side; "" if none */
	char thash[SHA256_HEX_LEN + 1]; /* image hash of the write in target terms; "" for deletes */
	char rhash[SHA256_HEX_LEN + 1]; /* image hash of the target's answer; "" when none */
	int rep;                        /* index of the item that stands for this record; self if none */
	enum st st;
	long retry_after_ms;
	/* outcome to record */
	int has_out;
	struct applystate_outcome out;
	char *reason_owned;
	/* dead letter */
	int dlq;
	const char *dlq_reason;
	long http_status;
	char *error;
	char *error_body;
	/* decision and write */
	struct applystate_item ai;
	int writing;
	int etag_unseen;           /* the write's ETag covers a target change not seen yet: keep none */
	struct target_write tw;
	struct odata_key_part keys[EVENT_KEY_FIELDS_MAX];
	char keybuf[EVENT_KEY_FIELDS_MAX][64];
	char *body;
	char *if_match;
	char *event_json;
	/* re-drive of a parked event (rule 6) */
	int redrive;
	int64_t park_id;
	int park_attempts;
	int park_expired;    /* parked longer than park_max_age_ms: parking again dead-letters it */
	/* atomic units (rule 5) */
	int txn;             /* a part of a unit, handled by stage_part instead of the per-record path */
	int in_unit;         /* a part being applied with its unit */
	const char *dlq_topic; /* its dead-letter topic when not the worker's (a sibling map's part) */
	const char *label;   /* the events metric's outcome when no outcome is recorded for it */
	/* field-level decisions (rules 3 and 4, docs/conflicts.md) */
	long long ts;               /* the event's source time, or when it has none, the time it was read */
	long long sent_ms;          /* when the (last) write was sent (wall clock) */
	cJSON *known_src, *known_dst; /* known images of the record on both sides; NULL when none */
	struct fieldmerge_plan plan;  /* what the write carries */
	int plan_merged;              /* plan comes from a 412 merge (its times are no change times) */
	int wait_noted;               /* waits after a 412: its source change is noted as pending */
	char *image_out;            /* APPLIED: known-image entries of the target (JSON text) */
	char *seen_image;           /* SEEN: known-image entries of the source (JSON text) */
	int seen_planned;           /* seen_image (and seen_guard) computed with the plan */
	int seen_guard;             /* every entry of seen_image is newer than the source's known image */
};

/* Counts one event of a metric family under label. */
void count(struct metrics_family *f, const char *label);
/* Frees what an item owns. */
void item_clear(struct item *it);
/* Marks the item for the dead-letter topic (produced later by produce_dlq). */
void to_dlq(struct item *it, const char *reason, long status, const char *error, const char *body);
/* Marks the item for a retry (its partition is sought back and paused). */
void to_retry(struct apply *a, struct item *it, const char *reason, long retry_after_ms);
/* Records outcome r for a decoded event, keyed by `key` (borrowed). */
void set_outcome(struct item *it, enum applystate_result r, const char *key);
/* Fills *out with a SEEN outcome of the item's source record (its key and image hash) carrying the
 * known-image entries `entries` (taken; printed into it->seen_image). Returns 1, or 0 when there is
 * nothing to record (entries NULL, out of memory). */
int seen_outcome(struct item *it, cJSON *entries, struct applystate_outcome *out);
/* A copy of the message value as a new NUL-terminated string; NULL when out of memory. */
char *value_text(const struct kafka_message *m);
/* Step 1: decodes and maps one message with a's map (a part of a unit only when it->in_unit). */
void prepare(struct apply *a, struct item *it);
/* The target key parts of the item's write into it->tw. Returns MAP_OK, MAP_NOT_FOUND,
 * MAP_ERR_RESOLVE or MAP_ERR_EVENT with err. */
int key_parts(struct apply *a, struct item *it, char *err, size_t errlen);
/* Turns a write's result into the item's outcome; 1 when a second write is needed. */
int settle(struct apply *a, struct item *it, int second);
/* Parks the event (or queues it behind the record's parked events) under its source key. */
void park(struct item *it, const char *reason);
/* Produces the dead letters of items[0..n) and waits for delivery; undelivered ones become
 * retries. Returns APPLY_OK or APPLY_FATAL. */
int produce_dlq(struct apply *a, struct item *items, size_t n);

/* ---- unit.c: atomic units (rule 5) ----------------------------------------------------------- */

/* Stages a part of a unit (its offset may then be stored: the staging is the recorded outcome)
 * and applies the unit when this part completes it. A part whose event id is recorded (its unit
 * was applied or dead-lettered) is a duplicate. Returns APPLY_OK or APPLY_FATAL. */
int stage_part(struct apply *a, struct item *it);

/* The map a part of one of the worker's units belongs to, by the part's source entity: the
 * worker's own map, or a map of the worker's map set with the same atomic_unit that syncs the
 * same direction and reads that entity; NULL when none. Borrowed from the worker. */
const struct map *apply_unit_sibling(const struct apply *a, const char *entity);

#endif
