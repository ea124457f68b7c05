/* The map engine: an event from one side becomes the write for the other; content hashes. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonout.h"
#include "map.h"

#define HASH_DEPTH_MAX 64
#define GUID_MAX 64

static void terr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void terr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- canonical form and hashing ---- */

static void hash_str(struct sha256_ctx *h, const char *s)
{
	sha256_update(h, "\"", 1);
	const char *run = s;
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c != '"' && c != '\\' && c >= 0x20)
			continue;
		sha256_update(h, run, (size_t)(p - run));
		char esc[8];
		if (c == '"' || c == '\\')
			snprintf(esc, sizeof(esc), "\\%c", c);
		else
			snprintf(esc, sizeof(esc), "\\u%04x", c);
		sha256_update(h, esc, strlen(esc));
		run = p + 1;
	}
	sha256_update(h, run, strlen(run));
	sha256_update(h, "\"", 1);
}

static int cmp_member(const void *a, const void *b)
{
	const cJSON *const *x = a, *const *y = b;
	return strcmp((*x)->string, (*y)->string);
}

static int hash_value(struct sha256_ctx *h, const cJSON *v, int depth)
{
	if (depth > HASH_DEPTH_MAX)
		return -1;
	if (cJSON_IsNull(v)) {
		sha256_update(h, "null", 4);
	} else if (cJSON_IsTrue(v)) {
		sha256_update(h, "true", 4);
	} else if (cJSON_IsFalse(v)) {
		sha256_update(h, "false", 5);
	} else if (cJSON_IsNumber(v)) {
		char num[64];
		/* one text per value: -0 hashes as 0 */
		jsonout_number(v->valuedouble == 0 ? 0.0 : v->valuedouble, num, sizeof(num));
		sha256_update(h, num, strlen(num));
	} else if (cJSON_IsString(v)) {
		hash_str(h, v->valuestring);
	} else if (cJSON_IsArray(v)) {
		sha256_update(h, "[", 1);
		for (const cJSON *c = v->child; c; c = c->next) {
			if (c != v->child)
				sha256_update(h, ",", 1);
			if (hash_value(h, c, depth + 1) != 0)
				return -1;
		}
		sha256_update(h, "]", 1);
	} else if (cJSON_IsObject(v)) {
		size_t n = (size_t)cJSON_GetArraySize(v), i = 0;
		const cJSON **members = n ? malloc(n * sizeof(*members)) : NULL;
		if (n && !members)
			return -1;
		for (const cJSON *c = v->child; c; c = c->next)
			members[i++] = c;
		if (n)
			qsort(members, n, sizeof(*members), cmp_member);
		sha256_update(h, "{", 1);
		int rc = 0;
		for (i = 0; i < n && rc == 0; i++) {
			if (i)
				sha256_update(h, ",", 1);
			hash_str(h, members[i]->string);
			sha256_update(h, ":", 1);
			rc = hash_value(h, members[i], depth + 1);
		}
		free(members);
		if (rc != 0)
			return -1;
		sha256_update(h, "}", 1);
	} else {
		return -1;
	}
	return 0;
}

int map_content_hash(const cJSON *v, char hex[SHA256_HEX_LEN + 1])
{
	hex[0] = '\0';
	if (!v)
		return -1;
	struct sha256_ctx h;
	sha256_init(&h);
	if (hash_value(&h, v, 0) != 0)
		return -1;
	uint8_t digest[SHA256_DIGEST_LEN];
	sha256_final(&h, digest);
	sha256_to_hex(digest, hex);
	return 0;
}

/* One member of an image hash: a name of the map and its value (NULL: absent, hashed as null). */
struct image_member {
	const char *name;
	const cJSON *v;
};

static int cmp_image_member(const void *a, const void *b)
{
	return strcmp(((const struct image_member *)a)->name, ((const struct image_member *)b)->name);
}

int map_image_hash_of(const struct map *m, enum event_side side, const cJSON *image, const cJSON *extra,
		      char hex[SHA256_HEX_LEN + 1])
{
	hex[0] = '\0';
	if (!cJSON_IsObject(image))
		return -1;
	int ce = side == EVENT_SIDE_CE;
	const struct map_side *s = map_side_of(m, side);
	struct image_member *mem = malloc((s->nkey + m->nfields + 1) * sizeof(*mem));
	if (!mem)
		return -1;
	size_t n = 0;
	for (size_t i = 0; i < s->nkey; i++) {
		const char *name = s->key[i];
		/* CE reads carry lookups (the company included) as their GUID attribute */
		if (ce && m->company && strcmp(name, m->company->ce) == 0)
			name = m->company->ce_value;
		for (size_t k = 0; ce && k < m->nfields; k++)
			if (m->fields[k].lookup && strcmp(m->fields[k].ce, s->key[i]) == 0)
				name = m->fields[k].lookup->value;
		mem[n++].name = name;
	}
	if (m->company)
		mem[n++].name = ce ? m->company->ce_value : m->company->fo;
	for (size_t i = 0; i < m->nfields; i++) {
		const struct map_field *f = &m->fields[i];
		const char *name = ce ? f->ce : f->fo;
		if (name)
			mem[n++].name = ce && f->lookup ? f->lookup->value : name;
	}
	/* the canonical form of the object {name: value} of these names (once each), as
	 * map_content_hash writes it: members sorted by name */
	qsort(mem, n, sizeof(*mem), cmp_image_member);
	struct sha256_ctx h;
	sha256_init(&h);
	sha256_update(&h, "{", 1);
	int rc = 0;
	for (size_t i = 0, w = 0; i < n && rc == 0; i++) {
		if (i > 0 && strcmp(mem[i].name, mem[i - 1].name) == 0)
			continue;
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(image, mem[i].name);
		if (!v && extra)
			v = cJSON_GetObjectItemCaseSensitive(extra, mem[i].name);
		if (w++)
			sha256_update(&h, ",", 1);
		hash_str(&h, mem[i].name);
		sha256_update(&h, ":", 1);
		if (v)
			rc = hash_value(&h, v, 1);
		else
			sha256_update(&h, "null", 4);
	}
	free(mem);
	if (rc != 0)
		return -1;
	sha256_update(&h, "}", 1);
	uint8_t digest[SHA256_DIGEST_LEN];
	sha256_final(&h, digest);
	sha256_to_hex(digest, hex);
	return 0;
}

int map_image_hash(const struct map *m, enum event_side side, const cJSON *image, char hex[SHA256_HEX_LEN + 1])
{
	return map_image_hash_of(m, side, image, NULL, hex);
}

/* ---- scope ---- */

int map_in_scope(const struct map *m, const struct event *ev)
{
	if (ev->op == EVENT_OP_DELETE)
		return 1;
	const struct map_side *s = map_side_of(m, ev->source.side);
	return map_filter_match(s->filter, cJSON_IsObject(ev->data) ? ev->data : NULL);
}

/* ---- transform ---- */

/* The source value of `name`: from data, else from the event key; NULL when absent. */
static const cJSON *source_value(const struct event *ev, const char *name)
{
	const cJSON *v = NULL;
	if (cJSON_IsObject(ev->data))
		v = cJSON_GetObjectItemCaseSensitive(ev->data, name);
	if (!v && ev->key)
		v = cJSON_GetObjectItemCaseSensitive(ev->key, name);
	return v;
}

static int is_blank(const cJSON *v)
{
	return !v || cJSON_IsNull(v) || (cJSON_IsString(v) && v->valuestring[0] == '\0');
}

/* Resolves the GUID in attribute `attr` of the CE event to the related row's `key_field`. */
static int resolve_guid(const struct map_resolver *r, const struct event *ev, const char *attr, const char *set,
			const char *key_field, char *out, size_t outlen, char *err, size_t errlen)
{
	const cJSON *g = source_value(ev, attr);
	if (!cJSON_IsString(g) || g->valuestring[0] == '\0' || strlen(g->valuestring) > GUID_MAX) {
		terr(err, errlen, "%s: expected a GUID string", attr);
		return MAP_ERR_EVENT;
	}
	if (!r || !r->resolve) {
		terr(err, errlen, "%s: no resolver to look up %s(%s)", attr, set, key_field);
		return MAP_ERR_RESOLVE;
	}
	char why[256] = "";
	out[0] = '\0';
	int rc = r->resolve(r->ctx, EVENT_SIDE_CE, set, g->valuestring, key_field, out, outlen, why, sizeof(why));
	if (rc == MAP_OK) {
		if (memchr(out, '\0', outlen) == NULL || out[0] == '\0') {
			terr(err, errlen, "%s: resolver returned an empty or unterminated %s", attr, key_field);
			return MAP_ERR_RESOLVE;
		}
		return MAP_OK;
	}
	if (rc == MAP_NOT_FOUND) {
		terr(err, errlen, "%s: no %s row with id %s (looking up %s)", attr, set, g->valuestring, key_field);
		return MAP_NOT_FOUND;
	}
	terr(err, errlen, "%s: resolving %s %s failed: %s", attr, set, g->valuestring, why[0] ? why : "unknown error");
	return MAP_ERR_RESOLVE;
}

/* Appends the OData string literal of s (quotes doubled, then percent-encoded). */
static int append_literal(char *buf, size_t len, size_t *used, const char *s)
{
	static const char hexd[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		int reps = *p == '\'' ? 2 : 1;
		for (int k = 0; k < reps; k++) {
			int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
				    *p == '-' || *p == '.' || *p == '_' || *p == '~';
			if (*used + 4 > len)
				return -1;
			if (plain) {
				buf[(*used)++] = (char)*p;
			} else {
				buf[(*used)++] = '%';
				buf[(*used)++] = hexd[*p >> 4];
				buf[(*used)++] = hexd[*p & 15];
			}
		}
	}
	buf[*used] = '\0';
	return 0;
}

/* "/<set>(<key>='<literal>')" (numbers unquoted) as a new cJSON string. */
static cJSON *bind_value(const char *set, const char *key, const cJSON *v, char *err, size_t errlen)
{
	size_t cap = 32 + strlen(set) + strlen(key) + (cJSON_IsString(v) ? strlen(v->valuestring) * 6 : 64);
	char *buf = malloc(cap);
	cJSON *out = NULL;
	if (!buf) {
		terr(err, errlen, "out of memory");
		return NULL;
	}
	size_t used = (size_t)snprintf(buf, cap, "/%s(%s=", set, key);
	if (cJSON_IsString(v)) {
		buf[used++] = '\'';
		if (append_literal(buf, cap - 2, &used, v->valuestring) != 0) {
			terr(err, errlen, "%s: literal too long", key);
			goto out;
		}
		buf[used++] = '\'';
		buf[used] = '\0';
	} else if (cJSON_IsNumber(v) && v->valuedouble == trunc(v->valuedouble) &&
		   fabs(v->valuedouble) <= 9007199254740991.0) {
		used += (size_t)snprintf(buf + used, cap - used, "%.0f", v->valuedouble);
	} else {
		terr(err, errlen, "%s: a lookup value must be a string or a whole number", key);
		goto out;
	}
	snprintf(buf + used, cap - used, ")");
	out = cJSON_CreateString(buf);
	if (!out)
		terr(err, errlen, "out of memory");
out:
	free(buf);
	return out;
}

/* Maps v through vm from side `from_fo` (FO values when true); a new value or NULL (no entry). */
static cJSON *value_mapped(const struct map_value_map *vm, int from_fo, const cJSON *v)
{
	for (size_t i = 0; i < vm->npairs; i++) {
		const cJSON *src = from_fo ? vm->pairs[i].fo : vm->pairs[i].ce;
		const cJSON *dst = from_fo ? vm->pairs[i].ce : vm->pairs[i].fo;
		int same = 0;
		if (cJSON_IsNumber(src) && cJSON_IsNumber(v))
			same = src->valuedouble == v->valuedouble;
		else if (cJSON_IsString(src) && cJSON_IsString(v))
			same = strcmp(src->valuestring, v->valuestring) == 0;
		else if (cJSON_IsBool(src) && cJSON_IsBool(v))
			same = cJSON_IsTrue(src) == cJSON_IsTrue(v);
		else if (cJSON_IsNull(src) && cJSON_IsNull(v))
			same = 1;
		if (same)
			return cJSON_Duplicate(dst, 0);
	}
	return NULL;
}

static int is_key_field(const struct map_side *s, const char *name)
{
	for (size_t i = 0; i < s->nkey; i++)
		if (strcmp(s->key[i], name) == 0)
			return 1;
	return 0;
}

static int add(cJSON *obj, const char *name, cJSON *v, char *err, size_t errlen)
{
	if (!v || !cJSON_AddItemToObject(obj, name, v)) {
		cJSON_Delete(v);
		terr(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* The company: code from the source, written to the target's company member and key. */
static int map_company_part(const struct map *m, const struct event *ev, const struct map_resolver *r, int to_ce,
			    struct map_write *out, char *err, size_t errlen)
{
	const struct map_company *c = m->company;
	char code[MAP_RESOLVED_MAX];
	if (to_ce) {
		const cJSON *v = source_value(ev, c->fo);
		if (!cJSON_IsString(v) || v->valuestring[0] == '\0' || strlen(v->valuestring) >= sizeof(code)) {
			terr(err, errlen, "%s: the company is missing or not a non-empty string", c->fo);
			return MAP_ERR_EVENT;
		}
		snprintf(code, sizeof(code), "%s", v->valuestring);
	} else {
		int rc = resolve_guid(r, ev, c->ce_value, c->ce_set, c->ce_key, code, sizeof(code), err, errlen);
		if (rc != MAP_OK)
			return rc;
	}
	if (!(out->company = strdup(code))) {
		terr(err, errlen, "out of memory");
		return MAP_ERR_EVENT;
	}
	if ((!to_ce || c->in_ce_key) && add(out->key, to_ce ? c->ce : c->fo, cJSON_CreateString(code), err, errlen) != 0)
		return MAP_ERR_EVENT;
	if (!out->payload)
		return MAP_OK;
	if (!to_ce)
		return add(out->payload, c->fo, cJSON_CreateString(code), err, errlen) == 0 ? MAP_OK : MAP_ERR_EVENT;
	char name[MAP_IDENT_MAX + 16];
	snprintf(name, sizeof(name), "%s@odata.bind", c->ce_nav);
	cJSON codev = { .type = cJSON_String, .valuestring = code };
	cJSON *bind = bind_value(c->ce_set, c->ce_key, &codev, err, errlen);
	if (!bind)
		return MAP_ERR_EVENT;
	return add(out->payload, name, bind, err, errlen) == 0 ? MAP_OK : MAP_ERR_EVENT;
}

/* A lookup bound by an alternate key that includes the company (lookup.company_key):
 * "/<set>(<key>='<literal>',<company_key>=<GUID of the company>)". The company code is the one
 * already mapped (out->company: the map's company, else the event's dataAreaId). */
static int company_bind(const struct map *m, const struct map_field *f, const struct map_resolver *r,
			const struct map_write *out, const cJSON *v, cJSON **bind, char *err, size_t errlen)
{
	const char *code = out->company;
	if (!code) {
		terr(err, errlen, "%s: the lookup is bound with the company, and the event has none", f->fo ? f->fo : f->ce);
		return MAP_ERR_EVENT;
	}
	if (!r || !r->guid) {
		terr(err, errlen, "%s: the lookup is bound with the company, and no resolver can find its GUID", f->ce);
		return MAP_ERR_RESOLVE;
	}
	const char *cset = m->company ? m->company->ce_set : MAP_COMPANY_SET_DEFAULT;
	const char *ckey = m->company ? m->company->ce_key : MAP_COMPANY_KEY_DEFAULT;
	char guid[37];
	err[0] = '\0';
	int rc = r->guid(r->ctx, cset, ckey, code, guid, err, errlen);
	if (rc == MAP_NOT_FOUND && !err[0])
		terr(err, errlen, "%s: no %s row with %s = '%s'", f->ce, cset, ckey, code);
	if (rc != MAP_OK)
		return rc;
	cJSON *plain = bind_value(f->lookup->set, f->lookup->key, v, err, errlen);
	if (!plain)
		return MAP_ERR_EVENT;
	size_t len = strlen(plain->valuestring), cap = len + strlen(f->lookup->company_key) + 48;
	char *buf = malloc(cap);
	if (!buf) {
		cJSON_Delete(plain);
		terr(err, errlen, "out of memory");
		return MAP_ERR_EVENT;
	}
	snprintf(buf, cap, "%.*s,%s=%s)", (int)(len - 1), plain->valuestring, f->lookup->company_key, guid);
	cJSON_Delete(plain);
	*bind = cJSON_CreateString(buf);
	free(buf);
	if (!*bind) {
		terr(err, errlen, "out of memory");
		return MAP_ERR_EVENT;
	}
	return MAP_OK;
}

/* The target value of one field: a new cJSON value in *out, or *out NULL when the source event
 * does not carry the field at all and there is no default (the field is then left out). */
/* F&O's empty date: date-only columns are not nullable and hold 1900-01-01 for "no date". */
#define FO_NO_DATE "1900-01-01"

/*
 * A date field's value in the target's terms: the calendar date of `v` ("YYYY-MM-DD", alone or
 * starting a date-time, as CE DateOnly columns, capture's normalised form and F&O's date-only
 * Edm.DateTimeOffset columns give it) written to CE as "YYYY-MM-DD" and to F&O as
 * "YYYY-MM-DDT12:00:00Z" (how F&O shows a date-only value); F&O's 1900-01-01 is CE's null and back.
 * Returns the new value, or NULL with err when v is not such a date.
 */
static cJSON *date_value(const char *sname, const cJSON *v, int to_ce, char *err, size_t errlen)
{
	const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
	int y = 0, mo = 0, d = 0, n = 0;
	if (!s || sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10 || (s[10] != '\0' && s[10] != 'T') ||
	    y < 1 || mo < 1 || mo > 12 || d < 1 || d > 31) {
		char *text = cJSON_PrintUnformatted(v);
		terr(err, errlen, "%s: %.100s is not a date (YYYY-MM-DD, optionally with a time)", sname, text ? text : "?");
		free(text);
		return NULL;
	}
	char buf[32];
	snprintf(buf, sizeof(buf), "%04d-%02d-%02d", y, mo, d);
	cJSON *out;
	if (to_ce) {
		out = strcmp(buf, FO_NO_DATE) == 0 ? cJSON_CreateNull() : cJSON_CreateString(buf);
	} else {
		snprintf(buf + 10, sizeof(buf) - 10, "T12:00:00Z");
		out = cJSON_CreateString(buf);
	}
	if (!out)
		terr(err, errlen, "out of memory");
	return out;
}

static int field_value(const struct map_field *f, const struct event *ev, const struct map_resolver *r, int to_ce,
		       cJSON **out, char *err, size_t errlen)
{
	const char *sname = to_ce ? f->fo : f->ce;
	const char *tname = to_ce ? f->ce : f->fo;
	*out = NULL;
	if (!sname) {
		*out = cJSON_Duplicate(f->def, 0);
		goto done;
	}
	if (!to_ce && f->lookup)
		sname = f->lookup->value; /* the related row's GUID */
	const cJSON *v = source_value(ev, sname);
	if (!v && !f->def)
		return MAP_OK;
	int empty = cJSON_IsString(v) && v->valuestring[0] == '\0';
	if (!v || cJSON_IsNull(v) || (empty && (f->def || f->lookup))) {
		/* No source value: the default, else null (F&O's empty date for a date field). "" counts
		 * as none for lookups and defaults. */
		*out = f->def			  ? cJSON_Duplicate(f->def, 0)
		       : f->is_date && !to_ce ? cJSON_CreateString(FO_NO_DATE "T12:00:00Z")
					      : cJSON_CreateNull();
		goto done;
	}
	if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
		terr(err, errlen, "%s: expected a scalar value, got an %s", sname, cJSON_IsObject(v) ? "object" : "array");
		return MAP_ERR_EVENT;
	}
	if (!to_ce && f->lookup) {
		char val[MAP_RESOLVED_MAX];
		int rc = resolve_guid(r, ev, sname, f->lookup->set, f->lookup->key, val, sizeof(val), err, errlen);
		if (rc != MAP_OK)
			return rc;
		*out = cJSON_CreateString(val);
		goto done;
	}
	if (f->is_date) {
		*out = date_value(sname, v, to_ce, err, errlen);
		return *out ? MAP_OK : MAP_ERR_EVENT;
	}
	if (f->value_map) {
		*out = value_mapped(f->value_map, to_ce, v);
		if (!*out) {
			char *text = cJSON_PrintUnformatted(v);
			terr(err, errlen, "%s: value %.200s has no entry in value map '%s' (for %s)", sname,
			     text ? text : "?", f->value_map->name, tname);
			free(text);
			return MAP_ERR_EVENT;
		}
		return MAP_OK;
	}
	*out = cJSON_Duplicate(v, 0);
done:
	if (!*out) {
		terr(err, errlen, "out of memory");
		return MAP_ERR_EVENT;
	}
	return MAP_OK;
}

/* Whether some lookup of the map is bound with the company (lookup.company_key). */
static int has_company_keys(const struct map *m)
{
	for (size_t i = 0; i < m->nfields; i++)
		if (m->fields[i].lookup && m->fields[i].lookup->company_key)
			return 1;
	return 0;
}

int map_transform(const struct map *m, const struct event *ev, const struct map_resolver *r, struct map_write *out,
		  char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	err[0] = '\0';
	if (ev->source.side != EVENT_SIDE_CE && ev->source.side != EVENT_SIDE_FO) {
		terr(err, errlen, "source.side: invalid");
		return MAP_ERR_EVENT;
	}
	int to_ce = ev->source.side == EVENT_SIDE_FO;
	const struct map_side *src = map_side_of(m, ev->source.side);
	const struct map_side *dst = to_ce ? &m->ce : &m->fo;
	unsigned dir = to_ce ? MAP_DIR_FO_TO_CE : MAP_DIR_CE_TO_FO;
	if (!ev->source.entity || strcmp(ev->source.entity, src->entity) != 0) {
		terr(err, errlen, "source.entity: '%s' is not the %s entity of map %s ('%s')",
		     ev->source.entity ? ev->source.entity : "", to_ce ? "fo" : "ce", m->name, src->entity);
		return MAP_ERR_EVENT;
	}
	if (!(m->direction & dir)) {
		terr(err, errlen, "map %s does not sync %s (its direction is %s)", m->name, map_direction_name(dir),
		     map_direction_name(m->direction));
		return MAP_ERR_EVENT;
	}
	if (!map_in_scope(m, ev))
		return MAP_OUT_OF_SCOPE;
	int is_delete = ev->op == EVENT_OP_DELETE;
	if (!is_delete && !cJSON_IsObject(ev->data)) {
		terr(err, errlen, "data: a %s event needs the record image", event_op_name(ev->op));
		return MAP_ERR_EVENT;
	}
	int rc = MAP_ERR_EVENT;
	out->op = is_delete ? MAP_WRITE_DELETE : MAP_WRITE_UPSERT;
	out->target = to_ce ? EVENT_SIDE_CE : EVENT_SIDE_FO;
	out->entity_set = dst->entity_set;
	out->key = cJSON_CreateObject();
	out->payload = is_delete ? NULL : cJSON_CreateObject();
	if (!out->key || (!is_delete && !out->payload)) {
		terr(err, errlen, "out of memory");
		goto out;
	}
	if (m->company && (rc = map_company_part(m, ev, r, to_ce, out, err, errlen)) != MAP_OK)
		goto out;
	if (!m->company && to_ce && has_company_keys(m)) {
		/* lookups bound with the company take it from the F&O dataAreaId */
		const cJSON *d = source_value(ev, "dataAreaId");
		if (cJSON_IsString(d) && d->valuestring[0] && !(out->company = strdup(d->valuestring))) {
			terr(err, errlen, "out of memory");
			goto out;
		}
	}
	rc = MAP_ERR_EVENT;
	for (size_t i = 0; i < m->nfields; i++) {
		const struct map_field *f = &m->fields[i];
		if (!(f->dir & dir))
			continue;
		const char *tname = to_ce ? f->ce : f->fo;
		int key = is_key_field(dst, tname);
		if (is_delete && !key)
			continue;
		cJSON *v = NULL;
		rc = field_value(f, ev, r, to_ce, &v, err, errlen);
		if (rc != MAP_OK)
			goto out;
		rc = MAP_ERR_EVENT;
		if (!v && !key)
			continue; /* not carried by the event: left as it is on the target */
		if (key) {
			if (is_blank(v)) {
				terr(err, errlen, "%s: key field %s has no value", to_ce ? f->fo : f->ce, tname);
				cJSON_Delete(v);
				goto out;
			}
			cJSON *kv = cJSON_Duplicate(v, 0);
			if (add(out->key, tname, kv, err, errlen) != 0) {
				cJSON_Delete(v);
				goto out;
			}
		}
		if (is_delete) {
			cJSON_Delete(v);
			continue;
		}
		if (to_ce && f->lookup) {
			char name[MAP_IDENT_MAX + 16];
			snprintf(name, sizeof(name), "%s@odata.bind", f->lookup->nav);
			cJSON *bind = NULL;
			if (cJSON_IsNull(v)) {
				bind = cJSON_CreateNull();
			} else if (f->lookup->company_key) {
				rc = company_bind(m, f, r, out, v, &bind, err, errlen);
				if (rc != MAP_OK) {
					cJSON_Delete(v);
					goto out;
				}
				rc = MAP_ERR_EVENT;
			} else {
				bind = bind_value(f->lookup->set, f->lookup->key, v, err, errlen);
			}
			cJSON_Delete(v);
			if (!bind) {
				if (!err[0])
					terr(err, errlen, "out of memory");
				goto out;
			}
			if (add(out->payload, name, bind, err, errlen) != 0)
				goto out;
			continue;
		}
		if (add(out->payload, tname, v, err, errlen) != 0)
			goto out;
	}
	for (size_t k = 0; k < dst->nkey; k++)
		if (!cJSON_GetObjectItemCaseSensitive(out->key, dst->key[k])) {
			terr(err, errlen, "key field %s of %s has no value", dst->key[k], dst->entity_set);
			goto out;
		}
	if (out->payload && map_content_hash(out->payload, out->hash) != 0) {
		terr(err, errlen, "payload nested too deeply to hash");
		goto out;
	}
	return MAP_OK;
out:
	map_write_clear(out);
	return rc;
}

void map_write_clear(struct map_write *w)
{
	if (!w)
		return;
	cJSON_Delete(w->key);
	cJSON_Delete(w->payload);
	free(w->company);
	memset(w, 0, sizeof(*w));
}
