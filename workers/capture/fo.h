#ifndef DW_CAPTURE_FO_SIDE_H
#define DW_CAPTURE_FO_SIDE_H

#include "httpd.h"

/* The FO side of the capture program: the data-event receiver (re-read by key, version by image). */

struct app;

/* The data-event route handler (arg: struct app *). */
void fo_webhook(void *arg, const struct httpd_request *req, struct httpd_response *resp);

#endif
