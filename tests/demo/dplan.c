#include "dplan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DPLAN_SCHEMA_MAX ((size_t)16 * 1024 * 1024)

static cJSON *load_json(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	cJSON *j = NULL;
	if (!f) {
		snprintf(err, errlen, "%s: cannot open", path);
		return NULL;
	}
	buf = malloc(DPLAN_SCHEMA_MAX + 1);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	size_t n = fread(buf, 1, DPLAN_SCHEMA_MAX + 1, f);
	if (n > DPLAN_SCHEMA_MAX) {
		snprintf(err, errlen, "%s: larger than %zu bytes", path, DPLAN_SCHEMA_MAX);
		goto out;
	}
	j = cJSON_ParseWithLength(buf, n);
	if (!j)
		snprintf(err, errlen, "%s: not JSON", path);
out:
	free(buf);
	fclose(f);
	return j;
}

/* The schema entity whose sets include set. */
static const cJSON *schema_entity(const cJSON *schema, const char *set)
{
	const cJSON *e, *s;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(schema, "entities"))
	{
		cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(e, "sets"))
		{
			if (cJSON_IsString(s) && strcmp(s->valuestring, set) == 0)
				return e;
		}
	}
	return NULL;
}

static int is_lookup(const cJSON *entity, const char *field)
{
	const cJSON *f;
	cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(entity, "fields"))
	{
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(f, "name");
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(f, "type");
		if (cJSON_IsString(n) && strcmp(n->valuestring, field) == 0)
			return cJSON_IsString(t) && strcmp(t->valuestring, "lookup") == 0;
	}
	return 0;
}

static int ident_ok(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return 0;
	return 1;
}

static int append(char *buf, size_t len, size_t *used, const char *text)
{
	int w = snprintf(buf + *used, len - *used, "%s", text);
	if (w < 0 || (size_t)w >= len - *used)
		return -1;
	*used += (size_t)w;
	return 0;
}

static int seen(char (*list)[MAP_IDENT_MAX + 1], size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], name) == 0)
			return 1;
	return 0;
}

/* The topic table "<side>.<entity lower-cased>", as apply and capture name it. */
static void add_topic(struct dplan *p, const char *side, const char *entity)
{
	char t[MAP_IDENT_MAX + 4];
	size_t k = (size_t)snprintf(t, sizeof(t), "%s.", side);
	for (size_t i = 0; entity[i] && k < sizeof(t) - 1; i++)
		t[k++] = (char)((entity[i] >= 'A' && entity[i] <= 'Z') ? entity[i] - 'A' + 'a' : entity[i]);
	t[k] = '\0';
	for (size_t i = 0; i < p->n_topics; i++)
		if (strcmp(p->topics[i], t) == 0)
			return;
	memcpy(p->topics[p->n_topics++], t, sizeof(t));
}

static int add_ce(struct dplan *p, const struct map *m, const cJSON *schema, char *err, size_t errlen)
{
	if (seen(p->ce_entities, p->n_ce, m->ce.entity))
		return 0;
	const cJSON *e = schema_entity(schema, m->ce.entity_set);
	char *entry = p->ce_tables[p->n_ce];
	size_t used = 0;
	int bad = append(entry, DPLAN_ENTRY_MAX, &used, m->ce.entity) || append(entry, DPLAN_ENTRY_MAX, &used, "@") ||
		  append(entry, DPLAN_ENTRY_MAX, &used, m->ce.entity_set);
	for (size_t k = 0; k < m->ce.nkey && !bad; k++) {
		const char *f = m->ce.key[k];
		int lookup = (m->company && strcmp(f, m->company->ce) == 0) || (e && is_lookup(e, f));
		bad = append(entry, DPLAN_ENTRY_MAX, &used, k ? "+" : ":") ||
		      (lookup && append(entry, DPLAN_ENTRY_MAX, &used, "_")) || append(entry, DPLAN_ENTRY_MAX, &used, f) ||
		      (lookup && append(entry, DPLAN_ENTRY_MAX, &used, "_value"));
	}
	if (bad) {
		snprintf(err, errlen, "map %s: capture entry longer than %d bytes", m->name, DPLAN_ENTRY_MAX);
		return -1;
	}
	snprintf(p->ce_entities[p->n_ce++], MAP_IDENT_MAX + 1, "%s", m->ce.entity);
	add_topic(p, "ce", m->ce.entity);
	return 0;
}

static int add_fo(struct dplan *p, const struct map *m, const cJSON *schema, char *err, size_t errlen)
{
	if (seen(p->fo_entities, p->n_fo, m->fo.entity_set))
		return 0;
	const cJSON *e = schema_entity(schema, m->fo.entity_set);
	const cJSON *ev = cJSON_GetObjectItemCaseSensitive(e, "event_name");
	if (!cJSON_IsString(ev) || !ident_ok(ev->valuestring)) {
		snprintf(err, errlen, "map %s: the FO emulator schema has no data-event name for %s", m->name,
			 m->fo.entity_set);
		return -1;
	}
	char *entry = p->fo_tables[p->n_fo];
	size_t used = 0;
	int bad = append(entry, DPLAN_ENTRY_MAX, &used, m->fo.entity_set) || append(entry, DPLAN_ENTRY_MAX, &used, "@") ||
		  append(entry, DPLAN_ENTRY_MAX, &used, ev->valuestring);
	for (size_t k = 0; k < m->fo.nkey && !bad; k++)
		bad = append(entry, DPLAN_ENTRY_MAX, &used, k ? "+" : ":") || append(entry, DPLAN_ENTRY_MAX, &used, m->fo.key[k]);
	if (bad) {
		snprintf(err, errlen, "map %s: capture entry longer than %d bytes", m->name, DPLAN_ENTRY_MAX);
		return -1;
	}
	snprintf(p->fo_entities[p->n_fo++], MAP_IDENT_MAX + 1, "%s", m->fo.entity_set);
	add_topic(p, "fo", m->fo.entity);
	return 0;
}

int dplan_build(const struct map_set *set, const char *schemas_dir, struct dplan **out, char *err, size_t errlen)
{
	char path[4096];
	cJSON *ce = NULL, *fo = NULL;
	struct dplan *p = calloc(1, sizeof(*p));
	int rc = -1;
	*out = NULL;
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(path, sizeof(path), "%s/ce.json", schemas_dir);
	if (!(ce = load_json(path, err, errlen)))
		goto out;
	snprintf(path, sizeof(path), "%s/fo.json", schemas_dir);
	if (!(fo = load_json(path, err, errlen)))
		goto out;
	for (size_t i = 0; i < set->n; i++)
		if (add_ce(p, set->maps[i], ce, err, errlen) != 0 || add_fo(p, set->maps[i], fo, err, errlen) != 0)
			goto out;
	*out = p;
	p = NULL;
	rc = 0;
out:
	free(p);
	cJSON_Delete(ce);
	cJSON_Delete(fo);
	return rc;
}

void dplan_print(const struct map_set *set, const struct dplan *p)
{
	printf("DEMO_MAPS='");
	for (size_t i = 0; i < set->n; i++)
		printf("%s%s", i ? " " : "", set->maps[i]->name);
	printf("'\nDEMO_CE_TABLES='");
	for (size_t i = 0; i < p->n_ce; i++)
		printf("%s%s", i ? " " : "", p->ce_tables[i]);
	printf("'\nDEMO_FO_TABLES='");
	for (size_t i = 0; i < p->n_fo; i++)
		printf("%s%s", i ? " " : "", p->fo_tables[i]);
	printf("'\nDEMO_TOPICS='");
	for (size_t i = 0; i < p->n_topics; i++)
		printf("%s%s", i ? "," : "", p->topics[i]);
	printf("'\nDEMO_WORKERS='");
	const char *sep = "";
	for (size_t i = 0; i < set->n; i++) {
		const struct map *m = set->maps[i];
		if (m->direction & MAP_DIR_CE_TO_FO) {
			printf("%s%s:fo", sep, m->name);
			sep = " ";
		}
		if (m->direction & MAP_DIR_FO_TO_CE) {
			printf("%s%s:ce", sep, m->name);
			sep = " ";
		}
	}
	printf("'\n");
}
