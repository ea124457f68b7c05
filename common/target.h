#ifndef DW_TARGET_H
#define DW_TARGET_H

#include <stddef.h>

#include "http.h"
#include "oauth.h"
#include "odata.h"

/*
 * Target writers: apply mapped records to one side over OData (DESIGN 5 rules 4, 6, 7;
 * dynamics.md 3.4-3.6, 4.1-4.2).
 *   CE (Dataverse Web API, <base>/api/data/v9.2/): upsert = PATCH on the (alternate) key URL.
 *   FO (OData, <base>/data/): PATCH on the key URL; on 404 POST to the entity set with the key
 *      fields added to the body. FO has no upsert.
 *   Upserts ask for Prefer: return=representation, so the new ETag and the record as the target
 *   holds it (normalised values, defaults) come back with the answer.
 *   Both: DELETE on the key URL (404 counts as done); If-Match with the ETag last seen when the
 *      caller gives one; Authorization: Bearer from the oauth cache (a 401 drops the token and
 *      the request is sent once more with a fresh one).
 *
 * Writes go one request per write (batch_max <= 1) or grouped in $batch requests of up to
 * batch_max writes, with Prefer: odata.continue-on-error and one changeset per write (or per unit:
 * writes sharing a non-zero `unit` share one all-or-nothing changeset). Each part of the response
 * is parsed, so one record's failure affects only its own write (or unit).
 *
 * Each write ends classified (target_write.outcome):
 *   OK           2xx (or 404 on a delete); etag / target_id / created filled when the target said
 *   RETRY        429, 408, 5xx, timeouts, connection errors; retry_after_ms from Retry-After
 *   CONFLICT     412 (the record changed on the target: re-read with target_read and merge), and
 *                404 on a CE update guarded by If-Match (the record was deleted there)
 *   MISSING_DEP  CE 400 "does not exist" for an @odata.bind target (code 0x80040217): park it
 *   INVALID      any other 4xx: dead-letter it with error_body (the target's error body, capped)
 * The function fails only on bad arguments or out of memory; target trouble is an outcome.
 * Not thread-safe: one struct target per thread (its http client and buffers are its own).
 */

#define TARGET_ERROR_BODY_MAX 4096 /* cap on an error body kept for a dead letter */
#define TARGET_REPR_MAX (1024 * 1024) /* a larger representation is not kept */
#define TARGET_BATCH_MAX 1000      /* $batch operations cap (Dataverse) */

enum target_op { TARGET_UPSERT = 1, TARGET_DELETE = 2 };

enum target_outcome {
	TARGET_OK = 1,
	TARGET_RETRY = 2,
	TARGET_CONFLICT = 3,
	TARGET_MISSING_DEP = 4,
	TARGET_INVALID = 5,
};

/* "ok", "retry", "conflict", "missing_dependency", "invalid"; NULL for an invalid value. */
const char *target_outcome_name(enum target_outcome o);

struct target_opts {
	const char *side;         /* "ce" or "fo" */
	const char *base_url;     /* the org/environment base, e.g. https://org.crm.dynamics.com */
	struct http_client *http; /* borrowed for the target's life */
	struct oauth *oauth;      /* borrowed for the target's life */
	long timeout_ms;          /* per request; 0: the client's */
	size_t batch_max;         /* writes per $batch; 0 or 1: one request per write */
};

struct target;

/* Creates a writer. Borrows http and oauth (the caller frees them after target_free); copies the
 * strings. Fails on a side other than ce/fo, an empty base URL, missing http/oauth, or batch_max
 * over TARGET_BATCH_MAX. *out is new; free with target_free(). Returns 0 or -1 with errbuf. */
int target_new(const struct target_opts *opts, struct target **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees the writer; NULL-safe. */
void target_free(struct target *t);

/* One write. Inputs are borrowed for the call; outputs are owned by the write until
 * target_write_clear(). */
struct target_write {
	/* inputs */
	enum target_op op;
	const char *entity_set;           /* e.g. "accounts", "CustomersV3" */
	const struct odata_key_part *key; /* the key segment's parts (see odata_key_build) */
	size_t nkey;
	const char *body;     /* UPSERT: a JSON object (the fields to write); NULL for DELETE */
	const char *if_match; /* the ETag last seen, or NULL */
	int unit;             /* 0: its own changeset; equal non-zero values: one changeset */
	int create;           /* FO upsert known not to exist: POST at once instead of PATCH first
			       * (inside a changeset a PATCH that 404s fails the whole changeset) */
	/* outputs */
	enum target_outcome outcome;
	long status;         /* final HTTP status; 0 when no response arrived */
	long retry_after_ms; /* RETRY: what the target asked for (0 when it said nothing) */
	int created;         /* OK: the write created the record */
	char *etag;          /* OK: the record's new ETag, when the target gave it */
	char *target_id;     /* OK: the record's id (CE GUID, FO key predicate), when given */
	char *representation; /* OK: the record as the target holds it after an upsert (JSON text),
			       * when the target returned it */
	char *error;         /* not OK: a readable one-line reason */
	char *error_body;    /* not OK: the target's response body (capped), when there was one */
};

/*
 * Performs the n writes (n <= 100000) and classifies each. Writes to one record must not occur
 * twice among the n (collapse them first): their order within a $batch is kept, but a failure of
 * one would not stop the next. Returns 0 when every write was attempted and classified (whatever
 * the outcomes), -1 with errbuf on bad arguments or out of memory (outputs then partly filled;
 * clear them anyway).
 */
int target_apply(struct target *t, struct target_write *w, size_t n, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees the outputs of a write and zeroes them; NULL-safe. */
void target_write_clear(struct target_write *w);

/*
 * Reads one record by key (for a 412: what changed there). On success returns 0 and *found 1 with
 * *body (new JSON text, caller frees) and *etag (new string or NULL), or *found 0 for 404.
 * Returns -1 with errbuf on any other answer or failure, and *retryable says whether trying again
 * later may help (may be NULL).
 */
int target_read(struct target *t, const char *entity_set, const struct odata_key_part *key, size_t nkey,
		int *found, char **body, char **etag, int *retryable, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* GETs <root><entity_set>?<query> (query already percent-encoded, e.g.
 * "cross-company=true&$filter=ItemNumber%20eq%20%27A%27") and returns the answer of a 200 as
 * *body (new JSON text, caller frees). Returns -1 with errbuf on any other answer or failure,
 * and *retryable (may be NULL) says whether trying again later may help. */
int target_query(struct target *t, const char *entity_set, const char *query, char **body, int *retryable,
		 char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Requests sent so far (a $batch counts as one); for metrics and tests. */
unsigned long target_request_count(const struct target *t);

#endif
