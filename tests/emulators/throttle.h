#ifndef DW_EMU_THROTTLE_H
#define DW_EMU_THROTTLE_H

#include <cjson/cJSON.h>

#include "server.h"

/*
 * Service-protection limits and fault injection, both off by default and changed at run time
 * through the admin API. Thread-safe.
 *
 * Limits: at most `max_requests` per `window_s` (a fixed window that starts with its first request;
 * Dataverse documents a 5-minute sliding window, the difference only matters near the edges) and at
 * most `max_concurrent` requests in flight. Excess requests get 429 with Retry-After and, for the
 * Dataverse flavour, error codes 0x80072322 (request count) or 0x80072326 (concurrency); the FO
 * flavour answers 429 "Too many requests". A $batch counts as one request.
 *
 * Faults: an added latency per request, an error status returned for a share of requests, and a
 * full outage (503 for every API request).
 */

struct throttle;

/* A new limits object with everything off. NULL when out of memory. */
struct throttle *throttle_new(const char *flavour);

/* NULL-safe. */
void throttle_free(struct throttle *l);

/*
 * Called before an API request is served. Returns 0 to go on (the caller must call throttle_leave
 * afterwards) or -1 with resp filled (429 or an injected fault; do not call throttle_leave). Sleeps for
 * the configured latency.
 */
int throttle_enter(struct throttle *l, struct server_response *resp);

/* Ends a request admitted by throttle_enter. */
void throttle_leave(struct throttle *l);

/*
 * Applies settings from JSON; absent members keep their value:
 *   limits: {"max_requests":n,"window_s":n,"max_concurrent":n,"retry_after_s":n}   (0 = off)
 *   faults: {"latency_ms":n,"error_status":n,"error_rate":0..1,"outage":bool}
 * Returns 0 or -1 with errbuf filled (wrong type or out of range); nothing changes on error.
 */
int throttle_configure(struct throttle *l, const cJSON *limits_json, const cJSON *faults_json, char *errbuf,
		     size_t errlen) __attribute__((warn_unused_result));

/* Everything off again. */
void throttle_reset(struct throttle *l);

/* Current settings and counters as a new JSON object (caller frees). */
cJSON *throttle_to_json(struct throttle *l);

#endif
