#ifndef DW_CAPTURE_HOOK_H
#define DW_CAPTURE_HOOK_H

#include "httpd.h"

/* Webhook plumbing shared by the CE and FO receivers: the key check, JSON answers and the
 * outcome metrics. */

struct app;

/* Non-zero when the request carries a configured key as query parameter `code` or in the key
 * header. */
int hook_authorized(const struct app *a, const struct httpd_request *req);

/* Non-zero when the request's Content-Type is application/json (parameters such as charset and
 * letter case aside); webhook bodies of any other type are answered 415. */
int hook_json_body(const struct httpd_request *req);

/* Answers status with {"<member>":<n>} or {"error":"<reason>"} (reason NULL: none), counts the
 * outcome and, for 2xx, observes the latency since t0_ms (monotonic). */
void hook_reply(struct app *a, struct httpd_response *resp, int status, const char *outcome, const char *member,
		long n, const char *reason, long long t0_ms);

/* Monotonic milliseconds. */
long long hook_now_ms(void);

#endif
