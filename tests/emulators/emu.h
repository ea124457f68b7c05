#ifndef DW_EMU_EMU_H
#define DW_EMU_EMU_H

#include "admin.h"
#include "api.h"
#include "auth.h"
#include "throttle.h"
#include "server.h"

/*
 * The emulator's front door: routes every HTTP request to the admin API (/_emulator/, no token),
 * the token endpoint (/<tenant>/oauth2/v2.0/token), or, for paths under the flavour's prefix, the
 * bearer check, then the service-protection limits and faults, then the flavour handler. Counts
 * API requests (a $batch is one).
 */

struct emu_router {
	const char *flavour;       /* "ce" or "fo" */
	struct api *api;           /* borrowed */
	server_handler_fn handler; /* ce_handle or fo_handle, ctx = api */
	struct auth *auth;         /* borrowed */
	struct throttle *limits;     /* borrowed */
	struct admin_deps admin;
	unsigned long long requests;
};

/* The server handler; ctx is a struct emu_router. */
void emu_dispatch(void *ctx, const struct server_request *req, struct server_response *resp);

#endif
