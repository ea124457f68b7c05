#ifndef DW_DEMO_DSIDE_H
#define DW_DEMO_DSIDE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "event.h"

/*
 * The demo driver's client for one side (an emulator or a real service): OData requests with an
 * OAuth token from DW_<SIDE>_TOKEN_URL/CLIENT_ID/CLIENT_SECRET/SCOPE, paging, and the emulators'
 * admin API (/_emulator/...). Responses are capped at DSIDE_BODY_MAX bytes.
 */

#define DSIDE_BODY_MAX ((size_t)64 * 1024 * 1024)
#define DSIDE_ROWS_MAX 200000 /* rows read from one entity set */

struct dside;

/* Opens side ce or fo from DW_<SIDE>_URL and the OAuth settings. *out is freed with
 * dside_free. Returns 0, or -1 with err naming the missing setting. */
int dside_open(enum event_side side, struct dside **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* NULL-safe. */
void dside_free(struct dside *d);

/* "ce" or "fo". */
const char *dside_name(const struct dside *d);

/* The side's base URL (DW_<SIDE>_URL), borrowed. */
const char *dside_url(const struct dside *d);

/*
 * One request to the service: path is relative to the service root (CE /api/data/v9.2/, FO
 * /data/), body is JSON or NULL. Fills *status and, when out is non-NULL and the answer has a JSON
 * body, *out (the caller's, cJSON_Delete). Returns 0 for any HTTP status, -1 on a transport or
 * token failure with err.
 */
int dside_call(struct dside *d, const char *method, const char *path, const char *body, long *status, cJSON **out,
	       char *err, size_t errlen) __attribute__((warn_unused_result));

struct odata_batch_part;

/*
 * Posts a $batch of parts (odata_batch.h) to the service. Fills *status (of the batch) and *out
 * with the raw response body (the caller's, free()). Returns 0 for any HTTP status, -1 with err.
 */
int dside_batch(struct dside *d, const struct odata_batch_part *parts, size_t nparts, long *status, char **out,
		char *err, size_t errlen) __attribute__((warn_unused_result));

/* As dside_call for the admin API: path under /_emulator/, no token. */
int dside_admin(struct dside *d, const char *method, const char *path, const char *body, long *status, cJSON **out,
		char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * Every row of an entity set (FO: cross-company), following @odata.nextLink. *out is a new JSON
 * array (the caller's). Returns 0, or -1 with err (HTTP error, more than DSIDE_ROWS_MAX rows).
 */
int dside_rows(struct dside *d, const char *set, cJSON **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

#endif
