#ifndef DW_DEMO_DCOMPARE_H
#define DW_DEMO_DCOMPARE_H

#include <stddef.h>

#include "dside.h"
#include "map.h"

/*
 * Compares the rows a map covers on both sides, as they are now. A row's identity is the map's FO
 * key (for an aggregating map its group_by fields) read on each side: CE lookups are resolved to
 * the related row's key value, the company GUID to its code (the company takes part only when the
 * CE key holds it). Rows outside a side's filter are left out; FO rows of an aggregating map are
 * summed per group first, and get the fields of the aggregate's join set. Every field mapped on both sides is compared: value maps and defaults
 * applied, numbers to within 0.005, null, absent and "" alike.
 */

struct dcmp_result {
	long ce_rows; /* rows of the map on each side (FO: groups for an aggregating map) */
	long fo_rows;
	long only_ce; /* keys found on one side only */
	long only_fo;
	long differ;  /* keys on both sides whose fields differ */
	char example[512]; /* the first difference, "" when equal */
};

/* A cache of CE lookups resolved GUID -> key value, kept across comparisons. */
struct dcmp_cache;

/* A new empty cache into *out (the caller's, dcmp_cache_free). Returns 0, or -1 out of memory. */
int dcmp_cache_new(struct dcmp_cache **out) __attribute__((warn_unused_result));

/* NULL-safe. */
void dcmp_cache_free(struct dcmp_cache *c);

/*
 * Compares map m on ce and fo. Fills *r. Returns 0 (equal or not: see r), or -1 with err when a
 * side could not be read.
 */
int dcmp_map(struct dside *ce, struct dside *fo, struct dcmp_cache *cache, const struct map *m,
	     struct dcmp_result *r, char *err, size_t errlen) __attribute__((warn_unused_result));

/* 1 when r says both sides are equal. */
int dcmp_equal(const struct dcmp_result *r);

/*
 * The value of CE lookup column `value_attr` of row (a GUID) resolved through set/key, into out.
 * Returns 1 with out filled, 0 when the row has no value there, -1 with err.
 */
int dcmp_ce_lookup(struct dside *ce, struct dcmp_cache *cache, const cJSON *row, const char *value_attr,
		   const char *set, const char *key, char *out, size_t outlen, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* The identity of a row of side `side` as dcmp_map sees it ("usmf|US-001"), into out. Returns 0
 * or -1 with err (a lookup could not be read, out too small). */
int dcmp_row_key(struct dside *ce, struct dcmp_cache *cache, const struct map *m, enum event_side side,
		 const cJSON *row, char *out, size_t outlen, char *err, size_t errlen) __attribute__((warn_unused_result));

/* The field of m mapped on both sides whose FO (CE) name is given, or NULL. Borrowed from m. */
const struct map_field *dcmp_field_by_fo(const struct map *m, const char *fo);
const struct map_field *dcmp_field_by_ce(const struct map *m, const char *ce);

/* The value as comparable text: strings as they are, integers without decimals, other numbers
 * with up to 10 significant digits, booleans true/false, null/absent/"" as "". */
void dcmp_text(const cJSON *v, char *out, size_t outlen);

#endif
