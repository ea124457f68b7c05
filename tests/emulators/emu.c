#include "emu.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

/* One debug line per request (DW_LOG_LEVEL=debug); tokens and bodies are never logged. */
static void log_request(const struct server_request *req, const struct server_response *resp)
{
	if (!log_enabled(LOG_DEBUG))
		return;
	char status[8];
	snprintf(status, sizeof(status), "%d", resp->status);
	log_debug("request", "method", req->method, "path", req->path, "status", status);
}

static void dispatch(struct emu_router *r, const struct server_request *req, struct server_response *resp);

void emu_dispatch(void *ctx, const struct server_request *req, struct server_response *resp)
{
	dispatch(ctx, req, resp);
	log_request(req, resp);
}

static void dispatch(struct emu_router *r, const struct server_request *req, struct server_response *resp)
{
	if (strncmp(req->path, "/_emulator/", 11) == 0) {
		admin_handle(&r->admin, req, resp);
		return;
	}
	if (auth_is_token_path(req->path)) {
		auth_handle_token(r->auth, req, resp);
		return;
	}
	size_t pl = strlen(r->api->prefix);
	int under = strncmp(req->path, r->api->prefix, pl) == 0 ||
		    (strncmp(req->path, r->api->prefix, pl - 1) == 0 && req->path[pl - 1] == '\0');
	if (!under) {
		server_response_odata_error(resp, 404, "", "The requested resource does not exist on this server.");
		return;
	}
	__atomic_add_fetch(&r->requests, 1, __ATOMIC_RELAXED);
	if (auth_check(r->auth, req, r->flavour, resp) < 0)
		return;
	if (throttle_enter(r->limits, resp) < 0)
		return;
	if (req->path[pl - 1] == '\0') {
		/* "/api/data/v9.2" without the slash: serve the service document */
		struct server_request copy = *req;
		copy.path = r->api->prefix;
		r->handler(r->api, &copy, resp);
	} else {
		r->handler(r->api, req, resp);
	}
	throttle_leave(r->limits);
}
