#ifndef DW_CAPTURE_FO_H
#define DW_CAPTURE_FO_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "event.h"
#include "sha256.h"

/*
 * Finance & Operations ("FO") capture: a data event (RemoteExecutionContext-shaped post, fields
 * named mserp_<lower-case field>) names a record by its natural key; capture re-reads the record
 * over OData by that key (cross-company) for the full image, or, for a delete, publishes the key
 * only. Versions come from the capture record table (docs/capture.md): this module hashes images
 * and builds events; it does no I/O.
 *
 * Event: source.entity = source.entity_set = the entity set (e.g. "CustomersV3", topic
 * "<prefix>.fo.customersv3"); key = the configured key fields with their OData names and values
 * (dataAreaId included); data = the OData entity without annotations.
 *
 * Pure functions; thread-safe.
 */

#define CAPTURE_FO_KEYS_MAX 12
#define CAPTURE_FO_CORRELATION_MAX 128

/* One captured entity. Strings owned; free with capture_fo_table_clear(). */
struct capture_fo_table {
	char *set;        /* entity set, e.g. "CustomersV3" */
	char *event_name; /* data event entity name, e.g. "mserp_custcustomerv3entity" */
	char *keys[CAPTURE_FO_KEYS_MAX]; /* natural key fields, OData names, company included */
	size_t nkeys;
	char *modified;   /* modified-time field for polling, or NULL */
};

/* Parses "<set>@<event name>:<key>+<key>...[:<modified-time field>]" into *out (overwritten).
 * The key list must name dataAreaId unless the entity is shared (then the operator omits it).
 * Returns 0, or -1 with err. */
int capture_fo_table_parse(const char *spec, struct capture_fo_table *out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees the strings of *t and zeroes it; NULL-safe. */
void capture_fo_table_clear(struct capture_fo_table *t);

/* A parsed data event. */
struct capture_fo_notice {
	size_t table;     /* index into the tables given */
	int op;           /* EVENT_OP_CREATE / UPDATE / DELETE */
	cJSON *key;       /* owned: object of the key fields (OData names) -> string or integer */
	char correlation_id[CAPTURE_FO_CORRELATION_MAX + 1];
	int in_transaction;
	long long ts_ms;  /* OperationCreatedOn, 0 when absent */
	char user[64];    /* InitiatingUserId, "" when absent */
};

/*
 * Parses one data event body[0..len). Accepts MessageName Create/Update/Delete for an entity whose
 * event name (PrimaryEntityName, case-insensitive) is in tables; every key field must be present in
 * the Target attributes (mserp_<lower-case key name>). On success *out (overwritten) owns out->key
 * (free with capture_fo_notice_clear). Returns 0, or -1 with err giving the reason for a 400.
 */
int capture_fo_event_parse(const struct capture_fo_table *tables, size_t ntables, const char *body, size_t len,
			   struct capture_fo_notice *out, char *err, size_t errlen) __attribute__((warn_unused_result));

/* Frees out->key and zeroes *n; NULL-safe. */
void capture_fo_notice_clear(struct capture_fo_notice *n);

/* Builds the OData key predicate "(dataAreaId='usmf',CustomerAccount='US-001')" of key (fields in
 * the table's order; strings quoted, quotes doubled and percent-encoded; integers bare). On
 * success *out is a new string (free()). Returns 0 or -1 with err. */
int capture_fo_key_path(const struct capture_fo_table *t, const cJSON *key, char **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Extracts the key object of an OData entity `row` of table t (new object, cJSON_Delete), or NULL
 * with err when a key field is missing or not a string/integer. */
cJSON *capture_fo_row_key(const struct capture_fo_table *t, const cJSON *row, char *err, size_t errlen);

/* The image of an OData entity: a new object without annotations (cJSON_Delete), NULL when out of
 * memory. */
cJSON *capture_fo_image(const cJSON *row);

/* SHA-256 (hex) of the image's compact JSON with members sorted by name at every level, so equal
 * content gives an equal hash whatever the member order. Returns 0 or -1 (out of memory). */
int capture_fo_image_hash(const cJSON *image, char hex[SHA256_HEX_LEN + 1]);

/*
 * Builds an event of table t: op, key (borrowed, copied), data (borrowed image, copied; NULL for a
 * delete), version, ts, user (may be NULL; own when it equals own_user_id, case-insensitive), env.
 * Computes the id. On success *out (overwritten) owns its members. Returns 0 or -1 with err.
 */
int capture_fo_event(const char *env, const char *own_user_id, const struct capture_fo_table *t, int op,
		     const cJSON *key, const cJSON *data, long long version, long long ts_ms, const char *user,
		     struct event *out, char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
