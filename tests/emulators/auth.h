#ifndef DW_EMU_AUTH_H
#define DW_EMU_AUTH_H

#include "server.h"

/*
 * OAuth 2.0 client-credentials token endpoint in the shape of the Microsoft identity platform
 * (POST /{tenant}/oauth2/v2.0/token) and the bearer check for every API request. Tokens are random
 * opaque strings kept in memory with an expiry; they do not survive a restart (a client simply
 * fetches a new one after a 401, as it must against the real service). Thread-safe.
 */

struct auth;

/* A new token issuer accepting one client (id and secret copied). ttl_s is the lifetime of new
 * tokens. Returns NULL when out of memory. Free with auth_free. */
struct auth *auth_new(const char *client_id, const char *client_secret, long ttl_s);

/* NULL-safe. */
void auth_free(struct auth *a);

/* Changes the lifetime of tokens issued from now on (seconds, >= 1). */
void auth_set_ttl(struct auth *a, long ttl_s);

/* Returns non-zero when the path is a token endpoint path ("/<tenant>/oauth2/v2.0/token"). */
int auth_is_token_path(const char *path);

/* Serves the token endpoint: 200 {"token_type":"Bearer","expires_in":n,"ext_expires_in":n,
 * "access_token":"..."}, or the identity platform's error JSON with 400/401. */
void auth_handle_token(struct auth *a, const struct server_request *req, struct server_response *resp);

/* Checks the Authorization: Bearer header. Returns 0 when the token is valid; otherwise fills resp
 * with 401 + WWW-Authenticate: Bearer (flavour "ce" or "fo" picks the error body) and returns -1. */
int auth_check(struct auth *a, const struct server_request *req, const char *flavour, struct server_response *resp);

/* Forgets every issued token (admin reset keeps tokens; tests use this to provoke 401s). */
void auth_revoke_all(struct auth *a);

#endif
