#include "dsetup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dplan.h"
#include "dside.h"
#include "log.h"
#include "map.h"

static int load(struct map_set **set, struct dplan **plan, char *err, size_t errlen)
{
	char *dir = NULL, *schemas = NULL;
	int rc = -1;
	*set = NULL;
	*plan = NULL;
	if (config_str("DW_MAPS_DIR", "schemas/maps", &dir, err, errlen) != 0 ||
	    config_str("DW_DEMO_EMU_SCHEMAS", "tests/emulators/schemas", &schemas, err, errlen) != 0 ||
	    map_load_dir(dir, set, err, errlen) != 0 || dplan_build(*set, schemas, plan, err, errlen) != 0)
		goto out;
	rc = 0;
out:
	if (rc) {
		map_set_free(*set);
		*set = NULL;
	}
	free(dir);
	free(schemas);
	return rc;
}

int dsetup_plan_main(void)
{
	struct map_set *set;
	struct dplan *plan;
	char err[2048];
	if (load(&set, &plan, err, sizeof(err)) != 0) {
		fprintf(stderr, "dw-demo plan: %s\n", err);
		return 1;
	}
	dplan_print(set, plan);
	free(plan);
	map_set_free(set);
	return 0;
}

/* Removes every registration the emulator holds. */
static int drop_hooks(struct dside *s, char *err, size_t errlen)
{
	long status;
	cJSON *j = NULL;
	int rc = -1;
	if (dside_admin(s, "GET", "webhooks", NULL, &status, &j, err, errlen) != 0)
		return -1;
	const cJSON *list = cJSON_IsArray(j) ? j : cJSON_GetObjectItemCaseSensitive(j, "registrations");
	const cJSON *it;
	cJSON_ArrayForEach(it, list)
	{
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
		char path[128];
		if (!cJSON_IsString(id) || strlen(id->valuestring) > 64)
			continue;
		snprintf(path, sizeof(path), "webhooks/%s", id->valuestring);
		if (dside_admin(s, "DELETE", path, NULL, &status, NULL, err, errlen) != 0)
			goto out;
	}
	rc = 0;
out:
	cJSON_Delete(j);
	return rc;
}

static int add_hook(struct dside *s, const char *entity, const char *url, const char *key, char *err, size_t errlen)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *msgs = cJSON_AddArrayToObject(o, "messages");
	long status = 0;
	int rc = -1;
	const char *m[] = { "Create", "Update", "Delete" };
	for (size_t i = 0; i < 3; i++)
		cJSON_AddItemToArray(msgs, cJSON_CreateString(m[i]));
	cJSON_AddStringToObject(o, "entity", entity);
	cJSON_AddStringToObject(o, "url", url);
	int ce = strcmp(dside_name(s), "ce") == 0;
	cJSON_AddStringToObject(o, "auth", ce ? "code" : "header");
	if (!ce)
		cJSON_AddStringToObject(o, "auth_name", "x-dw-webhook-key");
	cJSON_AddStringToObject(o, "auth_value", key);
	char *body = cJSON_PrintUnformatted(o);
	if (!body) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (dside_admin(s, "POST", "webhooks", body, &status, NULL, err, errlen) != 0)
		goto out;
	if (status != 201) {
		snprintf(err, errlen, "%s: registering %s answered HTTP %ld", dside_name(s), entity, status);
		goto out;
	}
	rc = 0;
out:
	free(body);
	cJSON_Delete(o);
	return rc;
}

int dsetup_hooks_main(const char *ce_url, const char *fo_url)
{
	struct map_set *set = NULL;
	struct dplan *plan = NULL;
	struct dside *ce = NULL, *fo = NULL;
	char *key = NULL;
	char err[2048];
	int rc = 1;
	if (load(&set, &plan, err, sizeof(err)) != 0 || config_secret("DW_DEMO_HOOK_KEY", 1, &key, err, sizeof(err)) != 0 ||
	    dside_open(EVENT_SIDE_CE, &ce, err, sizeof(err)) != 0 || dside_open(EVENT_SIDE_FO, &fo, err, sizeof(err)) != 0 ||
	    drop_hooks(ce, err, sizeof(err)) != 0 || drop_hooks(fo, err, sizeof(err)) != 0)
		goto out;
	for (size_t i = 0; i < plan->n_ce; i++)
		if (add_hook(ce, plan->ce_entities[i], ce_url, key, err, sizeof(err)) != 0)
			goto out;
	for (size_t i = 0; i < plan->n_fo; i++)
		if (add_hook(fo, plan->fo_entities[i], fo_url, key, err, sizeof(err)) != 0)
			goto out;
	printf("webhooks: %zu on ce, %zu on fo\n", plan->n_ce, plan->n_fo);
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "dw-demo hooks: %s\n", err);
	free(key);
	dside_free(ce);
	dside_free(fo);
	free(plan);
	map_set_free(set);
	return rc;
}
