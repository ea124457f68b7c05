#ifndef DW_CAPTURE_CE_SIDE_H
#define DW_CAPTURE_CE_SIDE_H

#include "httpd.h"

/* The CE side of the capture program: change-tracking polls and the webhook receiver. */

struct app;
struct ce_hold;

/* State kept between poll rounds: rows held back for their webhooks (DW_CAPTURE_DELTA_GRACE) and
 * the delta links not yet checkpointed because of them. Returns 0 or -1 (out of memory). */
int ce_hold_new(struct ce_hold **out) __attribute__((warn_unused_result));

/* Frees the held rows (their links were not checkpointed: a restart reads them again); NULL-safe. */
void ce_hold_free(struct ce_hold *h);

/* One poll round over every table: follows each table's delta link until the latest page,
 * publishing a unit per page and checkpointing its link after the commit. Creates and updates
 * modified less than DW_CAPTURE_DELTA_GRACE ago are held back until the grace has passed and then
 * published only if no webhook captured them meanwhile; a link is checkpointed only once no row
 * held from before it is left. The first poll of a
 * table (no checkpoint) only fetches the delta link. Returns 0 when every table was polled, -1
 * when one failed (logged; it is retried next round). Stops early when *a->stop is set. */
int ce_poll_round(struct app *a);

/* The webhook route handler (arg: struct app *). */
void ce_webhook(void *arg, const struct httpd_request *req, struct httpd_response *resp);

#endif
