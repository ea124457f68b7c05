/* Atomic units (DESIGN 5 rule 5): parts of a source transaction are staged in PostgreSQL and the
 * unit is applied as one changeset once complete, or dead-lettered whole. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "apply.h"
#include "jsonout.h"
#include "log.h"
#include "mapnames.h"
#include "sha256.h"

/* A unit that must be tried again: the completing message is retried (none for an expired unit:
 * the next expiry check takes it again). */
static void unit_retry(struct apply *a, struct item *it, const char *reason, long retry_after_ms)
{
	if (it)
		to_retry(a, it, reason, retry_after_ms);
	else
		count(a->m.retries, reason);
}

#define UNIT_MAPS_MAX 16 /* maps one unit may span (the worker's and its siblings) */

/* The worker as seen by the parts of one of the unit's maps: a copy of the worker whose map,
 * state, topics and error ring are that map's (the ring is the worker's own map only). */
struct unit_map {
	struct apply a;
	struct applystate *own; /* the state handle made for a sibling; NULL for the worker's map */
};

const struct map *apply_unit_sibling(const struct apply *a, const char *entity)
{
	if (strcmp(map_side_of(a->map, a->from)->entity, entity) == 0)
		return a->map;
	if (!a->map->atomic_unit || !a->maps)
		return NULL;
	unsigned dir = a->from == EVENT_SIDE_CE ? MAP_DIR_CE_TO_FO : MAP_DIR_FO_TO_CE;
	for (size_t i = 0; i < a->maps->n; i++) {
		const struct map *m = a->maps->maps[i];
		if (m != a->map && m->atomic_unit && strcmp(m->atomic_unit, a->map->atomic_unit) == 0 &&
		    (m->direction & dir) && strcmp(map_side_of(m, a->from)->entity, entity) == 0)
			return m;
	}
	return NULL;
}

/* The index in um[0..*n) of the context for the map of a staged part (added when new): the
 * worker's own map when the part's entity is its source entity, else the sibling map of the
 * same unit that reads that entity; the worker's map (which then rejects the part) when none.
 * Returns the index, or -1 with err. */
static int unit_map_of(struct apply *a, const char *part, struct unit_map *um, size_t *n, char *err, size_t errlen)
{
	struct event ev;
	const struct map *m = a->map;
	if (event_decode(part, strlen(part), 0, 0, &ev, err, errlen) == 0) {
		const struct map *s = ev.source.entity ? apply_unit_sibling(a, ev.source.entity) : NULL;
		if (s)
			m = s;
		event_clear(&ev);
	}
	for (size_t i = 0; i < *n; i++)
		if (um[i].a.map == m)
			return (int)i;
	if (*n == UNIT_MAPS_MAX) {
		snprintf(err, errlen, "a unit spans more than %d maps", UNIT_MAPS_MAX);
		return -1;
	}
	struct unit_map *x = &um[*n];
	x->a = *a;
	x->own = NULL;
	if (m != a->map) {
		x->a.map = m;
		x->a.err_times = NULL; /* sized for the worker's own map's threshold */
		struct mapnames names;
		if (!a->pg || applystate_new(a->pg, m->name, a->to_name, &x->own, err, errlen) != 0 ||
		    mapnames_of(a->cfg->topic_prefix, m, a->to, &names, err, errlen) != 0) {
			if (!a->pg)
				snprintf(err, errlen, "no PostgreSQL connection for map %s", m->name);
			applystate_free(x->own);
			return -1;
		}
		snprintf(x->a.source_topic, sizeof(x->a.source_topic), "%s", names.source_topic);
		snprintf(x->a.dlq_topic, sizeof(x->a.dlq_topic), "%s", names.dlq_topic);
		x->a.state = x->own;
	}
	return (int)(*n)++;
}

/* A GUID derived from a CE row's alternate key (SHA-256 of it, shaped as a version-5-style
 * UUID): the same row gets the same id from every worker and every retry. */
static void derived_guid(const char *set, const char *field, const char *value, const char *company, char out[37])
{
	char text[1024];
	uint8_t d[SHA256_DIGEST_LEN];
	snprintf(text, sizeof(text), "dualwrite\n%s\n%s\n%s\n%s", set, field, value, company ? company : "");
	sha256(text, strlen(text), d);
	d[6] = (uint8_t)((d[6] & 0x0f) | 0x50);
	d[8] = (uint8_t)((d[8] & 0x3f) | 0x80);
	static const char hx[] = "0123456789abcdef";
	size_t o = 0;
	for (size_t i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hx[d[i] >> 4];
		out[o++] = hx[d[i] & 15];
	}
	out[o] = '\0';
}

/*
 * CE: a part whose key holds a lookup to a row that another part of the same unit creates (a
 * line keyed by its new header) cannot find that row's GUID before the changeset runs. The
 * created row gets a GUID derived from its key, written as its primary key in its upsert, and
 * the resolver is told it, so the line's key and bind use it inside the one changeset.
 * Returns MAP_OK, or MAP_ERR_RESOLVE with err (a lookup failed: retry).
 */
static int preassign_ids(struct apply *a, struct item *u, const int *ci, const struct unit_map *um, size_t np,
			 char *err, size_t errlen)
{
	if (a->to != EVENT_SIDE_CE || !a->resolver)
		return MAP_OK;
	for (size_t k = 0; k < np; k++) {
		const struct item *p = &u[k];
		if (!p->mapped || p->has_out || p->st != ST_PENDING)
			continue;
		const struct map *m = um[ci[k]].a.map;
		const struct map_company *c = m->company;
		const cJSON *kv;
		cJSON_ArrayForEach(kv, p->w.key)
		{
			const struct map_lookup *lk = NULL;
			for (size_t i = 0; i < m->nfields; i++)
				if (m->fields[i].ce && strcmp(m->fields[i].ce, kv->string) == 0)
					lk = m->fields[i].lookup;
			if (!lk || !cJSON_IsString(kv))
				continue;
			/* the part of this unit that writes the related row */
			struct item *q = NULL;
			for (size_t j = 0; j < np && !q; j++) {
				const cJSON *qk = u[j].mapped ? cJSON_GetObjectItemCaseSensitive(u[j].w.key, lk->key) : NULL;
				if (j != k && u[j].w.op == MAP_WRITE_UPSERT && strcmp(u[j].w.entity_set, lk->set) == 0 &&
				    cJSON_IsString(qk) && strcmp(qk->valuestring, kv->valuestring) == 0 &&
				    (!p->w.company || !u[j].w.company || strcmp(p->w.company, u[j].w.company) == 0))
					q = &u[j];
			}
			if (!q)
				continue;
			char cguid[37] = "", guid[37];
			int rc = MAP_OK;
			if (lk->company_key && p->w.company)
				rc = resolver_guid(a->resolver, c ? c->ce_set : MAP_COMPANY_SET_DEFAULT,
						   c ? c->ce_key : MAP_COMPANY_KEY_DEFAULT, p->w.company, cguid, err, errlen);
			if (rc == MAP_OK)
				rc = cguid[0] ? resolver_guid_company(a->resolver, lk->set, lk->key, kv->valuestring,
								      lk->company_key, cguid, guid, err, errlen)
					      : resolver_guid(a->resolver, lk->set, lk->key, kv->valuestring, guid, err,
							      errlen);
			if (rc != MAP_OK && rc != MAP_NOT_FOUND)
				return MAP_ERR_RESOLVE;
			char derived[37];
			derived_guid(lk->set, lk->key, kv->valuestring, q->w.company, derived);
			if (rc == MAP_OK && strcmp(guid, derived) != 0)
				continue; /* the row exists with an id of its own: its key part resolves as usual */
			/* not there yet, or known under the id this unit gives it (an earlier attempt that
			 * may not have been written): the unit writes it with that id */
			snprintf(guid, sizeof(guid), "%s", derived);
			const struct map *qm = um[ci[q - u]].a.map;
			char idf[MAP_IDENT_MAX + 8];
			snprintf(idf, sizeof(idf), "%sid", qm->ce.entity);
			const cJSON *have = cJSON_GetObjectItemCaseSensitive(q->w.payload, idf);
			if (!have && !cJSON_AddStringToObject(q->w.payload, idf, guid)) {
				snprintf(err, errlen, "out of memory");
				return MAP_ERR_RESOLVE;
			}
			resolver_assume(a->resolver, lk->set, lk->key, kv->valuestring, cguid[0] ? lk->company_key : NULL,
					cguid, guid);
		}
	}
	return MAP_OK;
}

/* FO has no upsert and a PATCH that 404s fails the whole changeset: whether the FO record of a
 * part exists, from its sync state (written or seen there and not deleted), else a GET by key.
 * Returns 0 with *exists, or -1 with err (retry). */
static int fo_exists(struct apply *c, struct item *p, int *exists, char *err, size_t errlen)
{
	struct applystate_record rec;
	int found = 0, retryable = 0;
	memset(&rec, 0, sizeof(rec));
	if (applystate_get(c->state, p->tkey, &found, &rec, err, errlen) != 0)
		return -1;
	int known = found && !rec.deleted;
	applystate_record_clear(&rec);
	if (known) {
		*exists = 1;
		return 0;
	}
	char *body = NULL, *etag = NULL;
	if (target_read(c->target, p->tw.entity_set, p->tw.key, p->tw.nkey, &found, &body, &etag, &retryable, err,
			errlen) != 0)
		return -1;
	free(body);
	free(etag);
	*exists = found;
	return 0;
}

/* Applies the complete unit txn_id (from `side`, `total` parts) whose last part `it` just staged,
 * as ONE changeset. Every part is decoded and mapped again from its staged document with the map
 * of its entity: the worker's own map or a sibling map of the same atomic_unit in the worker's
 * map set (DESIGN 5 rule 5: parts come from any topic). Writes go in map dependency order; FO
 * records that do not exist yet are created by POST; CE rows created by the unit and referenced
 * by the key of another part get a pre-assigned GUID. A part the map or the target rejects sends
 * the whole unit to dead letters (each part to its own map's dead-letter topic, so that
 * `ctl dlq retry` of each map sends the parts back) with the reason. A lookup whose related row
 * is missing parks the completing message (re-driven later; the parts stay staged); anything
 * retryable retries it. Outcomes are recorded per map, then the parts are cleared. With `expired`
 * (it is then NULL) the unit timed out incomplete: its staged parts are dead-lettered with that
 * reason. Returns APPLY_OK or APPLY_FATAL (dead-letter producer). */
static int apply_unit(struct apply *a, struct item *it, const char *side, const char *txn_id, int total,
		      const char *expired)
{
	char err[1024];
	char **parts = NULL;
	size_t np = 0, nw = 0, nmaps = 0;
	int rc = APPLY_OK;
	struct item *u = NULL;
	struct kafka_message *um = NULL;
	struct target_write *tw = NULL;
	size_t *widx = NULL;
	struct applystate_outcome *outs = NULL;
	int *ci = NULL;
	size_t *rank = NULL;
	struct unit_map *maps = calloc(UNIT_MAPS_MAX, sizeof(*maps));
	char *bad_error = NULL, *bad_body = NULL, *park_reason = NULL;
	long bad_status = 0;
	int bad = -1, retry = 0;
	if (!maps) {
		unit_retry(a, it, "memory", 0);
		goto out;
	}
	if (applystate_txn_parts(a->state, side, txn_id, &parts, &np, err, sizeof(err)) != 0) {
		log_warn("unit parts not read; will retry", "map", a->map->name, "txn", txn_id, "error", err);
		unit_retry(a, it, "state", 0);
		goto out;
	}
	if (!expired && np != (size_t)total) {
		if (np == 0) {
			/* applied (or dead-lettered) and cleared meanwhile by another worker */
			it->st = ST_DONE;
			it->label = "duplicate";
		} else {
			unit_retry(a, it, "txn", 0);
		}
		goto out;
	}
	u = calloc(np ? np : 1, sizeof(*u));
	um = calloc(np ? np : 1, sizeof(*um));
	tw = calloc(np ? np : 1, sizeof(*tw));
	widx = calloc(np ? np : 1, sizeof(*widx));
	outs = calloc(np ? 2 * np : 1, sizeof(*outs)); /* an outcome and a SEEN per part */
	ci = calloc(np ? np : 1, sizeof(*ci));
	rank = calloc(np ? np : 1, sizeof(*rank));
	if (!u || !um || !tw || !widx || !outs || !ci || !rank) {
		unit_retry(a, it, "memory", 0);
		goto out;
	}
	for (size_t k = 0; k < np; k++) {
		int x = unit_map_of(a, parts[k], maps, &nmaps, err, sizeof(err));
		if (x < 0) {
			log_warn("unit's maps not ready; will retry", "map", a->map->name, "txn", txn_id, "error", err);
			unit_retry(a, it, "state", 0);
			goto out;
		}
		ci[k] = x;
		struct apply *c = &maps[x].a;
		um[k] = (struct kafka_message){ .topic = c->source_topic, .partition = -1, .offset = -1,
						.timestamp_ms = -1, .value = parts[k], .value_len = strlen(parts[k]) };
		if (it && c->map == a->map) {
			um[k].topic = it->msg->topic;
			um[k].partition = it->msg->partition;
			um[k].offset = it->msg->offset;
		}
		u[k].msg = &um[k];
		u[k].rep = (int)k;
		u[k].in_unit = 1;
		u[k].dlq_topic = c->dlq_topic;
		prepare(c, &u[k]);
		if (u[k].skey_fallback) {
			um[k].key = u[k].skey_fallback;
			um[k].key_len = strlen(u[k].skey_fallback);
		}
	}
	if (expired) {
		bad = 0;
		bad_error = strdup(expired);
	}
	if (bad < 0 && preassign_ids(a, u, ci, maps, np, err, sizeof(err)) != MAP_OK) {
		log_warn("unit lookups failed; will retry", "map", a->map->name, "txn", txn_id, "error", err);
		unit_retry(a, it, "resolve", 0);
		goto out;
	}
	/* writes in map dependency order (headers before their lines), each map's parts in txn order */
	for (size_t k = 0; k < np; k++) {
		size_t pos = a->maps ? a->maps->n : 0; /* maps not in the set come last */
		for (size_t j = 0; a->maps && j < a->maps->n; j++)
			if (a->maps->maps[j] == maps[ci[k]].a.map)
				pos = j;
		rank[k] = pos * (np + 1) + k;
	}
	for (size_t r = 0; r < np && bad < 0; r++) {
		size_t k = 0;
		for (size_t j = 1; j < np; j++)
			if (rank[j] < rank[k])
				k = j;
		rank[k] = SIZE_MAX;
		{
			struct apply *c = &maps[ci[k]].a;
			struct item *p = &u[k];
			if (p->st == ST_RETRY) {
				retry = 1;
				continue;
			}
			if (p->has_out && p->out.result == APPLYSTATE_PARKED) {
				if (!park_reason)
					park_reason = strdup(p->reason_owned ? p->reason_owned : "lookup target not found");
				continue;
			}
			if (p->dlq) {
				bad = (int)k;
				bad_status = p->http_status;
				bad_error = p->error ? strdup(p->error) : NULL;
				continue;
			}
			if (p->has_out || !p->mapped)
				continue; /* filtered, or our own change: nothing to write */
			int krc = key_parts(c, p, err, sizeof(err));
			if (krc == MAP_NOT_FOUND) {
				if (!park_reason)
					park_reason = strdup(err);
				continue;
			}
			if (krc == MAP_ERR_RESOLVE) {
				retry = 1;
				continue;
			}
			if (krc != MAP_OK) {
				bad = (int)k;
				bad_error = strdup(err);
				continue;
			}
			p->tw.op = p->w.op == MAP_WRITE_DELETE ? TARGET_DELETE : TARGET_UPSERT;
			p->tw.entity_set = p->w.entity_set;
			p->tw.unit = 1;
			if (p->tw.op == TARGET_UPSERT) {
				p->body = jsonout_print(p->w.payload);
				if (!p->body) {
					retry = 1;
					continue;
				}
				p->tw.body = p->body;
				int exists = 1;
				if (a->to == EVENT_SIDE_FO && fo_exists(c, p, &exists, err, sizeof(err)) != 0) {
					log_warn("FO record lookup failed; will retry", "map", c->map->name, "record", p->tkey,
						 "error", err);
					retry = 1;
					continue;
				}
				p->tw.create = !exists;
			}
			p->writing = 1;
			widx[nw++] = k;
		}
	}
	if (bad < 0 && (retry || park_reason)) {
		if (park_reason && !retry && it) {
			log_info("unit waits for a missing lookup target: the completing part is parked", "map",
				 a->map->name, "txn", txn_id, "reason", park_reason);
			park(it, park_reason);
		} else {
			log_warn("unit not applicable yet; will retry", "map", a->map->name, "txn", txn_id);
			unit_retry(a, it, "txn", 0);
		}
		goto out;
	}
	if (bad < 0 && nw > 0) {
		long long sent = apply_wall_ms();
		for (size_t j = 0; j < nw; j++) {
			tw[j] = u[widx[j]].tw;
			u[widx[j]].sent_ms = sent; /* the time its known-image entries carry */
		}
		int arc = target_apply(a->target, tw, nw, err, sizeof(err));
		for (size_t j = 0; j < nw; j++) {
			u[widx[j]].tw = tw[j];
			memset(&tw[j], 0, sizeof(tw[j]));
		}
		if (arc != 0) {
			log_error("unit write failed; will retry", "map", a->map->name, "txn", txn_id, "error", err);
			unit_retry(a, it, "target", 0);
			goto out;
		}
		long after = 0;
		for (size_t j = 0; j < nw; j++) {
			const struct target_write *w = &u[widx[j]].tw;
			/* a changeset fails with one answer for all its writes: prefer a write that failed by
			 * itself over one rolled back with it, when the target told them apart */
			if (w->outcome == TARGET_INVALID &&
			    (bad < 0 || (w->error && strncmp(w->error, "unit rolled back", 16) != 0 &&
					 u[bad].tw.error && strncmp(u[bad].tw.error, "unit rolled back", 16) == 0)))
				bad = (int)widx[j];
			else if (w->outcome == TARGET_MISSING_DEP && !park_reason)
				park_reason = strdup(w->error ? w->error : "lookup target missing");
			else if (w->outcome != TARGET_OK && w->outcome != TARGET_INVALID &&
				 w->outcome != TARGET_MISSING_DEP) {
				retry = 1;
				if (w->retry_after_ms > after)
					after = w->retry_after_ms;
			}
		}
		if (bad >= 0) {
			bad_status = u[bad].tw.status;
			bad_error = u[bad].tw.error ? strdup(u[bad].tw.error) : NULL;
			bad_body = u[bad].tw.error_body ? strdup(u[bad].tw.error_body) : NULL;
		} else if (retry || (park_reason && !it)) {
			log_warn("unit write will be retried", "map", a->map->name, "txn", txn_id);
			unit_retry(a, it, "target", after);
			goto out;
		} else if (park_reason) {
			log_info("unit waits for a missing lookup target: the completing part is parked", "map",
				 a->map->name, "txn", txn_id, "reason", park_reason);
			park(it, park_reason);
			goto out;
		} else {
			for (size_t j = 0; j < nw; j++)
				(void)settle(&maps[ci[widx[j]]].a, &u[widx[j]], 1);
		}
	}
	if (bad >= 0) {
		char why[1024];
		if (expired)
			snprintf(why, sizeof(why), "unit %s incomplete: %s", txn_id, expired);
		else if (u[bad].writing)
			snprintf(why, sizeof(why), "unit %s (%d parts) rejected by the target: %s", txn_id,
				 total, bad_error ? bad_error : "invalid");
		else
			snprintf(why, sizeof(why), "unit %s: part %d of %d rejected: %s", txn_id,
				 u[bad].decoded ? u[bad].ev.txn.order : 0, total,
				 bad_error ? bad_error : "invalid");
		for (size_t k = 0; k < np; k++) {
			u[k].has_out = 0;
			to_dlq(&u[k], expired ? "txn_timeout" : "txn_rejected", bad_status, why, bad_body);
			if (u[k].decoded && (u[k].tkey || u[k].skey_fallback))
				set_outcome(&u[k], APPLYSTATE_DEAD_LETTER, u[k].tkey ? u[k].tkey : u[k].skey_fallback);
		}
		rc = produce_dlq(a, u, np);
		if (rc == APPLY_FATAL)
			goto out;
		for (size_t k = 0; k < np; k++)
			if (u[k].st == ST_RETRY) {
				unit_retry(a, it, "dead_letter", 0);
				goto out;
			}
	}
	/* outcomes, per map (each map keeps its own state and idempotency keys) */
	for (size_t x = 0; x < nmaps; x++) {
		size_t no = 0;
		for (size_t k = 0; k < np; k++) {
			struct item *p = &u[k];
			if (ci[k] != (int)x || !p->has_out || p->st != ST_DONE)
				continue;
			outs[no++] = p->out;
			if (p->out.result != APPLYSTATE_APPLIED || p->out.deleted || !p->skey || !p->shash[0])
				continue;
			/* what the source holds: the part's image, for the field-level checks of later events */
			cJSON *e = fieldmerge_changed_entries(maps[x].a.map, maps[x].a.from, p->ev.data, p->ev.source.version,
							      p->ts, NULL);
			no += seen_outcome(p, e, &outs[no]);
		}
		if (applystate_record(maps[x].a.state, outs, no, err, sizeof(err)) != 0) {
			log_error("recording the unit failed; will retry", "map", maps[x].a.map->name, "txn", txn_id,
				  "error", err);
			unit_retry(a, it, "state", 0);
			goto out;
		}
	}
	if (applystate_txn_clear(a->state, side, txn_id, err, sizeof(err)) != 0)
		log_warn("unit parts not cleared (recorded; re-delivered parts are skipped)", "map", a->map->name, "txn",
			 txn_id, "error", err);
	for (size_t k = 0; k < np; k++)
		count(a->m.events, u[k].dlq ? "dead_letter" : u[k].has_out ? applystate_result_name(u[k].out.result) : "none");
	log_info(bad >= 0 ? "unit dead-lettered whole" : "unit applied", "map", a->map->name, "txn", txn_id);
	if (it) {
		it->st = ST_DONE;
		it->label = bad >= 0 ? "unit_dead_letter" : "unit_applied";
	}
out:
	if (u)
		for (size_t k = 0; k < np; k++)
			item_clear(&u[k]);
	for (size_t j = 0; tw && j < np; j++)
		target_write_clear(&tw[j]);
	for (size_t x = 0; x < nmaps; x++)
		applystate_free(maps[x].own);
	free(maps);
	free(u);
	free(um);
	free(tw);
	free(widx);
	free(outs);
	free(ci);
	free(rank);
	free(bad_error);
	free(bad_body);
	free(park_reason);
	applystate_strings_free(parts, np);
	return rc;
}

/* Rule 5: stages a part of a unit (its offset may then be stored: the staging is the recorded
 * outcome) and applies the unit when this part completes it. A part whose event id is recorded
 * (its unit was applied or dead-lettered) is a duplicate. Returns APPLY_OK or APPLY_FATAL. */
int stage_part(struct apply *a, struct item *it)
{
	char err[1024];
	struct applystate_item d = { .record_key = it->skey_fallback, .event_id = it->ev.id,
				     .version = it->ev.source.version, .redrive = it->redrive };
	int src = applystate_decide(a->state, &d, 1, err, sizeof(err));
	int dup = d.decision == APPLYSTATE_SKIP_DUPLICATE;
	applystate_item_clear(&d);
	if (src != 0) {
		to_retry(a, it, "state", 0);
		return APPLY_OK;
	}
	if (dup) {
		it->st = ST_DONE;
		it->label = "duplicate";
		return APPLY_OK;
	}
	char *json = value_text(it->msg);
	int staged = 0, complete = 0;
	if (!json) {
		to_retry(a, it, "memory", 0);
		return APPLY_OK;
	}
	src = applystate_txn_stage(a->state, event_side_name(it->ev.source.side), it->ev.txn.id, it->ev.txn.order,
				   it->ev.txn.total, it->ev.id, json, &staged, &complete, err, sizeof(err));
	free(json);
	if (src != 0) {
		if (strstr(err, "disagree") || strstr(err, "out of range"))
			to_dlq(it, "txn_inconsistent", 0, err, NULL);
		else
			to_retry(a, it, "state", 0);
		return APPLY_OK;
	}
	if (!complete) {
		it->st = ST_DONE;
		it->label = "staged";
		return APPLY_OK;
	}
	return apply_unit(a, it, event_side_name(it->ev.source.side), it->ev.txn.id, it->ev.txn.total, NULL);
}

int apply_expire_units(struct apply *a, char *errbuf, size_t errlen)
{
	long long now = apply_now_ms();
	if (a->map_paused || now < a->next_txn_check_ms)
		return 0;
	a->next_txn_check_ms = now + (a->txn_timeout_ms < 10000 ? a->txn_timeout_ms / 2 + 1 : 5000);
	char **sides = NULL, **ids = NULL, err[1024];
	int *staged = NULL, *total = NULL;
	size_t n = 0;
	if (applystate_txn_expired(a->state, a->txn_timeout_ms, 100, &sides, &ids, &staged, &total, &n, err,
				   sizeof(err)) != 0) {
		log_warn("expired units not read; checked again later", "map", a->map->name, "error", err);
		return 0;
	}
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		char why[256];
		snprintf(why, sizeof(why), "%d of %d parts staged after the %ld ms timeout", staged[i], total[i],
			 a->txn_timeout_ms);
		if (apply_unit(a, NULL, sides[i], ids[i], total[i], why) == APPLY_FATAL) {
			snprintf(errbuf, errlen, "dead-letter producer: fatal error");
			rc = -1;
		}
	}
	applystate_strings_free(sides, n);
	applystate_strings_free(ids, n);
	free(staged);
	free(total);
	return rc;
}
