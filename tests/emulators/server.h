#ifndef DW_EMU_SERVER_H
#define DW_EMU_SERVER_H

#include <stddef.h>

#include <cjson/cJSON.h>

/*
 * The emulator's HTTP layer: libmicrohttpd (one thread per connection, keep-alive), a hard cap on
 * request bodies (413), and a transport-neutral request/response pair so that the flavour handlers
 * can serve both real HTTP requests and the inner requests of a $batch with the same code.
 *
 * Paths are handed over RAW (still percent-encoded, without the query string): libmicrohttpd's
 * decoded path would turn an encoded '/' inside a key literal into a path separator.
 */

struct server_header {
	char *name;
	char *value;
};

/* One request. Everything is borrowed from the server (or the $batch parser) for the call. */
struct server_request {
	const char *method;      /* "GET", "POST", ... */
	const char *path;        /* raw path, e.g. "/api/data/v9.2/accounts(accountnumber='A%2F1')" */
	const char *query;       /* raw query string without '?', "" when none */
	const struct server_header *headers;
	size_t nheaders;
	const char *body;        /* not NUL-terminated; may be NULL when body_len is 0 */
	size_t body_len;
};

#define SERVER_MAX_RESPONSE_HEADERS 16

/* One response, filled by a handler. The body is owned by the response (server_response_clear). */
struct server_response {
	int status;
	struct server_header headers[SERVER_MAX_RESPONSE_HEADERS];
	size_t nheaders;
	char *body;
	size_t body_len;
};

/* A request handler: fills resp (status 0 means "not handled"). */
typedef void (*server_handler_fn)(void *ctx, const struct server_request *req, struct server_response *resp);

/* Case-insensitive header lookup; returns the value (borrowed) or NULL. */
const char *server_request_header(const struct server_request *req, const char *name);

/* Value of a query parameter, percent-decoded ('+' is a space), in a new string the caller frees;
 * NULL when absent (or out of memory). */
char *server_request_query_param(const struct server_request *req, const char *name);

/* Adds (copies) a response header; silently ignores headers past SERVER_MAX_RESPONSE_HEADERS. */
void server_response_header(struct server_response *resp, const char *name, const char *value);

/* Returns the value of a response header already set, or NULL. */
const char *server_response_get_header(const struct server_response *resp, const char *name);

/* Sets status and a JSON body (serialised unformatted) with the OData JSON content type and
 * OData-Version: 4.0. Borrows `json`. */
void server_response_json(struct server_response *resp, int status, const cJSON *json);

/* Sets status and takes ownership of a malloc'd body of the given content type. */
void server_response_take_body(struct server_response *resp, int status, const char *content_type, char *body,
			       size_t len);

/* Status only, no body (204, 304...), plus OData-Version: 4.0. */
void server_response_empty(struct server_response *resp, int status);

/* The OData error body {"error":{"code":code,"message":message}} with the given status. */
void server_response_odata_error(struct server_response *resp, int status, const char *code, const char *message);

/* Frees what the response holds and zeroes it; safe on a zeroed response. */
void server_response_clear(struct server_response *resp);

struct server_config {
	int port;               /* 127.0.0.1:port */
	size_t body_cap;        /* bytes; larger bodies get 413 */
	server_handler_fn handler;
	void *handler_ctx;
};

struct server;

/* Starts listening on 127.0.0.1:cfg->port, dispatching every request to cfg->handler from the
 * connection's thread. Returns a new server (server_stop frees it) or NULL with errbuf filled. */
struct server *server_start(const struct server_config *cfg, char *errbuf, size_t errlen);

/* Stops accepting, waits for the connection threads, frees. NULL-safe. */
void server_stop(struct server *srv);

#endif
