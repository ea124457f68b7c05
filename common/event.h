#ifndef DW_EVENT_H
#define DW_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "sha256.h"

/*
 * The change event (DESIGN section 4, schemas/change-event.schema.json): one JSON object per
 * Kafka message, UTF-8,
 *
 *   {"v":1,"id":"<64 hex>","source":{"side":"ce","env":"prod","entity":"account",
 *    "entity_set":"accounts","version":42,"ts":1764464400000,"user":"...","own":false},
 *    "op":"update","key":{"accountid":"..."},"data":{...},"changed":["name"],
 *    "txn":{"id":"...","total":2,"order":1}}
 *
 * Decoding is strict: the raw bytes must be UTF-8 and strict JSON (see jsoncheck.h), unknown or
 * duplicate members are rejected, integers must be integral and in range, and every error names
 * the JSON path of the bad field and the reason, e.g.
 *   source.version: must be an integer from 0 to 9007199254740991, got "12"
 * The schema file states the same rules; the cross-field rules JSON Schema cannot express
 * (txn.order <= txn.total, the id being the hash of its inputs, no duplicate member names) are
 * written in its descriptions.
 *
 * Canonical record key (the Kafka message key, and part of the id): key fields sorted by name
 * (byte order), each name=value with '%', ',' and '=' percent-encoded (%25, %2C, %3D) in names and
 * values, integers in decimal, joined by ','. E.g. "CustomerAccount=US-001,dataAreaId=usmf".
 * Event id: lowercase hex SHA-256 of side "\n" entity "\n" canonical_key "\n" version (decimal).
 *
 * No function here keeps state between calls, and none reads cJSON's global error pointer. (cJSON
 * 1.7.15's parser itself stores a constant into its global error slot on every call: harmless,
 * but a race detector will point at it when several threads decode at once.)
 */

#define EVENT_FORMAT_VERSION 1
#define EVENT_MAX_BYTES ((size_t)1024 * 1024) /* default payload cap */
#define EVENT_INT_MAX 9007199254740991LL      /* 2^53 - 1: exact in a double and in JavaScript */
#define EVENT_ENV_MAX 256                     /* limits in Unicode code points */
#define EVENT_ENTITY_MAX 128
#define EVENT_USER_MAX 256
#define EVENT_KEY_FIELDS_MAX 16
#define EVENT_KEY_NAME_MAX 128
#define EVENT_KEY_VALUE_MAX 1024
#define EVENT_CHANGED_MAX 1024
#define EVENT_FIELD_NAME_MAX 128
#define EVENT_TXN_ID_MAX 256
#define EVENT_TXN_TOTAL_MAX 10000
#define EVENT_DATA_DEPTH_MAX 500 /* nesting inside data; the envelope adds one level */

/* Decode flag: accept an id that is well-formed but not the hash of its inputs. */
#define EVENT_SKIP_ID_CHECK 0x1

/* Zero is invalid in both enums, so a zeroed struct event does not validate by accident. */
enum event_side { EVENT_SIDE_CE = 1, EVENT_SIDE_FO = 2 };
enum event_op { EVENT_OP_CREATE = 1, EVENT_OP_UPDATE = 2, EVENT_OP_DELETE = 3, EVENT_OP_SNAPSHOT = 4 };

struct event_source {
	enum event_side side;
	char *env;        /* 1..256 code points */
	char *entity;     /* logical name / FO entity, 1..128 */
	char *entity_set; /* entity set / collection, 1..128 */
	int64_t version;  /* 0..EVENT_INT_MAX, rises with every change of the record */
	int64_t ts;       /* source change time, ms since the epoch, 0..EVENT_INT_MAX */
	char *user;       /* NULL when absent, else 0..256 code points */
	int own;          /* 0 or 1: made by the integration's own identity */
};

struct event_txn {
	char *id; /* 1..256 code points */
	int total; /* 1..10000 */
	int order; /* 1..total */
};

/*
 * One event. Every pointer member is owned by the struct and freed by event_clear(): strings with
 * free(), cJSON trees with cJSON_Delete(). A producer fills the fields (strdup'd strings, new cJSON
 * trees), calls event_compute_id(), then event_encode().
 */
struct event {
	int v;                          /* EVENT_FORMAT_VERSION */
	char id[SHA256_HEX_LEN + 1];    /* 64 lowercase hex digits */
	struct event_source source;
	enum event_op op;
	cJSON *key;     /* object: 1..16 fields, values strings (0..1024) or integers (|n| <= 2^53-1) */
	cJSON *data;    /* object; NULL (or a cJSON null) stands for JSON null: required iff delete */
	cJSON *changed; /* NULL when absent, else an array of 0..1024 field names (1..128) */
	int has_txn;
	struct event_txn txn;
};

/*
 * Decodes one Kafka payload buf[0..len) (not NUL-terminated; borrowed for the call) into *out.
 * max_bytes caps the payload (0 = EVENT_MAX_BYTES); larger input is rejected before parsing.
 * flags: EVENT_SKIP_ID_CHECK or 0. *out is overwritten without being freed first; on success the
 * caller owns its members and releases them with event_clear(); on failure *out holds nothing to
 * free (it is left zeroed) and err says which field is wrong and why.
 * Returns 0 or -1.
 */
int event_decode(const void *buf, size_t len, size_t max_bytes, int flags, struct event *out, char *err,
		 size_t errlen) __attribute__((warn_unused_result));

/*
 * Validates *ev (event_validate with flags 0, so the id must match) and serialises it as compact
 * JSON, members in the order shown above, optional ones only when set (own only when true).
 * Every number is written so that it reads back to the identical double (cJSON's own printer
 * does not guarantee that for 16-17 digit values). Borrows ev. On success *out is a new
 * NUL-terminated string of *outlen bytes (at most EVENT_MAX_BYTES) that the caller frees with
 * free(). Returns 0 or -1 with err filled ("payload: N bytes exceeds the 1048576-byte cap" when
 * the event is too large to publish).
 */
int event_encode(const struct event *ev, char **out, size_t *outlen, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*
 * Checks every rule of the envelope on *ev, as the decoder does after parsing. flags:
 * EVENT_SKIP_ID_CHECK skips comparing the id with the hash of its inputs (its format is still
 * checked). Borrows ev. Returns 0 or -1 with err naming the field.
 */
int event_validate(const struct event *ev, int flags, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*
 * Builds the canonical key string of a key object (rules above), validating the key first.
 * Borrows key. On success *out is a new string the caller frees with free(). Returns 0 or -1.
 */
int event_key_string(const cJSON *key, char **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*
 * Computes the id from source.side, source.entity, key and source.version and writes it to
 * ev->id. Fails (-1, err filled, id untouched) when one of those inputs is invalid.
 */
int event_compute_id(struct event *ev, char *err, size_t errlen) __attribute__((warn_unused_result));

/* Frees every member and zeroes *ev. NULL-safe; safe on a zeroed struct. */
void event_clear(struct event *ev);

/* "create", "update", "delete", "snapshot"; NULL for an invalid value. */
const char *event_op_name(enum event_op op);

/* The op named by text (exact, lower case), or -1. */
int event_op_parse(const char *text);

/* "ce" or "fo"; NULL for an invalid value. */
const char *event_side_name(enum event_side side);

/* The side named by text (exact, lower case), or -1. */
int event_side_parse(const char *text);

#endif
