#ifndef DW_MAP_H
#define DW_MAP_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "event.h"
#include "sha256.h"

/*
 * Entity maps (DESIGN section 8; the file format is docs/maps.md and schemas/map.schema.json).
 * A map pairs one CE table with one FO entity: their keys, the company striping, the direction,
 * the conflict policy, the initial-sync master, per-side filters, the fields (each with its own
 * direction), value maps, defaults and constants, lookups, dependencies on other maps and an error
 * threshold. The engine turns a change event from one side into the write for the other side.
 *
 * Everything here is pure: no I/O except reading the files in map_load_file/map_load_dir, no
 * globals, no state between calls. A loaded map is immutable and may be shared by threads.
 *
 * Load errors read "<file>: <json.path>: <reason>", e.g.
 *   schemas/maps/accounts.json: fields[3].dir: unknown direction '=>' (one of =, ><, >, >>, <, <<)
 */

#define MAP_FORMAT_VERSION 1
#define MAP_FILE_MAX_BYTES ((size_t)1024 * 1024)
#define MAP_NAME_MAX 64        /* map names: [a-z0-9_]{1,64} */
#define MAP_IDENT_MAX 128      /* field, entity and set names: [A-Za-z_][A-Za-z0-9_]{0,127} */
#define MAP_FIELDS_MAX 512
#define MAP_KEY_FIELDS_MAX 16
#define MAP_VALUE_PAIRS_MAX 1024
#define MAP_FILTER_MAX 4096    /* filter text, bytes */
#define MAP_MAPS_MAX 256       /* maps in one directory */
#define MAP_RESOLVED_MAX 1024  /* bytes of a value coming back from a resolver */

/* Direction bits: a map's or a field's direction is CE_TO_FO, FO_TO_CE or both. */
#define MAP_DIR_CE_TO_FO 0x1u
#define MAP_DIR_FO_TO_CE 0x2u
#define MAP_DIR_BOTH (MAP_DIR_CE_TO_FO | MAP_DIR_FO_TO_CE)

enum map_conflict { MAP_CONFLICT_CE_WINS = 1, MAP_CONFLICT_FO_WINS = 2, MAP_CONFLICT_LATEST_WINS = 3 };
enum map_threshold_action { MAP_ACTION_PAUSE = 1 };

/* A filter expression (OData $filter subset, see docs/maps.md). Opaque. */
struct map_filter;

struct map_side {
	char *entity;              /* CE logical name / FO data entity, as in event source.entity */
	char *entity_set;          /* CE entity set / FO public collection */
	char **key;                /* nkey field names of the side's (alternate) key */
	size_t nkey;
	char *filter_text;         /* NULL when the side has no filter */
	struct map_filter *filter; /* parsed filter_text, NULL when none */
};

/* Where lookups with company_key find the company's GUID in maps without a `company` member. */
#define MAP_COMPANY_SET_DEFAULT "cdm_companies"
#define MAP_COMPANY_KEY_DEFAULT "cdm_companycode"

/* FO dataAreaId <-> CE lookup to cdm_company, bound by the company code (dynamics.md 1.8). */
struct map_company {
	char *fo;       /* "dataAreaId" */
	char *ce;       /* lookup column, "msdyn_company" */
	char *ce_nav;   /* navigation property for @odata.bind, default = ce */
	char *ce_value; /* attribute holding the GUID when read, "_<ce>_value" */
	char *ce_set;   /* "cdm_companies" */
	char *ce_key;   /* "cdm_companycode" */
	int in_ce_key;  /* the company column is part of the CE key (default); 0 for tables whose CE
			 * rows are identified through a company-specific parent (purchase order lines) */
};

struct map_value_pair {
	cJSON *fo; /* string, number, boolean or null */
	cJSON *ce;
};

struct map_value_map {
	char *name;
	struct map_value_pair *pairs;
	size_t npairs;
};

/* The CE column of a field is a lookup: written as <nav>@odata.bind by the related row's
 * alternate key, read as <value> (a GUID) that the resolver turns back into that key. */
struct map_lookup {
	char *set;   /* related entity set, e.g. "msdyn_customergroups" */
	char *key;   /* its alternate key column, e.g. "msdyn_groupid" */
	char *nav;   /* navigation property, default = the field's ce name */
	char *value; /* attribute with the GUID on reads, default "_<ce>_value" */
	char *company_key; /* NULL, or the company lookup column that is part of the related table's
			    * alternate key (msdyn_company): the bind then reads
			    * /<set>(<key>='<v>',<company_key>=<GUID of the company>) */
};

struct map_field {
	char *fo;                              /* NULL for a `none` source on the FO side */
	char *ce;                              /* NULL for a `none` source on the CE side */
	unsigned dir;                          /* MAP_DIR_* */
	char symbol[3];                        /* as written: =, ><, >, >>, <, << */
	const struct map_value_map *value_map; /* NULL when none; points into map->value_maps */
	cJSON *def;                            /* default / constant, NULL when none */
	struct map_lookup *lookup;             /* NULL unless the CE column is a lookup */
	int is_date;                           /* "date": true: a calendar date (see map_transform) */
};

struct map_threshold {
	int count;                        /* errors ... */
	long long window_ms;              /* ... within this window ... */
	enum map_threshold_action action; /* ... trigger this */
};

/* Optional: FO rows are summed per group before they are written (product inventory). The
 * engine validates and exposes it; summing rows is the apply worker's job. */
struct map_aggregate {
	char **group_by; /* FO fields */
	size_t ngroup_by;
	char **sum;      /* FO numeric fields */
	size_t nsum;
	char *join_set;  /* NULL, or an FO entity set read once per group ... */
	char **join_on;  /* ... by these group_by fields (same names there) ... */
	size_t njoin_on;
	char **join_fields; /* ... whose first row's fields are added to the group's image */
	size_t njoin_fields;
};

/* A loaded map. Read-only for users; freed with map_free. */
struct map {
	char *path; /* the file it came from */
	char *name;
	char *description; /* NULL when absent */
	struct map_side ce;
	struct map_side fo;
	struct map_company *company; /* NULL for maps that are not company-striped */
	unsigned direction;          /* MAP_DIR_* */
	enum map_conflict conflict;
	enum event_side initial_sync_master;
	struct map_field *fields;
	size_t nfields;
	struct map_value_map *value_maps;
	size_t nvalue_maps;
	char **dependencies; /* names of maps that must run first */
	size_t ndependencies;
	struct map_threshold threshold;
	char *atomic_unit;               /* maps sharing it apply one txn as one changeset; or NULL */
	struct map_aggregate *aggregate; /* NULL when rows are not aggregated */
};

/* All maps of a directory, names unique, dependencies present and acyclic. */
struct map_set {
	struct map **maps; /* in dependency order: every map after the maps it depends on */
	size_t n;
};

/*
 * Reads and validates one map file (at most MAP_FILE_MAX_BYTES, UTF-8, strict JSON). The map's
 * name must equal the file name without ".json". Dependencies are not checked here (see
 * map_set_new). On success *out is a new map the caller frees with map_free. Returns 0, or -1
 * with err = "<path>: <json path>: <reason>" and *out NULL.
 */
int map_load_file(const char *path, struct map **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees a map. NULL-safe. */
void map_free(struct map *m);

/*
 * Builds a set from n loaded maps, taking ownership of maps[0..n) (the array itself stays the
 * caller's, sorted by name on return) whether it succeeds or not. Checks that names are unique, that every dependency
 * names a map of the set and that dependencies have no cycle; orders the maps so that each
 * comes after its dependencies (ties by name). Returns 0 with *out set (free with
 * map_set_free), or -1 with err naming the file and member, and *out NULL.
 */
int map_set_new(struct map **maps, size_t n, struct map_set **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*
 * Loads every "*.json" file of dir (in name order; at most MAP_MAPS_MAX) with map_load_file and
 * builds the set with map_set_new. Stops at the first bad file. Returns 0 with *out (free with
 * map_set_free), or -1 with err and *out NULL. A directory without maps is an error.
 */
int map_load_dir(const char *dir, struct map_set **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees the set and its maps. NULL-safe. */
void map_set_free(struct map_set *set);

/* The map of the set with that name, or NULL. Borrowed from the set. */
const struct map *map_set_find(const struct map_set *set, const char *name);

/* The side's description in m (borrowed). */
const struct map_side *map_side_of(const struct map *m, enum event_side side);

/* "ce_to_fo", "fo_to_ce", "both"; "ce_wins", "fo_wins", "latest_wins"; NULL when invalid. */
const char *map_direction_name(unsigned dir);
const char *map_conflict_name(enum map_conflict c);

/* ---- filters ---- */

/*
 * Parses a filter expression (docs/maps.md: comparisons eq ne gt ge lt le between a field and a
 * literal, and/or/not, parentheses). On success *out is a new filter freed with map_filter_free.
 * Returns 0, or -1 with err = "offset N: <reason>" and *out NULL.
 */
int map_filter_parse(const char *text, struct map_filter **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees a filter. NULL-safe. */
void map_filter_free(struct map_filter *f);

/* 1 when the record (a JSON object, borrowed; NULL = empty) satisfies f, else 0. A field absent
 * from the record is null. NULL f is true. */
int map_filter_match(const struct map_filter *f, const cJSON *record);

/*
 * 1 when the event belongs to the map: its side's filter (if any) accepts its data. Delete
 * events carry no data and are always in scope (a delete of a row the target does not have is
 * harmless; skipping it could leave a synced row behind). Borrows m and ev.
 */
int map_in_scope(const struct map *m, const struct event *ev);

/* ---- transform ---- */

/* Results of map_transform and of a resolver. Negative values are errors. */
#define MAP_OK 0
#define MAP_OUT_OF_SCOPE 1 /* a filter excludes the record: nothing to write */
#define MAP_NOT_FOUND 2    /* a lookup's related row is unknown: park the event */
#define MAP_ERR_EVENT (-1) /* the event does not fit the map: dead-letter it */
#define MAP_ERR_RESOLVE (-2) /* the resolver failed (e.g. target down): retry later */

/*
 * Turns a CE GUID into the related row's alternate key value. resolve() is called with the side
 * the row lives on (always CE here), its entity set, the GUID and the key column wanted; it
 * returns MAP_OK with the value in out (NUL-terminated, < outlen = MAP_RESOLVED_MAX bytes),
 * MAP_NOT_FOUND when no such row exists, or MAP_ERR_RESOLVE with err filled.
 */
struct map_resolver {
	int (*resolve)(void *ctx, enum event_side side, const char *entity_set, const char *guid,
		       const char *key_field, char *out, size_t outlen, char *err, size_t errlen);
	void *ctx;
	/* Optional (needed only for lookups with company_key, towards CE): the GUID of the CE row of
	 * entity_set whose alternate key key_field is value, into out[37]. Same results as resolve. */
	int (*guid)(void *ctx, const char *entity_set, const char *key_field, const char *value, char out[37],
		    char *err, size_t errlen);
};

enum map_write_op { MAP_WRITE_UPSERT = 1, MAP_WRITE_DELETE = 2 };

/* The write for the target side. Members are owned by the struct; map_write_clear frees them. */
struct map_write {
	enum map_write_op op;
	enum event_side target;
	const char *entity_set; /* target entity set, borrowed from the map */
	cJSON *key;             /* target key fields -> values (see docs/maps.md "Keys") */
	cJSON *payload;         /* upsert body in the target's names; NULL for deletes */
	char *company;          /* company code (dataAreaId), NULL for maps without company (except
				 * that a map without company whose lookups use company_key gets
				 * the event's dataAreaId here) */
	char hash[SHA256_HEX_LEN + 1]; /* map_content_hash of payload; "" for deletes */
};

/*
 * Maps ev (from side S, borrowed) to the write for the other side T: the target key; for
 * create/update/snapshot the payload with every field whose direction allows S -> T (renamed,
 * value-mapped, defaults for null/absent source values, constants for `none` sources; a field
 * absent from the event and without a default is left out, a null one is written as null), the
 * company, and lookups (to CE as "<nav>@odata.bind": "/<set>(<key>='<literal>')", the literal
 * quote-doubled and percent-encoded; to FO as the plain key value, resolved from the CE GUID
 * with r). Source values are read from ev->data, then ev->key. Deletes give op DELETE and the
 * key only. r may be NULL when no lookup or company on the source side needs resolving.
 *
 * Returns MAP_OK with *out filled (free with map_write_clear); MAP_OUT_OF_SCOPE when a filter
 * excludes the record; MAP_NOT_FOUND when a related row is unknown; MAP_ERR_EVENT when the event
 * cannot be mapped (wrong entity, direction not synced, key value missing, value without a value
 * map entry, ...); MAP_ERR_RESOLVE when the resolver failed. On every result but MAP_OK *out
 * holds nothing to free; err says why for all but MAP_OK and MAP_OUT_OF_SCOPE.
 */
int map_transform(const struct map *m, const struct event *ev, const struct map_resolver *r,
		  struct map_write *out, char *err, size_t errlen) __attribute__((warn_unused_result));

/* Frees the members of *w and zeroes it. NULL-safe. */
void map_write_clear(struct map_write *w);

/*
 * SHA-256 (lowercase hex into hex[65]) of the canonical form of a JSON value: object members
 * sorted by name (byte order), numbers normalised (integral values as integers, -0 as 0, others
 * as the shortest text that reads back to the same double), strings with one fixed escaping, no
 * whitespace. Key order and number spelling do not change the hash; any value change does.
 * Returns 0, or -1 when v is NULL or nested deeper than 64 levels.
 */
int map_content_hash(const cJSON *v, char hex[SHA256_HEX_LEN + 1]) __attribute__((warn_unused_result));

/*
 * Hash of a record image of side `side` (as read from that side, or an event's data) restricted
 * to the fields the map knows on that side: every field with a name on that side (lookups by
 * their GUID attribute), the key fields and the company. Absent fields count as null, so a
 * re-read with $select of those fields and a full event image give the same hash. Used to
 * record "last seen on that side" and to recognise echoes. Returns 0, or -1 (image not an
 * object).
 */
int map_image_hash(const struct map *m, enum event_side side, const cJSON *image, char hex[SHA256_HEX_LEN + 1])
	__attribute__((warn_unused_result));

/* map_image_hash of image with the members it lacks taken from extra (may be NULL): the hash of
 * a write's payload with its key fields, without building that object. */
int map_image_hash_of(const struct map *m, enum event_side side, const cJSON *image, const cJSON *extra,
		      char hex[SHA256_HEX_LEN + 1]) __attribute__((warn_unused_result));

#endif
