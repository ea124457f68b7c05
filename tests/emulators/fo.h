#ifndef DW_EMU_FO_H
#define DW_EMU_FO_H

#include "api.h"
#include "server.h"

/*
 * The Finance & Operations OData flavour at {base}/data/: public collections addressed by their
 * full natural key (dataAreaId first; every key field required); POST creates (201 + entity, or
 * 204 with Prefer: return=minimal; an existing key is an error); PATCH updates only (a missing key
 * is 404; key fields cannot change; PUT replaces the non-key fields); DELETE; If-Match on PATCH/DELETE (412 when stale); GET single
 * and collections with $filter/$select/$orderby/$top/$skip, pages of at most 10,000 rows with a
 * $skip @odata.nextLink, only the default company unless cross-company=true; enum values as member
 * names; $batch with atomic changesets; data events through notify after commit.
 */

/* Serves one authenticated request whose path starts with api->prefix. ctx is a struct api. */
void fo_handle(void *ctx, const struct server_request *req, struct server_response *resp);

/* Executes one request inside an open unit of work (used by $batch). */
void fo_exec(struct api *a, struct api_txn *t, const struct server_request *req, const char *rel,
	     struct server_response *resp);

/* The key predicate of a record for a URL, e.g. "(dataAreaId='usmf',CustomerAccount='US-001')";
 * NULL when a key field is missing. New string, caller frees. */
char *fo_key_predicate(const struct api *a, const struct schema_entity *e, const cJSON *data);

#endif
