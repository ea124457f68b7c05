#ifndef DW_CAPTURE_TXN_H
#define DW_CAPTURE_TXN_H

#include <stddef.h>

#include "event.h"

/*
 * Source transactions (docs/capture.md): events the source made in one transaction (same
 * CorrelationId, IsInTransaction) are staged durably in PostgreSQL as they arrive; a flusher
 * thread publishes each transaction as one unit (txn {id, total, order}, one Kafka transaction)
 * once no event of it arrived for the settle window, then deletes the staged rows. Transactions
 * staged before a restart are published after start-up.
 */

struct app;
struct txn;

/* Starts the flusher thread; a borrowed (outlives the txn). Schedules transactions already staged.
 * Returns 0 or -1 with errbuf. */
int txn_new(struct app *a, struct txn **out, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Stops the flusher (what is staged stays staged for the next start) and frees; NULL-safe. */
void txn_free(struct txn *t);

/* Stages ev (borrowed; its id must be computed) as part of transaction txn_id. Returns 0 once it is
 * committed in PostgreSQL, or -1 with errbuf. Thread-safe. */
int txn_stage(struct txn *t, const struct event *ev, const char *txn_id, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Transactions waiting to be published (staged, not yet out). */
size_t txn_open_count(struct txn *t);

#endif
