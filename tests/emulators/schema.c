#include "schema.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEMA_FILE_MAX (4 * 1024 * 1024)

/* ------------------------------------------------------------------------------------------ */
/* loading                                                                                     */

struct ld {
	const char *file;
	char *err;
	size_t errlen;
	int failed;
};

static void ld_fail(struct ld *l, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void ld_fail(struct ld *l, const char *path, const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	if (l->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	snprintf(l->err, l->errlen, "%s: %s: %s", l->file, path, reason);
	l->failed = 1;
}

static const char *const type_names[] = {
	[SCHEMA_T_STRING] = "string", [SCHEMA_T_MEMO] = "memo",       [SCHEMA_T_INT] = "int",
	[SCHEMA_T_BIGINT] = "bigint", [SCHEMA_T_DECIMAL] = "decimal", [SCHEMA_T_DOUBLE] = "double",
	[SCHEMA_T_MONEY] = "money",   [SCHEMA_T_BOOL] = "bool",       [SCHEMA_T_DATETIME] = "datetime",
	[SCHEMA_T_DATE] = "date",     [SCHEMA_T_GUID] = "guid",       [SCHEMA_T_PICKLIST] = "picklist",
	[SCHEMA_T_STATE] = "state",   [SCHEMA_T_STATUS] = "status",   [SCHEMA_T_ENUM] = "enum",
	[SCHEMA_T_LOOKUP] = "lookup",
};
#define N_TYPES (sizeof(type_names) / sizeof(type_names[0]))

static const char *const edm_names[] = {
	[SCHEMA_T_STRING] = "Edm.String",  [SCHEMA_T_MEMO] = "Edm.String",
	[SCHEMA_T_INT] = "Edm.Int32",      [SCHEMA_T_BIGINT] = "Edm.Int64",
	[SCHEMA_T_DECIMAL] = "Edm.Decimal", [SCHEMA_T_DOUBLE] = "Edm.Double",
	[SCHEMA_T_MONEY] = "Edm.Decimal",  [SCHEMA_T_BOOL] = "Edm.Boolean",
	[SCHEMA_T_DATETIME] = "Edm.DateTimeOffset", [SCHEMA_T_DATE] = "Edm.Date",
	[SCHEMA_T_GUID] = "Edm.Guid",      [SCHEMA_T_PICKLIST] = "Edm.Int32",
	[SCHEMA_T_STATE] = "Edm.Int32",    [SCHEMA_T_STATUS] = "Edm.Int32",
	[SCHEMA_T_ENUM] = "Edm.Enum",      [SCHEMA_T_LOOKUP] = "Edm.Guid",
};

static int is_numeric_type(enum schema_type t)
{
	return t == SCHEMA_T_INT || t == SCHEMA_T_BIGINT || t == SCHEMA_T_DECIMAL || t == SCHEMA_T_DOUBLE ||
	       t == SCHEMA_T_MONEY;
}

static int is_option_type(enum schema_type t)
{
	return t == SCHEMA_T_PICKLIST || t == SCHEMA_T_STATE || t == SCHEMA_T_STATUS;
}

/* Checks that `obj` has only members named in `allowed` (NULL-terminated). */
static void ld_members(struct ld *l, const char *path, const cJSON *obj, const char *const *allowed)
{
	const cJSON *it;

	if (!cJSON_IsObject(obj)) {
		ld_fail(l, path, "must be an object");
		return;
	}
	cJSON_ArrayForEach(it, obj)
	{
		size_t i;
		int ok = 0;
		for (i = 0; allowed[i]; i++)
			if (strcmp(it->string, allowed[i]) == 0)
				ok = 1;
		if (!ok) {
			ld_fail(l, path, "unknown member \"%s\"", it->string);
			return;
		}
		/* duplicate member names */
		for (const cJSON *j = it->next; j; j = j->next)
			if (strcmp(it->string, j->string) == 0) {
				ld_fail(l, path, "member \"%s\" given twice", it->string);
				return;
			}
	}
}

/* A required (or optional when !req) non-empty string member; returns a copy or NULL. */
static char *ld_str(struct ld *l, const char *path, const cJSON *obj, const char *name, int req)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

	if (v == NULL) {
		if (req)
			ld_fail(l, path, "missing member \"%s\"", name);
		return NULL;
	}
	if (!cJSON_IsString(v) || v->valuestring[0] == '\0') {
		ld_fail(l, path, "\"%s\" must be a non-empty string", name);
		return NULL;
	}
	return strdup(v->valuestring);
}

static int ld_bool(struct ld *l, const char *path, const cJSON *obj, const char *name, int def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

	if (v == NULL)
		return def;
	if (!cJSON_IsBool(v)) {
		ld_fail(l, path, "\"%s\" must be true or false", name);
		return def;
	}
	return cJSON_IsTrue(v);
}

static int json_is_integer(const cJSON *v)
{
	return cJSON_IsNumber(v) && isfinite(v->valuedouble) && floor(v->valuedouble) == v->valuedouble;
}

/* Copies a non-empty array of non-empty strings. */
static char **ld_str_array(struct ld *l, const char *path, const cJSON *arr, size_t *n_out)
{
	char **out;
	size_t n, i = 0;
	const cJSON *it;

	*n_out = 0;
	if (!cJSON_IsArray(arr) || (n = (size_t)cJSON_GetArraySize(arr)) == 0) {
		ld_fail(l, path, "must be a non-empty array of strings");
		return NULL;
	}
	out = calloc(n, sizeof(*out));
	if (out == NULL) {
		ld_fail(l, path, "out of memory");
		return NULL;
	}
	cJSON_ArrayForEach(it, arr)
	{
		if (!cJSON_IsString(it) || it->valuestring[0] == '\0') {
			ld_fail(l, path, "item %zu must be a non-empty string", i);
			break;
		}
		out[i++] = strdup(it->valuestring);
	}
	*n_out = i;
	return out;
}

static struct schema_option *ld_options(struct ld *l, const char *path, const cJSON *obj, size_t *n_out)
{
	struct schema_option *opts;
	size_t n, i = 0;
	const cJSON *it;

	*n_out = 0;
	if (!cJSON_IsObject(obj) || (n = (size_t)cJSON_GetArraySize(obj)) == 0) {
		ld_fail(l, path, "must be a non-empty object of label: integer value");
		return NULL;
	}
	opts = calloc(n, sizeof(*opts));
	if (opts == NULL) {
		ld_fail(l, path, "out of memory");
		return NULL;
	}
	cJSON_ArrayForEach(it, obj)
	{
		if (!json_is_integer(it) || fabs(it->valuedouble) > 2147483647.0) {
			ld_fail(l, path, "value of \"%s\" must be a 32-bit integer", it->string);
			break;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(opts[j].label, it->string) == 0) {
				ld_fail(l, path, "\"%s\" given twice", it->string);
				goto out;
			}
			if (opts[j].value == (long)it->valuedouble) {
				ld_fail(l, path, "value %ld given twice", opts[j].value);
				goto out;
			}
		}
		opts[i].label = strdup(it->string);
		opts[i].value = (long)it->valuedouble;
		i++;
	}
out:
	*n_out = i;
	return opts;
}

static void free_options(struct schema_option *o, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(o[i].label);
	free(o);
}

static void free_field(struct schema_field *f)
{
	free(f->name);
	free_options(f->options, f->n_options);
	free(f->target);
	free(f->nav);
	free(f->value_name);
	free(f->label);
	cJSON_Delete(f->default_value);
}

static void free_key(struct schema_key *k)
{
	for (size_t i = 0; i < k->n_fields; i++)
		free(k->fields[i]);
	free(k->fields);
	free(k->name);
}

static void free_entity(struct schema_entity *e)
{
	free(e->logical_name);
	free(e->type_name);
	free(e->event_name);
	for (size_t i = 0; i < e->n_set_names; i++)
		free(e->set_names[i]);
	free(e->set_names);
	free(e->id_field);
	free(e->primary_name);
	free(e->company_field);
	free_key(&e->primary_key);
	for (size_t i = 0; i < e->n_alt_keys; i++)
		free_key(&e->alt_keys[i]);
	free(e->alt_keys);
	for (size_t i = 0; i < e->n_fields; i++)
		free_field(&e->fields[i]);
	free(e->fields);
}

void schema_free(struct schema *s)
{
	if (s == NULL)
		return;
	free(s->path);
	free(s->namespace_name);
	free(s->default_company);
	for (size_t i = 0; i < s->n_entities; i++)
		free_entity(&s->entities[i]);
	free(s->entities);
	for (size_t i = 0; i < s->n_enums; i++) {
		free(s->enums[i].name);
		free_options(s->enums[i].members, s->enums[i].n_members);
	}
	free(s->enums);
	free(s);
}

static int check_value(const struct schema *s, const struct schema_entity *e, const struct schema_field *f,
		       const cJSON *v, struct schema_error *err);

static void ld_field(struct ld *l, struct schema *s, const char *path, const cJSON *jf, struct schema_field *f)
{
	static const char *const allowed[] = { "name",	  "type",   "max_length", "required", "nullable",
					       "read_only", "min",    "max",	     "options",  "enum",
					       "target",  "nav",    "label",	     "default",  "allow_empty", NULL };
	const cJSON *v;
	char *type;
	size_t t;

	ld_members(l, path, jf, allowed);
	if (l->failed)
		return;
	f->name = ld_str(l, path, jf, "name", 1);
	type = ld_str(l, path, jf, "type", 1);
	if (l->failed) {
		free(type);
		return;
	}
	for (t = 0; t < N_TYPES; t++)
		if (strcmp(type, type_names[t]) == 0)
			break;
	if (t == N_TYPES) {
		ld_fail(l, path, "unknown type \"%s\"", type);
		free(type);
		return;
	}
	free(type);
	f->type = (enum schema_type)t;
	if (s->flavour == SCHEMA_FO && (f->type == SCHEMA_T_LOOKUP || is_option_type(f->type) ||
					f->type == SCHEMA_T_MONEY || f->type == SCHEMA_T_MEMO)) {
		ld_fail(l, path, "type \"%s\" is not used by F&O OData", type_names[t]);
		return;
	}
	if (s->flavour == SCHEMA_CE && f->type == SCHEMA_T_ENUM) {
		ld_fail(l, path, "type \"enum\" is F&O only (Dataverse uses picklist)");
		return;
	}

	v = cJSON_GetObjectItemCaseSensitive(jf, "max_length");
	if (f->type == SCHEMA_T_STRING || f->type == SCHEMA_T_MEMO) {
		if (!json_is_integer(v) || v->valuedouble < 1 || v->valuedouble > 1048576)
			ld_fail(l, path, "\"max_length\" must be an integer in 1..1048576 for %s", type_names[t]);
		else
			f->max_length = (int)v->valuedouble;
	} else if (v) {
		ld_fail(l, path, "\"max_length\" only applies to string and memo");
	}

	f->required = ld_bool(l, path, jf, "required", 0);
	f->nullable = ld_bool(l, path, jf, "nullable", !f->required);
	f->read_only = ld_bool(l, path, jf, "read_only", 0);
	f->allow_empty = ld_bool(l, path, jf, "allow_empty", 0);
	if (f->allow_empty && f->type != SCHEMA_T_STRING)
		ld_fail(l, path, "\"allow_empty\" only applies to string");
	if (f->read_only && f->required)
		ld_fail(l, path, "a field cannot be both required and read_only");

	{
		const cJSON *mn = cJSON_GetObjectItemCaseSensitive(jf, "min");
		const cJSON *mx = cJSON_GetObjectItemCaseSensitive(jf, "max");
		if ((mn || mx) && !is_numeric_type(f->type))
			ld_fail(l, path, "\"min\"/\"max\" only apply to numeric types");
		else if ((mn && !cJSON_IsNumber(mn)) || (mx && !cJSON_IsNumber(mx)))
			ld_fail(l, path, "\"min\"/\"max\" must be numbers");
		else if ((mn == NULL) != (mx == NULL))
			ld_fail(l, path, "give both \"min\" and \"max\" or neither");
		else if (mn) {
			f->has_range = 1;
			f->min = mn->valuedouble;
			f->max = mx->valuedouble;
			if (f->min > f->max)
				ld_fail(l, path, "\"min\" is above \"max\"");
		} else if (f->type == SCHEMA_T_INT) {
			f->has_range = 1;
			f->min = -2147483648.0;
			f->max = 2147483647.0;
		} else if (f->type == SCHEMA_T_BIGINT) {
			f->has_range = 1;
			f->min = -9223372036854775808.0;
			f->max = 9223372036854775807.0;
		}
	}

	v = cJSON_GetObjectItemCaseSensitive(jf, "options");
	if (is_option_type(f->type)) {
		char p[300];
		snprintf(p, sizeof(p), "%.250s.options", path);
		f->options = ld_options(l, p, v, &f->n_options);
	} else if (v) {
		ld_fail(l, path, "\"options\" only apply to picklist, state and status");
	}

	v = cJSON_GetObjectItemCaseSensitive(jf, "enum");
	if (f->type == SCHEMA_T_ENUM) {
		if (!cJSON_IsString(v))
			ld_fail(l, path, "\"enum\" (the enum type name) is required for type enum");
		else if ((f->enum_type = schema_enum_by_name(s, v->valuestring)) == NULL)
			ld_fail(l, path, "enum type \"%s\" is not defined in \"enums\"", v->valuestring);
	} else if (v) {
		ld_fail(l, path, "\"enum\" only applies to type enum");
	}

	if (f->type == SCHEMA_T_LOOKUP) {
		f->target = ld_str(l, path, jf, "target", 1);
		f->nav = ld_str(l, path, jf, "nav", 1);
		if (f->name) {
			size_t n = strlen(f->name) + 8;
			f->value_name = malloc(n);
			if (f->value_name)
				snprintf(f->value_name, n, "_%s_value", f->name);
			else
				ld_fail(l, path, "out of memory");
		}
	} else if (cJSON_GetObjectItemCaseSensitive(jf, "target") || cJSON_GetObjectItemCaseSensitive(jf, "nav")) {
		ld_fail(l, path, "\"target\"/\"nav\" only apply to type lookup");
	}

	f->label = ld_str(l, path, jf, "label", 0);
	if (f->label == NULL && !l->failed && f->name)
		f->label = strdup(f->name);

	v = cJSON_GetObjectItemCaseSensitive(jf, "default");
	if (v) {
		if (f->type == SCHEMA_T_LOOKUP) {
			ld_fail(l, path, "lookups cannot have a default");
		} else {
			f->default_value = cJSON_Duplicate(v, 1);
			if (f->default_value == NULL)
				ld_fail(l, path, "out of memory");
		}
	}
	if (f->name == NULL && !l->failed)
		ld_fail(l, path, "out of memory");
}

static void ld_key(struct ld *l, const char *path, const cJSON *fields, const char *name, struct schema_key *k)
{
	k->name = strdup(name);
	if (k->name == NULL)
		ld_fail(l, path, "out of memory");
	k->fields = ld_str_array(l, path, fields, &k->n_fields);
}

static struct schema_field *find_field(const struct schema_entity *e, const char *name)
{
	for (size_t i = 0; i < e->n_fields; i++)
		if (e->fields[i].name && strcmp(e->fields[i].name, name) == 0)
			return &e->fields[i];
	return NULL;
}

static void ld_entity(struct ld *l, struct schema *s, const char *path, const cJSON *je, struct schema_entity *e)
{
	static const char *const allowed[] = { "logical_name", "sets", "event_name", "id", "primary_name", "company",
					       "key", "alternate_keys", "fields", NULL };
	const cJSON *v, *it;
	char p[256];
	size_t i;

	ld_members(l, path, je, allowed);
	if (l->failed)
		return;
	e->logical_name = ld_str(l, path, je, "logical_name", 1);
	snprintf(p, sizeof(p), "%s.sets", path);
	e->set_names = ld_str_array(l, p, cJSON_GetObjectItemCaseSensitive(je, "sets"), &e->n_set_names);
	e->event_name = ld_str(l, path, je, "event_name", 0);
	e->id_field = ld_str(l, path, je, "id", s->flavour == SCHEMA_CE);
	e->primary_name = ld_str(l, path, je, "primary_name", 0);
	e->company_field = ld_str(l, path, je, "company", 0);
	if (l->failed)
		return;
	if (s->flavour == SCHEMA_FO && e->id_field)
		ld_fail(l, path, "\"id\" is Dataverse only; F&O entities use \"key\"");
	if (e->event_name == NULL && (e->event_name = strdup(e->logical_name)) == NULL)
		ld_fail(l, path, "out of memory");
	{
		size_t n = strlen(s->namespace_name) + strlen(e->logical_name) + 2;
		e->type_name = malloc(n);
		if (e->type_name == NULL) {
			ld_fail(l, path, "out of memory");
			return;
		}
		snprintf(e->type_name, n, "%s.%s", s->namespace_name, e->logical_name);
	}

	/* fields */
	v = cJSON_GetObjectItemCaseSensitive(je, "fields");
	if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0) {
		ld_fail(l, path, "\"fields\" must be a non-empty array");
		return;
	}
	e->fields = calloc((size_t)cJSON_GetArraySize(v), sizeof(*e->fields));
	if (e->fields == NULL) {
		ld_fail(l, path, "out of memory");
		return;
	}
	i = 0;
	cJSON_ArrayForEach(it, v)
	{
		snprintf(p, sizeof(p), "%s.fields[%zu]", path, i);
		ld_field(l, s, p, it, &e->fields[i]);
		e->n_fields = ++i;
		if (l->failed)
			return;
		for (size_t j = 0; j + 1 < i; j++)
			if (strcmp(e->fields[j].name, e->fields[i - 1].name) == 0) {
				ld_fail(l, p, "field \"%s\" defined twice", e->fields[j].name);
				return;
			}
		if (e->fields[i - 1].nav)
			for (size_t j = 0; j + 1 < i; j++)
				if (e->fields[j].nav && strcmp(e->fields[j].nav, e->fields[i - 1].nav) == 0) {
					ld_fail(l, p, "navigation property \"%s\" used twice", e->fields[j].nav);
					return;
				}
	}

	/* primary key */
	v = cJSON_GetObjectItemCaseSensitive(je, "key");
	snprintf(p, sizeof(p), "%s.key", path);
	if (s->flavour == SCHEMA_CE) {
		const struct schema_field *idf = find_field(e, e->id_field);
		if (v) {
			ld_fail(l, p, "Dataverse tables are keyed by \"id\"; use \"alternate_keys\" for others");
			return;
		}
		if (idf == NULL || idf->type != SCHEMA_T_GUID) {
			ld_fail(l, path, "\"id\" must name a field of type guid");
			return;
		}
		e->primary_key.name = strdup("primary");
		e->primary_key.fields = calloc(1, sizeof(char *));
		if (e->primary_key.name == NULL || e->primary_key.fields == NULL) {
			ld_fail(l, path, "out of memory");
			return;
		}
		e->primary_key.fields[0] = strdup(e->id_field);
		e->primary_key.n_fields = 1;
	} else {
		if (v == NULL) {
			ld_fail(l, path, "missing member \"key\"");
			return;
		}
		ld_key(l, p, v, "primary", &e->primary_key);
	}
	if (l->failed)
		return;

	/* alternate keys */
	v = cJSON_GetObjectItemCaseSensitive(je, "alternate_keys");
	if (v) {
		size_t n;
		if (s->flavour == SCHEMA_FO) {
			ld_fail(l, path, "\"alternate_keys\" are Dataverse only");
			return;
		}
		if (!cJSON_IsArray(v)) {
			ld_fail(l, path, "\"alternate_keys\" must be an array");
			return;
		}
		n = (size_t)cJSON_GetArraySize(v);
		e->alt_keys = calloc(n ? n : 1, sizeof(*e->alt_keys));
		if (e->alt_keys == NULL) {
			ld_fail(l, path, "out of memory");
			return;
		}
		i = 0;
		cJSON_ArrayForEach(it, v)
		{
			static const char *const kallowed[] = { "name", "fields", NULL };
			char *name;
			snprintf(p, sizeof(p), "%s.alternate_keys[%zu]", path, i);
			ld_members(l, p, it, kallowed);
			name = ld_str(l, p, it, "name", 1);
			if (l->failed) {
				free(name);
				return;
			}
			ld_key(l, p, cJSON_GetObjectItemCaseSensitive(it, "fields"), name, &e->alt_keys[i]);
			free(name);
			e->n_alt_keys = ++i;
			if (l->failed)
				return;
		}
	}

	/* cross-checks */
	for (size_t k = 0; k <= e->n_alt_keys; k++) {
		const struct schema_key *key = k == 0 ? &e->primary_key : &e->alt_keys[k - 1];
		for (size_t j = 0; j < key->n_fields; j++) {
			struct schema_field *f = find_field(e, key->fields[j]);
			if (k == 0)
				snprintf(p, sizeof(p), "%s.key[%zu]", path, j);
			else
				snprintf(p, sizeof(p), "%s.alternate_keys[%zu].fields[%zu]", path, k - 1, j);
			if (f == NULL) {
				ld_fail(l, p, "key field \"%s\" is not a field of the entity", key->fields[j]);
				return;
			}
			for (size_t m = 0; m < j; m++)
				if (strcmp(key->fields[m], key->fields[j]) == 0) {
					ld_fail(l, p, "key field \"%s\" given twice", key->fields[j]);
					return;
				}
			if (k == 0) {
				f->is_key = 1;
				if (f->read_only) {
					ld_fail(l, p, "key field \"%s\" cannot be read_only", f->name);
					return;
				}
				if (s->flavour == SCHEMA_FO) {
					f->required = 1;
					f->nullable = 0;
				}
			}
		}
	}
	if (s->flavour == SCHEMA_FO && e->company_field &&
	    (strcmp(e->primary_key.fields[0], e->company_field) != 0)) {
		ld_fail(l, path, "company field \"%s\" must be the first key field", e->company_field);
		return;
	}
	if (e->company_field && find_field(e, e->company_field) == NULL)
		ld_fail(l, path, "company field \"%s\" is not a field of the entity", e->company_field);
	if (e->primary_name && find_field(e, e->primary_name) == NULL)
		ld_fail(l, path, "primary_name \"%s\" is not a field of the entity", e->primary_name);
}

static void ld_enums(struct ld *l, struct schema *s, const cJSON *arr)
{
	const cJSON *it;
	size_t i = 0, n;
	char p[128];

	if (!cJSON_IsArray(arr)) {
		ld_fail(l, "enums", "must be an array");
		return;
	}
	n = (size_t)cJSON_GetArraySize(arr);
	s->enums = calloc(n ? n : 1, sizeof(*s->enums));
	if (s->enums == NULL) {
		ld_fail(l, "enums", "out of memory");
		return;
	}
	cJSON_ArrayForEach(it, arr)
	{
		static const char *const allowed[] = { "name", "members", NULL };
		snprintf(p, sizeof(p), "enums[%zu]", i);
		ld_members(l, p, it, allowed);
		if (l->failed)
			return;
		s->enums[i].name = ld_str(l, p, it, "name", 1);
		s->n_enums = i + 1;
		if (l->failed)
			return;
		for (size_t j = 0; j < i; j++)
			if (strcmp(s->enums[j].name, s->enums[i].name) == 0) {
				ld_fail(l, p, "enum \"%s\" defined twice", s->enums[i].name);
				return;
			}
		snprintf(p, sizeof(p), "enums[%zu].members", i);
		s->enums[i].members =
			ld_options(l, p, cJSON_GetObjectItemCaseSensitive(it, "members"), &s->enums[i].n_members);
		if (l->failed)
			return;
		i++;
	}
}

int schema_load_text(const char *text, size_t len, const char *name, struct schema **out, char *errbuf,
		     size_t errlen)
{
	static const char *const allowed[] = { "flavour", "namespace", "default_company", "enums", "entities", NULL };
	struct ld l = { .file = name ? name : "(schema)", .err = errbuf, .errlen = errlen };
	struct schema *s = NULL;
	cJSON *root = NULL;
	const cJSON *v, *it;
	char *flavour = NULL;
	char p[128];
	size_t i, n;
	int rc = -1;

	*out = NULL;
	if (len > SCHEMA_FILE_MAX) {
		ld_fail(&l, "$", "file is larger than %d bytes", SCHEMA_FILE_MAX);
		goto out;
	}
	root = cJSON_ParseWithLength(text, len);
	if (root == NULL) {
		ld_fail(&l, "$", "not valid JSON");
		goto out;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->path = strdup(l.file)) == NULL) {
		ld_fail(&l, "$", "out of memory");
		goto out;
	}
	ld_members(&l, "$", root, allowed);
	flavour = ld_str(&l, "$", root, "flavour", 1);
	s->namespace_name = ld_str(&l, "$", root, "namespace", 1);
	s->default_company = ld_str(&l, "$", root, "default_company", 0);
	if (l.failed)
		goto out;
	if (strcmp(flavour, "ce") == 0) {
		s->flavour = SCHEMA_CE;
	} else if (strcmp(flavour, "fo") == 0) {
		s->flavour = SCHEMA_FO;
	} else {
		ld_fail(&l, "flavour", "must be \"ce\" or \"fo\", not \"%s\"", flavour);
		goto out;
	}
	if (s->flavour == SCHEMA_CE && s->default_company) {
		ld_fail(&l, "default_company", "is F&O only");
		goto out;
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "enums");
	if (v) {
		if (s->flavour == SCHEMA_CE) {
			ld_fail(&l, "enums", "enum types are F&O only");
			goto out;
		}
		ld_enums(&l, s, v);
		if (l.failed)
			goto out;
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "entities");
	if (!cJSON_IsArray(v) || (n = (size_t)cJSON_GetArraySize(v)) == 0) {
		ld_fail(&l, "entities", "must be a non-empty array");
		goto out;
	}
	s->entities = calloc(n, sizeof(*s->entities));
	if (s->entities == NULL) {
		ld_fail(&l, "entities", "out of memory");
		goto out;
	}
	i = 0;
	cJSON_ArrayForEach(it, v)
	{
		snprintf(p, sizeof(p), "entities[%zu]", i);
		ld_entity(&l, s, p, it, &s->entities[i]);
		s->n_entities = ++i;
		if (l.failed)
			goto out;
	}
	/* names unique across entities; lookup targets defined; defaults valid */
	for (i = 0; i < s->n_entities; i++) {
		const struct schema_entity *e = &s->entities[i];
		snprintf(p, sizeof(p), "entities[%zu]", i);
		for (size_t j = 0; j < i; j++) {
			const struct schema_entity *o = &s->entities[j];
			if (strcmp(o->logical_name, e->logical_name) == 0) {
				ld_fail(&l, p, "logical_name \"%s\" also used by entities[%zu]", e->logical_name, j);
				goto out;
			}
			for (size_t a = 0; a < e->n_set_names; a++)
				for (size_t b = 0; b < o->n_set_names; b++)
					if (strcmp(e->set_names[a], o->set_names[b]) == 0) {
						ld_fail(&l, p, "entity set \"%s\" also used by entities[%zu]",
							e->set_names[a], j);
						goto out;
					}
		}
		for (size_t a = 0; a + 1 < e->n_set_names; a++)
			for (size_t b = a + 1; b < e->n_set_names; b++)
				if (strcmp(e->set_names[a], e->set_names[b]) == 0) {
					ld_fail(&l, p, "entity set \"%s\" listed twice", e->set_names[a]);
					goto out;
				}
		for (size_t j = 0; j < e->n_fields; j++) {
			const struct schema_field *f = &e->fields[j];
			struct schema_error verr;
			snprintf(p, sizeof(p), "entities[%zu].fields[%zu]", i, j);
			if (f->type == SCHEMA_T_LOOKUP && schema_entity_by_name(s, f->target) == NULL) {
				ld_fail(&l, p, "lookup target \"%s\" is not an entity of this file", f->target);
				goto out;
			}
			if (f->default_value && check_value(s, e, f, f->default_value, &verr) != 0) {
				ld_fail(&l, p, "\"default\" is not a valid value of the field");
				goto out;
			}
		}
	}
	*out = s;
	s = NULL;
	rc = 0;
out:
	free(flavour);
	cJSON_Delete(root);
	schema_free(s);
	return rc;
}

int schema_load(const char *path, struct schema **out, char *errbuf, size_t errlen)
{
	FILE *fp = NULL;
	char *buf = NULL;
	size_t len = 0;
	int rc = -1;

	*out = NULL;
	fp = fopen(path, "rb");
	if (fp == NULL) {
		snprintf(errbuf, errlen, "%s: cannot open: %s", path, strerror(errno));
		goto out;
	}
	buf = malloc(SCHEMA_FILE_MAX + 1);
	if (buf == NULL) {
		snprintf(errbuf, errlen, "%s: out of memory", path);
		goto out;
	}
	len = fread(buf, 1, SCHEMA_FILE_MAX + 1, fp);
	if (ferror(fp)) {
		snprintf(errbuf, errlen, "%s: read error", path);
		goto out;
	}
	if (len > SCHEMA_FILE_MAX) {
		snprintf(errbuf, errlen, "%s: $: file is larger than %d bytes", path, SCHEMA_FILE_MAX);
		goto out;
	}
	rc = schema_load_text(buf, len, path, out, errbuf, errlen);
out:
	if (fp)
		fclose(fp);
	free(buf);
	return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* lookups                                                                                     */

const struct schema_entity *schema_entity_by_set(const struct schema *s, const char *set_name)
{
	if (s == NULL || set_name == NULL)
		return NULL;
	for (size_t i = 0; i < s->n_entities; i++)
		for (size_t j = 0; j < s->entities[i].n_set_names; j++)
			if (strcmp(s->entities[i].set_names[j], set_name) == 0)
				return &s->entities[i];
	return NULL;
}

const struct schema_entity *schema_entity_by_name(const struct schema *s, const char *logical_name)
{
	if (s == NULL || logical_name == NULL)
		return NULL;
	for (size_t i = 0; i < s->n_entities; i++)
		if (s->entities[i].logical_name && strcmp(s->entities[i].logical_name, logical_name) == 0)
			return &s->entities[i];
	return NULL;
}

const struct schema_field *schema_field(const struct schema_entity *e, const char *name)
{
	if (e == NULL || name == NULL)
		return NULL;
	return find_field(e, name);
}

const struct schema_field *schema_field_by_nav(const struct schema_entity *e, const char *nav)
{
	if (e == NULL || nav == NULL)
		return NULL;
	for (size_t i = 0; i < e->n_fields; i++)
		if (e->fields[i].nav && strcmp(e->fields[i].nav, nav) == 0)
			return &e->fields[i];
	return NULL;
}

const struct schema_field *schema_field_by_value_name(const struct schema_entity *e, const char *value_name)
{
	if (e == NULL || value_name == NULL)
		return NULL;
	for (size_t i = 0; i < e->n_fields; i++)
		if (e->fields[i].value_name && strcmp(e->fields[i].value_name, value_name) == 0)
			return &e->fields[i];
	return NULL;
}

/* The key field a predicate name stands for: the field itself, or a lookup's _x_value name. */
static const char *key_name_field(const struct schema_entity *e, const char *name)
{
	const struct schema_field *f = find_field(e, name);

	if (f)
		return f->name;
	f = schema_field_by_value_name(e, name);
	return f ? f->name : NULL;
}

static int key_equals(const struct schema_entity *e, const struct schema_key *k, const char *const *names, size_t n)
{
	if (k->n_fields != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		const char *fname = key_name_field(e, names[i]);
		size_t j;
		if (fname == NULL)
			return 0;
		for (j = 0; j < k->n_fields; j++)
			if (strcmp(k->fields[j], fname) == 0)
				break;
		if (j == k->n_fields)
			return 0;
		for (size_t m = 0; m < i; m++) /* the same part twice does not make a key */
			if (strcmp(key_name_field(e, names[m]), fname) == 0)
				return 0;
	}
	return 1;
}

const struct schema_key *schema_key_match(const struct schema_entity *e, const char *const *names, size_t n)
{
	if (e == NULL || (names == NULL && n > 0) || n == 0)
		return NULL;
	if (key_equals(e, &e->primary_key, names, n))
		return &e->primary_key;
	for (size_t i = 0; i < e->n_alt_keys; i++)
		if (key_equals(e, &e->alt_keys[i], names, n))
			return &e->alt_keys[i];
	return NULL;
}

const struct schema_enum *schema_enum_by_name(const struct schema *s, const char *name)
{
	if (s == NULL || name == NULL)
		return NULL;
	for (size_t i = 0; i < s->n_enums; i++)
		if (s->enums[i].name && strcmp(s->enums[i].name, name) == 0)
			return &s->enums[i];
	return NULL;
}

const struct schema_option *schema_enum_member(const struct schema_enum *en, const char *name)
{
	if (en == NULL || name == NULL)
		return NULL;
	for (size_t i = 0; i < en->n_members; i++)
		if (strcmp(en->members[i].label, name) == 0)
			return &en->members[i];
	return NULL;
}

const struct schema_option *schema_option_by_value(const struct schema_field *f, long value)
{
	if (f == NULL)
		return NULL;
	for (size_t i = 0; i < f->n_options; i++)
		if (f->options[i].value == value)
			return &f->options[i];
	return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* errors                                                                                      */

#define FO_WRITE_EXCEPTION "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"
#define FO_ODATA_EXCEPTION "Microsoft.OData.ODataException"
#define FO_GENERIC "An error has occurred."

void schema_error_set(struct schema_error *err, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	err->status = status;
	snprintf(err->code, sizeof(err->code), "%s", code ? code : "");
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	err->inner[0] = '\0';
	err->inner_type[0] = '\0';
}

/* FO form: generic message, specifics in innererror. */
static void fo_error(struct schema_error *err, int status, const char *type, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void fo_error(struct schema_error *err, int status, const char *type, const char *fmt, ...)
{
	va_list ap;

	err->status = status;
	err->code[0] = '\0';
	snprintf(err->message, sizeof(err->message), "%s", FO_GENERIC);
	va_start(ap, fmt);
	vsnprintf(err->inner, sizeof(err->inner), fmt, ap);
	va_end(ap);
	snprintf(err->inner_type, sizeof(err->inner_type), "%s", type ? type : FO_WRITE_EXCEPTION);
}

cJSON *schema_error_body(enum schema_flavour flavour, const struct schema_error *err)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *e = cJSON_AddObjectToObject(root, "error");

	if (e == NULL)
		goto fail;
	if (cJSON_AddStringToObject(e, "code", err->code) == NULL ||
	    cJSON_AddStringToObject(e, "message", err->message) == NULL)
		goto fail;
	if (flavour == SCHEMA_FO && err->inner[0]) {
		cJSON *in = cJSON_AddObjectToObject(e, "innererror");
		if (in == NULL || cJSON_AddStringToObject(in, "message", err->inner) == NULL ||
		    cJSON_AddStringToObject(in, "type", err->inner_type[0] ? err->inner_type : FO_WRITE_EXCEPTION) ==
			    NULL ||
		    cJSON_AddStringToObject(in, "stacktrace", "") == NULL)
			goto fail;
	}
	return root;
fail:
	cJSON_Delete(root);
	return NULL;
}

char *schema_error_json(enum schema_flavour flavour, const struct schema_error *err)
{
	cJSON *b = schema_error_body(flavour, err);
	char *s = b ? cJSON_PrintUnformatted(b) : NULL;

	cJSON_Delete(b);
	return s;
}

static int looks_like_guid(const char *s);

void schema_error_std(enum schema_flavour flavour, enum schema_std_error kind, const struct schema_entity *e,
		      const char *detail, struct schema_error *err)
{
	const char *ln = e && e->logical_name ? e->logical_name : "entity";
	const char *tn = e && e->type_name ? e->type_name
					   : (flavour == SCHEMA_CE ? "Microsoft.Dynamics.CRM.entity"
								   : "Microsoft.Dynamics.DataEntities.entity");
	const char *d = detail ? detail : "";

	if (flavour == SCHEMA_CE) {
		switch (kind) {
		case SCHEMA_E_NOT_FOUND:
			if (looks_like_guid(d))
				schema_error_set(err, 404, "0x80040217", "%s With Id = %s Does Not Exist", ln, d);
			else
				schema_error_set(err, 404, "0x80040217",
						 "A record with the specified key values does not exist in %s entity", ln);
			return;
		case SCHEMA_E_ALREADY_EXISTS:
			schema_error_set(err, 412, "0x80040237", "A record with matching key values already exists.");
			return;
		case SCHEMA_E_VERSION_MISMATCH:
			schema_error_set(err, 412, "0x80060882",
					 "The version of the existing record doesn't match the RowVersion property provided.");
			return;
		case SCHEMA_E_DUPLICATE_KEY:
			schema_error_set(err, 412, "0x80060892",
					 "A record that has the attribute values %s already exists. The entity key for %s "
					 "requires that this set of attributes contains unique values. Select unique "
					 "values and try again.",
					 d, ln);
			return;
		case SCHEMA_E_THROTTLED_REQUESTS:
			schema_error_set(err, 429, "0x80072322", "Number of requests exceeded the limit of %s seconds.",
					 detail ? d : "6000 over time window of 300");
			return;
		case SCHEMA_E_THROTTLED_CONCURRENCY:
			schema_error_set(err, 429, "0x80072326", "Number of concurrent requests exceeded the limit of %s.",
					 detail ? d : "52");
			return;
		case SCHEMA_E_UNAUTHORIZED:
			schema_error_set(err, 401, "", "%s", detail ? d : "Bearer token is missing, invalid or expired.");
			return;
		case SCHEMA_E_LOOKUP_MISSING:
			if (detail)
				schema_error_set(err, 400, "0x80040217", "%s Does Not Exist", d);
			else
				schema_error_set(err, 400, "0x80040217", "The record referenced by a lookup Does Not Exist");
			return;
		case SCHEMA_E_BAD_KEY:
			schema_error_set(err, 400, "0x80060888",
					 "The key in the request URI is not valid for resource '%s'. Ensure that the names "
					 "and number of key properties match the declared or alternate key properties for "
					 "the resource '%s'.",
					 tn, tn);
			return;
		case SCHEMA_E_BAD_REQUEST:
			schema_error_set(err, 400, "0x80040203", "%s", detail ? d : "Invalid argument.");
			return;
		case SCHEMA_E_METHOD_NOT_ALLOWED:
			schema_error_set(err, 405, "0x80060888", "The requested resource does not support http method '%s'.",
					 detail ? d : "");
			return;
		case SCHEMA_E_PAYLOAD_TOO_LARGE:
			schema_error_set(err, 413, "0x80048d19", "The request body is larger than %s.",
					 detail ? d : "the allowed limit");
			return;
		case SCHEMA_E_UNAVAILABLE:
			schema_error_set(err, 503, "", "%s", detail ? d : "The service is temporarily unavailable.");
			return;
		case SCHEMA_E_INTERNAL:
		default:
			schema_error_set(err, 500, "0x80040216", "%s", detail ? d : "An unexpected error occurred.");
			return;
		}
	}
	switch (kind) {
	case SCHEMA_E_NOT_FOUND:
		fo_error(err, 404, FO_ODATA_EXCEPTION, "Resource not found for the segment '%s%s%s'.",
			 e ? e->set_names[0] : "", detail ? " " : "", d);
		return;
	case SCHEMA_E_ALREADY_EXISTS:
	case SCHEMA_E_DUPLICATE_KEY:
		fo_error(err, 400, NULL,
			 "Write failed for table row of type '%s'. Infolog: Error: Cannot create a record in %s. %s. "
			 "The record already exists.",
			 ln, ln, d);
		return;
	case SCHEMA_E_VERSION_MISMATCH:
		fo_error(err, 412, FO_ODATA_EXCEPTION,
			 "The ETag value in the If-Match header does not match the current ETag of the record.");
		return;
	case SCHEMA_E_THROTTLED_REQUESTS:
	case SCHEMA_E_THROTTLED_CONCURRENCY:
		schema_error_set(err, 429, "", "Too many requests. %s", detail ? d : "Retry after the given time.");
		return;
	case SCHEMA_E_UNAUTHORIZED:
		schema_error_set(err, 401, "", "%s", detail ? d : "Authorization has been denied for this request.");
		return;
	case SCHEMA_E_LOOKUP_MISSING:
		fo_error(err, 400, NULL, "Write failed for table row of type '%s'. Infolog: Error: %s", ln,
			 detail ? d : "The referenced record does not exist.");
		return;
	case SCHEMA_E_BAD_KEY:
		fo_error(err, 400, FO_ODATA_EXCEPTION,
			 "The number of keys specified in the URI does not match number of key properties for the "
			 "resource '%s'.",
			 tn);
		return;
	case SCHEMA_E_BAD_REQUEST:
		fo_error(err, 400, FO_ODATA_EXCEPTION, "%s", detail ? d : "The request is invalid.");
		return;
	case SCHEMA_E_METHOD_NOT_ALLOWED:
		schema_error_set(err, 405, "", "The requested resource does not support http method '%s'.",
				 detail ? d : "");
		return;
	case SCHEMA_E_PAYLOAD_TOO_LARGE:
		schema_error_set(err, 413, "", "The request body is larger than %s.", detail ? d : "the allowed limit");
		return;
	case SCHEMA_E_UNAVAILABLE:
		schema_error_set(err, 503, "", "%s", detail ? d : "The service is unavailable.");
		return;
	case SCHEMA_E_INTERNAL:
	default:
		fo_error(err, 500, NULL, "%s", detail ? d : "An unexpected error occurred.");
		return;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* validation                                                                                  */

#define CE_PAYLOAD_PREFIX                                                                                      \
	"Error identified in Payload provided by the user for Entity :'%s', For more information on this error " \
	"please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> InnerException : "  \
	"Microsoft.OData.ODataException: "

static int looks_like_guid(const char *s)
{
	static const int dash[] = { 8, 13, 18, 23 };
	size_t i;

	if (strlen(s) != 36)
		return 0;
	for (i = 0; i < 36; i++) {
		int is_dash = (i == (size_t)dash[0] || i == (size_t)dash[1] || i == (size_t)dash[2] ||
			       i == (size_t)dash[3]);
		if (is_dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return 0;
	}
	return 1;
}

static int is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* "YYYY-MM-DD", a real calendar date in 0001..9999. Returns chars used or -1. */
static int parse_date(const char *s)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, m, d;

	if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &m) || s[7] != '-' || digits(s + 8, 2, &d))
		return -1;
	if (y < 1 || m < 1 || m > 12 || d < 1)
		return -1;
	if (d > mdays[m - 1] + (m == 2 && is_leap(y)))
		return -1;
	return 10;
}

/* ISO 8601 date-time with a Z or +-hh:mm offset, optional seconds and fraction (<= 7 digits). */
static int valid_datetime(const char *s)
{
	int h, mi, sec = 0, oh, om;
	const char *p;

	if (parse_date(s) != 10 || s[10] != 'T')
		return 0;
	p = s + 11;
	if (digits(p, 2, &h) || p[2] != ':' || digits(p + 3, 2, &mi))
		return 0;
	p += 5;
	if (*p == ':') {
		if (digits(p + 1, 2, &sec))
			return 0;
		p += 3;
		if (*p == '.') {
			int n = 0;
			p++;
			while (isdigit((unsigned char)*p)) {
				p++;
				n++;
			}
			if (n == 0 || n > 7)
				return 0;
		}
	}
	if (h > 23 || mi > 59 || sec > 59)
		return 0;
	if (*p == 'Z')
		return p[1] == '\0';
	if (*p != '+' && *p != '-')
		return 0;
	if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || p[6] != '\0')
		return 0;
	return oh <= 14 && om <= 59;
}

/* Length in UTF-16 code units (as .NET counts it); -1 when `s` is not valid UTF-8. */
static long utf16_length(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	long n = 0;

	while (*p) {
		int extra;
		unsigned cp;
		if (*p < 0x80) {
			p++;
			n++;
			continue;
		} else if ((*p & 0xE0) == 0xC0) {
			extra = 1;
			cp = *p & 0x1F;
		} else if ((*p & 0xF0) == 0xE0) {
			extra = 2;
			cp = *p & 0x0F;
		} else if ((*p & 0xF8) == 0xF0) {
			extra = 3;
			cp = *p & 0x07;
		} else {
			return -1;
		}
		p++;
		for (int i = 0; i < extra; i++, p++) {
			if ((*p & 0xC0) != 0x80)
				return -1;
			cp = (cp << 6) | (*p & 0x3F);
		}
		if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return -1;
		n += cp >= 0x10000 ? 2 : 1;
	}
	return n;
}

/* A short rendering of a JSON value for messages. */
static void render(const cJSON *v, char *buf, size_t len)
{
	if (cJSON_IsString(v)) {
		snprintf(buf, len, "%s", v->valuestring);
	} else if (cJSON_IsNumber(v)) {
		snprintf(buf, len, "%.17g", v->valuedouble);
	} else if (cJSON_IsBool(v)) {
		snprintf(buf, len, "%s", cJSON_IsTrue(v) ? "True" : "False");
	} else {
		char *t = cJSON_PrintUnformatted(v);
		snprintf(buf, len, "%s", t ? t : "");
		free(t);
	}
	if (len > 4 && strlen(buf) > 200)
		snprintf(buf + 197, len - 197, "...");
}

static const char *node_kind(const cJSON *v)
{
	if (cJSON_IsObject(v))
		return "StartObject";
	if (cJSON_IsArray(v))
		return "StartArray";
	return "PrimitiveValue";
}

/* Wrong JSON type or unparsable literal for field f. */
static int type_error(const struct schema *s, const struct schema_entity *e, const struct schema_field *f,
		      const cJSON *v, struct schema_error *err)
{
	char lit[256];
	char edm[160];

	if (f->type == SCHEMA_T_ENUM && f->enum_type)
		snprintf(edm, sizeof(edm), "%s.%s", s->namespace_name, f->enum_type->name);
	else
		snprintf(edm, sizeof(edm), "%s", edm_names[f->type]);
	render(v, lit, sizeof(lit));
	if (s->flavour == SCHEMA_CE) {
		if (cJSON_IsObject(v) || cJSON_IsArray(v))
			schema_error_set(err, 400, "0x80048d19",
					 CE_PAYLOAD_PREFIX "An unexpected '%s' node was found for property named '%s' "
							   "when reading from the JSON reader. A 'PrimitiveValue' node "
							   "was expected.",
					 e->set_names[0], node_kind(v), f->name);
		else
			schema_error_set(err, 400, "0x80048d19",
					 CE_PAYLOAD_PREFIX "Cannot convert the literal '%s' to the expected type '%s'.",
					 e->set_names[0], lit, edm);
		return -1;
	}
	if (cJSON_IsObject(v) || cJSON_IsArray(v))
		fo_error(err, 400, FO_ODATA_EXCEPTION,
			 "An unexpected '%s' node was found for property named '%s' when reading from the JSON reader. "
			 "A 'PrimitiveValue' node was expected.",
			 node_kind(v), f->name);
	else if (f->type == SCHEMA_T_ENUM)
		fo_error(err, 400, FO_ODATA_EXCEPTION, "The value '%s' is not a valid member of enum type '%s'.", lit,
			 edm);
	else
		fo_error(err, 400, FO_ODATA_EXCEPTION, "Cannot convert the literal '%s' to the expected type '%s'.",
			 lit, edm);
	return -1;
}

static int range_error(const struct schema *s, const struct schema_entity *e, const struct schema_field *f,
		       const cJSON *v, struct schema_error *err)
{
	char lit[256];

	render(v, lit, sizeof(lit));
	if (s->flavour == SCHEMA_CE) {
		schema_error_set(err, 400, "0x8004431a",
				 "A validation error occurred.  The value %s of '%s' on record of type '%s' is outside "
				 "the valid range. Accepted range: %.17g to %.17g",
				 lit, f->name, e->logical_name, f->min, f->max);
		return -1;
	}
	fo_error(err, 400, NULL,
		 "Write failed for table row of type '%s'. Infolog: Error: The value %s of field '%s' is outside the "
		 "valid range %.17g to %.17g.",
		 e->logical_name, lit, f->label, f->min, f->max);
	return -1;
}

static int required_error(const struct schema *s, const struct schema_entity *e, const struct schema_field *f,
			  struct schema_error *err)
{
	if (s->flavour == SCHEMA_CE) {
		schema_error_set(err, 400, "0x80040203",
				 "A validation error occurred.  The value for the required attribute '%s' of the '%s' "
				 "entity is missing.",
				 f->name, e->logical_name);
		return -1;
	}
	fo_error(err, 400, NULL, "Write failed for table row of type '%s'. Infolog: Warning: Field '%s' must be filled in.",
		 e->logical_name, f->label);
	return -1;
}

static int check_value(const struct schema *s, const struct schema_entity *e, const struct schema_field *f,
		       const cJSON *v, struct schema_error *err)
{
	double d;

	if (cJSON_IsNull(v)) {
		if (f->nullable)
			return 0;
		if (s->flavour == SCHEMA_CE || f->is_key)
			return required_error(s, e, f, err);
		fo_error(err, 400, FO_ODATA_EXCEPTION,
			 "A null value was found for the property named '%s', which has the expected type "
			 "'%s[Nullable=False]'. The expected type '%s[Nullable=False]' does not allow null values.",
			 f->name, edm_names[f->type], edm_names[f->type]);
		return -1;
	}
	switch (f->type) {
	case SCHEMA_T_STRING:
	case SCHEMA_T_MEMO: {
		long n;
		if (!cJSON_IsString(v))
			return type_error(s, e, f, v, err);
		n = utf16_length(v->valuestring);
		if (n < 0)
			return type_error(s, e, f, v, err);
		if (f->max_length > 0 && n > f->max_length) {
			if (s->flavour == SCHEMA_CE)
				schema_error_set(err, 400, "0x80044331",
						 "A validation error occurred.  The length of the '%s' attribute of the '%s' "
						 "entity exceeded the maximum allowed length of '%d'.",
						 f->name, e->logical_name, f->max_length);
			else
				fo_error(err, 400, NULL,
					 "Write failed for table row of type '%s'. Infolog: Error: The value of field "
					 "'%s' is %ld characters long; the maximum is %d.",
					 e->logical_name, f->label, n, f->max_length);
			return -1;
		}
		/* Dataverse stores "" as null; F&O rejects an empty mandatory key part unless it is a
		   product-dimension part that is legitimately blank */
		if (n == 0 && ((s->flavour == SCHEMA_CE && f->required) ||
			       (s->flavour == SCHEMA_FO && f->is_key && !f->allow_empty)))
			return required_error(s, e, f, err);
		return 0;
	}
	case SCHEMA_T_INT:
	case SCHEMA_T_BIGINT:
		if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || floor(v->valuedouble) != v->valuedouble)
			return type_error(s, e, f, v, err);
		d = v->valuedouble;
		if (f->has_range && (d < f->min || d > f->max))
			return range_error(s, e, f, v, err);
		return 0;
	case SCHEMA_T_DECIMAL:
	case SCHEMA_T_DOUBLE:
	case SCHEMA_T_MONEY:
		if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
			return type_error(s, e, f, v, err);
		d = v->valuedouble;
		if (f->has_range && (d < f->min || d > f->max))
			return range_error(s, e, f, v, err);
		return 0;
	case SCHEMA_T_BOOL:
		return cJSON_IsBool(v) ? 0 : type_error(s, e, f, v, err);
	case SCHEMA_T_DATETIME:
		return cJSON_IsString(v) && valid_datetime(v->valuestring) ? 0 : type_error(s, e, f, v, err);
	case SCHEMA_T_DATE:
		return cJSON_IsString(v) && parse_date(v->valuestring) == 10 && v->valuestring[10] == '\0'
			       ? 0
			       : type_error(s, e, f, v, err);
	case SCHEMA_T_GUID:
		return cJSON_IsString(v) && looks_like_guid(v->valuestring) ? 0 : type_error(s, e, f, v, err);
	case SCHEMA_T_PICKLIST:
	case SCHEMA_T_STATE:
	case SCHEMA_T_STATUS: {
		char vals[512];
		size_t used = 0;
		if (!json_is_integer(v) || fabs(v->valuedouble) > 2147483647.0)
			return type_error(s, e, f, v, err);
		if (schema_option_by_value(f, (long)v->valuedouble))
			return 0;
		vals[0] = '\0';
		for (size_t i = 0; i < f->n_options && used < sizeof(vals); i++) {
			int w = snprintf(vals + used, sizeof(vals) - used, "%s%ld", i ? "," : "", f->options[i].value);
			if (w < 0)
				break;
			used += (size_t)w;
		}
		schema_error_set(err, 400, "0x8004431a",
				 "A validation error occurred.  The value %ld of '%s' on record of type '%s' is outside "
				 "the valid range. Accepted Values: %s",
				 (long)v->valuedouble, f->name, e->logical_name, vals);
		return -1;
	}
	case SCHEMA_T_ENUM: {
		const char *t;
		char *end;
		long num;
		if (!cJSON_IsString(v) || f->enum_type == NULL)
			return type_error(s, e, f, v, err);
		t = v->valuestring;
		if (schema_enum_member(f->enum_type, t))
			return 0;
		/* OData also accepts the underlying integer value as a string */
		errno = 0;
		num = strtol(t, &end, 10);
		if (*t && *end == '\0' && errno == 0)
			for (size_t i = 0; i < f->enum_type->n_members; i++)
				if (f->enum_type->members[i].value == num)
					return 0;
		return type_error(s, e, f, v, err);
	}
	case SCHEMA_T_LOOKUP:
	default:
		return type_error(s, e, f, v, err);
	}
}

static int unknown_property(const struct schema *s, const struct schema_entity *e, const char *name,
			    struct schema_error *err)
{
	if (s->flavour == SCHEMA_CE)
		schema_error_set(err, 400, "0x80060888", "Could not find a property named '%s' on type '%s'.", name,
				 e->type_name);
	else
		fo_error(err, 400, FO_ODATA_EXCEPTION,
			 "The property '%s' does not exist on type '%s'. Make sure to only use property names that are "
			 "defined by the type.",
			 name, e->type_name);
	return -1;
}

static int read_only_error(const struct schema *s, const struct schema_entity *e, const char *name, enum schema_op op,
			   struct schema_error *err)
{
	if (s->flavour == SCHEMA_CE)
		schema_error_set(err, 400, "0x80040203", "The '%s' attribute of the '%s' entity is not valid for %s.",
				 name, e->logical_name, op == SCHEMA_OP_CREATE ? "create" : "update");
	else
		fo_error(err, 400, NULL, "Write failed for table row of type '%s'. Infolog: Error: Field '%s' is read-only.",
			 e->logical_name, name);
	return -1;
}

/* "<prop>@<annotation>" properties. */
static int check_annotated(const struct schema *s, const struct schema_entity *e, const cJSON *item,
			   struct schema_error *err)
{
	const char *name = item->string;
	const char *at = strchr(name, '@');
	char prop[256];
	size_t plen = (size_t)(at - name);
	const struct schema_field *f;

	if (plen == 0) /* instance annotation such as @odata.type or @odata.etag */
		return 0;
	if (plen >= sizeof(prop))
		return unknown_property(s, e, name, err);
	memcpy(prop, name, plen);
	prop[plen] = '\0';
	if (strcmp(at + 1, "odata.bind") == 0) {
		f = s->flavour == SCHEMA_CE ? schema_field_by_nav(e, prop) : NULL;
		if (f == NULL) {
			if (s->flavour == SCHEMA_CE)
				schema_error_set(err, 400, "0x80060888",
						 "An undeclared property '%s' which only has property annotations in the "
						 "payload but no property value was found in the payload. In OData, only "
						 "declared navigation properties and declared named streams can be "
						 "represented as properties without values.",
						 prop);
			else
				unknown_property(s, e, prop, err);
			return -1;
		}
		if (f->read_only)
			return read_only_error(s, e, f->name, SCHEMA_OP_UPDATE, err);
		if (!cJSON_IsString(item) && !cJSON_IsNull(item)) {
			char lit[256];
			render(item, lit, sizeof(lit));
			schema_error_set(err, 400, "0x80048d19",
					 CE_PAYLOAD_PREFIX "An unexpected '%s' node was found when reading the entity "
							   "reference link for navigation property '%s'.",
					 e->set_names[0], node_kind(item), prop);
			return -1;
		}
		if (cJSON_IsNull(item) && !f->nullable)
			return required_error(s, e, f, err);
		return 0;
	}
	/* any other property annotation: the property must exist */
	if (schema_field(e, prop) || schema_field_by_nav(e, prop) || schema_field_by_value_name(e, prop))
		return 0;
	return unknown_property(s, e, prop, err);
}

static int bound_in_body(const cJSON *body, const struct schema_field *f)
{
	char name[300];
	const cJSON *v;

	snprintf(name, sizeof(name), "%s@odata.bind", f->nav);
	v = cJSON_GetObjectItemCaseSensitive(body, name);
	return v != NULL && cJSON_IsString(v);
}

int schema_validate(const struct schema *s, const struct schema_entity *e, const cJSON *body, enum schema_op op,
		    struct schema_error *err)
{
	const cJSON *item;

	if (!cJSON_IsObject(body)) {
		if (s->flavour == SCHEMA_CE)
			schema_error_set(err, 400, "0x80048d19",
					 CE_PAYLOAD_PREFIX "The request body must be a JSON object.", e->set_names[0]);
		else
			fo_error(err, 400, FO_ODATA_EXCEPTION, "The request body must be a JSON object.");
		return -1;
	}
	cJSON_ArrayForEach(item, body)
	{
		const char *name = item->string;
		const struct schema_field *f;

		if (name == NULL)
			continue;
		if (strchr(name, '@')) {
			if (check_annotated(s, e, item, err) != 0)
				return -1;
			continue;
		}
		f = schema_field(e, name);
		if (f == NULL || (f->type == SCHEMA_T_LOOKUP && strcmp(f->nav, name) != 0)) {
			const struct schema_field *vf = schema_field_by_value_name(e, name);
			if (vf)
				return read_only_error(s, e, name, op, err);
			f = schema_field_by_nav(e, name);
			if (f == NULL)
				return unknown_property(s, e, name, err);
		}
		if (f->type == SCHEMA_T_LOOKUP) {
			/* a navigation property given a value directly instead of through @odata.bind */
			if (cJSON_IsNull(item))
				continue;
			schema_error_set(err, 400, "0x80048d19",
					 CE_PAYLOAD_PREFIX "A 'PrimitiveValue' node with non-null value was found when "
							   "trying to read the value of the navigation property '%s'; "
							   "however, a 'StartArray' node, a 'StartObject' node, or a "
							   "'PrimitiveValue' node with null value was expected.",
					 e->set_names[0], f->nav);
			return -1;
		}
		if (f->read_only)
			return read_only_error(s, e, name, op, err);
		if (check_value(s, e, f, item, err) != 0)
			return -1;
	}
	if (op == SCHEMA_OP_CREATE) {
		for (size_t i = 0; i < e->n_fields; i++) {
			const struct schema_field *f = &e->fields[i];
			const cJSON *v;
			if (!f->required)
				continue;
			if (f->type == SCHEMA_T_LOOKUP) {
				if (!bound_in_body(body, f))
					return required_error(s, e, f, err);
				continue;
			}
			v = cJSON_GetObjectItemCaseSensitive(body, f->name);
			if (v == NULL || cJSON_IsNull(v))
				return required_error(s, e, f, err);
		}
	}
	return 0;
}
