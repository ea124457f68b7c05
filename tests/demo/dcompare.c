#include "dcompare.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DCMP_KEY_MAX 1024
#define DCMP_VAL_MAX 1024

struct dcmp_entry {
	char *id; /* "<set>|<key>|<guid>" */
	char *value;
};

struct dcmp_cache {
	struct dcmp_entry *e;
	size_t n, cap;
};

int dcmp_cache_new(struct dcmp_cache **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -1;
}

void dcmp_cache_free(struct dcmp_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->e[i].id);
		free(c->e[i].value);
	}
	free(c->e);
	free(c);
}

static int cache_put(struct dcmp_cache *c, const char *id, const char *value)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct dcmp_entry *e = realloc(c->e, cap * sizeof(*e));
		if (!e)
			return -1;
		c->e = e;
		c->cap = cap;
	}
	c->e[c->n].id = strdup(id);
	c->e[c->n].value = strdup(value);
	if (!c->e[c->n].id || !c->e[c->n].value) {
		free(c->e[c->n].id);
		free(c->e[c->n].value);
		return -1;
	}
	c->n++;
	return 0;
}

void dcmp_text(const cJSON *v, char *out, size_t outlen)
{
	if (cJSON_IsString(v))
		snprintf(out, outlen, "%s", v->valuestring);
	else if (cJSON_IsBool(v))
		snprintf(out, outlen, "%s", cJSON_IsTrue(v) ? "true" : "false");
	else if (cJSON_IsNumber(v) && fabs(v->valuedouble - round(v->valuedouble)) < 1e-9 && fabs(v->valuedouble) < 9e15)
		snprintf(out, outlen, "%lld", (long long)llround(v->valuedouble));
	else if (cJSON_IsNumber(v))
		snprintf(out, outlen, "%.10g", v->valuedouble);
	else
		snprintf(out, outlen, "%s", "");
}

int dcmp_ce_lookup(struct dside *ce, struct dcmp_cache *cache, const cJSON *row, const char *value_attr,
		   const char *set, const char *key, char *out, size_t outlen, char *err, size_t errlen)
{
	const cJSON *g = cJSON_GetObjectItemCaseSensitive(row, value_attr);
	if (!cJSON_IsString(g) || !*g->valuestring)
		return 0;
	char id[512];
	snprintf(id, sizeof(id), "%s|%s|%s", set, key, g->valuestring);
	for (size_t i = 0; i < cache->n; i++)
		if (strcmp(cache->e[i].id, id) == 0) {
			snprintf(out, outlen, "%s", cache->e[i].value);
			return 1;
		}
	char path[512];
	long status;
	cJSON *j = NULL;
	snprintf(path, sizeof(path), "%s(%s)?$select=%s", set, g->valuestring, key);
	if (dside_call(ce, "GET", path, NULL, &status, &j, err, errlen) != 0)
		return -1;
	int rc = -1;
	if (status == 404) {
		snprintf(out, outlen, "(missing %s)", g->valuestring);
		rc = 1;
	} else if (status != 200) {
		snprintf(err, errlen, "GET %s: HTTP %ld", path, status);
	} else {
		dcmp_text(cJSON_GetObjectItemCaseSensitive(j, key), out, outlen);
		rc = cache_put(cache, id, out) == 0 ? 1 : -1;
		if (rc < 0)
			snprintf(err, errlen, "out of memory");
	}
	cJSON_Delete(j);
	return rc;
}

/* ---- keys ---- */

const struct map_field *dcmp_field_by_fo(const struct map *m, const char *fo)
{
	for (size_t i = 0; i < m->nfields; i++)
		if (m->fields[i].fo && m->fields[i].ce && strcmp(m->fields[i].fo, fo) == 0)
			return &m->fields[i];
	return NULL;
}

const struct map_field *dcmp_field_by_ce(const struct map *m, const char *ce)
{
	for (size_t i = 0; i < m->nfields; i++)
		if (m->fields[i].fo && m->fields[i].ce && strcmp(m->fields[i].ce, ce) == 0)
			return &m->fields[i];
	return NULL;
}

static int company_in_key(const struct map *m)
{
	if (!m->company)
		return 0;
	for (size_t i = 0; i < m->ce.nkey; i++)
		if (strcmp(m->ce.key[i], m->company->ce) == 0)
			return 1;
	return 0;
}

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* The FO fields that identify a row: group_by for an aggregating map, else the FO key. */
static void id_fields(const struct map *m, char *const **names, size_t *n)
{
	if (m->aggregate) {
		*names = m->aggregate->group_by;
		*n = m->aggregate->ngroup_by;
	} else {
		*names = m->fo.key;
		*n = m->fo.nkey;
	}
}

static int is_id_field(const struct map *m, const char *fo)
{
	char *const *names;
	size_t n;
	id_fields(m, &names, &n);
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], fo) == 0)
			return 1;
	return 0;
}

/* The CE value of field f for row, lookups resolved, as text. */
static int ce_value(struct dside *ce, struct dcmp_cache *cache, const struct map_field *f, const cJSON *row,
		    char *out, size_t outlen, char *err, size_t errlen)
{
	if (f->lookup) {
		int rc = dcmp_ce_lookup(ce, cache, row, f->lookup->value, f->lookup->set, f->lookup->key, out, outlen,
					err, errlen);
		if (rc == 0)
			out[0] = '\0';
		return rc < 0 ? -1 : 0;
	}
	dcmp_text(cJSON_GetObjectItemCaseSensitive(row, f->ce), out, outlen);
	return 0;
}

int dcmp_row_key(struct dside *ce, struct dcmp_cache *cache, const struct map *m, enum event_side side,
		  const cJSON *row, char *out, size_t outlen, char *err, size_t errlen)
{
	char *const *names;
	size_t n, used = 0;
	id_fields(m, &names, &n);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		char v[DCMP_VAL_MAX];
		int is_company = m->company && strcmp(names[i], m->company->fo) == 0;
		const struct map_field *f = is_company ? NULL : dcmp_field_by_fo(m, names[i]);
		if (is_company ? !company_in_key(m) : !f)
			continue; /* not identifiable on CE: left out on both sides */
		if (side == EVENT_SIDE_FO) {
			dcmp_text(cJSON_GetObjectItemCaseSensitive(row, names[i]), v, sizeof(v));
		} else if (is_company) {
			int rc = dcmp_ce_lookup(ce, cache, row, m->company->ce_value, m->company->ce_set,
						m->company->ce_key, v, sizeof(v), err, errlen);
			if (rc < 0)
				return -1;
			if (rc == 0)
				v[0] = '\0';
		} else if (ce_value(ce, cache, f, row, v, sizeof(v), err, errlen) != 0) {
			return -1;
		}
		if (is_company)
			lower(v);
		int w = snprintf(out + used, outlen - used, "%s%s", used ? "|" : "", v);
		if (w < 0 || (size_t)w >= outlen - used) {
			snprintf(err, errlen, "key longer than %zu bytes", outlen);
			return -1;
		}
		used += (size_t)w;
	}
	return 0;
}

/* ---- rows ---- */

struct krow {
	char key[DCMP_KEY_MAX];
	cJSON *row; /* borrowed from the side's array (FO aggregated: owned by the group array) */
};

static int krow_cmp(const void *a, const void *b)
{
	return strcmp(((const struct krow *)a)->key, ((const struct krow *)b)->key);
}

/* Rows of one side in scope of the map, keyed and sorted. FO rows of an aggregating map are
 * summed per key into new objects added to `owned`. */
/* Adds the aggregate's join fields to a group image: from the first row of `joined` (the join
 * set's rows) whose join_on fields equal the group's. */
static void add_join(const struct map_aggregate *a, const cJSON *joined, cJSON *group)
{
	const cJSON *r;
	cJSON_ArrayForEach(r, joined)
	{
		int match = 1;
		for (size_t k = 0; k < a->njoin_on && match; k++) {
			char x[DCMP_VAL_MAX], y[DCMP_VAL_MAX];
			dcmp_text(cJSON_GetObjectItemCaseSensitive(r, a->join_on[k]), x, sizeof(x));
			dcmp_text(cJSON_GetObjectItemCaseSensitive(group, a->join_on[k]), y, sizeof(y));
			match = strcmp(x, y) == 0;
		}
		if (!match)
			continue;
		for (size_t f = 0; f < a->njoin_fields; f++) {
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, a->join_fields[f]);
			cJSON *dup = v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull();
			if (dup && !cJSON_ReplaceItemInObjectCaseSensitive(group, a->join_fields[f], dup) &&
			    !cJSON_AddItemToObject(group, a->join_fields[f], dup))
				cJSON_Delete(dup);
		}
		return;
	}
}

static int side_rows(struct dside *ce, struct dcmp_cache *cache, const struct map *m, enum event_side side,
		     cJSON *rows, const cJSON *joined, cJSON *owned, struct krow **out, size_t *nout, char *err,
		     size_t errlen)
{
	size_t cap = (size_t)cJSON_GetArraySize(rows) + 1, n = 0;
	struct krow *v = calloc(cap, sizeof(*v));
	const struct map_side *ms = map_side_of(m, side);
	int agg = side == EVENT_SIDE_FO && m->aggregate;
	if (!v) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	cJSON *row;
	cJSON_ArrayForEach(row, rows)
	{
		if (!map_filter_match(ms->filter, row))
			continue;
		if (dcmp_row_key(ce, cache, m, side, row, v[n].key, sizeof(v[n].key), err, errlen) != 0) {
			free(v);
			return -1;
		}
		v[n++].row = row;
	}
	qsort(v, n, sizeof(*v), krow_cmp);
	if (agg) {
		size_t w = 0;
		for (size_t i = 0; i < n;) {
			cJSON *sum = cJSON_Duplicate(v[i].row, 1);
			if (!sum) {
				free(v);
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			cJSON_AddItemToArray(owned, sum);
			size_t j = i + 1;
			for (; j < n && strcmp(v[j].key, v[i].key) == 0; j++)
				for (size_t s = 0; s < m->aggregate->nsum; s++) {
					cJSON *t = cJSON_GetObjectItemCaseSensitive(sum, m->aggregate->sum[s]);
					const cJSON *a = cJSON_GetObjectItemCaseSensitive(v[j].row, m->aggregate->sum[s]);
					if (cJSON_IsNumber(t) && cJSON_IsNumber(a))
						cJSON_SetNumberValue(t, t->valuedouble + a->valuedouble);
				}
			if (joined)
				add_join(m->aggregate, joined, sum);
			memmove(v[w].key, v[i].key, sizeof(v[w].key));
			v[w++].row = sum;
			i = j;
		}
		n = w;
	}
	*out = v;
	*nout = n;
	return 0;
}

static int texts_equal(const char *a, const char *b)
{
	if (strcmp(a, b) == 0)
		return 1;
	char *ea, *eb;
	double x = strtod(a, &ea), y = strtod(b, &eb);
	return *a && *b && !*ea && !*eb && fabs(x - y) < 0.005;
}

/* Compares the mapped fields of one FO row and one CE row; 1 equal, 0 not (why filled), -1. */
static int rows_equal(struct dside *ce, struct dcmp_cache *cache, const struct map *m, const cJSON *fr,
		      const cJSON *cr, char *why, size_t whylen, char *err, size_t errlen)
{
	for (size_t i = 0; i < m->nfields; i++) {
		const struct map_field *f = &m->fields[i];
		if (!f->fo || !f->ce || is_id_field(m, f->fo))
			continue;
		char fv[DCMP_VAL_MAX], cv[DCMP_VAL_MAX];
		dcmp_text(cJSON_GetObjectItemCaseSensitive(fr, f->fo), fv, sizeof(fv));
		if (ce_value(ce, cache, f, cr, cv, sizeof(cv), err, errlen) != 0)
			return -1;
		if (f->value_map && *cv) {
			/* CE value -> FO terms */
			for (size_t p = 0; p < f->value_map->npairs; p++) {
				char t[DCMP_VAL_MAX];
				dcmp_text(f->value_map->pairs[p].ce, t, sizeof(t));
				if (strcmp(t, cv) == 0) {
					dcmp_text(f->value_map->pairs[p].fo, cv, sizeof(cv));
					break;
				}
			}
		}
		if (f->is_date) {
			/* calendar dates: the date parts; F&O's 1900-01-01 is no date (docs/maps.md) */
			fv[strlen(fv) > 10 ? 10 : strlen(fv)] = '\0';
			cv[strlen(cv) > 10 ? 10 : strlen(cv)] = '\0';
			if (strcmp(fv, "1900-01-01") == 0)
				fv[0] = '\0';
		}
		if (f->def) {
			char d[DCMP_VAL_MAX];
			dcmp_text(f->def, d, sizeof(d));
			if (!*fv)
				snprintf(fv, sizeof(fv), "%s", d);
			if (!*cv)
				snprintf(cv, sizeof(cv), "%s", d);
		}
		if (!texts_equal(fv, cv)) {
			snprintf(why, whylen, "%s '%.100s' vs %s '%.100s'", f->fo, fv, f->ce, cv);
			return 0;
		}
	}
	return 1;
}

int dcmp_equal(const struct dcmp_result *r)
{
	return r->ce_rows == r->fo_rows && r->only_ce == 0 && r->only_fo == 0 && r->differ == 0;
}

int dcmp_map(struct dside *ce, struct dside *fo, struct dcmp_cache *cache, const struct map *m,
	     struct dcmp_result *r, char *err, size_t errlen)
{
	cJSON *cer = NULL, *fer = NULL, *joined = NULL, *owned = cJSON_CreateArray();
	struct krow *cv = NULL, *fv = NULL;
	size_t cn = 0, fn = 0;
	int rc = -1;
	memset(r, 0, sizeof(*r));
	if (!owned) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (dside_rows(ce, m->ce.entity_set, &cer, err, errlen) != 0 ||
	    dside_rows(fo, m->fo.entity_set, &fer, err, errlen) != 0 ||
	    (m->aggregate && m->aggregate->join_set &&
	     dside_rows(fo, m->aggregate->join_set, &joined, err, errlen) != 0) ||
	    side_rows(ce, cache, m, EVENT_SIDE_CE, cer, NULL, owned, &cv, &cn, err, errlen) != 0 ||
	    side_rows(ce, cache, m, EVENT_SIDE_FO, fer, joined, owned, &fv, &fn, err, errlen) != 0)
		goto out;
	r->ce_rows = (long)cn;
	r->fo_rows = (long)fn;
	size_t i = 0, j = 0;
	while (i < cn || j < fn) {
		int c = i == cn ? 1 : j == fn ? -1 : strcmp(cv[i].key, fv[j].key);
		if (c < 0) {
			if (!r->example[0])
				snprintf(r->example, sizeof(r->example), "%.300s only on ce", cv[i].key);
			r->only_ce++;
			i++;
		} else if (c > 0) {
			if (!r->example[0])
				snprintf(r->example, sizeof(r->example), "%.300s only on fo", fv[j].key);
			r->only_fo++;
			j++;
		} else {
			char why[400];
			int e = rows_equal(ce, cache, m, fv[j].row, cv[i].row, why, sizeof(why), err, errlen);
			if (e < 0)
				goto out;
			if (e == 0) {
				if (!r->example[0])
					snprintf(r->example, sizeof(r->example), "%.100s: %.400s", cv[i].key, why);
				r->differ++;
			}
			i++;
			j++;
		}
	}
	rc = 0;
out:
	free(cv);
	free(fv);
	cJSON_Delete(owned);
	cJSON_Delete(joined);
	cJSON_Delete(cer);
	cJSON_Delete(fer);
	return rc;
}
