#include "schema.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int schema_load(const char *path, struct schema **out, char *errbuf, size_t errlen)
{
	*out = NULL;
	snprintf(errbuf, errlen, "%s: schema loader not built yet", path);
	return -1;
}

int schema_load_text(const char *text, size_t len, const char *name, struct schema **out, char *errbuf,
		     size_t errlen)
{
	(void)text;
	(void)len;
	*out = NULL;
	snprintf(errbuf, errlen, "%s: schema loader not built yet", name);
	return -1;
}

void schema_free(struct schema *s)
{
	free(s);
}

const struct schema_entity *schema_entity_by_set(const struct schema *s, const char *set_name)
{
	(void)s;
	(void)set_name;
	return NULL;
}

const struct schema_entity *schema_entity_by_name(const struct schema *s, const char *logical_name)
{
	(void)s;
	(void)logical_name;
	return NULL;
}

const struct schema_field *schema_field(const struct schema_entity *e, const char *name)
{
	(void)e;
	(void)name;
	return NULL;
}

const struct schema_field *schema_field_by_nav(const struct schema_entity *e, const char *nav)
{
	(void)e;
	(void)nav;
	return NULL;
}

const struct schema_field *schema_field_by_value_name(const struct schema_entity *e, const char *value_name)
{
	(void)e;
	(void)value_name;
	return NULL;
}

const struct schema_key *schema_key_match(const struct schema_entity *e, const char *const *names, size_t n)
{
	(void)e;
	(void)names;
	(void)n;
	return NULL;
}

const struct schema_enum *schema_enum_by_name(const struct schema *s, const char *name)
{
	(void)s;
	(void)name;
	return NULL;
}

const struct schema_option *schema_enum_member(const struct schema_enum *en, const char *name)
{
	(void)en;
	(void)name;
	return NULL;
}

const struct schema_option *schema_option_by_value(const struct schema_field *f, long value)
{
	(void)f;
	(void)value;
	return NULL;
}

void schema_error_set(struct schema_error *err, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	err->status = status;
	snprintf(err->code, sizeof(err->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	err->inner[0] = '\0';
}

cJSON *schema_error_body(enum schema_flavour flavour, const struct schema_error *err)
{
	(void)flavour;
	(void)err;
	return NULL;
}

char *schema_error_json(enum schema_flavour flavour, const struct schema_error *err)
{
	(void)flavour;
	(void)err;
	return NULL;
}

void schema_error_std(enum schema_flavour flavour, enum schema_std_error kind, const struct schema_entity *e,
		      const char *detail, struct schema_error *err)
{
	(void)flavour;
	(void)kind;
	(void)e;
	(void)detail;
	schema_error_set(err, 500, "", "not built yet");
}

int schema_validate(const struct schema *s, const struct schema_entity *e, const cJSON *body, enum schema_op op,
		    struct schema_error *err)
{
	(void)s;
	(void)e;
	(void)body;
	(void)op;
	schema_error_set(err, 500, "", "not built yet");
	return -1;
}
