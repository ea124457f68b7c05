#ifndef DW_EMU_CE_H
#define DW_EMU_CE_H

#include "api.h"
#include "server.h"

/*
 * The Dataverse Web API flavour at {base}/api/data/v9.2/: entity sets addressed by GUID, by the
 * id column, or by alternate keys (single or composite, lookups as _x_value); POST create (204 +
 * OData-EntityId, or 201 + body with Prefer: return=representation); PATCH upsert with If-Match /
 * If-None-Match; DELETE; GET single (304 on a matching If-None-Match ETag) and collections
 * ($select, $filter, $orderby, $top, Prefer: odata.maxpagesize + @odata.nextLink); lookups written
 * as <nav>@odata.bind ("/set(guid)", "/set(key='x')" or "$n" in a batch) and read as _x_value;
 * change tracking (Prefer: odata.track-changes -> @odata.deltaLink; $deltatoken reads return
 * changed rows, then $deletedEntity rows); $batch; WhoAmI.
 */

/* Serves one authenticated request whose path starts with api->prefix. ctx is a struct api. */
void ce_handle(void *ctx, const struct server_request *req, struct server_response *resp);

/* Executes one request inside an open unit of work (used by $batch). `rel` is the path after the
 * prefix. */
void ce_exec(struct api *a, struct api_txn *t, const struct server_request *req, const char *rel,
	     struct server_response *resp);

#endif
