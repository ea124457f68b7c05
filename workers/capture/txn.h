#ifndef DW_CAPTURE_TXN_H
#define DW_CAPTURE_TXN_H

#include <stddef.h>

#include "event.h"

/*
 * Source transactions (docs/capture.md "Source transactions"). Events the source made in one
 * transaction (same CorrelationId, IsInTransaction) are staged in Kafka as they arrive: each one is
 * committed (one Kafka transaction, acks=all) to the staging topic "<prefix>.capture-staging.<side>"
 * before its webhook is answered, so the answer means the change is durable in Kafka. Once no
 * event of a source transaction arrived for the settle window, a flusher thread publishes the unit
 * (txn {id, total, order}) to the table topics in one Kafka transaction, together with a "done"
 * record on the staging topic naming the event ids it published: both become visible at once or
 * not at all. At start-up the staging topic is read (read_committed) and every staged event without
 * a done record is published after the settle window, so nothing staged is lost by a crash.
 *
 * Staging records: key = JSON ["<env>", "<txn id>"] (one source transaction stays on one
 * partition, in order), header dw-op = "staged" with value = the encoded event, or dw-op = "done"
 * with value = {"done": ["<event id>", ...]}. Instances with other DW_ENV values share the topic
 * and ignore each other's records.
 */

struct app;
struct txn;

/* Makes sure the staging topic exists (created with 1 partition, the broker's replication factor
 * and 7 days' retention when missing), reads it back to find the events staged but not published
 * before the last stop, and starts the flusher thread. a is borrowed (outlives the txn).
 * Returns 0 or -1 with errbuf. */
int txn_new(struct app *a, struct txn **out, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Stops the flusher (what is staged stays staged for the next start) and frees; NULL-safe. */
void txn_free(struct txn *t);

/* Stages ev (borrowed; its id must be computed) as part of transaction txn_id. Returns 0 once the
 * staging record is committed in Kafka; a PUBLISH_ERR_* code with errbuf otherwise (nothing is
 * staged then; PUBLISH_ERR_INVALID means the event or the transaction id is not acceptable).
 * Thread-safe. */
int txn_stage(struct txn *t, const struct event *ev, const char *txn_id, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Notes that an event of transaction txn_id has arrived (call as soon as the body is parsed): the
 * settle window counts from the arrival of the last event, and a unit is never closed while one of
 * its events is being staged (txn_stage), however long the re-read or the Kafka commit takes.
 * Thread-safe. */
void txn_note(struct txn *t, const char *txn_id);

/* Marks in staged[i] (0/1) which of the event ids ids[0..n) are staged and not yet published
 * (change tracking leaves those to their transaction's unit). Thread-safe. */
void txn_staged(struct txn *t, const char *const *ids, size_t n, int *staged);

/* Transactions waiting to be published (staged, not yet out). */
size_t txn_open_count(struct txn *t);

#endif
