#ifndef DW_OAUTH_H
#define DW_OAUTH_H

#include <stddef.h>

#include "http.h"

/*
 * OAuth 2.0 client credentials grant against the Microsoft identity platform (or the emulator's
 * token endpoint):
 *   POST {token_url}  Content-Type: application/x-www-form-urlencoded
 *   grant_type=client_credentials&client_id=..&client_secret=..&scope=..   (each value form-encoded)
 *   -> 200 {"token_type":"Bearer","expires_in":3599,"access_token":"..."}
 *
 * The token is cached and fetched again when less than max(60 s, 10% of its lifetime) remains.
 * After a 401 from the resource, oauth_invalidate() makes the next call fetch a new one.
 *
 * Thread-safe: one mutex guards the cache; at most one fetch runs at a time and callers arriving
 * meanwhile wait for it (at most the HTTP timeout, 30 s by default: set opts.http.timeout_ms lower
 * where a caller must not block that long) and then share its token. The fetch uses the cache's
 * own HTTP client. When a refresh fails while the cached token has not expired yet, the cached
 * token is returned (with a warning in the log) and the next call tries again.
 *
 * Secrets: the client secret and every token are registered with log_secret_add(), and neither
 * appears in an error message. Errors from the identity platform quote its "error" and
 * "error_description" fields (e.g. "token endpoint https://login.../token: HTTP 401 invalid_client:
 * AADSTS7000215: Invalid client secret provided...").
 *
 * Return codes: 0, OAUTH_ERR (will not succeed by retrying as is: configuration, credentials
 * rejected, malformed response) or OAUTH_ERR_RETRY (transport failure, timeout, 408/429/5xx: try
 * again later), with errbuf filled.
 */

enum { OAUTH_ERR = -1, OAUTH_ERR_RETRY = -2 };

#define OAUTH_RESPONSE_MAX ((size_t)64 * 1024) /* cap on a token response body */
#define OAUTH_TOKEN_MAX ((size_t)16 * 1024)    /* cap on an access token's length */

/* Settings for one side. All strings owned by the struct; free with oauth_config_free(). */
struct oauth_config {
	char *token_url;     /* e.g. https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token */
	char *client_id;
	char *client_secret; /* secret */
	char *scope;         /* e.g. https://org.crm.dynamics.com/.default */
};

/* Loads DW_<SIDE>_TOKEN_URL, DW_<SIDE>_CLIENT_ID, DW_<SIDE>_CLIENT_SECRET (or _FILE) and
 * DW_<SIDE>_SCOPE, all required; `side` is "CE" or "FO". The secret is registered with
 * log_secret_add(). On failure errbuf names the variable and *cfg is left zeroed. */
int oauth_config_load(const char *side, struct oauth_config *cfg, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees the strings of *cfg and zeroes it; NULL-safe. */
void oauth_config_free(struct oauth_config *cfg);

/* Options for the cache; a zeroed struct (or NULL) gives the defaults. */
struct oauth_opts {
	struct http_opts http;      /* for the token endpoint; body_max 0 means OAUTH_RESPONSE_MAX */
	long long (*clock_ms)(void); /* monotonic milliseconds; NULL: CLOCK_MONOTONIC (tests inject) */
};

struct oauth;

/* Creates a token cache for `cfg` (copied) with `opts` (borrowed for the call; NULL: defaults).
 * Fetches nothing yet. On success *out is a new cache the caller frees with oauth_free(). Fails
 * with OAUTH_ERR (missing field, out of memory, HTTP client setup) and errbuf. */
int oauth_new(const struct oauth_config *cfg, const struct oauth_opts *opts, struct oauth **out, char *errbuf,
	      size_t errlen) __attribute__((warn_unused_result));

/* Frees the cache; NULL-safe. No call may be running on it. */
void oauth_free(struct oauth *o);

/* Returns a valid access token, fetching one when none is cached, when it is near expiry or after
 * oauth_invalidate(). On success *token is a new string (the bare token, without "Bearer ") the
 * caller frees with free(). Returns OAUTH_ERR or OAUTH_ERR_RETRY with errbuf on failure. */
int oauth_token(struct oauth *o, char **token, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Drops the cached token after the resource answered 401 with it, so the next oauth_token() call
 * fetches a new one. When `token` is non-NULL the cache is dropped only if it still holds that
 * token (so a 401 on an old token does not throw away a newer one another thread just fetched);
 * NULL drops it unconditionally. */
void oauth_invalidate(struct oauth *o, const char *token);

/* Number of token fetches attempted so far (successful or not); for metrics and tests. */
unsigned long oauth_fetch_count(struct oauth *o);

#endif
