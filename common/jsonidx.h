#ifndef DW_JSONIDX_H
#define DW_JSONIDX_H

#include <stddef.h>

#include <cjson/cJSON.h>

/*
 * A name index of one JSON object's members, for code that looks up, for each member of one
 * object (or each field of a map), the member of that name in another: cJSON's own lookup walks
 * the member list, so such a loop costs n*m string comparisons; with the index it costs about
 * n + m. A lookup finds what cJSON_GetObjectItemCaseSensitive finds: the first member with that
 * name, nothing past a member without a name (cJSON stops there too). An open-addressing hash
 * table of borrowed member pointers, at most half full; objects of up to JSONIDX_INLINE / 2
 * members need no allocation. The index borrows the members: it is valid while none of them is
 * deleted or renamed. Not shared between threads while it is being filled.
 */

#define JSONIDX_INLINE 128 /* slots held in the struct itself (a power of two) */

struct jsonidx {
	const cJSON **slot; /* mask + 1 slots, NULL when free: `local` or an allocation */
	size_t mask;
	size_t n;   /* members indexed */
	size_t cap; /* members the table takes */
	const cJSON *local[JSONIDX_INLINE];
};

/* An empty index with room for cap members. Returns 0, or -1 when memory ran out (the index is
 * then empty with no room; jsonidx_clear is still safe). */
int jsonidx_init(struct jsonidx *idx, size_t cap) __attribute__((warn_unused_result));

/* An index of the named members of obj (borrowed; NULL or a value without members: empty).
 * Returns 0, or -1 when memory ran out (as jsonidx_init). */
int jsonidx_build(struct jsonidx *idx, const cJSON *obj) __attribute__((warn_unused_result));

/* Adds item (borrowed) under its name: 1 when added, 0 when a member of that name is indexed
 * already (the earlier one stays) or item has no name, -1 when the index is full. */
int jsonidx_add(struct jsonidx *idx, const cJSON *item) __attribute__((warn_unused_result));

/* The indexed member named name, or NULL (also for a NULL name). */
const cJSON *jsonidx_get(const struct jsonidx *idx, const char *name);

/* Frees what the index allocated and leaves it empty with no room; NULL-safe. */
void jsonidx_clear(struct jsonidx *idx);

#endif
