#ifndef DW_ODATA_BATCH_H
#define DW_ODATA_BATCH_H

#include <stddef.h>

/*
 * OData v4 $batch bodies in multipart/mixed form (Dataverse Web API and FO OData):
 *   client side: build a request body, parse the response body;
 *   server side: parse a request body, build the response body.
 * Framing follows dynamics.md 5.5: each operation is an "application/http" part with
 * "Content-Transfer-Encoding: binary" and an optional Content-ID, then a blank line, then the
 * inner HTTP request (or status) line, headers, a blank line and an optional body. A changeset is
 * a nested multipart/mixed part whose operations are atomic. Lines end in CRLF when built;
 * parsers also accept bare LF. Pure: no I/O, no global state, thread-safe.
 *
 * Conventions: fallible functions return 0 or -1 with errbuf filled. Built bodies are new
 * allocations the caller frees with free(). Parsed trees own all their memory (one arena) and are
 * released by the matching *_clear function; every pointer in them stays valid until then.
 * Strings in the trees are NUL-terminated; bodies also carry their length (they may be binary).
 */

#define ODATA_BATCH_MAX_REQUESTS 1000 /* Dataverse limit; a larger batch is refused */
#define ODATA_BATCH_MAX_HEADERS 64    /* per part, MIME headers and inner headers each */
#define ODATA_BATCH_LINE_MAX (64 * 1024 + 64) /* a request line holds a URL of up to 64 KB */
#define ODATA_BATCH_ID_MAX 40         /* batch ids; with prefixes the boundary stays within RFC 2046's 70 */

struct odata_batch_header {
	const char *name;
	const char *value;
};

/* One operation in a request batch. */
struct odata_batch_request {
	const char *content_id; /* MIME Content-ID, NULL when absent */
	const char *method;     /* "GET", "POST", "PATCH", "PUT", "DELETE" */
	const char *url;        /* as written: absolute, root-relative ("/api/data/v9.2/..."),
				 * relative to the service root ("accounts(...)"), or "$1" */
	const struct odata_batch_header *headers; /* inner HTTP headers, in order */
	size_t nheaders;
	const char *body; /* NULL or body_len bytes (JSON); NUL-terminated when parsed */
	size_t body_len;
};

/* One top-level part: a single operation (changeset == 0, nrequests == 1) or a changeset
 * (changeset != 0, nrequests >= 1) whose operations succeed or fail together. */
struct odata_batch_part {
	int changeset;
	const struct odata_batch_request *requests;
	size_t nrequests;
};

/* A parsed request batch. */
struct odata_batch {
	struct odata_batch_part *parts;
	size_t nparts;
	size_t nrequests; /* total over all parts */
	void *arena_;
};

/*
 * Builds a request body. `batch_id` ([A-Za-z0-9_.-]{1,40}, e.g. a GUID) gives the boundary
 * "batch_<id>"; changesets get "changeset_<id>_<n>". *content_type receives
 * "multipart/mixed; boundary=batch_<id>" (new string), *body and *body_len the body (new, also
 * NUL-terminated). Every request needs a method and a URL; requests with a body get
 * "Content-Type: application/json; type=entry" unless their headers name a Content-Type.
 * Changesets must not be empty and must not hold GET (Dataverse refuses it). Fails on more than
 * ODATA_BATCH_MAX_REQUESTS requests, on CR/LF inside a method, URL, header or Content-ID, on a
 * duplicate Content-ID, and when a boundary occurs inside a body.
 */
int odata_batch_request_build(const struct odata_batch_part *parts, size_t nparts,
			      const char *batch_id, char **body, size_t *body_len,
			      char **content_type, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/*
 * Parses a request body given the request's Content-Type header value (multipart/mixed with a
 * boundary parameter, quoted or not). Bodies longer than max_body bytes are refused. Accepts CRLF
 * or LF line ends, a preamble before the first boundary and an epilogue after the last. Fails
 * with a clear error (and, where it helps, the byte offset) on: a wrong content type or missing
 * boundary, a missing closing delimiter, a part that is not application/http or a nested
 * multipart/mixed changeset, a nested changeset inside a changeset, a GET inside a changeset,
 * a bad request line, more than ODATA_BATCH_MAX_REQUESTS operations ("The batch contains more
 * than 1000 requests"), more than ODATA_BATCH_MAX_HEADERS headers, a line over
 * ODATA_BATCH_LINE_MAX, a duplicate Content-ID within the batch, an empty changeset.
 * On success *out is filled and the caller clears it with odata_batch_clear; on failure *out is
 * left empty.
 */
int odata_batch_request_parse(const char *content_type, const char *body, size_t len,
			      size_t max_body, struct odata_batch *out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Releases a parsed request batch; NULL-safe; leaves *b empty. */
void odata_batch_clear(struct odata_batch *b);

/* One operation's outcome in a response batch. */
struct odata_batch_response {
	const char *content_id; /* echoed Content-ID, NULL when absent */
	int status;             /* 100..599 */
	const struct odata_batch_header *headers;
	size_t nheaders;
	const char *body; /* NULL or body_len bytes */
	size_t body_len;
};

/* One top-level response part: a single response (changeset == 0, nresponses == 1) or a
 * changeset response. A failed changeset is reported as a single non-changeset part holding the
 * error response. */
struct odata_batch_response_part {
	int changeset;
	const struct odata_batch_response *responses;
	size_t nresponses;
};

/* A parsed response batch. */
struct odata_batch_result {
	struct odata_batch_response_part *parts;
	size_t nparts;
	size_t nresponses; /* total over all parts */
	void *arena_;
};

/* The reason phrase for an HTTP status ("No Content"), "Unknown" for codes it does not know. */
const char *odata_batch_status_text(int status);

/*
 * Builds a response body (server side) in the shape of dynamics.md 5.5: boundary
 * "batchresponse_<id>", changesets "changesetresponse_<id>_<n>", each operation as
 * "HTTP/1.1 <status> <reason>" plus its headers and optional body, Content-ID echoed.
 * A body without a Content-Type header gets "Content-Type: application/json; odata.metadata=minimal".
 * `batch_id` as for odata_batch_request_build. *content_type receives
 * "multipart/mixed; boundary=batchresponse_<id>". Fails on no parts, a status outside 100..599,
 * CR/LF in a Content-ID or in header names or values, an empty changeset, and when a boundary
 * occurs inside a body.
 */
int odata_batch_response_build(const struct odata_batch_response_part *parts, size_t nparts,
			       const char *batch_id, char **body, size_t *body_len,
			       char **content_type, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/*
 * Parses a response body (client side) given the response's Content-Type header value, with the
 * same framing rules, caps and error reporting as odata_batch_request_parse. Each operation
 * yields its status, headers, body and Content-ID. The caller clears *out with
 * odata_batch_result_clear.
 */
int odata_batch_response_parse(const char *content_type, const char *body, size_t len,
			       size_t max_body, struct odata_batch_result *out, char *errbuf,
			       size_t errlen) __attribute__((warn_unused_result));

/* Releases a parsed response batch; NULL-safe; leaves *r empty. */
void odata_batch_result_clear(struct odata_batch_result *r);

/* Case-insensitive header lookup in a header list; returns the first value or NULL. */
const char *odata_batch_header_get(const struct odata_batch_header *headers, size_t nheaders,
				   const char *name);

#endif
