/* Name index of a JSON object's members: an open-addressing hash table of borrowed pointers. */
#include "jsonidx.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a, 64 bits. */
static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* The slot holding name, or the free slot where it would go. */
static size_t find_slot(const struct jsonidx *idx, const char *name)
{
	size_t i = (size_t)name_hash(name) & idx->mask;
	while (idx->slot[i] && strcmp(idx->slot[i]->string, name) != 0)
		i = (i + 1) & idx->mask;
	return i;
}

int jsonidx_init(struct jsonidx *idx, size_t cap)
{
	size_t nslot = JSONIDX_INLINE;
	idx->slot = idx->local;
	idx->mask = 0;
	idx->n = 0;
	idx->cap = 0;
	if (cap > SIZE_MAX / 4 / sizeof(*idx->slot))
		return -1;
	while (nslot < cap * 2)
		nslot *= 2;
	if (nslot > JSONIDX_INLINE) {
		idx->slot = malloc(nslot * sizeof(*idx->slot));
		if (!idx->slot) {
			idx->slot = idx->local;
			return -1;
		}
	}
	memset(idx->slot, 0, nslot * sizeof(*idx->slot));
	idx->mask = nslot - 1;
	idx->cap = cap;
	return 0;
}

int jsonidx_build(struct jsonidx *idx, const cJSON *obj)
{
	size_t n = 0;
	const cJSON *c;
	for (c = obj ? obj->child : NULL; c && c->string; c = c->next)
		n++;
	if (jsonidx_init(idx, n) != 0)
		return -1;
	for (c = obj ? obj->child : NULL; c && c->string; c = c->next)
		if (jsonidx_add(idx, c) < 0)
			return -1; /* not reached: the table has room for n */
	return 0;
}

int jsonidx_add(struct jsonidx *idx, const cJSON *item)
{
	if (!item || !item->string)
		return 0;
	if (idx->n >= idx->cap)
		return jsonidx_get(idx, item->string) ? 0 : -1;
	size_t i = find_slot(idx, item->string);
	if (idx->slot[i])
		return 0;
	idx->slot[i] = item;
	idx->n++;
	return 1;
}

const cJSON *jsonidx_get(const struct jsonidx *idx, const char *name)
{
	if (!name || idx->cap == 0)
		return NULL;
	return idx->slot[find_slot(idx, name)];
}

void jsonidx_clear(struct jsonidx *idx)
{
	if (!idx)
		return;
	if (idx->slot != idx->local)
		free(idx->slot);
	idx->slot = idx->local;
	idx->mask = 0;
	idx->n = 0;
	idx->cap = 0;
}
