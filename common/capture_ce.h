#ifndef DW_CAPTURE_CE_H
#define DW_CAPTURE_CE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "event.h"

/*
 * Dataverse ("CE") capture: turns Web API rows (delta pages, re-reads) and webhook posts
 * (RemoteExecutionContext) into change events of the same shape, so that the same change gives
 * the same event id and the same image on both paths (docs/capture.md).
 *
 * Image (event data): the row's properties in Web API JSON form, without annotations (names with
 * '@') and without null values (Dataverse entity images omit null attributes, so absent means
 * null). Webhook attribute values are converted: EntityReference x -> "_x_value": "<guid>",
 * OptionSetValue and Money -> their number, "/Date(ms)/" -> "YYYY-MM-DDTHH:MM:SSZ".
 * Version: the row's versionnumber (webhook: the versionnumber attribute, else the image's
 * RowVersion). Key: the primary id column plus the table's configured alternate key fields that
 * have a value (strings; integral numbers as integers). ts: modifiedon (ms), else the operation time.
 *
 * Pure functions: no I/O, no state between calls; thread-safe.
 */

#define CAPTURE_CE_ALT_KEYS_MAX 8
#define CAPTURE_GUID_LEN 36
#define CAPTURE_CORRELATION_MAX 128

/* One captured table. Strings owned; free with capture_ce_table_clear(). */
struct capture_ce_table {
	char *logical;  /* logical name, e.g. "account" (event source.entity, topic) */
	char *set;      /* entity set, e.g. "accounts" */
	char *id_field; /* primary id column, "<logical>id" */
	char *alt[CAPTURE_CE_ALT_KEYS_MAX]; /* alternate key fields in Web API read form */
	size_t nalt;
};

/* Parses "<logical>@<set>[:<field>+<field>...]" (names [A-Za-z0-9_], 1..100 characters) into
 * *out (overwritten). Returns 0, or -1 with err naming what is wrong; *out then holds nothing. */
int capture_ce_table_parse(const char *spec, struct capture_ce_table *out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees the strings of *t and zeroes it; NULL-safe. */
void capture_ce_table_clear(struct capture_ce_table *t);

/* What every CE event carries besides the row. Borrowed. */
struct capture_ce_ctx {
	const char *env;          /* source.env */
	const char *own_user_id;  /* GUID of the integration's user, or NULL */
};

/*
 * Builds the event for one Web API row of table t (a delta entry that is not a deletion, or a
 * re-read): op as given, or (op 0) create when createdon equals modifiedon and update otherwise;
 * user from "_modifiedby_value". The id is computed. Borrows row. On success *out (overwritten)
 * owns its members (event_clear). Returns 0 or -1 with err (no id column, no versionnumber,
 * invalid key value...).
 */
int capture_ce_row_event(const struct capture_ce_ctx *ctx, const struct capture_ce_table *t, const cJSON *row,
			 int op, struct event *out, char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * Fills *out (overwritten) with a delete event skeleton for record `id` of table t: op delete,
 * key {id_field: id}, data null, version 0, id NOT computed. The caller completes key and version
 * (from its record table) and then calls event_compute_id(). ts_ms and user (may be NULL) as given.
 * Returns 0 or -1 (bad GUID, out of memory).
 */
int capture_ce_delete_event(const struct capture_ce_ctx *ctx, const struct capture_ce_table *t, const char *id,
			    long long ts_ms, const char *user, struct event *out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* One entry of a delta page. */
struct capture_ce_delta_entry {
	int deleted;       /* 1: "$deletedEntity" entry (only id is set) */
	char id[CAPTURE_GUID_LEN + 1];
	const cJSON *row;  /* the row (borrowed from the page), NULL when deleted */
};

/* A parsed delta (or track-changes) page. Free with capture_ce_delta_free(). */
struct capture_ce_delta {
	cJSON *doc;                            /* the parsed body */
	struct capture_ce_delta_entry *entries;
	size_t n;
	const char *next_link;  /* "@odata.nextLink" (borrowed from doc) or NULL */
	const char *delta_link; /* "@odata.deltaLink" or NULL; exactly one of the two is set */
};

/* Parses a delta page body[0..len) of table t (strict: UTF-8, JSON object with a "value" array of
 * objects, each either a row with the id column or a deleted entry with "id"; exactly one of
 * nextLink/deltaLink). On success *out (overwritten) is filled; free it with
 * capture_ce_delta_free(). Returns 0 or -1 with err. */
int capture_ce_delta_parse(const struct capture_ce_table *t, const char *body, size_t len,
			   struct capture_ce_delta *out, char *err, size_t errlen) __attribute__((warn_unused_result));

/* Frees what capture_ce_delta_parse() filled and zeroes *d; NULL-safe. */
void capture_ce_delta_free(struct capture_ce_delta *d);

/* A parsed webhook post. */
enum capture_ce_hook_action {
	CAPTURE_CE_HOOK_EVENT = 1,  /* ev is complete (create/update with an image) */
	CAPTURE_CE_HOOK_DELETE = 2, /* ev is a delete skeleton (see capture_ce_delete_event); its
				       source.version is the pre-image's version + 1 when the post
				       carried a pre-image with one, else 0 */
	CAPTURE_CE_HOOK_REREAD = 3  /* no usable image (stripped for size, or no PostImage): re-read
				       row `id` and build the event with capture_ce_row_event(op) */
};

struct capture_ce_hook {
	enum capture_ce_hook_action action;
	size_t table;                 /* index into the tables given */
	int op;                       /* EVENT_OP_CREATE / UPDATE / DELETE */
	char id[CAPTURE_GUID_LEN + 1];
	char correlation_id[CAPTURE_CORRELATION_MAX + 1];
	int in_transaction;           /* IsInTransaction */
	long long ts_ms;              /* OperationCreatedOn */
	char user[CAPTURE_GUID_LEN + 1]; /* InitiatingUserId, "" when absent */
	struct event ev;              /* see action; owned (event_clear) */
};

/*
 * Parses one webhook body[0..len) (RemoteExecutionContext). size_exceeded is non-zero when the
 * request carried "x-ms-dynamics-msg-size-exceeded" (then images are expected to be missing and the
 * action is REREAD for create/update). Only the messages Create, Update and Delete are accepted, of a
 * table in tables[0..ntables) (matched on PrimaryEntityName = logical name). The image is the
 * PostImage (first post image), else, for Create, the Target; else REREAD.
 * On success *out (overwritten) owns out->ev. Returns 0, or -1 with err giving the reason for the
 * 400 answer (e.g. "body: not valid JSON at byte 12", "MessageName: \"Assign\" is not captured",
 * "PrimaryEntityName: table \"contact\" is not captured").
 */
int capture_ce_webhook_parse(const struct capture_ce_ctx *ctx, const struct capture_ce_table *tables,
			     size_t ntables, const char *body, size_t len, int size_exceeded,
			     struct capture_ce_hook *out, char *err, size_t errlen) __attribute__((warn_unused_result));

/* Frees out->ev and zeroes *h; NULL-safe. */
void capture_ce_hook_clear(struct capture_ce_hook *h);

/*
 * Converts an entity image's "Attributes" key/value list into a Web API row object (rules above).
 * Borrows attrs. Returns a new object the caller frees with cJSON_Delete, or NULL with err when the
 * list is malformed.
 */
cJSON *capture_ce_attributes_to_row(const cJSON *attrs, char *err, size_t errlen);

/* Parses "/Date(ms)/" or "/Date(ms+hhmm)/" (the offset is informational; ms is UTC). Returns 0 with
 * *ms set, or -1 when text is not of that form. */
int capture_ce_parse_date(const char *text, long long *ms);

/* Formats ms since the epoch as "YYYY-MM-DDTHH:MM:SSZ" (seconds truncated as the Web API shows
 * them) into out (at least 21 bytes). Returns out. */
char *capture_ce_format_time(long long ms, char *out, size_t outlen);

/* Parses "YYYY-MM-DDTHH:MM:SS[.fff]Z" (or with a +hh:mm offset) into ms. Returns 0 or -1. */
int capture_ce_parse_iso(const char *text, long long *ms);

#endif
