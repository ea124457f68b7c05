#ifndef DW_EMU_API_H
#define DW_EMU_API_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "estore.h"
#include "notify.h"
#include "odata.h"
#include "query.h"
#include "schema.h"
#include "server.h"

/*
 * The machinery both OData flavours share: the request context (schema, store, notifier, base
 * URL), transactions that carry the changes to announce after commit, record keys, rendering
 * records as OData JSON, collection reads with $filter/$select/$orderby/$top and server-driven
 * paging, errors in the flavour's shape, and $batch execution (changesets as one transaction,
 * Content-ID references). The flavour rules themselves live in ce.c and fo.c.
 */

struct api {
	enum schema_flavour flavour;
	const struct schema *schema; /* borrowed */
	struct estore *store;        /* borrowed */
	struct notify *notify;       /* borrowed; NULL = no webhooks/data events */
	char base_url[256];          /* "http://127.0.0.1:32081" */
	const char *prefix;          /* "/api/data/v9.2/" or "/data/" */
	size_t max_body;             /* cap on a $batch body */
	long max_page;               /* 5000 (CE) or 10000 (FO) */
	int webhooks;                /* live registrations (kept by the admin API; atomic) */
};

/* Whether changes need announcing (a notifier with at least one registration): handlers skip
 * building record images otherwise. */
int api_notify_wanted(const struct api *a);

/* One committed change to announce. */
struct api_change {
	enum notify_message message;
	const struct schema_entity *e;
	char id[37];
	cJSON *keys;
	cJSON *post;
	cJSON *pre;
	long long version;
	long long time_ms;
};

struct api_ref {
	char *content_id;
	char *path; /* "<set>(<id or key>)" relative to the service root */
};

/* A unit of work: one request, or one $batch changeset. */
struct api_txn {
	struct estore_tx *tx;
	struct api_change *changes;
	size_t nchanges;
	size_t changes_alloc;
	int in_changeset;
	int defer; /* creates may be queued (estore_put_deferred): a changeset's first attempt */
	char correlation_id[37];
	struct api_ref *refs; /* Content-ID -> entity path, shared across a batch (borrowed) */
	size_t *nrefs;
};

/* Executes one request (already authenticated) inside `t`. `rel` is the path after the prefix,
 * still percent-encoded. Fills resp; a status >= 400 means the transaction must not commit. */
typedef void (*api_exec_fn)(struct api *a, struct api_txn *t, const struct server_request *req, const char *rel,
			    struct server_response *resp);

/* Starts a unit of work. 0, or -1 with resp filled (500). */
int api_txn_begin(struct api *a, struct api_txn *t, struct server_response *resp)
	__attribute__((warn_unused_result));

/* Commits; then announces the recorded changes through the notifier. 0, or -1 with resp replaced
 * by a 500 error. Frees what t holds either way. */
int api_txn_commit(struct api *a, struct api_txn *t, struct server_response *resp)
	__attribute__((warn_unused_result));

/* Rolls back and frees what t holds; safe on a zeroed txn. */
void api_txn_rollback(struct api_txn *t);

/* Records a change (takes ownership of keys/post/pre; any may be NULL). */
void api_txn_note(struct api_txn *t, enum notify_message m, const struct schema_entity *e, const char *id,
		  cJSON *keys, cJSON *post, cJSON *pre, long long version);

/* Error helpers: the flavour's body for a schema error / a standard error. */
void api_error(struct api *a, struct server_response *resp, const struct schema_error *err);
void api_std_error(struct api *a, struct server_response *resp, enum schema_std_error kind,
		   const struct schema_entity *e, const char *detail);

/* The ETag text for a version: CE W/"<version>", FO W/"<base64 of '1,<version>'>". */
void api_etag(const struct api *a, long long version, char *buf, size_t len);
/* The version an ETag of api_etag names: 0 with *version, -1 when it is not such an ETag. */
int api_etag_version(const struct api *a, const char *etag, long long *version);

/* Canonical text of one key of a record: a JSON array of the key fields' values as text, or NULL
 * when a field is missing or null. `data` is the stored record. New string, caller frees. */
char *api_key_text(const struct schema_entity *e, const struct schema_key *k, const cJSON *data);

/* Canonical text from a parsed URL key whose parts match key `k` (names may be the field name or,
 * for lookups, "_<name>_value"). NULL when a part is missing. New string, caller frees. */
char *api_key_text_from_url(const struct schema_entity *e, const struct schema_key *k,
			    const struct odata_key_part *parts, size_t nparts);

/* The store's key object {keyname: text} for a record (FO primary key; CE alternate keys). New
 * tree; NULL when out of memory. */
cJSON *api_keys_json(const struct api *a, const struct schema_entity *e, const cJSON *data);

/* Renders a stored record for the wire: @odata.etag then every schema field (or only `select`,
 * the id field always included on CE), missing ones as null. New tree. */
cJSON *api_render(const struct api *a, const struct schema_entity *e, const struct estore_record *rec,
		  char *const *select, size_t nselect);

/* Sets every field the body left out to its schema default (statecode 0, FO decimals 0...), as
 * the services do on create. Lookups are skipped. */
void api_apply_defaults(const struct schema_entity *e, cJSON *data);

/* The query type of a field name (callback for query_to_sql); ctx is the schema_entity. */
enum query_type api_field_query_type(void *ctx, const char *name);

/*
 * Serves a collection GET: parses the query string, translates $filter/$orderby, restricts FO reads
 * to `company` (compared case-insensitively with the entity's company field; NULL = every company),
 * pages (CE: Prefer odata.maxpagesize up to max_page and an opaque $skiptoken; FO: pages of
 * max_page with a $skip nextLink; $top caps the total) and writes the response. `set` is the entity
 * set name used in URLs; reads run in t's transaction. When track_version >= 0 (CE change tracking), the last page carries an
 * @odata.deltaLink with $deltatoken=<track_version>; a $skiptoken carries it between pages.
 */
void api_collection_get(struct api *a, struct api_txn *t, const struct schema_entity *e, const char *set,
			const struct server_request *req, const char *company, long long track_version,
			struct server_response *resp);

/* Parses a JSON request body as an object (400 in the flavour's shape otherwise). New tree or
 * NULL with resp filled. */
cJSON *api_parse_body(struct api *a, const struct server_request *req, struct server_response *resp);

/* Whether the Prefer header contains `token` (e.g. "return=representation"). */
int api_prefer(const struct server_request *req, const char *token);

/*
 * A $batch request a flavour can serve as one pipelined store write (estore_patch_many): an update
 * by key that needs nothing read first. prepare fills q (and q->patch's inputs, pointing into q)
 * and returns 1 for such a request, 0 otherwise (it is then run the usual way); respond answers
 * from q->patch after a write (rc 0) and notes the change in t.
 */
struct api_quick {
	const struct schema_entity *e;
	char set[128];
	char *keyvalue; /* canonical key text (owned) */
	char *fields;   /* the merge's JSON text (owned) */
	struct estore_patch patch;
};
struct api_quick_ops {
	int (*prepare)(struct api *a, const struct server_request *req, const char *rel, struct api_quick *q);
	void (*respond)(struct api *a, struct api_txn *t, const struct server_request *req, const struct api_quick *q,
			struct server_response *resp);
};

/*
 * Serves POST $batch: parses the multipart body, runs each top-level request in its own unit of
 * work and each changeset in one (all or nothing), substituting Content-ID references, and writes
 * the multipart response. Without Prefer: odata.continue-on-error the first failure stops
 * processing (CE: the batch answers with the failing status; FO: 200).
 * With continue-on-error and `quick` (may be NULL), each run of consecutive parts that are single
 * requests `quick` can serve, of different records, is written in one pipelined round trip first;
 * a part whose write did not happen (not found, another version, a store error) then runs the
 * usual way in its turn, which gives it its exact answer.
 */
void api_batch(struct api *a, const struct server_request *req, api_exec_fn exec, const struct api_quick_ops *quick,
	       struct server_response *resp);

/* Looks up a Content-ID reference "$n" in t's batch context; returns the entity path or NULL. */
const char *api_ref_lookup(const struct api_txn *t, const char *ref);

/* Wall-clock milliseconds. */
long long api_now_ms(void);

#endif
