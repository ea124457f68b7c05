#ifndef DW_CAPTURE_FO_SIDE_H
#define DW_CAPTURE_FO_SIDE_H

#include "httpd.h"

/* The FO side of the capture program: the data-event receiver (re-read by key, version by image). */

struct app;

/* One modified-time poll round over the tables that name a modified-time field: rows with a
 * modified time at or after the table's watermark, versioned by image (unchanged images are not
 * published again), one unit per page, watermark checkpointed after the commit. The first poll of
 * a table only stores the newest modified time. Returns 0, or -1 when a table failed (logged). */
int fo_poll_round(struct app *a);

/* Non-zero when some table names a modified-time field. */
int fo_polls(const struct app *a);

/* The data-event route handler (arg: struct app *). */
void fo_webhook(void *arg, const struct httpd_request *req, struct httpd_response *resp);

#endif
