#ifndef DW_EMU_ADMIN_H
#define DW_EMU_ADMIN_H

#include "api.h"
#include "auth.h"
#include "throttle.h"
#include "server.h"

/*
 * The admin API under {base}/_emulator/ (no token; the emulators listen on loopback only):
 *   GET    stats                    {"writes":{"<set>":{"create":n,"update":n,"delete":n}},
 *                                    "requests":n,"limits":{...},"notify":{...}}
 *   GET    records/<set>?id=<guid>  per-record write count: {"id","version","writes","deleted"}
 *   GET    records/<set>?key=<key>  same, by key predicate text as in a URL, e.g.
 *                                   key=(dataAreaId='usmf',CustomerAccount='US-001') (URL-encoded)
 *   POST   faults                   {"latency_ms":n,"error_status":n,"error_rate":x,"outage":b}
 *   POST   limits                   {"max_requests":n,"window_s":n,"max_concurrent":n,"retry_after_s":n}
 *   POST   auth                     {"token_ttl_s":n} and/or {"revoke_all":true}
 *   POST   reset                    deletes every record, zeroes counters, limits and faults off,
 *                                   webhook registrations dropped (tokens stay valid)
 *   POST   seed                     {"n":10,"seed":1,"side":"ce|fo|both","companies":[...]}: the
 *                                   records of this flavour's side, created through the API rules
 *   GET    webhooks                 registrations and delivery counters
 *   POST   webhooks                 {"entity","messages":["Create",...],"url","auth":"none|code|
 *                                   header|query","auth_name","auth_value"} -> {"id":...}
 *   DELETE webhooks/<id>
 * Errors: 400/404 with {"error":{"code":"","message":"..."}}.
 */

struct admin_deps {
	struct api *api;          /* borrowed */
	api_exec_fn exec;         /* the flavour's executor (seeding goes through it) */
	struct auth *auth;        /* borrowed */
	struct throttle *limits;    /* borrowed */
	unsigned long long *requests; /* request counter (updated atomically by the router) */
};

/* Serves one request whose path starts with "/_emulator/". ctx is a struct admin_deps. */
void admin_handle(void *ctx, const struct server_request *req, struct server_response *resp);

#endif
