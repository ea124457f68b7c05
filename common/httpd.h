#ifndef DW_HTTPD_H
#define DW_HTTPD_H

#include <stddef.h>

#include "metrics.h"

/*
 * Embedded HTTP server (libmicrohttpd) for the long-running programs. It serves
 *   GET /healthz  200 "ok" while the process loop is alive (see httpd_heartbeat), else 503
 *   GET /readyz   200 "ready" only after httpd_set_ready(h, 1, ...), else 503 with the reason
 *   GET /metrics  the registry given in the options, Prometheus text format 0.0.4
 * plus routes the program registers (exact method and path) with a handler callback, e.g. the
 * webhook receivers of capture. An unknown path gets 404, a known path with another method 405
 * with an Allow header, a body over the route's cap 413 without the handler being called.
 *
 * Threads: libmicrohttpd runs one thread per connection (up to max_connections at once) and the
 * handlers run on those threads, concurrently. A handler may block (e.g. until Kafka acknowledged a
 * webhook event) without stalling /healthz or other requests, but must be thread-safe and must
 * return within the connection timeout. httpd_set_ready and httpd_heartbeat may be called from any
 * thread.
 *
 * Limits from outside: a route's body cap (413), request line and headers within libmicrohttpd's
 * per-connection memory (32 KiB by default; libmicrohttpd answers larger ones 431 itself),
 * at most HTTPD_REQ_KV_MAX headers and query parameters each, at most max_connections at once,
 * idle connections closed after timeout_s. A body that passes the cap while it is being read
 * (chunked, no Content-Length) is read to its end and discarded, then answered 413: libmicrohttpd
 * cannot answer in the middle of an upload.
 *
 * Return codes: 0 or -1 with errbuf.
 */

#define HTTPD_BODY_MAX_DEFAULT ((size_t)1024 * 1024) /* route body cap when the route gives 0 */
#define HTTPD_RESP_HEADERS_MAX 16
#define HTTPD_REASON_MAX 256
#define HTTPD_REQ_KV_MAX 256 /* headers, and query parameters, passed to a handler (the rest dropped) */

struct httpd;

/* Server options; borrowed for httpd_new. Zero fields take the defaults. */
struct httpd_opts {
	const char *addr;          /* IPv4 or IPv6 literal to listen on; NULL: "0.0.0.0" */
	unsigned port;             /* 0: an ephemeral port (see httpd_port) */
	struct metrics *metrics;   /* served at /metrics; NULL: /metrics answers 404 */
	unsigned max_connections;  /* 0: 64 */
	unsigned timeout_s;        /* idle connection timeout; 0: 60 s */
	long liveness_timeout_ms;  /* > 0: /healthz fails when no heartbeat came for this long */
};

/* DW_HTTP_ADDR (default "0.0.0.0") and DW_HTTP_PORT (default 8080, 0..65535) from the environment.
 * addr is owned by the struct; free with httpd_config_free(). */
struct httpd_config {
	char *addr;
	unsigned port;
};
int httpd_config_load(struct httpd_config *cfg, char *errbuf, size_t errlen) __attribute__((warn_unused_result));
void httpd_config_free(struct httpd_config *cfg);

/* One name/value pair of a request (header or query parameter). */
struct httpd_kv {
	const char *name;
	const char *value;
};

/* What a handler receives; everything is borrowed for the duration of the call. */
struct httpd_request {
	const char *method;
	const char *path;                /* without the query string */
	const struct httpd_kv *headers;  /* all request headers, in arrival order */
	size_t nheaders;
	const struct httpd_kv *query;    /* decoded query parameters, in order */
	size_t nquery;
	const char *body;                /* NUL-terminated; never NULL ("" when empty) */
	size_t body_len;
};

/* The value of the first header called `name` (case-insensitive), or NULL. */
const char *httpd_request_header(const struct httpd_request *req, const char *name);

/* The value of the first query parameter called `name` (case-sensitive), or NULL. */
const char *httpd_request_query(const struct httpd_request *req, const char *name);

/* What a handler fills. It starts zeroed; status 0 after the handler returns means 500. */
struct httpd_response {
	int status;
	char content_type[128];
	char *body; /* owned by the response (use httpd_response_set); freed by the server */
	size_t body_len;
	struct httpd_kv headers[HTTPD_RESP_HEADERS_MAX]; /* owned by the response (use ..._header) */
	size_t nheaders;
};

/* Sets status, content type (NULL: "text/plain; charset=utf-8") and a copy of the body (NULL/0:
 * empty), replacing any earlier body. Returns 0, or -1 when out of memory (the server then answers
 * 500). */
int httpd_response_set(struct httpd_response *resp, int status, const char *content_type, const void *body,
		       size_t body_len) __attribute__((warn_unused_result));

/* Adds a copy of one response header. Returns 0, or -1 when the name is invalid, the value holds
 * CR or LF, HTTPD_RESP_HEADERS_MAX is reached or memory runs out. */
int httpd_response_header(struct httpd_response *resp, const char *name, const char *value)
	__attribute__((warn_unused_result));

/* A route handler: reads *req, fills *resp. Runs on a connection thread (see above). */
typedef void (*httpd_handler)(void *arg, const struct httpd_request *req, struct httpd_response *resp);

/* Creates a stopped server with `opts`. On success *out is a new server the caller frees with
 * httpd_free(). Fails with errbuf (bad address, out of memory). */
int httpd_new(const struct httpd_opts *opts, struct httpd **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Registers a route for `method` and exact `path` (both copied) before httpd_start(). Bodies
 * longer than body_max (0: HTTPD_BODY_MAX_DEFAULT) are answered 413 without calling fn. `arg` is
 * passed to fn as it is. Fails when the server is started, the method/path pair is taken or is
 * one of the built-in paths. */
int httpd_route(struct httpd *h, const char *method, const char *path, size_t body_max, httpd_handler fn,
		void *arg, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Binds and starts serving. Fails with errbuf (address in use, permission) and the server stays
 * stopped. */
int httpd_start(struct httpd *h, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* The port the server is bound to (useful with port 0), or 0 when it is not started. */
unsigned httpd_port(const struct httpd *h);

/* Marks the program ready (readyz 200) or not ready with a reason (copied; shown in the 503 body,
 * truncated to HTTPD_REASON_MAX). The server starts not ready with reason "starting". */
void httpd_set_ready(struct httpd *h, int ready, const char *reason);

/* Records that the process loop is alive now; with liveness_timeout_ms set, /healthz answers 503
 * once no heartbeat came for that long. */
void httpd_heartbeat(struct httpd *h);

/* Marks the process loop dead (/healthz 503) or alive again (e.g. after a fatal Kafka error). */
void httpd_set_alive(struct httpd *h, int alive);

/* Stops accepting connections, waits for running handlers to return and closes the socket.
 * Safe to call twice and on a server never started. */
void httpd_stop(struct httpd *h);

/* Stops the server if running and frees it; NULL-safe. */
void httpd_free(struct httpd *h);

#endif
