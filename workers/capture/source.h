#ifndef DW_CAPTURE_SOURCE_H
#define DW_CAPTURE_SOURCE_H

#include <stddef.h>

#include "http.h"

/*
 * Reads from the source service (Dataverse Web API or F&O OData) with an OAuth bearer token.
 * Thread-safe: a small pool of HTTP clients (one per concurrent caller) over one token cache.
 * A 401 drops the token and the request is tried once more with a new one.
 */

struct oauth;
struct source;

/* root: the service root ending in '/' (copied); oauth borrowed (outlives the source). */
int source_new(const char *root, struct oauth *oauth, struct source **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees every client; NULL-safe. */
void source_free(struct source *s);

/* GETs `url` (absolute, or relative to the root) with Accept: application/json, OData-Version 4.0
 * and Prefer `prefer` (may be NULL). Fills *resp (any status; caller frees with
 * http_response_free). Returns 0, or -1 with errbuf (token or transport failure). */
int source_get(struct source *s, const char *url, const char *prefer, struct http_response *resp, char *errbuf,
	       size_t errlen) __attribute__((warn_unused_result));

#endif
