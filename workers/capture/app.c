#include "app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "map.h"
#include "metrics.h"
#include "publish.h"
#include "capture_records.h"

void app_settings_free(struct app_settings *s)
{
	if (!s)
		return;
	free(s->env);
	free(s->url);
	free(s->service_root);
	free(s->own_user);
	for (size_t i = 0; i < s->ntables; i++) {
		capture_ce_table_clear(&s->ce_tables[i]);
		capture_fo_table_clear(&s->fo_tables[i]);
	}
	for (size_t i = 0; i < s->nkeys; i++)
		free(s->keys[i]);
	free(s->key_header);
	free(s->transactional_id);
	memset(s, 0, sizeof(*s));
}

static int parse_tables(struct app_settings *s, const char *list, char *errbuf, size_t errlen)
{
	char *copy = strdup(list);
	char *save = NULL;
	int rc = -1;
	if (!copy) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	for (char *tok = strtok_r(copy, ", \t\n", &save); tok; tok = strtok_r(NULL, ", \t\n", &save)) {
		char e[256];
		if (s->ntables == APP_TABLES_MAX) {
			snprintf(errbuf, errlen, "DW_CAPTURE_TABLES: more than %d tables", APP_TABLES_MAX);
			goto out;
		}
		int r = s->side == EVENT_SIDE_CE ? capture_ce_table_parse(tok, &s->ce_tables[s->ntables], e, sizeof(e))
						 : capture_fo_table_parse(tok, &s->fo_tables[s->ntables], e, sizeof(e));
		if (r != 0) {
			snprintf(errbuf, errlen, "DW_CAPTURE_TABLES: %s", e);
			goto out;
		}
		s->ntables++;
	}
	if (s->ntables == 0) {
		snprintf(errbuf, errlen, "DW_CAPTURE_TABLES: no table named");
		goto out;
	}
	rc = 0;
out:
	free(copy);
	return rc;
}

/* The Web API read form of CE key column k of map m: the company lookup and lookup columns are read
 * as "_<name>_value" (their GUID), other columns as themselves. */
static const char *ce_read_name(const struct map *m, const char *k, char *buf, size_t len)
{
	if (m->company && m->company->ce && strcmp(m->company->ce, k) == 0)
		return m->company->ce_value;
	for (size_t i = 0; i < m->nfields; i++) {
		const struct map_field *f = &m->fields[i];
		if (f->ce && f->lookup && strcmp(f->ce, k) == 0) {
			if (f->lookup->value)
				return f->lookup->value;
			snprintf(buf, len, "_%s_value", k);
			return buf;
		}
	}
	return k;
}

/* The FO data event name and optional modified-time field of entity set `set` from
 * DW_CAPTURE_FO_EVENTS ("<set>=<event name>[:<field>]", separated by commas or white space).
 * Returns 0 with event and field ("" when none) filled, -1 when the set is not listed. */
static int fo_event_of(const char *events, const char *set, char *event, size_t elen, char *field, size_t flen)
{
	size_t sl = strlen(set);
	for (const char *p = events; p && *p;) {
		p += strspn(p, ", \t\n");
		size_t tl = strcspn(p, ", \t\n");
		if (tl > sl + 1 && strncmp(p, set, sl) == 0 && p[sl] == '=') {
			const char *v = p + sl + 1;
			size_t vl = tl - sl - 1;
			const char *colon = memchr(v, ':', vl);
			size_t el = colon ? (size_t)(colon - v) : vl;
			size_t fl = colon ? vl - el - 1 : 0;
			if (el == 0 || el >= elen || fl >= flen || (colon && fl == 0))
				return -1;
			memcpy(event, v, el);
			event[el] = '\0';
			memcpy(field, colon ? colon + 1 : "", fl);
			field[fl] = '\0';
			return 0;
		}
		p += tl;
	}
	return -1;
}

/* One table spec (DW_CAPTURE_TABLES syntax) for map m on side s, into spec. */
static int map_table_spec(const struct app_settings *s, const struct map *m, const char *fo_events, char *spec,
			  size_t len, char *errbuf, size_t errlen)
{
	const struct map_side *ms = map_side_of(m, s->side);
	char event[160] = "", field[160] = "";
	size_t off = 0;
	int n;
	if (s->side == EVENT_SIDE_CE) {
		n = snprintf(spec, len, "%s@%s", ms->entity, ms->entity_set);
	} else {
		if (fo_event_of(fo_events, ms->entity_set, event, sizeof(event), field, sizeof(field)) != 0) {
			snprintf(errbuf, errlen,
				 "map %s: DW_CAPTURE_FO_EVENTS names no data event for %s (<set>=<event name>[:<field>])",
				 m->name, ms->entity_set);
			return -1;
		}
		n = snprintf(spec, len, "%s@%s", ms->entity_set, event);
	}
	if (n < 0 || (size_t)n >= len)
		goto long_spec;
	off = (size_t)n;
	for (size_t i = 0; i < ms->nkey; i++) {
		char buf[160];
		const char *k = s->side == EVENT_SIDE_CE ? ce_read_name(m, ms->key[i], buf, sizeof(buf)) : ms->key[i];
		n = snprintf(spec + off, len - off, "%s%s", i == 0 ? ":" : "+", k);
		if (n < 0 || (size_t)n >= len - off)
			goto long_spec;
		off += (size_t)n;
	}
	if (field[0]) {
		n = snprintf(spec + off, len - off, ":%s", field);
		if (n < 0 || (size_t)n >= len - off)
			goto long_spec;
	}
	return 0;
long_spec:
	snprintf(errbuf, errlen, "map %s: table description too long", m->name);
	return -1;
}

/* Tables from the maps: every map (of `names`, or all of DW_MAPS_DIR when nnames is 0) whose
 * direction carries changes away from this side; a table named by several maps is captured once. */
static int tables_from_maps(struct app_settings *s, const char *dir, const char *const *names, size_t nnames,
			    char *list, size_t listlen, char *errbuf, size_t errlen)
{
	struct map_set *set = NULL;
	char *fo_events = NULL;
	int rc = -1;
	size_t off = 0;
	unsigned bit = s->side == EVENT_SIDE_CE ? MAP_DIR_CE_TO_FO : MAP_DIR_FO_TO_CE;
	list[0] = '\0';
	if (map_load_dir(dir, &set, errbuf, errlen) != 0)
		goto out;
	if (s->side == EVENT_SIDE_FO && config_str("DW_CAPTURE_FO_EVENTS", NULL, &fo_events, errbuf, errlen) != 0)
		goto out;
	for (size_t i = 0; i < nnames; i++) {
		if (!map_set_find(set, names[i])) {
			snprintf(errbuf, errlen, "--map %s: no such map in %s", names[i], dir);
			goto out;
		}
	}
	for (size_t i = 0; i < set->n; i++) {
		const struct map *m = set->maps[i];
		int wanted = nnames == 0;
		for (size_t j = 0; j < nnames; j++)
			wanted |= strcmp(names[j], m->name) == 0;
		if (!wanted || !(m->direction & bit))
			continue;
		const char *entity = map_side_of(m, s->side)->entity_set;
		int seen = 0;
		for (size_t j = 0; j < s->ntables; j++)
			seen |= strcmp(s->side == EVENT_SIDE_CE ? s->ce_tables[j].set : s->fo_tables[j].set, entity) == 0;
		if (seen)
			continue;
		char spec[1024], e[256];
		if (map_table_spec(s, m, fo_events, spec, sizeof(spec), errbuf, errlen) != 0)
			goto out;
		if (s->ntables == APP_TABLES_MAX) {
			snprintf(errbuf, errlen, "maps: more than %d tables", APP_TABLES_MAX);
			goto out;
		}
		int r = s->side == EVENT_SIDE_CE ? capture_ce_table_parse(spec, &s->ce_tables[s->ntables], e, sizeof(e))
						 : capture_fo_table_parse(spec, &s->fo_tables[s->ntables], e, sizeof(e));
		if (r != 0) {
			snprintf(errbuf, errlen, "map %s: %s", m->name, e);
			goto out;
		}
		s->ntables++;
		int n = snprintf(list + off, listlen - off, "%s%s", off ? "," : "", spec);
		if (n > 0 && (size_t)n < listlen - off)
			off += (size_t)n;
	}
	if (s->ntables == 0) {
		snprintf(errbuf, errlen, "no map in %s carries changes from %s (and DW_CAPTURE_TABLES is not set)", dir,
			 s->side_name);
		goto out;
	}
	rc = 0;
out:
	free(fo_events);
	map_set_free(set);
	return rc;
}

int app_settings_load(enum event_side side, const char *const *maps, size_t nmaps, struct app_settings *s,
		      char *errbuf, size_t errlen)
{
	char name[64];
	char *tables = NULL, *keys = NULL, *maps_dir = NULL;
	long body_cap = 0;
	int rc = -1;

	memset(s, 0, sizeof(*s));
	s->side = side;
	s->side_name = side == EVENT_SIDE_CE ? "ce" : "fo";
	s->side_upper = side == EVENT_SIDE_CE ? "CE" : "FO";
	if (config_str("DW_ENV", "default", &s->env, errbuf, errlen) != 0)
		goto out;
	snprintf(name, sizeof(name), "DW_%s_URL", s->side_upper);
	if (config_str_required(name, &s->url, errbuf, errlen) != 0)
		goto out;
	size_t ul = strlen(s->url);
	while (ul > 0 && s->url[ul - 1] == '/')
		s->url[--ul] = '\0';
	if (asprintf(&s->service_root, "%s%s", s->url, side == EVENT_SIDE_CE ? "/api/data/v9.2/" : "/data/") < 0) {
		s->service_root = NULL;
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	snprintf(name, sizeof(name), "DW_%s_OWN_USER_ID", s->side_upper);
	if (config_str(name, NULL, &s->own_user, errbuf, errlen) != 0)
		goto out;
	if (config_str("DW_CAPTURE_TABLES", NULL, &tables, errbuf, errlen) != 0)
		goto out;
	if (tables) {
		if (parse_tables(s, tables, errbuf, errlen) != 0)
			goto out;
		snprintf(s->tables_from, sizeof(s->tables_from), "DW_CAPTURE_TABLES");
		snprintf(s->tables_list, sizeof(s->tables_list), "%s", tables);
	} else {
		if (config_str("DW_MAPS_DIR", "schemas/maps", &maps_dir, errbuf, errlen) != 0 ||
		    tables_from_maps(s, maps_dir, maps, nmaps, s->tables_list, sizeof(s->tables_list), errbuf,
				     errlen) != 0)
			goto out;
		snprintf(s->tables_from, sizeof(s->tables_from), "maps in %s", maps_dir);
	}
	if (config_duration_ms("DW_CAPTURE_POLL_INTERVAL", 5000, 10, 86400000LL, &s->poll_ms, errbuf, errlen) != 0 ||
	    config_bool("DW_CAPTURE_DELTA", 1, &s->delta, errbuf, errlen) != 0 ||
	    config_duration_ms("DW_CAPTURE_DELTA_GRACE", 10000, 0, 3600000, &s->delta_grace_ms, errbuf, errlen) != 0 ||
	    config_duration_ms("DW_CAPTURE_TXN_SETTLE", 200, 0, 60000, &s->settle_ms, errbuf, errlen) != 0 ||
	    config_duration_ms("DW_CAPTURE_TXN_TIMEOUT", 10000, 1000, 900000, &s->txn_timeout_ms, errbuf, errlen) != 0 ||
	    config_long("DW_CAPTURE_BODY_CAP", 1024 * 1024, 1024, 64L * 1024 * 1024, &body_cap, errbuf, errlen) != 0 ||
	    config_str("DW_CAPTURE_WEBHOOK_HEADER", "x-dw-webhook-key", &s->key_header, errbuf, errlen) != 0 ||
	    config_secret("DW_CAPTURE_WEBHOOK_KEY", 0, &keys, errbuf, errlen) != 0)
		goto out;
	s->body_cap = body_cap;
	if (keys) {
		char *save = NULL;
		for (char *tok = strtok_r(keys, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			if (!*tok)
				continue;
			if (s->nkeys == APP_KEYS_MAX) {
				snprintf(errbuf, errlen, "DW_CAPTURE_WEBHOOK_KEY: more than %d keys", APP_KEYS_MAX);
				goto out;
			}
			s->keys[s->nkeys] = strdup(tok);
			if (!s->keys[s->nkeys]) {
				snprintf(errbuf, errlen, "out of memory");
				goto out;
			}
			(void)log_secret_add(tok);
			s->nkeys++;
		}
	}
	char def_tid[300];
	snprintf(def_tid, sizeof(def_tid), "dw-capture-%s-%s", s->side_name, s->env);
	if (config_str("DW_CAPTURE_TRANSACTIONAL_ID", def_tid, &s->transactional_id, errbuf, errlen) != 0)
		goto out;
	rc = 0;
out:
	if (keys) {
		memset(keys, 0, strlen(keys));
		free(keys);
	}
	free(tables);
	free(maps_dir);
	if (rc != 0)
		app_settings_free(s);
	return rc;
}

int app_key_ok(const struct app *a, const char *key)
{
	if (!key)
		return 0;
	size_t kl = strlen(key);
	int ok = 0;
	for (size_t i = 0; i < a->set.nkeys; i++) {
		const char *k = a->set.keys[i];
		size_t l = strlen(k);
		unsigned char diff = (unsigned char)(l != kl);
		for (size_t j = 0; j < l; j++)
			diff |= (unsigned char)(k[j] ^ (j < kl ? key[j] : 0));
		ok |= diff == 0;
	}
	return ok;
}

static const char *event_record_id(const struct event *ev, char *buf, size_t len)
{
	char idf[EVENT_ENTITY_MAX + 4];
	snprintf(idf, sizeof(idf), "%sid", ev->source.entity);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev->key, idf);
	if (!cJSON_IsString(id))
		return NULL;
	snprintf(buf, len, "%s", id->valuestring);
	return buf;
}

int app_confirm(struct app *a, const struct event *evs, size_t n, const int *alive, char *errbuf, size_t errlen)
{
	if (a->set.side != EVENT_SIDE_CE || n == 0)
		return 0;
	int rc = -1;
	size_t m = 0;
	int *done = calloc(n, sizeof(*done));
	const char **ids = calloc(n, sizeof(*ids));
	char **keys = calloc(n, sizeof(*keys));
	char (*idbuf)[64] = calloc(n, sizeof(*idbuf));
	long long *vers = calloc(n, sizeof(*vers));
	int *al = calloc(n, sizeof(*al));
	if (!done || !ids || !keys || !idbuf || !vers || !al) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	/* one statement per entity (a unit may span tables) */
	for (size_t i = 0; i < n; i++) {
		if (done[i] || evs[i].op == EVENT_OP_DELETE)
			continue;
		m = 0;
		for (size_t j = i; j < n; j++) {
			if (done[j] || evs[j].op == EVENT_OP_DELETE || strcmp(evs[j].source.entity, evs[i].source.entity) != 0)
				continue;
			done[j] = 1;
			if (!event_record_id(&evs[j], idbuf[m], sizeof(idbuf[m])))
				continue;
			keys[m] = cJSON_PrintUnformatted(evs[j].key);
			if (!keys[m]) {
				snprintf(errbuf, errlen, "out of memory");
				goto out;
			}
			ids[m] = idbuf[m];
			vers[m] = evs[j].source.version;
			al[m] = alive ? alive[j] : 0;
			m++;
		}
		int r = capture_records_confirm(a->rec, a->set.side_name, a->set.env, evs[i].source.entity, m, ids,
					(const char *const *)keys, vers, al, errbuf, errlen);
		for (size_t k = 0; k < m; k++) {
			free(keys[k]);
			keys[k] = NULL;
		}
		m = 0;
		if (r != 0)
			goto out;
	}
	rc = 0;
out:
	for (size_t k = 0; keys && k < m; k++)
		free(keys[k]);
	free(done);
	free(keys);
	free(ids);
	free(idbuf);
	free(vers);
	free(al);
	return rc;
}

int app_publish(struct app *a, struct event *evs, size_t n, const int *alive, char *errbuf, size_t errlen)
{
	struct publish_unit *u = publish_unit_new();
	if (!u) {
		snprintf(errbuf, errlen, "out of memory");
		return PUBLISH_ERR;
	}
	int rc = app_publish_unit(a, u, evs, n, alive, errbuf, errlen);
	publish_unit_free(u);
	return rc;
}

int app_publish_unit(struct app *a, struct publish_unit *u, struct event *evs, size_t n, const int *alive,
		     char *errbuf, size_t errlen)
{
	int rc = PUBLISH_ERR;
	char e[512];
	for (size_t i = 0; i < n; i++) {
		if (publish_unit_add(u, a->cfg->topic_prefix, &evs[i], e, sizeof(e)) != 0) {
			snprintf(errbuf, errlen, "%s", e);
			rc = PUBLISH_ERR_INVALID;
			goto out;
		}
	}
	rc = publish_send(a->pub, u, e, sizeof(e));
	if (rc != 0) {
		snprintf(errbuf, errlen, "%s", e);
		for (size_t i = 0; i < n; i++) {
			const char *lv[] = { evs[i].source.entity };
			metrics_counter_add(a->m_failures, lv, 1);
		}
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const char *lv[] = { evs[i].source.entity, event_op_name(evs[i].op) };
		metrics_counter_add(a->m_events, lv, 1);
	}
	if (app_confirm(a, evs, n, alive, e, sizeof(e)) != 0) {
		/* published: the record table only lags (a re-capture gives the same ids) */
		log_warn("could not record published versions", "reason", e);
	}
	rc = 0;
out:
	return rc;
}

int app_complete_delete(struct app *a, struct event *ev, const char *record_id, char *errbuf, size_t errlen)
{
	char *key_text = cJSON_PrintUnformatted(ev->key);
	char *stored = NULL;
	long long version = 0;
	int rc = -1;
	char e[256];
	if (!key_text) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	if (capture_records_delete(a->rec, a->set.side_name, a->set.env, ev->source.entity, record_id, key_text,
				   ev->source.version, &version, &stored, errbuf, errlen) != 0)
		goto out;
	cJSON *key = cJSON_Parse(stored);
	if (!cJSON_IsObject(key)) {
		cJSON_Delete(key);
		snprintf(errbuf, errlen, "stored key of %s is not an object", record_id);
		goto out;
	}
	cJSON_Delete(ev->key);
	ev->key = key;
	ev->source.version = version;
	if (event_compute_id(ev, e, sizeof(e)) != 0) {
		snprintf(errbuf, errlen, "delete event: %s", e);
		goto out;
	}
	rc = 0;
out:
	free(key_text);
	free(stored);
	return rc;
}
