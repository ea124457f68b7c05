#ifndef DW_HTTP_H
#define DW_HTTP_H

#include <stddef.h>

/*
 * HTTP client over libcurl. One client is one CURL easy handle: connections are kept alive and
 * reused between requests to the same host. A client is NOT thread-safe: use it from one thread
 * at a time (one client per worker thread). Creating clients from several threads at once is safe
 * (libcurl's global init runs once, under pthread_once).
 *
 * Every request has a total timeout and a connect timeout, the response body has a hard cap, TLS
 * peer and host verification are on unless the caller sets `insecure` (a warning is logged, once
 * per process, when the first such client is created). Redirects are not followed (a 3xx is
 * returned as it is). Only http and https URLs are accepted. libcurl runs with CURLOPT_NOSIGNAL
 * (required with threads), so a program using this module should ignore SIGPIPE. A body sent
 * without a Content-Type header goes without one (libcurl would otherwise call it a form).
 *
 * Secrets: request headers and bodies are never logged or quoted in errors. Error messages carry
 * the method, the URL with the values of secret query parameters (code, client_secret, sig,
 * access_token, refresh_token, id_token, token, password, api_key, apikey; names compared without
 * case) replaced by "***", and the reason.
 *
 * Return codes: 0 when a response arrived (whatever its status), or one of the HTTP_ERR_* codes
 * with errbuf filled.
 */

enum {
	HTTP_ERR = -1,           /* anything else: bad argument, out of memory, TLS failure, protocol */
	HTTP_ERR_TRANSPORT = -2, /* connection refused or reset, DNS failure, send/receive failure */
	HTTP_ERR_TIMEOUT = -3,   /* connect timeout or total timeout expired */
	HTTP_ERR_TOO_LARGE = -4  /* response body (or headers) larger than the cap; errbuf names it */
};

#define HTTP_TIMEOUT_MS_DEFAULT 30000L
#define HTTP_CONNECT_TIMEOUT_MS_DEFAULT 10000L
#define HTTP_BODY_MAX_DEFAULT ((size_t)16 * 1024 * 1024)
#define HTTP_HEADERS_BYTES_MAX ((size_t)64 * 1024) /* cap on all response header lines together */
#define HTTP_RETRY_AFTER_MAX_MS 300000L            /* Retry-After values are capped at 5 minutes */
#ifndef DW_VERSION
#define DW_VERSION "0.1.0"
#endif
#define HTTP_USER_AGENT "dualwrite/" DW_VERSION

struct http_client;

/* Client options; a zeroed struct (or NULL) gives the defaults. Borrowed for http_client_new. */
struct http_opts {
	long timeout_ms;         /* total time per request; 0: HTTP_TIMEOUT_MS_DEFAULT */
	long connect_timeout_ms; /* 0: HTTP_CONNECT_TIMEOUT_MS_DEFAULT */
	size_t body_max;         /* response body cap in bytes; 0: HTTP_BODY_MAX_DEFAULT */
	const char *ca_file;     /* PEM bundle to verify peers with; NULL: the system store */
	int insecure;            /* non-zero: do not verify TLS peers (logs a warning) */
};

/* One request header. */
struct http_header {
	const char *name;
	const char *value;
};

/* A request; everything is borrowed for the duration of http_do(). Header names must be HTTP
 * tokens, values must not hold CR or LF, and each "Name: value" line is at most 8191 bytes. */
struct http_request {
	const char *method;                /* "GET", "POST", "PATCH", "PUT", "DELETE", ... */
	const char *url;                   /* absolute http:// or https:// URL */
	const struct http_header *headers; /* may be NULL when nheaders is 0 */
	size_t nheaders;
	const void *body; /* request body; NULL with body_len 0 for none */
	size_t body_len;
	long timeout_ms; /* this request's total timeout; 0: the client's */
};

/* One response header as received (name and value trimmed). */
struct http_resp_header {
	char *name;
	char *value;
};

/* A response. Filled by http_do(); the caller releases it with http_response_free(). */
struct http_response {
	long status;                      /* e.g. 200 */
	struct http_resp_header *headers; /* of the final response (not of 100 Continue) */
	size_t nheaders;
	char *body;       /* body bytes, always NUL-terminated (body[body_len] == 0); never NULL */
	size_t body_len;  /* the body may contain NUL bytes: use body_len */
	double total_s;   /* total time of the transfer in seconds */
	int reused;       /* 1 when the request went over an already open connection */
};

/* Creates a client with `opts` (NULL: defaults). On success *out is a new client the caller frees
 * with http_client_free(). Fails with HTTP_ERR and errbuf (libcurl init failure, unreadable
 * ca_file option, out of memory). */
int http_client_new(const struct http_opts *opts, struct http_client **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees the client and closes its connections; NULL-safe. */
void http_client_free(struct http_client *c);

/* Performs one request and fills *resp (which the caller frees with http_response_free() on
 * success; on failure *resp is left empty and needs no freeing, though freeing it is harmless).
 * Returns 0 for any HTTP status, or HTTP_ERR_TRANSPORT, HTTP_ERR_TIMEOUT, HTTP_ERR_TOO_LARGE or
 * HTTP_ERR with errbuf "METHOD URL: reason" (secret query values masked). */
int http_do(struct http_client *c, const struct http_request *req, struct http_response *resp, char *errbuf,
	    size_t errlen) __attribute__((warn_unused_result));

/* Frees what http_do() put in *resp and zeroes it; NULL-safe. */
void http_response_free(struct http_response *resp);

/* The value of the first response header called `name` (case-insensitive), or NULL. Borrowed from
 * resp. */
const char *http_response_header(const struct http_response *resp, const char *name);

/* Non-zero for statuses worth retrying: 408, 429 and 5xx except 501 and 505. */
int http_status_retryable(long status);

/* The delay a Retry-After header asks for, in milliseconds, capped at HTTP_RETRY_AFTER_MAX_MS:
 * delta-seconds ("120") or an HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT", also the RFC 850 and
 * asctime forms); a date in the past gives 0. Returns default_ms when resp is NULL, the header is
 * absent or it cannot be parsed. */
long http_retry_after_ms(const struct http_response *resp, long default_ms);

/* As http_retry_after_ms for one header value, with "now" given (seconds since the epoch) so the
 * date form can be tested. */
long http_retry_after_value_ms(const char *value, long long now_s, long default_ms);

/* Copies `url` into out with the values of secret query parameters replaced by "***" (see above)
 * and any userinfo password masked; truncates to outlen. Returns out. */
char *http_url_redact(const char *url, char *out, size_t outlen);

#endif
