#ifndef DW_EMU_SCHEMA_H
#define DW_EMU_SCHEMA_H

#include <stddef.h>

#include <cjson/cJSON.h>

/*
 * Table definitions of the two emulators (tests/emulators/schemas/ce.json and fo.json; the format
 * is described in tests/emulators/README.md, "## Schema files") and validation of write bodies
 * against them, with the flavour's realistic error (HTTP status, code, message) and error body.
 *
 * A loaded `struct schema` is immutable: every lookup function below only reads it, so one schema
 * may be shared by any number of threads without locking. All pointers returned by lookups point
 * into the schema and stay valid until schema_free().
 */

enum schema_flavour { SCHEMA_CE = 0, SCHEMA_FO = 1 };

enum schema_type {
	SCHEMA_T_STRING = 0, /* Edm.String with a max length (CE String, FO string EDT) */
	SCHEMA_T_MEMO,       /* CE Memo: Edm.String, long max length */
	SCHEMA_T_INT,        /* Edm.Int32 */
	SCHEMA_T_BIGINT,     /* Edm.Int64 */
	SCHEMA_T_DECIMAL,    /* Edm.Decimal */
	SCHEMA_T_DOUBLE,     /* Edm.Double */
	SCHEMA_T_MONEY,      /* CE Money: Edm.Decimal */
	SCHEMA_T_BOOL,       /* Edm.Boolean */
	SCHEMA_T_DATETIME,   /* Edm.DateTimeOffset: "2026-01-31T10:00:00Z" (an offset is accepted) */
	SCHEMA_T_DATE,       /* Edm.Date: "2026-01-31" (CE DateOnly columns) */
	SCHEMA_T_GUID,       /* Edm.Guid: 8-4-4-4-12 hex, no braces */
	SCHEMA_T_PICKLIST,   /* CE option set: Edm.Int32 restricted to `options` */
	SCHEMA_T_STATE,      /* CE statecode: like a picklist */
	SCHEMA_T_STATUS,     /* CE statuscode: like a picklist */
	SCHEMA_T_ENUM,       /* FO enum: member name as a JSON string, type `enum_type` */
	SCHEMA_T_LOOKUP      /* CE lookup: written as <nav>@odata.bind, read as _<name>_value */
};

/* One option-set value (CE) or enum member (FO). */
struct schema_option {
	char *label; /* CE: display label; FO: member name (what the wire carries) */
	long value;  /* CE: the option value on the wire; FO: the enum's integer value */
};

/* An FO enum type, e.g. NoYes {No=0, Yes=1}. */
struct schema_enum {
	char *name; /* unqualified, e.g. "NoYes"; qualified with the schema's namespace on the wire */
	struct schema_option *members;
	size_t n_members;
};

struct schema_field {
	char *name;             /* the property / attribute logical name as on the wire */
	enum schema_type type;
	int max_length;         /* strings and memos; 0 = no limit */
	int required;           /* CE: must be given on create (ApplicationRequired/SystemRequired);
				   FO: key fields (every key field is required on create) */
	int nullable;           /* 0: null is rejected (FO Nullable=false, CE required columns) */
	int read_only;          /* any write of it is rejected */
	int is_key;             /* part of the primary key (FO composite key; CE the id column) */
	int allow_empty;        /* FO key part that may be "" (product dimensions of on-hand rows) */
	int has_range;          /* numeric range below applies */
	double min, max;
	struct schema_option *options;       /* picklist / state / status values */
	size_t n_options;
	const struct schema_enum *enum_type; /* SCHEMA_T_ENUM */
	char *target;           /* SCHEMA_T_LOOKUP: logical name of the referenced entity */
	char *nav;              /* SCHEMA_T_LOOKUP: navigation property name for @odata.bind */
	char *value_name;       /* SCHEMA_T_LOOKUP: read name "_<name>_value" */
	char *label;            /* display label used in FO infolog messages (defaults to name) */
	cJSON *default_value;   /* value the service sets on create when the field is omitted
				   (e.g. statecode 0); NULL = none. Owned by the schema. */
};

/* A key: the primary key or an alternate key (CE) / the natural key (FO). */
struct schema_key {
	char *name;        /* CE alternate key schema name, e.g. "msdyn_accountnumber_company"; "primary" */
	char **fields;     /* field names, in URL order (FO: dataAreaId first) */
	size_t n_fields;
};

struct schema_entity {
	char *logical_name;     /* CE: table logical name ("account"); FO: entity type name ("CustomerV3") */
	char *type_name;        /* qualified OData type, e.g. "Microsoft.Dynamics.CRM.account" */
	char *event_name;       /* name used in webhook/data-event bodies (CE: logical name;
				   FO: "mserp_..." virtual-table name) */
	char **set_names;       /* entity set names; set_names[0] is the canonical one */
	size_t n_set_names;
	char *id_field;         /* CE: the GUID primary id column ("accountid"); FO: NULL */
	char *primary_name;     /* CE: primary name column ("name"); FO: NULL */
	char *company_field;    /* FO: "dataAreaId" when company-striped; CE: company lookup
				   ("msdyn_company") when the table has one; else NULL */
	struct schema_key primary_key;  /* CE: {id_field}; FO: the natural key */
	struct schema_key *alt_keys;    /* CE alternate keys; FO: none */
	size_t n_alt_keys;
	struct schema_field *fields;
	size_t n_fields;
};

struct schema {
	enum schema_flavour flavour;
	char *path;             /* file it was loaded from (or the name given to schema_load_text) */
	char *namespace_name;   /* "Microsoft.Dynamics.CRM" or "Microsoft.Dynamics.DataEntities" */
	char *default_company;  /* FO: company returned without cross-company=true; CE: NULL */
	struct schema_entity *entities;
	size_t n_entities;
	struct schema_enum *enums;
	size_t n_enums;
};

/*
 * Loads and strictly validates a schema file (cap 4 MiB). Every error names the file, the JSON
 * path (e.g. "entities[3].fields[7].type") and the reason. Unknown members are errors, so typos in
 * the files do not pass silently. On success *out is a new schema the caller frees with
 * schema_free(); on failure returns -1, *out is NULL and errbuf says why.
 */
int schema_load(const char *path, struct schema **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* As schema_load, from `len` bytes of JSON text (need not be NUL-terminated); `name` stands for
 * the file name in errors and in schema->path. */
int schema_load_text(const char *text, size_t len, const char *name, struct schema **out, char *errbuf,
		     size_t errlen) __attribute__((warn_unused_result));

/* Frees a schema; NULL-safe. */
void schema_free(struct schema *s);

/* Entity by any of its entity set names (case-sensitive, as OData is); NULL when unknown. */
const struct schema_entity *schema_entity_by_set(const struct schema *s, const char *set_name);

/* Entity by logical name (CE "account"; FO "CustomerV3"); NULL when unknown. */
const struct schema_entity *schema_entity_by_name(const struct schema *s, const char *logical_name);

/* Field by wire name; NULL when unknown. */
const struct schema_field *schema_field(const struct schema_entity *e, const char *name);

/* Lookup field by its navigation property (the part before "@odata.bind"); NULL when none. */
const struct schema_field *schema_field_by_nav(const struct schema_entity *e, const char *nav);

/* Lookup field by its read name "_<name>_value"; NULL when none. */
const struct schema_field *schema_field_by_value_name(const struct schema_entity *e, const char *value_name);

/*
 * The key (primary first, then alternate keys) whose field set equals `names` (any order; the
 * names as they appear in a URL key predicate, where a lookup part may be given by its field name
 * or its "_<name>_value" read name). NULL when no key matches.
 */
const struct schema_key *schema_key_match(const struct schema_entity *e, const char *const *names, size_t n);

/* FO enum type by unqualified name; NULL when unknown. */
const struct schema_enum *schema_enum_by_name(const struct schema *s, const char *name);

/* Member of an enum by name (case-sensitive); NULL when not a member. */
const struct schema_option *schema_enum_member(const struct schema_enum *en, const char *name);

/* Option of a picklist/state/status field by value; NULL when not valid for the field. */
const struct schema_option *schema_option_by_value(const struct schema_field *f, long value);

/* ---- errors ---- */

#define SCHEMA_ERR_CODE_MAX 24
#define SCHEMA_ERR_MSG_MAX 1024

/*
 * One error as the service would report it. CE: body {"error":{"code":code,"message":message}}.
 * FO: {"error":{"code":code,"message":message,"innererror":{"message":inner,"type":...,
 * "stacktrace":""}}} where message is usually "An error has occurred." and `inner` carries the
 * infolog text (or the OData library's message); innererror is left out when `inner` is empty.
 */
struct schema_error {
	int status;                       /* HTTP status */
	char code[SCHEMA_ERR_CODE_MAX];   /* CE "0x80044331"; FO usually "" */
	char message[SCHEMA_ERR_MSG_MAX];
	char inner[SCHEMA_ERR_MSG_MAX];   /* FO innererror.message; "" for none */
	char inner_type[128];             /* FO innererror.type ("" -> the X++ write exception type) */
};

/* Fills `err` with status, code and a printf-formatted message (truncated to fit); inner = "". */
void schema_error_set(struct schema_error *err, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Builds the flavour's error body for `err`; returns a new cJSON tree (caller cJSON_Delete()s)
 * or NULL when out of memory. */
cJSON *schema_error_body(enum schema_flavour flavour, const struct schema_error *err);

/* Same, printed (unformatted); caller free()s; NULL when out of memory. */
char *schema_error_json(enum schema_flavour flavour, const struct schema_error *err);

/* The common protocol errors, so every handler reports them the same way. */
enum schema_std_error {
	SCHEMA_E_NOT_FOUND,          /* 404; detail = id or key text */
	SCHEMA_E_ALREADY_EXISTS,     /* 412 (CE If-None-Match: *); FO POST on an existing key: 400 */
	SCHEMA_E_VERSION_MISMATCH,   /* 412 stale If-Match */
	SCHEMA_E_DUPLICATE_KEY,      /* CE 412 duplicate alternate key; FO 400; detail = key text */
	SCHEMA_E_THROTTLED_REQUESTS, /* 429 request-count limit; detail = limit text, e.g. "6000 over time window of 300" */
	SCHEMA_E_THROTTLED_CONCURRENCY, /* 429 concurrent-request limit; detail = limit, e.g. "52" */
	SCHEMA_E_UNAUTHORIZED,       /* 401 missing/invalid/expired bearer token; detail = reason */
	SCHEMA_E_LOOKUP_MISSING,     /* CE 400 @odata.bind target does not exist; detail = target
				        logical name and key, e.g. "account With Id = <guid>" */
	SCHEMA_E_BAD_KEY,            /* 400 key predicate does not match a key of the entity */
	SCHEMA_E_BAD_REQUEST,        /* 400 any other malformed request; detail = message */
	SCHEMA_E_METHOD_NOT_ALLOWED, /* 405 */
	SCHEMA_E_PAYLOAD_TOO_LARGE,  /* 413; detail = limit text */
	SCHEMA_E_UNAVAILABLE,        /* 503 (injected outage); detail optional */
	SCHEMA_E_INTERNAL            /* 500; detail = message */
};

/*
 * Fills `err` with the flavour's realistic status, code and message for a common error. `e` (may
 * be NULL) names the entity in the message; `detail` (may be NULL) is the kind-specific text
 * described above. Codes and messages, and which are unverified, are listed in the README.
 */
void schema_error_std(enum schema_flavour flavour, enum schema_std_error kind, const struct schema_entity *e,
		      const char *detail, struct schema_error *err);

/* ---- write validation ---- */

enum schema_op { SCHEMA_OP_CREATE = 0, SCHEMA_OP_UPDATE = 1 };

/*
 * Validates a create or update body (a JSON object as the client sent it) against entity `e` of
 * schema `s`. Checks, in body order, each property: instance annotations ("@odata.type",
 * "@odata.etag") are accepted; "<nav>@odata.bind" must name a lookup's navigation property and
 * carry a string or null (resolving the target is the caller's job); any other name must be a
 * writable field of the right JSON type, format and range: strings within max length, option set
 * values / enum members valid, null only where nullable. Then, for a create, every required field
 * must be present and non-null (a lookup counts as present when its @odata.bind is given).
 * Key fields present in an update body are accepted (the caller compares them with the URL).
 *
 * Returns 0 when valid; -1 with `err` filled with the first error in the flavour's form (CE: 400
 * and a Dataverse 0x8004.... code; FO: 400, "An error has occurred." plus infolog text).
 * `body` is borrowed.
 */
int schema_validate(const struct schema *s, const struct schema_entity *e, const cJSON *body, enum schema_op op,
		    struct schema_error *err) __attribute__((warn_unused_result));

#endif
