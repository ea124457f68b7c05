#include "emu.h"

#include <string.h>

void emu_dispatch(void *ctx, const struct server_request *req, struct server_response *resp)
{
	struct emu_router *r = ctx;
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
