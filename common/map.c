/* Map files: reading, strict validation, the map set of a directory (dependencies). */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "jsoncheck.h"
#include "map.h"
#include "utf8.h"

#define JPATH_MAX 256
#define THRESHOLD_COUNT_MAX 1000000
#define WINDOW_MIN_MS 1000LL
#define WINDOW_MAX_MS (7LL * 24 * 3600 * 1000)

/* Load context: the file being read and the first error. */
struct ld {
	const char *path;
	char *err;
	size_t errlen;
	int failed;
};

static void lerr(struct ld *l, const char *jpath, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void lerr(struct ld *l, const char *jpath, const char *fmt, ...)
{
	if (l->failed)
		return;
	l->failed = 1;
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(l->err, l->errlen, "%s: %s: %s", l->path, jpath, why);
}

/* jpath of a member: "ce" + "key" -> "ce.key"; the root is "$". Paths longer than JPATH_MAX
 * (only possible with absurd member names) end in "...". */
static void jtruncated(char *out, int n)
{
	if (n < 0 || n >= JPATH_MAX)
		memcpy(out + JPATH_MAX - 4, "...", 4);
}

static void jmember(char *out, const char *parent, const char *name)
{
	int n;
	if (strcmp(parent, "$") == 0)
		n = snprintf(out, JPATH_MAX, "%s", name);
	else
		n = snprintf(out, JPATH_MAX, "%s.%s", parent, name);
	jtruncated(out, n);
}

static void jindex(char *out, const char *parent, size_t i)
{
	jtruncated(out, snprintf(out, JPATH_MAX, "%s[%zu]", parent, i));
}

static const char *type_name(const cJSON *v)
{
	if (cJSON_IsNull(v))
		return "null";
	if (cJSON_IsBool(v))
		return "boolean";
	if (cJSON_IsNumber(v))
		return "number";
	if (cJSON_IsString(v))
		return "string";
	if (cJSON_IsArray(v))
		return "array";
	return "object";
}

static char *xstrdup(struct ld *l, const char *s)
{
	char *d = strdup(s);
	if (!d)
		lerr(l, "$", "out of memory");
	return d;
}

static int cmp_member_name(const void *a, const void *b)
{
	return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* The name of a member that obj has twice, or NULL. Sorts a copy of the member list, so a
 * hostile file with a huge object costs n log n, not n^2. */
static const char *duplicate_name(const cJSON *obj, int *oom)
{
	size_t n = (size_t)cJSON_GetArraySize(obj), i = 0;
	*oom = 0;
	if (n < 2)
		return NULL;
	const cJSON **m = malloc(n * sizeof(*m));
	if (!m) {
		*oom = 1;
		return NULL;
	}
	for (const cJSON *c = obj->child; c; c = c->next)
		m[i++] = c;
	qsort(m, n, sizeof(*m), cmp_member_name);
	const char *dup = NULL;
	for (i = 1; i < n && !dup; i++)
		if (strcmp(m[i]->string, m[i - 1]->string) == 0)
			dup = m[i]->string;
	free(m);
	return dup;
}

/* Rejects objects that name a member twice (cJSON keeps both silently), anywhere in the tree. */
static int check_duplicates(struct ld *l, const cJSON *v, const char *jpath)
{
	char sub[JPATH_MAX];
	if (cJSON_IsObject(v)) {
		int oom = 0;
		const char *dup = duplicate_name(v, &oom);
		if (dup || oom) {
			if (oom)
				lerr(l, jpath, "out of memory");
			else
				lerr(l, jpath, "member '%.200s' appears twice", dup);
			return -1;
		}
	}
	size_t i = 0;
	for (const cJSON *a = v->child; a; a = a->next, i++) {
		if (cJSON_IsObject(v))
			jmember(sub, jpath, a->string);
		else
			jindex(sub, jpath, i);
		if ((cJSON_IsObject(a) || cJSON_IsArray(a)) && check_duplicates(l, a, sub) != 0)
			return -1;
	}
	return 0;
}

/* Checks that obj is an object with only `allowed` members and every `required` one. */
static int check_object(struct ld *l, const cJSON *obj, const char *jpath, const char *const *allowed,
			const char *const *required)
{
	if (!cJSON_IsObject(obj)) {
		lerr(l, jpath, "must be an object, got %s", type_name(obj));
		return -1;
	}
	for (const cJSON *m = obj->child; m; m = m->next) {
		int known = 0;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, m->string) == 0)
				known = 1;
		if (!known) {
			lerr(l, jpath, "unknown member '%s'", m->string);
			return -1;
		}
	}
	for (const char *const *r = required; *r; r++)
		if (!cJSON_GetObjectItemCaseSensitive(obj, *r)) {
			lerr(l, jpath, "missing required member '%s'", *r);
			return -1;
		}
	return 0;
}

static int valid_ident(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > MAP_IDENT_MAX)
		return 0;
	if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_'))
			return 0;
	return 1;
}

static int valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > MAP_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

enum skind { S_TEXT, S_IDENT, S_NAME };

/* A string member. Returns it (borrowed from obj), or NULL: absent (no error unless required)
 * or invalid (error set). */
static const char *get_str(struct ld *l, const cJSON *obj, const char *jpath, const char *name, int required,
			   enum skind kind)
{
	char sub[JPATH_MAX];
	jmember(sub, jpath, name);
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (!v) {
		if (required)
			lerr(l, jpath, "missing required member '%s'", name);
		return NULL;
	}
	if (!cJSON_IsString(v)) {
		lerr(l, sub, "must be a string, got %s", type_name(v));
		return NULL;
	}
	const char *s = v->valuestring;
	if (kind == S_IDENT && !valid_ident(s)) {
		lerr(l, sub, "'%.200s' is not a valid field or entity name ([A-Za-z_][A-Za-z0-9_]*, at most %d)", s,
		     MAP_IDENT_MAX);
		return NULL;
	}
	if (kind == S_NAME && !valid_name(s)) {
		lerr(l, sub, "'%.200s' is not a valid map name ([a-z0-9_], 1 to %d characters)", s, MAP_NAME_MAX);
		return NULL;
	}
	if (kind == S_TEXT && s[0] == '\0') {
		lerr(l, sub, "must not be empty");
		return NULL;
	}
	return s;
}

/* One of `names` (NULL-terminated); returns its index or -1 with an error listing them. */
static int get_enum(struct ld *l, const cJSON *obj, const char *jpath, const char *name, const char *const *names)
{
	const char *s = get_str(l, obj, jpath, name, 1, S_TEXT);
	if (!s)
		return -1;
	char list[256] = "";
	size_t used = 0;
	for (int i = 0; names[i]; i++) {
		if (strcmp(names[i], s) == 0)
			return i;
		int n = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", names[i]);
		if (n > 0 && (size_t)n < sizeof(list) - used)
			used += (size_t)n;
	}
	char sub[JPATH_MAX];
	jmember(sub, jpath, name);
	lerr(l, sub, "unknown value '%.100s' (one of %s)", s, list);
	return -1;
}

/* An array of 1..max unique strings of `kind`, copied into *out. */
static int get_str_list(struct ld *l, const cJSON *obj, const char *jpath, const char *name, size_t max,
			enum skind kind, char ***out, size_t *n)
{
	char sub[JPATH_MAX], item[JPATH_MAX];
	jmember(sub, jpath, name);
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (!cJSON_IsArray(arr)) {
		lerr(l, sub, "must be an array, got %s", type_name(arr));
		return -1;
	}
	size_t count = (size_t)cJSON_GetArraySize(arr);
	if (count == 0 || count > max) {
		lerr(l, sub, "must have 1 to %zu items, has %zu", max, count);
		return -1;
	}
	*out = calloc(count, sizeof(char *));
	if (!*out) {
		lerr(l, sub, "out of memory");
		return -1;
	}
	size_t i = 0;
	for (const cJSON *v = arr->child; v; v = v->next, i++) {
		jindex(item, sub, i);
		if (!cJSON_IsString(v)) {
			lerr(l, item, "must be a string, got %s", type_name(v));
			return -1;
		}
		if ((kind == S_IDENT && !valid_ident(v->valuestring)) || (kind == S_NAME && !valid_name(v->valuestring))) {
			lerr(l, item, "'%.200s' is not a valid %s", v->valuestring,
			     kind == S_NAME ? "map name ([a-z0-9_], 1 to 64 characters)"
					    : "field name ([A-Za-z_][A-Za-z0-9_]*, at most 128)");
			return -1;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp((*out)[j], v->valuestring) == 0) {
				lerr(l, item, "'%s' is listed twice", v->valuestring);
				return -1;
			}
		(*out)[i] = xstrdup(l, v->valuestring);
		*n = i + 1;
		if (!(*out)[i])
			return -1;
	}
	return 0;
}

static int list_has(char *const *list, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return 1;
	return 0;
}

static void free_list(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

static int load_side(struct ld *l, const cJSON *root, const char *name, struct map_side *side)
{
	static const char *const allowed[] = { "entity", "entity_set", "key", "filter", NULL };
	static const char *const required[] = { "entity", "entity_set", "key", NULL };
	char jpath[JPATH_MAX], sub[JPATH_MAX];
	jmember(jpath, "$", name);
	const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, name);
	if (check_object(l, obj, jpath, allowed, required) != 0)
		return -1;
	const char *entity = get_str(l, obj, jpath, "entity", 1, S_IDENT);
	const char *set = get_str(l, obj, jpath, "entity_set", 1, S_IDENT);
	if (!entity || !set)
		return -1;
	if (!(side->entity = xstrdup(l, entity)) || !(side->entity_set = xstrdup(l, set)))
		return -1;
	if (get_str_list(l, obj, jpath, "key", MAP_KEY_FIELDS_MAX, S_IDENT, &side->key, &side->nkey) != 0)
		return -1;
	if (cJSON_GetObjectItemCaseSensitive(obj, "filter")) {
		const char *text = get_str(l, obj, jpath, "filter", 0, S_TEXT);
		if (!text)
			return -1;
		if (!(side->filter_text = xstrdup(l, text)))
			return -1;
		char why[300];
		if (map_filter_parse(text, &side->filter, why, sizeof(why)) != 0) {
			jmember(sub, jpath, "filter");
			lerr(l, sub, "%s", why);
			return -1;
		}
	}
	return 0;
}

static int load_company(struct ld *l, const cJSON *root, struct map *m)
{
	static const char *const allowed[] = { "fo", "ce", "ce_nav", "ce_set", "ce_key", "in_ce_key", NULL };
	static const char *const required[] = { "fo", "ce", "ce_set", "ce_key", NULL };
	const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, "company");
	if (!obj)
		return 0;
	if (check_object(l, obj, "company", allowed, required) != 0)
		return -1;
	const char *fo = get_str(l, obj, "company", "fo", 1, S_IDENT);
	const char *ce = get_str(l, obj, "company", "ce", 1, S_IDENT);
	const char *set = get_str(l, obj, "company", "ce_set", 1, S_IDENT);
	const char *key = get_str(l, obj, "company", "ce_key", 1, S_IDENT);
	const char *nav = get_str(l, obj, "company", "ce_nav", 0, S_IDENT);
	if (!fo || !ce || !set || !key || l->failed)
		return -1;
	struct map_company *c = calloc(1, sizeof(*c));
	if (!c) {
		lerr(l, "company", "out of memory");
		return -1;
	}
	m->company = c;
	char value[MAP_IDENT_MAX + 16];
	snprintf(value, sizeof(value), "_%s_value", ce);
	if (!(c->fo = xstrdup(l, fo)) || !(c->ce = xstrdup(l, ce)) || !(c->ce_set = xstrdup(l, set)) ||
	    !(c->ce_key = xstrdup(l, key)) || !(c->ce_nav = xstrdup(l, nav ? nav : ce)) ||
	    !(c->ce_value = xstrdup(l, value)))
		return -1;
	if (!list_has(m->fo.key, m->fo.nkey, fo)) {
		lerr(l, "company.fo", "'%s' must be one of the fo.key fields (the company is part of every key)", fo);
		return -1;
	}
	const cJSON *in_key = cJSON_GetObjectItemCaseSensitive(obj, "in_ce_key");
	if (in_key && !cJSON_IsBool(in_key)) {
		lerr(l, "company.in_ce_key", "must be true or false");
		return -1;
	}
	c->in_ce_key = !in_key || cJSON_IsTrue(in_key);
	if (c->in_ce_key && !list_has(m->ce.key, m->ce.nkey, ce)) {
		lerr(l, "company.ce", "'%s' must be one of the ce.key fields (the company is part of every key)", ce);
		return -1;
	}
	if (!c->in_ce_key && list_has(m->ce.key, m->ce.nkey, ce)) {
		lerr(l, "company.in_ce_key", "is false, but '%s' is one of the ce.key fields", ce);
		return -1;
	}
	return 0;
}

static int load_threshold(struct ld *l, const cJSON *root, struct map *m)
{
	static const char *const allowed[] = { "count", "window", "action", NULL };
	static const char *const actions[] = { "pause", NULL };
	const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, "error_threshold");
	if (check_object(l, obj, "error_threshold", allowed, allowed) != 0)
		return -1;
	const cJSON *count = cJSON_GetObjectItemCaseSensitive(obj, "count");
	if (!cJSON_IsNumber(count) || count->valuedouble != (double)(long long)count->valuedouble ||
	    count->valuedouble < 1 || count->valuedouble > THRESHOLD_COUNT_MAX) {
		lerr(l, "error_threshold.count", "must be a whole number from 1 to %d", THRESHOLD_COUNT_MAX);
		return -1;
	}
	m->threshold.count = (int)count->valuedouble;
	const char *window = get_str(l, obj, "error_threshold", "window", 1, S_TEXT);
	if (!window)
		return -1;
	char why[256];
	long long ms = 0;
	if (config_parse_duration_ms("window", window, &ms, why, sizeof(why)) != 0) {
		lerr(l, "error_threshold.window", "'%.64s' is not a duration (a number with unit s, m, h or d, e.g. 15m)",
		     window);
		return -1;
	}
	if (ms < WINDOW_MIN_MS || ms > WINDOW_MAX_MS) {
		lerr(l, "error_threshold.window", "must be from 1s to 7d, got '%.64s'", window);
		return -1;
	}
	m->threshold.window_ms = ms;
	int a = get_enum(l, obj, "error_threshold", "action", actions);
	if (a < 0)
		return -1;
	m->threshold.action = MAP_ACTION_PAUSE;
	return 0;
}

static int is_scalar(const cJSON *v)
{
	return cJSON_IsString(v) || cJSON_IsNumber(v) || cJSON_IsBool(v) || cJSON_IsNull(v);
}

static int load_value_maps(struct ld *l, const cJSON *root, struct map *m)
{
	char jpath[JPATH_MAX], item[JPATH_MAX], sub[JPATH_MAX];
	static const char *const allowed[] = { "fo", "ce", NULL };
	const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, "value_maps");
	if (!obj)
		return 0;
	if (!cJSON_IsObject(obj)) {
		lerr(l, "value_maps", "must be an object, got %s", type_name(obj));
		return -1;
	}
	size_t n = (size_t)cJSON_GetArraySize(obj);
	if (n == 0)
		return 0;
	m->value_maps = calloc(n, sizeof(*m->value_maps));
	if (!m->value_maps) {
		lerr(l, "value_maps", "out of memory");
		return -1;
	}
	for (const cJSON *vm = obj->child; vm; vm = vm->next) {
		jmember(jpath, "value_maps", vm->string);
		if (!valid_name(vm->string)) {
			lerr(l, jpath, "'%.100s' is not a valid value map name ([a-z0-9_], 1 to %d characters)",
			     vm->string, MAP_NAME_MAX);
			return -1;
		}
		struct map_value_map *dst = &m->value_maps[m->nvalue_maps++];
		if (!(dst->name = xstrdup(l, vm->string)))
			return -1;
		if (!cJSON_IsArray(vm)) {
			lerr(l, jpath, "must be an array of {\"fo\": value, \"ce\": value} pairs, got %s", type_name(vm));
			return -1;
		}
		size_t np = (size_t)cJSON_GetArraySize(vm);
		if (np == 0 || np > MAP_VALUE_PAIRS_MAX) {
			lerr(l, jpath, "must have 1 to %d pairs, has %zu", MAP_VALUE_PAIRS_MAX, np);
			return -1;
		}
		dst->pairs = calloc(np, sizeof(*dst->pairs));
		if (!dst->pairs) {
			lerr(l, jpath, "out of memory");
			return -1;
		}
		size_t i = 0;
		for (const cJSON *p = vm->child; p; p = p->next, i++) {
			jindex(item, jpath, i);
			dst->npairs = i + 1; /* members filled below are freed with the map on any error */
			if (check_object(l, p, item, allowed, allowed) != 0)
				return -1;
			for (int side = 0; side < 2; side++) {
				const char *nm = side ? "ce" : "fo";
				const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, nm);
				jmember(sub, item, nm);
				if (!is_scalar(v)) {
					lerr(l, sub, "must be a string, number, boolean or null, got %s", type_name(v));
					return -1;
				}
				cJSON *copy = cJSON_Duplicate(v, 0);
				if (!copy) {
					lerr(l, sub, "out of memory");
					return -1;
				}
				if (side)
					dst->pairs[i].ce = copy;
				else
					dst->pairs[i].fo = copy;
			}
		}
	}
	return 0;
}

static const struct map_value_map *find_value_map(const struct map *m, const char *name)
{
	for (size_t i = 0; i < m->nvalue_maps; i++)
		if (strcmp(m->value_maps[i].name, name) == 0)
			return &m->value_maps[i];
	return NULL;
}

/* Same JSON scalar (numbers by value). */
static int scalar_same(const cJSON *a, const cJSON *b)
{
	if (cJSON_IsNull(a) || cJSON_IsNull(b))
		return cJSON_IsNull(a) && cJSON_IsNull(b);
	if (cJSON_IsBool(a) || cJSON_IsBool(b))
		return cJSON_IsBool(a) && cJSON_IsBool(b) && cJSON_IsTrue(a) == cJSON_IsTrue(b);
	if (cJSON_IsNumber(a) || cJSON_IsNumber(b))
		return cJSON_IsNumber(a) && cJSON_IsNumber(b) && a->valuedouble == b->valuedouble;
	return cJSON_IsString(a) && cJSON_IsString(b) && strcmp(a->valuestring, b->valuestring) == 0;
}

/* A value map used from `from` (FO when fo_side) must give one answer per value. */
static int check_one_to_one(struct ld *l, const struct map_value_map *vm, int fo_side, const char *field_jpath,
			    const char *dirname)
{
	for (size_t i = 0; i < vm->npairs; i++)
		for (size_t j = 0; j < i; j++) {
			const cJSON *a = fo_side ? vm->pairs[i].fo : vm->pairs[i].ce;
			const cJSON *b = fo_side ? vm->pairs[j].fo : vm->pairs[j].ce;
			if (scalar_same(a, b)) {
				char jpath[JPATH_MAX], item[JPATH_MAX], sub[JPATH_MAX];
				jmember(jpath, "value_maps", vm->name);
				jindex(item, jpath, i);
				jmember(sub, item, fo_side ? "fo" : "ce");
				char *text = cJSON_PrintUnformatted(a);
				lerr(l, sub,
				     "%s value %.100s already appears in pair %zu; %s maps %s, so each %s value must "
				     "map to exactly one %s value",
				     fo_side ? "fo" : "ce", text ? text : "?", j, field_jpath, dirname,
				     fo_side ? "fo" : "ce", fo_side ? "ce" : "fo");
				free(text);
				return -1;
			}
		}
	return 0;
}

struct symbol {
	const char *text;
	unsigned dir;
	int transform;
};

static const struct symbol symbols[] = {
	{ "=", MAP_DIR_BOTH, 0 },     { "><", MAP_DIR_BOTH, 1 },    { ">", MAP_DIR_FO_TO_CE, 0 },
	{ ">>", MAP_DIR_FO_TO_CE, 1 }, { "<", MAP_DIR_CE_TO_FO, 0 }, { "<<", MAP_DIR_CE_TO_FO, 1 },
};

static int load_lookup(struct ld *l, const cJSON *fobj, const char *jpath, struct map_field *f)
{
	static const char *const allowed[] = { "set", "key", "nav", "value", "company_key", NULL };
	static const char *const required[] = { "set", "key", NULL };
	char sub[JPATH_MAX];
	jmember(sub, jpath, "lookup");
	const cJSON *obj = cJSON_GetObjectItemCaseSensitive(fobj, "lookup");
	if (check_object(l, obj, sub, allowed, required) != 0)
		return -1;
	if (!f->ce) {
		lerr(l, sub, "a lookup needs a ce column (the lookup column), but ce is null");
		return -1;
	}
	const char *set = get_str(l, obj, sub, "set", 1, S_IDENT);
	const char *key = get_str(l, obj, sub, "key", 1, S_IDENT);
	const char *nav = get_str(l, obj, sub, "nav", 0, S_IDENT);
	const char *value = get_str(l, obj, sub, "value", 0, S_IDENT);
	const char *ckey = get_str(l, obj, sub, "company_key", 0, S_IDENT);
	if (!set || !key || l->failed)
		return -1;
	f->lookup = calloc(1, sizeof(*f->lookup));
	if (!f->lookup) {
		lerr(l, sub, "out of memory");
		return -1;
	}
	char defvalue[MAP_IDENT_MAX + 16];
	snprintf(defvalue, sizeof(defvalue), "_%s_value", f->ce);
	if (!(f->lookup->set = xstrdup(l, set)) || !(f->lookup->key = xstrdup(l, key)) ||
	    !(f->lookup->nav = xstrdup(l, nav ? nav : f->ce)) || !(f->lookup->value = xstrdup(l, value ? value : defvalue)))
		return -1;
	if (ckey && !(f->lookup->company_key = xstrdup(l, ckey)))
		return -1;
	return 0;
}

static int load_field(struct ld *l, struct map *m, const cJSON *fobj, size_t idx, struct map_field *f)
{
	static const char *const allowed[] = { "fo",	 "dir",	 "ce",		"value_map", "default",
					       "lookup", "date", "description", NULL };
	static const char *const required[] = { "fo", "dir", "ce", NULL };
	char jpath[JPATH_MAX], sub[JPATH_MAX];
	jindex(jpath, "fields", idx);
	if (check_object(l, fobj, jpath, allowed, required) != 0)
		return -1;
	for (int side = 0; side < 2; side++) {
		const char *nm = side ? "ce" : "fo";
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(fobj, nm);
		if (cJSON_IsNull(v))
			continue;
		const char *s = get_str(l, fobj, jpath, nm, 1, S_IDENT);
		if (!s)
			return -1;
		char *copy = xstrdup(l, s);
		if (!copy)
			return -1;
		if (side)
			f->ce = copy;
		else
			f->fo = copy;
	}
	if (cJSON_GetObjectItemCaseSensitive(fobj, "description") && !get_str(l, fobj, jpath, "description", 0, S_TEXT))
		return -1;
	if (!f->fo && !f->ce) {
		lerr(l, jpath, "fo and ce cannot both be null");
		return -1;
	}
	const char *sym = get_str(l, fobj, jpath, "dir", 1, S_TEXT);
	if (!sym)
		return -1;
	const struct symbol *s = NULL;
	for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++)
		if (strcmp(symbols[i].text, sym) == 0)
			s = &symbols[i];
	jmember(sub, jpath, "dir");
	if (!s) {
		lerr(l, sub, "unknown direction '%.16s' (one of =, ><, >, >>, <, <<)", sym);
		return -1;
	}
	f->dir = s->dir;
	snprintf(f->symbol, sizeof(f->symbol), "%s", s->text);
	if (f->dir & ~m->direction) {
		lerr(l, sub, "'%s' syncs %s, which the map (direction %s) does not", s->text, map_direction_name(f->dir),
		     map_direction_name(m->direction));
		return -1;
	}

	const cJSON *def = cJSON_GetObjectItemCaseSensitive(fobj, "default");
	if (def) {
		jmember(sub, jpath, "default");
		if (!is_scalar(def) || cJSON_IsNull(def)) {
			lerr(l, sub, "must be a string, number or boolean, got %s", type_name(def));
			return -1;
		}
		if (!(f->def = cJSON_Duplicate(def, 0))) {
			lerr(l, sub, "out of memory");
			return -1;
		}
	}
	const char *vmname = NULL;
	if (cJSON_GetObjectItemCaseSensitive(fobj, "value_map")) {
		vmname = get_str(l, fobj, jpath, "value_map", 0, S_TEXT);
		if (!vmname)
			return -1;
		jmember(sub, jpath, "value_map");
		f->value_map = find_value_map(m, vmname);
		if (!f->value_map) {
			lerr(l, sub, "no value map named '%.100s' in value_maps", vmname);
			return -1;
		}
	}
	if (cJSON_GetObjectItemCaseSensitive(fobj, "lookup")) {
		if (load_lookup(l, fobj, jpath, f) != 0)
			return -1;
		if (f->value_map) {
			jmember(sub, jpath, "value_map");
			lerr(l, sub, "a lookup field cannot also have a value map");
			return -1;
		}
	}

	const cJSON *date = cJSON_GetObjectItemCaseSensitive(fobj, "date");
	if (date) {
		jmember(sub, jpath, "date");
		if (!cJSON_IsBool(date)) {
			lerr(l, sub, "must be true or false, got %s", type_name(date));
			return -1;
		}
		f->is_date = cJSON_IsTrue(date);
		if (f->is_date && (f->value_map || f->lookup || !f->fo || !f->ce)) {
			lerr(l, sub, "a date field maps a date column on each side: no value map, lookup or none source");
			return -1;
		}
	}

	/* `none` sources: a constant written one way. */
	if (!f->fo || !f->ce) {
		const char *none = f->fo ? "ce" : "fo";
		unsigned want = f->fo ? MAP_DIR_CE_TO_FO : MAP_DIR_FO_TO_CE;
		jmember(sub, jpath, "dir");
		if (f->dir != want || !s->transform) {
			lerr(l, sub, "%s is null (a `none` source), so the direction must be '%s' (a constant written to %s)",
			     none, f->fo ? "<<" : ">>", f->fo ? "fo" : "ce");
			return -1;
		}
		if (!f->def) {
			lerr(l, jpath, "%s is null (a `none` source): a default (the constant) is required", none);
			return -1;
		}
		if (f->value_map) {
			jmember(sub, jpath, "value_map");
			lerr(l, sub, "a constant (`none` source) cannot have a value map");
			return -1;
		}
	}
	if (s->transform && !f->def && !f->value_map) {
		lerr(l, sub, "'%s' is a transform direction: give a value_map or a default (or use '%s')", s->text,
		     f->dir == MAP_DIR_BOTH ? "=" : f->dir == MAP_DIR_FO_TO_CE ? ">" : "<");
		return -1;
	}
	if (!s->transform && (f->def || f->value_map)) {
		lerr(l, sub, "a %s needs a transform direction ('%s' instead of '%s')", f->value_map ? "value_map" : "default",
		     f->dir == MAP_DIR_BOTH ? "><" : f->dir == MAP_DIR_FO_TO_CE ? ">>" : "<<", s->text);
		return -1;
	}
	if (f->value_map) {
		if ((f->dir & MAP_DIR_FO_TO_CE) && check_one_to_one(l, f->value_map, 1, jpath, map_direction_name(f->dir)) != 0)
			return -1;
		if ((f->dir & MAP_DIR_CE_TO_FO) && check_one_to_one(l, f->value_map, 0, jpath, map_direction_name(f->dir)) != 0)
			return -1;
	}
	/* The company is mapped by `company`, never as a field. */
	if (m->company && f->fo && strcmp(f->fo, m->company->fo) == 0) {
		jmember(sub, jpath, "fo");
		lerr(l, sub, "'%s' is the company field; it is mapped by the company member, not in fields", f->fo);
		return -1;
	}
	if (m->company && f->ce && strcmp(f->ce, m->company->ce) == 0) {
		jmember(sub, jpath, "ce");
		lerr(l, sub, "'%s' is the company field; it is mapped by the company member, not in fields", f->ce);
		return -1;
	}
	return 0;
}

static int load_fields(struct ld *l, const cJSON *root, struct map *m)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "fields");
	if (!cJSON_IsArray(arr)) {
		lerr(l, "fields", "must be an array, got %s", type_name(arr));
		return -1;
	}
	size_t n = (size_t)cJSON_GetArraySize(arr);
	if (n == 0 || n > MAP_FIELDS_MAX) {
		lerr(l, "fields", "must have 1 to %d items, has %zu", MAP_FIELDS_MAX, n);
		return -1;
	}
	m->fields = calloc(n, sizeof(*m->fields));
	if (!m->fields) {
		lerr(l, "fields", "out of memory");
		return -1;
	}
	size_t i = 0;
	for (const cJSON *fobj = arr->child; fobj; fobj = fobj->next, i++) {
		m->nfields = i + 1;
		if (load_field(l, m, fobj, i, &m->fields[i]) != 0)
			return -1;
		/* DIPV1023/1026: a field is the source or destination of one mapping only. */
		for (size_t j = 0; j < i; j++)
			for (int side = 0; side < 2; side++) {
				const char *a = side ? m->fields[i].ce : m->fields[i].fo;
				const char *b = side ? m->fields[j].ce : m->fields[j].fo;
				if (a && b && strcmp(a, b) == 0) {
					char jpath[JPATH_MAX], sub[JPATH_MAX];
					jindex(jpath, "fields", i);
					jmember(sub, jpath, side ? "ce" : "fo");
					lerr(l, sub, "'%s' is already mapped by fields[%zu] (a field may be mapped once: DIPV1023/1026)",
					     a, j);
					return -1;
				}
			}
	}
	for (size_t v = 0; v < m->nvalue_maps; v++) {
		int used = 0;
		for (size_t k = 0; k < m->nfields; k++)
			if (m->fields[k].value_map == &m->value_maps[v])
				used = 1;
		if (!used) {
			char jpath[JPATH_MAX];
			jmember(jpath, "value_maps", m->value_maps[v].name);
			lerr(l, jpath, "value map '%s' is not used by any field", m->value_maps[v].name);
			return -1;
		}
	}
	return 0;
}

static const struct map_field *field_named(const struct map *m, int ce_side, const char *name)
{
	for (size_t i = 0; i < m->nfields; i++) {
		const char *n = ce_side ? m->fields[i].ce : m->fields[i].fo;
		if (n && strcmp(n, name) == 0)
			return &m->fields[i];
	}
	return NULL;
}

/* Every key field of a side written to must be mapped towards it; in a bidirectional map, in
 * both directions (DIPV1004). The company part is mapped by `company`. */
/* A lookup bound with the company (lookup.company_key) needs a company code: the map's company,
 * or for maps without one the F&O dataAreaId key field. */
static int check_company_keys(struct ld *l, const struct map *m)
{
	for (size_t i = 0; i < m->nfields; i++) {
		const struct map_field *f = &m->fields[i];
		if (!f->lookup || !f->lookup->company_key || m->company || list_has(m->fo.key, m->fo.nkey, "dataAreaId"))
			continue;
		char jpath[JPATH_MAX], sub[JPATH_MAX];
		jindex(jpath, "fields", i);
		jmember(sub, jpath, "lookup");
		lerr(l, sub, "company_key needs a company code: give the map a company, or dataAreaId in fo.key");
		return -1;
	}
	return 0;
}

static int check_keys(struct ld *l, const struct map *m)
{
	for (int ce_side = 0; ce_side < 2; ce_side++) {
		const struct map_side *side = ce_side ? &m->ce : &m->fo;
		unsigned towards = ce_side ? MAP_DIR_FO_TO_CE : MAP_DIR_CE_TO_FO;
		const char *sname = ce_side ? "ce" : "fo";
		for (size_t k = 0; k < side->nkey; k++) {
			char jpath[JPATH_MAX], keyp[JPATH_MAX];
			jmember(keyp, sname, "key");
			jindex(jpath, keyp, k);
			const char *name = side->key[k];
			if (m->company && strcmp(name, ce_side ? m->company->ce : m->company->fo) == 0)
				continue;
			const struct map_field *f = field_named(m, ce_side, name);
			unsigned need = m->direction == MAP_DIR_BOTH ? MAP_DIR_BOTH : (m->direction & towards);
			if (!need)
				continue; /* this side is only read from */
			if (!f) {
				lerr(l, jpath, "key field '%s' is not mapped by any field", name);
				return -1;
			}
			size_t idx = (size_t)(f - m->fields);
			if (!f->fo || !f->ce) {
				lerr(l, jpath, "key field '%s' cannot be a constant (fields[%zu] has a `none` source)", name, idx);
				return -1;
			}
			if ((f->dir & need) != need) {
				if (m->direction == MAP_DIR_BOTH)
					lerr(l, jpath,
					     "key field '%s' must be mapped in both directions in a bidirectional map "
					     "(DIPV1004); fields[%zu] maps it %s only",
					     name, idx, map_direction_name(f->dir));
				else
					lerr(l, jpath, "key field '%s' must be mapped %s; fields[%zu] maps it %s", name,
					     map_direction_name(need), idx, map_direction_name(f->dir));
				return -1;
			}
		}
	}
	return 0;
}

/* aggregate.join: fields of another F&O entity added to each group's image (the unit of the
 * item for product inventory), read by the group_by values named in `on`. */
static int load_join(struct ld *l, const cJSON *agg, const struct map *m, struct map_aggregate *a)
{
	static const char *const allowed[] = { "entity_set", "on", "fields", NULL };
	const cJSON *obj = cJSON_GetObjectItemCaseSensitive(agg, "join");
	if (!obj)
		return 0;
	if (check_object(l, obj, "aggregate.join", allowed, allowed) != 0)
		return -1;
	const char *set = get_str(l, obj, "aggregate.join", "entity_set", 1, S_IDENT);
	if (!set || !(a->join_set = xstrdup(l, set)))
		return -1;
	if (get_str_list(l, obj, "aggregate.join", "on", MAP_KEY_FIELDS_MAX, S_IDENT, &a->join_on, &a->njoin_on) != 0 ||
	    get_str_list(l, obj, "aggregate.join", "fields", MAP_FIELDS_MAX, S_IDENT, &a->join_fields,
			 &a->njoin_fields) != 0)
		return -1;
	for (size_t i = 0; i < a->njoin_on; i++)
		if (!list_has(a->group_by, a->ngroup_by, a->join_on[i])) {
			char jpath[JPATH_MAX];
			jindex(jpath, "aggregate.join.on", i);
			lerr(l, jpath, "'%s' is not one of aggregate.group_by (the join reads by the group's values)",
			     a->join_on[i]);
			return -1;
		}
	for (size_t i = 0; i < a->njoin_fields; i++) {
		const struct map_field *f = field_named(m, 0, a->join_fields[i]);
		if (!f || !f->ce) {
			char jpath[JPATH_MAX];
			jindex(jpath, "aggregate.join.fields", i);
			lerr(l, jpath, "'%s' is not a mapped fo field", a->join_fields[i]);
			return -1;
		}
	}
	return 0;
}

static int load_aggregate(struct ld *l, const cJSON *root, struct map *m)
{
	static const char *const allowed[] = { "group_by", "sum", "join", NULL };
	static const char *const required[] = { "group_by", "sum", NULL };
	const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, "aggregate");
	if (!obj)
		return 0;
	if (check_object(l, obj, "aggregate", allowed, required) != 0)
		return -1;
	if (m->direction != MAP_DIR_FO_TO_CE) {
		lerr(l, "aggregate", "only maps with direction fo_to_ce can aggregate FO rows");
		return -1;
	}
	struct map_aggregate *a = calloc(1, sizeof(*a));
	if (!a) {
		lerr(l, "aggregate", "out of memory");
		return -1;
	}
	m->aggregate = a;
	if (get_str_list(l, obj, "aggregate", "group_by", MAP_KEY_FIELDS_MAX, S_IDENT, &a->group_by, &a->ngroup_by) != 0 ||
	    get_str_list(l, obj, "aggregate", "sum", MAP_FIELDS_MAX, S_IDENT, &a->sum, &a->nsum) != 0)
		return -1;
	for (size_t i = 0; i < a->ngroup_by; i++) {
		const char *g = a->group_by[i];
		if (!list_has(m->fo.key, m->fo.nkey, g) && !field_named(m, 0, g)) {
			char jpath[JPATH_MAX];
			jindex(jpath, "aggregate.group_by", i);
			lerr(l, jpath, "'%s' is neither an fo.key field nor a mapped fo field", g);
			return -1;
		}
	}
	for (size_t i = 0; i < a->nsum; i++) {
		const struct map_field *f = field_named(m, 0, a->sum[i]);
		if (!f || !f->ce) {
			char jpath[JPATH_MAX];
			jindex(jpath, "aggregate.sum", i);
			lerr(l, jpath, "'%s' is not a mapped fo field", a->sum[i]);
			return -1;
		}
	}
	return load_join(l, obj, m, a);
}

static const char *const directions[] = { "ce_to_fo", "fo_to_ce", "both", NULL };
static const unsigned direction_bits[] = { MAP_DIR_CE_TO_FO, MAP_DIR_FO_TO_CE, MAP_DIR_BOTH };
static const char *const conflicts[] = { "ce_wins", "fo_wins", "latest_wins", NULL };

const char *map_direction_name(unsigned dir)
{
	for (int i = 0; directions[i]; i++)
		if (direction_bits[i] == dir)
			return directions[i];
	return NULL;
}

const char *map_conflict_name(enum map_conflict c)
{
	if (c < MAP_CONFLICT_CE_WINS || c > MAP_CONFLICT_LATEST_WINS)
		return NULL;
	return conflicts[c - 1];
}

static int load_root(struct ld *l, const cJSON *root, const char *stem, struct map *m)
{
	static const char *const allowed[] = { "$schema", "format", "name", "description", "ce", "fo", "company",
					       "direction", "conflict_policy", "initial_sync_master", "error_threshold",
					       "dependencies", "atomic_unit", "aggregate", "value_maps", "fields", NULL };
	static const char *const required[] = { "format", "name", "ce", "fo", "direction", "conflict_policy",
						"initial_sync_master", "error_threshold", "fields", NULL };
	static const char *const sides[] = { "ce", "fo", NULL };
	if (check_object(l, root, "$", allowed, required) != 0)
		return -1;
	if (cJSON_GetObjectItemCaseSensitive(root, "$schema") && !get_str(l, root, "$", "$schema", 0, S_TEXT))
		return -1;
	const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
	if (!cJSON_IsNumber(format) || format->valuedouble != MAP_FORMAT_VERSION) {
		lerr(l, "format", "must be %d (the map file format version this program reads)", MAP_FORMAT_VERSION);
		return -1;
	}
	const char *name = get_str(l, root, "$", "name", 1, S_NAME);
	if (!name)
		return -1;
	if (strcmp(name, stem) != 0) {
		lerr(l, "name", "'%s' must equal the file name without .json ('%s')", name, stem);
		return -1;
	}
	if (!(m->name = xstrdup(l, name)))
		return -1;
	if (cJSON_GetObjectItemCaseSensitive(root, "description")) {
		const char *d = get_str(l, root, "$", "description", 0, S_TEXT);
		if (!d || !(m->description = xstrdup(l, d)))
			return -1;
	}
	if (load_side(l, root, "ce", &m->ce) != 0 || load_side(l, root, "fo", &m->fo) != 0)
		return -1;
	int d = get_enum(l, root, "$", "direction", directions);
	if (d < 0)
		return -1;
	m->direction = direction_bits[d];
	int c = get_enum(l, root, "$", "conflict_policy", conflicts);
	if (c < 0)
		return -1;
	m->conflict = (enum map_conflict)(c + 1);
	int s = get_enum(l, root, "$", "initial_sync_master", sides);
	if (s < 0)
		return -1;
	m->initial_sync_master = s == 0 ? EVENT_SIDE_CE : EVENT_SIDE_FO;
	unsigned from_master = s == 0 ? MAP_DIR_CE_TO_FO : MAP_DIR_FO_TO_CE;
	if (!(m->direction & from_master)) {
		lerr(l, "initial_sync_master", "'%s' cannot be the master of a map that only syncs %s", sides[s],
		     map_direction_name(m->direction));
		return -1;
	}
	if (load_threshold(l, root, m) != 0 || load_company(l, root, m) != 0 || load_value_maps(l, root, m) != 0 ||
	    load_fields(l, root, m) != 0 || check_keys(l, m) != 0 || check_company_keys(l, m) != 0 || load_aggregate(l, root, m) != 0)
		return -1;
	if (cJSON_GetObjectItemCaseSensitive(root, "dependencies")) {
		if (get_str_list(l, root, "$", "dependencies", MAP_MAPS_MAX, S_NAME, &m->dependencies, &m->ndependencies) != 0)
			return -1;
		for (size_t i = 0; i < m->ndependencies; i++)
			if (strcmp(m->dependencies[i], m->name) == 0) {
				char jpath[JPATH_MAX];
				jindex(jpath, "dependencies", i);
				lerr(l, jpath, "a map cannot depend on itself");
				return -1;
			}
	}
	if (cJSON_GetObjectItemCaseSensitive(root, "atomic_unit")) {
		const char *u = get_str(l, root, "$", "atomic_unit", 0, S_NAME);
		if (!u || !(m->atomic_unit = xstrdup(l, u)))
			return -1;
	}
	return 0;
}

/* Reads the whole file, at most MAP_FILE_MAX_BYTES. */
static int read_file(struct ld *l, char **buf, size_t *len)
{
	int rc = -1;
	FILE *f = fopen(l->path, "rb");
	if (!f) {
		lerr(l, "$", "cannot open: %s", strerror(errno));
		return -1;
	}
	*buf = malloc(MAP_FILE_MAX_BYTES + 1);
	if (!*buf) {
		lerr(l, "$", "out of memory");
		goto out;
	}
	*len = fread(*buf, 1, MAP_FILE_MAX_BYTES + 1, f);
	if (ferror(f)) {
		lerr(l, "$", "read error: %s", strerror(errno));
		goto out;
	}
	if (*len > MAP_FILE_MAX_BYTES) {
		lerr(l, "$", "file larger than %zu bytes", MAP_FILE_MAX_BYTES);
		goto out;
	}
	rc = 0;
out:
	fclose(f);
	if (rc != 0) {
		free(*buf);
		*buf = NULL;
	}
	return rc;
}

int map_load_file(const char *path, struct map **out, char *err, size_t errlen)
{
	struct ld l = { .path = path, .err = err, .errlen = errlen };
	char *buf = NULL;
	size_t len = 0;
	cJSON *root = NULL;
	struct map *m = NULL;
	int rc = -1;
	*out = NULL;

	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t blen = strlen(base);
	if (blen <= 5 || strcmp(base + blen - 5, ".json") != 0) {
		lerr(&l, "$", "a map file name must end in .json");
		goto out;
	}
	char stem[MAP_NAME_MAX + 2];
	snprintf(stem, sizeof(stem), "%.*s", (int)(blen - 5 > MAP_NAME_MAX + 1 ? MAP_NAME_MAX + 1 : blen - 5), base);

	if (read_file(&l, &buf, &len) != 0)
		goto out;
	size_t off = 0;
	char why[128];
	if (utf8_validate(buf, len, &off) != 0) {
		lerr(&l, "$", "invalid UTF-8 at byte offset %zu", off);
		goto out;
	}
	if (jsoncheck_validate(buf, len, &off, why, sizeof(why)) != 0) {
		lerr(&l, "$", "invalid JSON at byte offset %zu: %s", off, why);
		goto out;
	}
	root = cJSON_ParseWithLength(buf, len);
	if (!root) {
		lerr(&l, "$", "out of memory parsing JSON");
		goto out;
	}
	if (cJSON_IsObject(root) && check_duplicates(&l, root, "$") != 0)
		goto out;
	m = calloc(1, sizeof(*m));
	if (!m) {
		lerr(&l, "$", "out of memory");
		goto out;
	}
	if (!(m->path = xstrdup(&l, path)))
		goto out;
	if (load_root(&l, root, stem, m) != 0)
		goto out;
	*out = m;
	m = NULL;
	rc = 0;
out:
	map_free(m);
	cJSON_Delete(root);
	free(buf);
	return rc;
}

static void side_free(struct map_side *s)
{
	free(s->entity);
	free(s->entity_set);
	free_list(s->key, s->nkey);
	free(s->filter_text);
	map_filter_free(s->filter);
}

void map_free(struct map *m)
{
	if (!m)
		return;
	free(m->path);
	free(m->name);
	free(m->description);
	side_free(&m->ce);
	side_free(&m->fo);
	if (m->company) {
		free(m->company->fo);
		free(m->company->ce);
		free(m->company->ce_nav);
		free(m->company->ce_value);
		free(m->company->ce_set);
		free(m->company->ce_key);
		free(m->company);
	}
	for (size_t i = 0; i < m->nfields; i++) {
		struct map_field *f = &m->fields[i];
		free(f->fo);
		free(f->ce);
		cJSON_Delete(f->def);
		if (f->lookup) {
			free(f->lookup->set);
			free(f->lookup->key);
			free(f->lookup->nav);
			free(f->lookup->value);
			free(f->lookup->company_key);
			free(f->lookup);
		}
	}
	free(m->fields);
	for (size_t i = 0; i < m->nvalue_maps; i++) {
		struct map_value_map *vm = &m->value_maps[i];
		free(vm->name);
		for (size_t j = 0; j < vm->npairs; j++) {
			cJSON_Delete(vm->pairs[j].fo);
			cJSON_Delete(vm->pairs[j].ce);
		}
		free(vm->pairs);
	}
	free(m->value_maps);
	free_list(m->dependencies, m->ndependencies);
	free(m->atomic_unit);
	if (m->aggregate) {
		free_list(m->aggregate->group_by, m->aggregate->ngroup_by);
		free_list(m->aggregate->sum, m->aggregate->nsum);
		free(m->aggregate->join_set);
		free_list(m->aggregate->join_on, m->aggregate->njoin_on);
		free_list(m->aggregate->join_fields, m->aggregate->njoin_fields);
		free(m->aggregate);
	}
	free(m);
}

const struct map_side *map_side_of(const struct map *m, enum event_side side)
{
	return side == EVENT_SIDE_CE ? &m->ce : &m->fo;
}

/* ---- sets ---- */

static int find_index(struct map **maps, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(maps[i]->name, name) == 0)
			return (int)i;
	return -1;
}

/* Depth-first visit for the topological order; state 0 new, 1 on the stack, 2 done. */
static int visit(struct map **maps, size_t n, size_t i, int *state, size_t *stack, size_t depth, struct map **order,
		 size_t *norder, char *err, size_t errlen)
{
	if (state[i] == 2)
		return 0;
	stack[depth] = i;
	if (state[i] == 1) {
		size_t start = 0;
		while (stack[start] != i)
			start++;
		size_t used = (size_t)snprintf(err, errlen, "%s: dependencies: cycle ", maps[i]->path);
		for (size_t k = start; k <= depth && used < errlen; k++)
			used += (size_t)snprintf(err + used, errlen - used, "%s%s", k > start ? " -> " : "",
						 maps[stack[k]]->name);
		return -1;
	}
	state[i] = 1;
	for (size_t d = 0; d < maps[i]->ndependencies; d++) {
		int j = find_index(maps, n, maps[i]->dependencies[d]);
		if (visit(maps, n, (size_t)j, state, stack, depth + 1, order, norder, err, errlen) != 0)
			return -1;
	}
	state[i] = 2;
	order[(*norder)++] = maps[i];
	return 0;
}

static int cmp_map_name(const void *a, const void *b)
{
	const struct map *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

int map_set_new(struct map **maps, size_t n, struct map_set **out, char *err, size_t errlen)
{
	int rc = -1;
	int *state = NULL;
	size_t *stack = NULL;
	struct map_set *set = NULL;
	*out = NULL;
	if (n == 0) {
		snprintf(err, errlen, "no maps");
		goto out;
	}
	qsort(maps, n, sizeof(*maps), cmp_map_name);
	for (size_t i = 1; i < n; i++)
		if (strcmp(maps[i]->name, maps[i - 1]->name) == 0) {
			snprintf(err, errlen, "%s: name: '%s' is also the name of %s", maps[i]->path, maps[i]->name,
				 maps[i - 1]->path);
			goto out;
		}
	for (size_t i = 0; i < n; i++)
		for (size_t d = 0; d < maps[i]->ndependencies; d++)
			if (find_index(maps, n, maps[i]->dependencies[d]) < 0) {
				snprintf(err, errlen, "%s: dependencies[%zu]: no map named '%s'", maps[i]->path, d,
					 maps[i]->dependencies[d]);
				goto out;
			}
	set = calloc(1, sizeof(*set));
	state = calloc(n, sizeof(*state));
	stack = calloc(n + 1, sizeof(*stack));
	if (!set || !state || !stack || !(set->maps = calloc(n, sizeof(*set->maps)))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (visit(maps, n, i, state, stack, 0, set->maps, &set->n, err, errlen) != 0)
			goto out;
	*out = set;
	set = NULL;
	rc = 0;
out:
	if (rc != 0) {
		for (size_t i = 0; i < n; i++)
			map_free(maps[i]);
		if (set)
			free(set->maps);
		free(set);
	}
	free(state);
	free(stack);
	return rc;
}

void map_set_free(struct map_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++)
		map_free(set->maps[i]);
	free(set->maps);
	free(set);
}

const struct map *map_set_find(const struct map_set *set, const char *name)
{
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->maps[i]->name, name) == 0)
			return set->maps[i];
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int map_load_dir(const char *dir, struct map_set **out, char *err, size_t errlen)
{
	int rc = -1;
	char **names = NULL;
	size_t nnames = 0;
	struct map **maps = NULL;
	size_t nmaps = 0;
	*out = NULL;
	DIR *d = opendir(dir);
	if (!d) {
		snprintf(err, errlen, "%s: cannot open directory: %s", dir, strerror(errno));
		return -1;
	}
	names = calloc(MAP_MAPS_MAX, sizeof(*names));
	maps = calloc(MAP_MAPS_MAX, sizeof(*maps));
	if (!names || !maps) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		size_t len = strlen(e->d_name);
		if (len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0 || e->d_name[0] == '.')
			continue;
		if (nnames == MAP_MAPS_MAX) {
			snprintf(err, errlen, "%s: more than %d map files", dir, MAP_MAPS_MAX);
			goto out;
		}
		if (!(names[nnames] = strdup(e->d_name))) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		nnames++;
	}
	if (nnames == 0) {
		snprintf(err, errlen, "%s: no map files (*.json)", dir);
		goto out;
	}
	qsort(names, nnames, sizeof(*names), cmp_str);
	for (size_t i = 0; i < nnames; i++) {
		char path[4096];
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path)) {
			snprintf(err, errlen, "%s/%s: path too long", dir, names[i]);
			goto out;
		}
		if (map_load_file(path, &maps[nmaps], err, errlen) != 0)
			goto out;
		nmaps++;
	}
	rc = map_set_new(maps, nmaps, out, err, errlen);
	nmaps = 0; /* owned by the set, or freed by map_set_new */
out:
	closedir(d);
	for (size_t i = 0; i < nmaps; i++)
		map_free(maps[i]);
	free(maps);
	for (size_t i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	return rc;
}
