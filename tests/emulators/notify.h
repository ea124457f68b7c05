#ifndef DW_EMU_NOTIFY_H
#define DW_EMU_NOTIFY_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "schema.h"

/*
 * Webhook (CE) and data-event (FO) delivery for the emulators. The store hands every committed
 * change to notify_change(); notify matches it against the registrations, builds the
 * RemoteExecutionContext body (and, for CE, the x-ms-dynamics-* headers) and queues one delivery
 * per matching registration. A background thread posts them with libcurl (timeout per attempt,
 * retries with exponential backoff on connection errors and non-2xx answers) and counts outcomes
 * per registration. Per record and registration, deliveries happen in change order: a delivery
 * waiting for a retry holds back later deliveries of the same record to the same registration,
 * while other records go on.
 *
 * The queue is bounded: a change that does not fit is dropped and counted as overflow (visible
 * in notify_stats), never silently. All functions are thread-safe.
 */

enum notify_message {
	NOTIFY_CREATE = 1,
	NOTIFY_UPDATE = 2,
	NOTIFY_DELETE = 4,
	NOTIFY_ALL = 7
};

enum notify_auth {
	NOTIFY_AUTH_NONE = 0,
	NOTIFY_AUTH_CODE,   /* WebhookKey: value sent as query parameter ?code=<value> */
	NOTIFY_AUTH_HEADER, /* HttpHeader: header `auth_name: auth_value` */
	NOTIFY_AUTH_QUERY   /* HttpQueryString: query parameter auth_name=auth_value */
};

struct notify_registration {
	const char *entity;    /* logical name or entity set name; NULL or "*" = every entity */
	unsigned messages;     /* OR of enum notify_message; 0 means NOTIFY_ALL */
	const char *url;       /* http(s) URL, <= 2048 bytes */
	enum notify_auth auth;
	const char *auth_name; /* header / query parameter name (HEADER, QUERY) */
	const char *auth_value;/* key / header value / query value; never logged */
};

struct notify_options {
	const struct schema *schema; /* borrowed; must outlive the notify object */
	const char *organization;    /* CE x-ms-dynamics-organization, e.g. "127.0.0.1:34080"; FO: host */
	const char *organization_name; /* OrganizationName in bodies; default "emulator" */
	const char *organization_id; /* OrganizationId GUID; default derived from organization */
	const char *business_unit_id;/* BusinessUnitId GUID; default all zero */
	size_t queue_cap;            /* max queued deliveries; default 10000 */
	long timeout_ms;             /* per attempt; default 60000 (the Dataverse timeout) */
	int max_attempts;            /* attempts per delivery including the first; default 4 */
	long backoff_ms;             /* first retry delay, doubled per retry; default 200 */
	size_t max_registrations;    /* default 64 */
};

/* One committed change. All members are borrowed for the call (notify copies what it keeps). */
struct notify_change {
	enum notify_message message; /* exactly one of CREATE, UPDATE, DELETE */
	const char *entity;          /* logical name or entity set name of the changed entity */
	const char *id;              /* record GUID (CE primary id; FO: the emulator's record GUID;
				        NULL or "" -> all zero, and the key fields identify the record) */
	const cJSON *keys;           /* object of key fields (FO: natural key incl. dataAreaId;
				        CE: may be NULL); FO Delete Target attributes come from it */
	const cJSON *post;           /* post image (record as read back, lookups as "_x_value" or by
				        field name); NULL on delete */
	const cJSON *pre;            /* pre image or NULL */
	const char *correlation_id;  /* GUID; NULL -> generated */
	int in_transaction;          /* change was part of a $batch changeset */
	const char *user_id;         /* initiating user GUID; NULL -> all zero */
	long long time_ms;           /* operation time, Unix ms */
	long long version;           /* row version after the change (RowVersion) or 0 */
};

struct notify;

/* Creates a notifier and starts its sender thread. Returns 0 and *out (free with notify_free),
 * or -1 with errbuf filled (bad options, out of memory, thread start failure). */
int notify_new(const struct notify_options *opt, struct notify **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Stops the sender thread (an attempt in flight finishes or times out first), drops what is still
 * queued and frees everything; NULL-safe. */
void notify_free(struct notify *n);

/* Adds a registration (strings copied). Writes its id (a GUID, 36 chars + NUL) to id_out when not
 * NULL. Returns 0, or -1 with errbuf filled: unknown entity, bad URL, missing auth name/value,
 * too many registrations. */
int notify_register(struct notify *n, const struct notify_registration *reg, char id_out[37], char *errbuf,
		    size_t errlen) __attribute__((warn_unused_result));

/* Removes a registration and drops its queued deliveries. Returns 0, or -1 when the id is unknown. */
int notify_unregister(struct notify *n, const char *id) __attribute__((warn_unused_result));

/* Removes every registration and queued delivery and zeroes the counters (admin reset). */
void notify_reset(struct notify *n);

/*
 * Queues one delivery per registration matching (entity, message). Returns the number of
 * deliveries queued (0 when nothing matches), or -1 when some did not fit the queue (counted as
 * overflow) or the change is malformed (counted as failed-to-build). Never blocks on the network.
 */
int notify_change(struct notify *n, const struct notify_change *c);

/*
 * Builds the body that would be posted for `c` (CE: RemoteExecutionContext per dynamics.md 5.1,
 * Target = Entity with typed attribute values, or EntityReference for Delete; FO: the data-event
 * context per 5.4 with key fields in Target). Returns a new tree the caller cJSON_Delete()s, or
 * NULL with errbuf filled (unknown entity, missing image).
 */
cJSON *notify_build_body(const struct notify *n, const struct notify_change *c, char *errbuf, size_t errlen);

/*
 * Counters for the admin API: {"queued":n,"overflow":n,"registrations":[{"id","entity","messages"
 * (array of names),"url","auth","delivered","failed","retried","pending"}...]} (auth values never
 * included). New tree, caller cJSON_Delete()s; NULL when out of memory.
 */
cJSON *notify_stats(struct notify *n);

/* Waits until nothing is queued or in flight, up to timeout_ms. Returns 0 when idle, -1 on timeout. */
int notify_drain(struct notify *n, long timeout_ms) __attribute__((warn_unused_result));

#endif
