#ifndef DW_CAPTURE_CE_SIDE_H
#define DW_CAPTURE_CE_SIDE_H

#include "httpd.h"

/* The CE side of the capture program: change-tracking polls and the webhook receiver. */

struct app;

/* One poll round over every table: follows each table's delta link until the latest page,
 * publishing a unit per page and checkpointing its link after the commit. The first poll of a
 * table (no checkpoint) only fetches the delta link. Returns 0 when every table was polled, -1
 * when one failed (logged; it is retried next round). Stops early when *a->stop is set. */
int ce_poll_round(struct app *a);

/* The webhook route handler (arg: struct app *). */
void ce_webhook(void *arg, const struct httpd_request *req, struct httpd_response *resp);

#endif
