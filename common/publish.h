#ifndef DW_PUBLISH_H
#define DW_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "event.h"

/*
 * Change events -> Kafka, in units that are confirmed all together or not at all.
 *
 * A unit is a group of events (one delta page, one webhook call, one source transaction). Every
 * unit goes out inside a Kafka transaction: a read_committed consumer sees all of its events or
 * none of them, and publish_send() returns 0 only once the transaction committed, which implies
 * every message in it was acknowledged by all in-sync replicas (idempotent producer, acks=all).
 *
 * Group commit: one publisher thread owns the transactional producer. Units submitted by several
 * threads while a transaction is being committed are queued and then put together into the next
 * transaction (up to opts.max_batch_events events), so concurrent webhook calls share one commit
 * round trip instead of waiting for each other in turn. Several units in one transaction succeed or
 * fail together; a unit is never split across transactions. Units are produced in submission order.
 *
 * Each event becomes one message on topic "<prefix>.<side>.<entity>" (entity lower-cased),
 * key = the canonical record key (event_key_string), value = event_encode() output, headers
 * "dw-event-id" (64 hex) and "dw-op" (create/update/delete/snapshot).
 *
 * Failure: when a transaction cannot commit (broker down, timeout), it is aborted and every unit in
 * it fails with a reason; nothing of it is visible to read_committed consumers. The caller keeps
 * its checkpoint and retries later (the events keep their ids, so a retry is a harmless duplicate at
 * worst). A fatal producer error (e.g. fenced by another instance with the same transactional id)
 * makes this and every later publish_send() fail with PUBLISH_ERR_FATAL: the program stops.
 *
 * Broker outages: transactions live up to transaction.timeout.ms = 15 min on the coordinator (unless
 * DW_KAFKA_TRANSACTION_TIMEOUT_MS says otherwise), so an outage shorter than that ends with the
 * pending commit resumed (its units were already reported failed and are re-sent by the caller with
 * the same ids) and publishing going on; a longer one can leave the producer fatal.
 *
 * All functions are thread-safe except publish_free(), which must not run concurrently with
 * anything else on the same publisher.
 */

enum {
	PUBLISH_ERR = -1,         /* the unit was not published (retryable); errbuf says why */
	PUBLISH_ERR_FATAL = -2,   /* the publisher is unusable: stop the program */
	PUBLISH_ERR_STOPPED = -3, /* publish_stop() was called; nothing more is accepted */
	PUBLISH_ERR_INVALID = -4  /* an event failed validation/encoding; not retryable */
};

#define PUBLISH_HEADER_ID "dw-event-id"
#define PUBLISH_HEADER_OP "dw-op"

struct publish_opts {
	const char *transactional_id; /* required; unique per capture instance, e.g. "dw-capture-ce-prod" */
	const char *client_id;        /* NULL: librdkafka's default */
	int txn_timeout_ms;           /* bound on init/commit/abort of one transaction; 0 = 30000 */
	size_t max_batch_events;      /* group-commit cap (a single larger unit still goes alone); 0 = 10000 */
};

/* Counters since creation, for /metrics. */
struct publish_stats {
	uint64_t units_ok;       /* units confirmed */
	uint64_t units_failed;   /* units reported as failed */
	uint64_t events_ok;      /* events in confirmed units */
	uint64_t events_failed;  /* events in failed units */
	uint64_t txns_committed; /* Kafka transactions committed */
	uint64_t txns_aborted;   /* Kafka transactions aborted */
	int queued_units;        /* units waiting for the publisher thread now */
};

struct publish;
struct publish_unit;

/* Creates the transactional producer from cfg (DW_KAFKA_BROKERS and DW_KAFKA_* passthrough),
 * initialises transactions (fencing any earlier instance with the same transactional id) and starts
 * the publisher thread. Borrows cfg and opts for the call (topic_prefix is copied; "dw" when unset).
 * On success *out is a new publisher the caller frees with publish_free(). Returns 0, or PUBLISH_ERR
 * / PUBLISH_ERR_FATAL with errbuf (broker unreachable within txn_timeout_ms, bad property...). */
int publish_new(const struct config_common *cfg, const struct publish_opts *opts, struct publish **out,
		char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Stops accepting new units: publish_send() then fails with PUBLISH_ERR_STOPPED. Units already
 * queued are still published (or fail) as usual. Idempotent. */
void publish_stop(struct publish *p);

/* Stops (as publish_stop), waits for the queued units to finish, joins the thread, closes the
 * producer (aborting an open transaction) and frees. NULL-safe. */
void publish_free(struct publish *p);

/* Non-zero once the producer hit a fatal error; the reason goes to errbuf. */
int publish_fatal(struct publish *p, char *errbuf, size_t errlen);

/* Copies the counters. */
void publish_get_stats(struct publish *p, struct publish_stats *out);

/* A new empty unit. Returns NULL only when out of memory. Free with publish_unit_free(). */
struct publish_unit *publish_unit_new(void);

/* Frees a unit; NULL-safe. Must not be called while a publish_send() of it is running. */
void publish_unit_free(struct publish_unit *u);

/* Validates and encodes *ev (borrowed for the call) and appends it to u, recording its topic
 * (from `prefix`, ev->source.side and ev->source.entity) and message key. Returns 0, or
 * PUBLISH_ERR_INVALID with err naming the bad field (u is unchanged then). */
int publish_unit_add(struct publish_unit *u, const char *prefix, const struct event *ev, char *err,
		     size_t errlen) __attribute__((warn_unused_result));

/* Appends a message that is not a change event (e.g. capture's staging records) to u: topic, key
 * and value[0..value_len) are copied; headers "dw-event-id" = id (64 hex; NULL: 64 zeros) and
 * "dw-op" = op (a static string, or NULL for an empty header). Returns 0, or PUBLISH_ERR_INVALID
 * with err (bad arguments, out of memory; u is unchanged then). */
int publish_unit_add_message(struct publish_unit *u, const char *topic, const char *key, const char *value,
			     size_t value_len, const char *id, const char *op, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Number of events in u. */
size_t publish_unit_count(const struct publish_unit *u);

/* Event number idx of u: its id and topic, borrowed from u (NULL when idx is out of range). */
const char *publish_unit_event_id(const struct publish_unit *u, size_t idx);
const char *publish_unit_topic(const struct publish_unit *u, size_t idx);

/* Publishes every event of u in one Kafka transaction (possibly shared with other units, see
 * above) and blocks until its outcome is known: at most about 2 * txn_timeout_ms. Borrows u for the
 * call; u can be sent again after a failure. An empty unit returns 0 at once. Returns 0 when every
 * event is committed; PUBLISH_ERR (retryable, nothing visible), PUBLISH_ERR_FATAL or
 * PUBLISH_ERR_STOPPED with errbuf. */
int publish_send(struct publish *p, struct publish_unit *u, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

#endif
