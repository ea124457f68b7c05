/* One poll batch of the apply worker: decode, map, collapse, decide, write, dead-letter, record
 * (in line, or in a thread while the next batch goes on), then store and commit offsets;
 * retryable failures seek back and pause (DESIGN 5). */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "apply.h"
#include "fieldmerge.h"
#include "jsonout.h"
#include "log.h"
#include "sha256.h"

/* Retries of one record's write a 412 waits for the target's own change event before deciding
 * without it; a run of waits older than CONFLICT_WAIT_RESET_MS starts again. */
#define CONFLICT_WAIT_MAX 8
#define CONFLICT_WAIT_RESET_MS 300000

/* If-Match for a record whose ETag this worker does not know: matches no entity tag. */
#define ETAG_UNKNOWN "W/\"dw-unknown\""

long long apply_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long apply_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int apply_metrics_init(struct metrics *reg, struct apply_metrics *m, char *errbuf, size_t errlen)
{
	static const char *const outcome[] = { "outcome", NULL };
	static const char *const reason[] = { "reason", NULL };
	static const char *const status[] = { "status", NULL };
	static const char *const partition[] = { "partition", NULL };
	if (metrics_counter_new(reg, "dw_apply_events_total",
				"Events by outcome: applied, duplicate, echo, filtered, parked, dead_letter", outcome,
				&m->events, errbuf, errlen) != 0 ||
	    metrics_counter_new(reg, "dw_apply_conflicts_total", "412 conflicts by how they ended", outcome,
				&m->conflicts, errbuf, errlen) != 0 ||
	    metrics_counter_new(reg, "dw_apply_retries_total", "Events put back for a retry, by reason", reason,
				&m->retries, errbuf, errlen) != 0 ||
	    metrics_counter_new(reg, "dw_apply_target_http_total", "Target answers per write by HTTP status",
				status, &m->http, errbuf, errlen) != 0 ||
	    metrics_counter_new(reg, "dw_apply_batches_total", "Poll batches processed", NULL, &m->batches, errbuf,
				errlen) != 0 ||
	    metrics_gauge_new(reg, "dw_apply_consumer_lag", "Messages behind the end of the partition after a batch",
			      partition, &m->lag, errbuf, errlen) != 0 ||
	    metrics_gauge_new(reg, "dw_apply_parked_events", "Events parked for this map and target side", NULL,
			      &m->parked, errbuf, errlen) != 0 ||
	    metrics_histogram_new(reg, "dw_apply_batch_seconds", "Time to process one poll batch", NULL,
				  metrics_buckets_default, METRICS_BUCKETS_DEFAULT_N, &m->batch_s, errbuf, errlen) != 0 ||
	    metrics_histogram_new(reg, "dw_apply_end_to_end_seconds",
				  "Source change time to target acknowledgement", NULL, metrics_buckets_default,
				  METRICS_BUCKETS_DEFAULT_N, &m->e2e_s, errbuf, errlen) != 0)
		return -1;
	return 0;
}

void count(struct metrics_family *f, const char *label)
{
	const char *v[] = { label };
	metrics_counter_add(f, v, 1);
}

void item_clear(struct item *it)
{
	event_clear(&it->ev);
	map_write_clear(&it->w);
	free(it->tkey);
	free(it->skey);
	free(it->skey_fallback);
	free(it->reason_owned);
	free(it->error);
	free(it->error_body);
	applystate_item_clear(&it->ai);
	target_write_clear(&it->tw);
	free(it->body);
	free(it->if_match);
	free(it->event_json);
	cJSON_Delete(it->known_src);
	cJSON_Delete(it->known_dst);
	fieldmerge_plan_clear(&it->plan);
	free(it->image_out);
	free(it->seen_image);
}

static void set_text(char **dst, const char *src)
{
	free(*dst);
	*dst = src ? strdup(src) : NULL;
}

/* Sends the item to the dead-letter topic (produced later, in one go). */
void to_dlq(struct item *it, const char *reason, long status, const char *error, const char *body)
{
	it->dlq = 1;
	it->dlq_reason = reason;
	it->http_status = status;
	set_text(&it->error, error);
	set_text(&it->error_body, body);
	it->st = ST_DONE;
}

void to_retry(struct apply *a, struct item *it, const char *reason, long retry_after_ms)
{
	it->st = ST_RETRY;
	log_debug("retry", "map", a->map->name, "record", it->tkey ? it->tkey : "", "reason", reason);
	if (retry_after_ms > it->retry_after_ms)
		it->retry_after_ms = retry_after_ms;
	count(a->m.retries, reason);
}

int seen_outcome(struct item *it, cJSON *entries, struct applystate_outcome *out)
{
	free(it->seen_image);
	it->seen_image = jsonout_print(entries);
	cJSON_Delete(entries);
	if (!it->seen_image)
		return 0;
	*out = (struct applystate_outcome){ .result = APPLYSTATE_SEEN, .record_key = it->skey, .seen_hash = it->shash,
					    .image = it->seen_image };
	return 1;
}

/* Records outcome r for a decoded event, keyed by `key`. */
void set_outcome(struct item *it, enum applystate_result r, const char *key)
{
	it->has_out = 1;
	it->st = ST_DONE;
	it->out = (struct applystate_outcome){ .result = r, .record_key = key, .event_id = it->ev.id,
					       .version = it->ev.source.version, .source_ts_ms = it->ev.source.ts };
}

/* A copy of the message value as a NUL-terminated string (for parking). */
char *value_text(const struct kafka_message *m)
{
	char *s = malloc(m->value_len + 1);
	if (s) {
		memcpy(s, m->value, m->value_len);
		s[m->value_len] = '\0';
	}
	return s;
}

/* Parks the event (or queues it behind the record's parked events). Parked events are filed under
 * the event's canonical source key (the Kafka message key), which is known even when mapping
 * failed, so that every later event of the record finds them (applystate_item.park_key). */
void park(struct item *it, const char *reason)
{
	if (it->park_expired) {
		/* parked for DW_APPLY_PARK_MAX_AGE and still not applicable: an operator's case now */
		to_dlq(it, "parked_too_long", 0, reason && reason[0] ? reason : "lookup target not found", NULL);
		return;
	}
	it->event_json = value_text(it->msg);
	set_text(&it->reason_owned, reason && reason[0] ? reason : "lookup target not found");
	set_outcome(it, APPLYSTATE_PARKED, it->skey_fallback);
	it->out.event_json = it->event_json;
	it->out.reason = it->reason_owned ? it->reason_owned : "parked";
	if (!it->event_json) {
		it->has_out = 0;
		it->st = ST_RETRY;
	}
}

/* The record's key on the source side in the map's terms: the side's key fields from the event
 * (data, then key), the company column carrying the code the transform resolved. */
static char *source_key(const struct apply *a, const struct item *it)
{
	const struct map_side *s = map_side_of(a->map, a->from);
	cJSON *k = cJSON_CreateObject();
	char *out = NULL, err[256];
	if (!k)
		return NULL;
	for (size_t i = 0; i < s->nkey; i++) {
		const char *name = s->key[i];
		const cJSON *v = NULL;
		cJSON *code = NULL;
		const char *company_col = a->map->company ? (a->from == EVENT_SIDE_CE ? a->map->company->ce
										     : a->map->company->fo)
							  : NULL;
		if (company_col && strcmp(name, company_col) == 0 && it->w.company) {
			code = cJSON_CreateString(it->w.company);
			v = code;
		} else {
			v = it->ev.data ? cJSON_GetObjectItemCaseSensitive(it->ev.data, name) : NULL;
			if (!v)
				v = cJSON_GetObjectItemCaseSensitive(it->ev.key, name);
		}
		if (!v || (!cJSON_IsString(v) && !cJSON_IsNumber(v))) {
			cJSON_Delete(code);
			goto out;
		}
		cJSON *c = code ? code : cJSON_Duplicate(v, 0);
		if (!c || !cJSON_AddItemToObject(k, name, c)) {
			cJSON_Delete(c);
			goto out;
		}
	}
	if (event_key_string(k, &out, err, sizeof(err)) != 0)
		out = NULL;
out:
	cJSON_Delete(k);
	return out;
}

/* Image hash of the write in target terms: the payload with the key fields added. */
static int write_hash(const struct apply *a, const struct map_write *w, char hex[SHA256_HEX_LEN + 1])
{
	return map_image_hash_of(a->map, a->to, w->payload, w->key, hex);
}

/* Step 1: decode and map one message. */
void prepare(struct apply *a, struct item *it)
{
	char err[1024];
	const struct map_side *src = map_side_of(a->map, a->from);
	if (!it->msg->value) {
		to_dlq(it, "decode", 0, "tombstone: the message has no value", NULL);
		return;
	}
	if (event_decode(it->msg->value, it->msg->value_len, 0, 0, &it->ev, err, sizeof(err)) != 0) {
		to_dlq(it, "decode", 0, err, NULL);
		return;
	}
	it->decoded = 1;
	it->ts = it->ev.source.ts > 0 ? it->ev.source.ts : apply_wall_ms();
	if (it->ev.source.side != a->from || strcmp(it->ev.source.entity, src->entity) != 0) {
		snprintf(err, sizeof(err), "event from %s.%s does not belong to map %s (%s.%s)",
			 event_side_name(it->ev.source.side), it->ev.source.entity, a->map->name, a->from_name,
			 src->entity);
		to_dlq(it, "wrong_entity", 0, err, NULL);
		return;
	}
	if (event_key_string(it->ev.key, &it->skey_fallback, err, sizeof(err)) != 0) {
		to_dlq(it, "decode", 0, err, NULL);
		return;
	}
	/* a unit of one part is atomic by itself: it takes the per-record path, with its echo and
	 * field-level checks (Dataverse marks single writes made in a changeset as a transaction) */
	if (it->ev.has_txn && it->ev.txn.total > 1 && !it->in_unit) {
		it->txn = 1;
		return;
	}
	if (a->map->aggregate) {
		int arc = apply_aggregate(a, &it->ev, apply_wall_ms(), err, sizeof(err));
		if (arc == MAP_NOT_FOUND) {
			park(it, err);
			return;
		}
		if (arc == MAP_ERR_RESOLVE) {
			log_warn("aggregate group not read; will retry", "map", a->map->name, "error", err);
			to_retry(a, it, "aggregate", 0);
			return;
		}
		if (arc != MAP_OK) {
			to_dlq(it, "map", 0, err, NULL);
			return;
		}
	}
	struct map_resolver r = { resolver_map_cb, a->resolver, resolver_guid_cb };
	int rc = map_transform(a->map, &it->ev, a->resolver ? &r : NULL, &it->w, err, sizeof(err));
	switch (rc) {
	case MAP_OK:
		break;
	case MAP_OUT_OF_SCOPE:
		set_outcome(it, APPLYSTATE_FILTERED, it->skey_fallback);
		return;
	case MAP_NOT_FOUND:
		park(it, err);
		return;
	case MAP_ERR_RESOLVE:
		log_warn("lookup failed; will retry", "map", a->map->name, "error", err);
		to_retry(a, it, "resolve", 0);
		return;
	default:
		to_dlq(it, "map", 0, err, NULL);
		return;
	}
	it->mapped = 1;
	if (event_key_string(it->w.key, &it->tkey, err, sizeof(err)) != 0) {
		to_dlq(it, "map", 0, err, NULL);
		return;
	}
	if (it->w.op == MAP_WRITE_UPSERT && write_hash(a, &it->w, it->thash) != 0) {
		to_dlq(it, "map", 0, "cannot hash the mapped payload", NULL);
		return;
	}
	it->skey = source_key(a, it);
	if (it->ev.data && cJSON_IsObject(it->ev.data) && map_image_hash(a->map, a->from, it->ev.data, it->shash) != 0)
		it->shash[0] = '\0';
	if (it->ev.source.own)
		set_outcome(it, APPLYSTATE_ECHO, it->tkey);
}

/* ---- conflict waits, counted per record ----------------------------------------------------- */

/* FNV-1a of a record key: the conflict waits' table and the keys two batches share are compared
 * by it (a collision only merges two records' wait counts or costs an overlap). */
static uint64_t key_hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static uint64_t wait_key(const char *tkey)
{
	uint64_t k = key_hash(tkey);
	return k ? k : 1;
}

/* The record's slot in a->waits, or NULL when it has none. */
static struct apply_wait *wait_find(struct apply *a, uint64_t k)
{
	for (size_t i = 0; i < APPLY_WAITS_MAX; i++)
		if (a->waits[i].key == k)
			return &a->waits[i];
	return NULL;
}

/* How many times in a row the record's write has waited (0: none, or the run is stale). */
static unsigned waits_of(struct apply *a, const char *tkey)
{
	const struct apply_wait *w = wait_find(a, wait_key(tkey));
	if (!w || apply_now_ms() - w->last_ms > CONFLICT_WAIT_RESET_MS)
		return 0;
	return w->n;
}

/* Counts one more wait of the record; a full table gives the slot of the longest idle record. */
static void wait_note(struct apply *a, const char *tkey)
{
	uint64_t k = wait_key(tkey);
	long long now = apply_now_ms();
	struct apply_wait *w = wait_find(a, k);
	if (!w) {
		w = &a->waits[0];
		for (size_t i = 0; i < APPLY_WAITS_MAX && w->key; i++)
			if (!a->waits[i].key || a->waits[i].last_ms < w->last_ms)
				w = &a->waits[i];
		*w = (struct apply_wait){ .key = k };
	}
	if (now - w->last_ms > CONFLICT_WAIT_RESET_MS)
		w->n = 0;
	w->n++;
	w->last_ms = now;
}

/* The record's write is settled (written, or nothing left to write): its run of waits ends. */
static void wait_end(struct apply *a, const char *tkey)
{
	struct apply_wait *w = wait_find(a, wait_key(tkey));
	if (w)
		memset(w, 0, sizeof(*w));
}

/* Step 2: restricts the item's payload to the fields its event changed and settles fields the
 * target changed later by the map's policy (fieldmerge_plan). Returns 1 when something is left to
 * write, 0 when nothing is (an echo or a change already overtaken), -1 on out of memory. */
static int plan_write(struct apply *a, struct item *it)
{
	if (it->ai.src_image)
		it->known_src = cJSON_Parse(it->ai.src_image);
	if (it->ai.has_prev && it->ai.prev.image)
		it->known_dst = cJSON_Parse(it->ai.prev.image);
	if (fieldmerge_plan(a->map, a->from, it->ev.data, it->ev.source.version, it->ts, it->known_src, it->known_dst, it->w.payload,
			    &it->plan) != 0)
		return -1;
	if (log_enabled(LOG_DEBUG)) {
		char nw[16], nu[16], nl[16], nt[16];
		snprintf(nw, sizeof(nw), "%d", it->plan.nwrite);
		snprintf(nu, sizeof(nu), "%d", it->plan.nunchanged);
		snprintf(nl, sizeof(nl), "%d", it->plan.nlost);
		snprintf(nt, sizeof(nt), "%d", it->plan.nlate);
		char tsb[32];
		snprintf(tsb, sizeof(tsb), "%lld", it->ts);
		char *pl = cJSON_PrintUnformatted(it->w.payload);
		log_debug("field plan", "map", a->map->name, "record", it->tkey, "ts", tsb, "write", nw, "unchanged", nu,
			  "lost", nl, "late", nt, "payload", pl ? pl : "");
		free(pl);
	}
	/* what the source side holds once this is written or found an echo (the SEEN outcome), while
	 * its known image is parsed: the entries do not depend on the write */
	if (it->skey && it->shash[0]) {
		cJSON *e = fieldmerge_changed_entries(a->map, a->from, it->ev.data, it->ev.source.version, it->ts,
						      it->known_src);
		free(it->seen_image);
		it->seen_image = jsonout_print(e);
		it->seen_guard = it->seen_image && it->known_src && it->ai.src_image_rev &&
				 fieldmerge_wins_all(it->known_src, e);
		it->seen_planned = 1;
		cJSON_Delete(e);
	}
	int known = it->known_dst != NULL;
	/* the source's image is done with; the target's is read again by the outcome of the write
	 * (applied_image, which drops it) */
	cJSON_Delete(it->known_src);
	it->known_src = NULL;
	if (it->plan.nwrite == 0 && known)
		return 0;
	return 1;
}

/* The known image of the target record, parsed again from its text when plan_write dropped it;
 * NULL when nothing is known (or out of memory: then the caller treats it as unknown, as before). */
static const cJSON *known_dst_of(struct item *it)
{
	if (!it->known_dst && it->ai.has_prev && it->ai.prev.image)
		it->known_dst = cJSON_Parse(it->ai.prev.image);
	return it->known_dst;
}

/* Step 3: the target key parts of a CE or FO write. Returns 0, MAP_NOT_FOUND or MAP_ERR_RESOLVE. */
int key_parts(struct apply *a, struct item *it, char *err, size_t errlen)
{
	const cJSON *k;
	size_t n = 0;
	const struct map_company *c = a->map->company;
	cJSON_ArrayForEach(k, it->w.key)
	{
		if (n == EVENT_KEY_FIELDS_MAX)
			break;
		struct odata_key_part *p = &it->keys[n];
		p->name = k->string;
		p->enum_type = NULL;
		const struct map_lookup *lk = NULL;
		const char *set = NULL, *field = NULL;
		if (a->to == EVENT_SIDE_CE) {
			if (c && strcmp(k->string, c->ce) == 0) {
				set = c->ce_set;
				field = c->ce_key;
			} else {
				for (size_t i = 0; i < a->map->nfields; i++)
					if (a->map->fields[i].ce && strcmp(a->map->fields[i].ce, k->string) == 0)
						lk = a->map->fields[i].lookup;
				if (lk) {
					set = lk->set;
					field = lk->key;
				}
			}
		}
		char text[64];
		const char *value;
		if (cJSON_IsString(k)) {
			value = k->valuestring;
		} else if (cJSON_IsNumber(k)) {
			snprintf(text, sizeof(text), "%.0f", k->valuedouble);
			value = text;
		} else {
			snprintf(err, errlen, "key field %s is neither a string nor a number", k->string);
			return MAP_ERR_EVENT;
		}
		if (set) {
			if (!a->resolver) {
				snprintf(err, errlen, "key field %s needs a CE lookup and no resolver is set", k->string);
				return MAP_ERR_EVENT;
			}
			err[0] = '\0';
			int rc;
			if (lk && lk->company_key && it->w.company) {
				/* the related row's alternate key includes the company */
				char cguid[37];
				rc = resolver_guid(a->resolver, c ? c->ce_set : MAP_COMPANY_SET_DEFAULT,
						   c ? c->ce_key : MAP_COMPANY_KEY_DEFAULT, it->w.company, cguid, err, errlen);
				if (rc == MAP_OK)
					rc = resolver_guid_company(a->resolver, set, field, value, lk->company_key, cguid,
								   it->keybuf[n], err, errlen);
			} else {
				rc = resolver_guid(a->resolver, set, field, value, it->keybuf[n], err, errlen);
			}
			if (rc == MAP_NOT_FOUND && !err[0])
				snprintf(err, errlen, "key field %s: no %s row with %s = '%s' on CE", k->string, set, field,
					 value);
			if (rc != MAP_OK)
				return rc;
			p->value = it->keybuf[n];
			p->kind = ODATA_KIND_GUID;
		} else if (cJSON_IsNumber(k)) {
			snprintf(it->keybuf[n], sizeof(it->keybuf[n]), "%s", text);
			p->value = it->keybuf[n];
			p->kind = ODATA_KIND_INT;
		} else {
			p->value = k->valuestring;
			p->kind = ODATA_KIND_STRING;
		}
		n++;
	}
	it->tw.key = it->keys;
	it->tw.nkey = n;
	return MAP_OK;
}

/* Whether the map's conflict policy lets this side's change win over the target's. */
static int source_wins(const struct apply *a)
{
	switch (a->map->conflict) {
	case MAP_CONFLICT_CE_WINS: return a->from == EVENT_SIDE_CE;
	case MAP_CONFLICT_FO_WINS: return a->from == EVENT_SIDE_FO;
	case MAP_CONFLICT_LATEST_WINS: return 1; /* the event is the newest change known here */
	}
	return 0;
}

/*
 * The target's known-image entries after a successful upsert (it->image_out) and the hash of its
 * image (it->out.seen_hash): from the representation when the target returned one; otherwise the
 * image known before with the written fields laid over it (FO answers 204 without a body), so that
 * the echo of this write is recognised either way.
 */
static void applied_image(struct apply *a, struct item *it, const char *representation)
{
	cJSON *rep = representation ? cJSON_Parse(representation) : NULL;
	/* a unit's part has no plan: it carries its whole payload */
	cJSON *written = it->plan.written ? cJSON_Duplicate(it->plan.written, 1)
			 : it->in_unit    ? fieldmerge_payload_entries(a->map, a->to, it->w.payload, it->ts)
					  : NULL;
	cJSON *values = NULL;
	if (rep && map_image_hash(a->map, a->to, rep, it->rhash) == 0)
		it->out.seen_hash = it->rhash;
	if (!written)
		goto out;
	if (it->tw.created) {
		/* a record we just created holds nothing but what we wrote (and its defaults): every
		 * field of its image is known */
		cJSON *all = fieldmerge_entries(a->map, a->to, rep ? rep : it->w.payload, it->ts);
		if (!all || (!rep && fieldmerge_merge(all, written) != 0)) {
			cJSON_Delete(all);
			goto out;
		}
		cJSON_Delete(written);
		written = all;
	} else if (rep && fieldmerge_observe(a->map, a->to, it->w.payload, rep, it->ts, written) != 0) {
		goto out;
	}
	const cJSON *vn = rep ? cJSON_GetObjectItemCaseSensitive(rep, "versionnumber") : NULL;
	if (fieldmerge_stamp(written, it->sent_ms, a->from, cJSON_IsNumber(vn) ? (long long)vn->valuedouble : 0, it->ts,
			     it->ev.source.version) != 0)
		goto out;
	it->image_out = jsonout_print(written);
	it->out.image = it->image_out;
	/* every entry newer than the known image the decision read: recording may skip the merge */
	if (it->out.image && it->ai.has_prev && it->ai.prev.image_rev && known_dst_of(it) &&
	    fieldmerge_wins_all(it->known_dst, written))
		it->out.image_guard = it->ai.prev.image_rev;
	if (rep || !known_dst_of(it))
		goto out;
	/* the known image is dropped below: merged in place, not copied */
	if (fieldmerge_merge(it->known_dst, written) != 0)
		goto out;
	values = fieldmerge_values(it->known_dst);
	if (values && map_image_hash(a->map, a->to, values, it->rhash) == 0)
		it->out.seen_hash = it->rhash;
out:
	cJSON_Delete(rep);
	cJSON_Delete(written);
	cJSON_Delete(values);
	cJSON_Delete(it->known_dst);
	it->known_dst = NULL;
}

/* Turns a write's result into the item's outcome. Returns 1 when it needs a second write (a
 * conflict the policy resolves in the source's favour), else 0. */
int settle(struct apply *a, struct item *it, int second)
{
	struct target_write *w = &it->tw;
	char code[16];
	snprintf(code, sizeof(code), "%ld", w->status);
	count(a->m.http, w->status ? code : "none");
	switch (w->outcome) {
	case TARGET_OK:
		set_outcome(it, APPLYSTATE_APPLIED, it->tkey);
		it->out.content_hash = w->op == TARGET_DELETE ? NULL : it->thash;
		it->out.deleted = w->op == TARGET_DELETE;
		/* an ETag that covers a target change not seen yet would let the next write overwrite it
		 * unnoticed: that write goes with one that matches nothing, so it re-reads (a 412) */
		it->out.etag = it->etag_unseen ? ETAG_UNKNOWN : w->etag;
		it->out.target_id = w->target_id;
		if (w->op == TARGET_UPSERT)
			applied_image(a, it, w->representation);
		if (it->ev.source.ts > 0) {
			metrics_histogram_observe(a->m.e2e_s, NULL, (double)(apply_wall_ms() - it->ev.source.ts) / 1000.0);
		}
		return 0;
	case TARGET_RETRY:
		log_warn("target write will be retried", "map", a->map->name, "record", it->tkey, "error",
			 w->error ? w->error : "");
		to_retry(a, it, "target", w->retry_after_ms);
		return 0;
	case TARGET_MISSING_DEP:
		park(it, w->error ? w->error : "lookup target missing");
		return 0;
	case TARGET_INVALID:
		to_dlq(it, "target_rejected", w->status, w->error, w->error_body);
		return 0;
	case TARGET_CONFLICT:
		break;
	}
	if (second) {
		count(a->m.conflicts, "retry");
		to_retry(a, it, "conflict", 0);
		return 0;
	}
	/* 412 (or gone under If-Match): look at what the target holds now */
	int found = 0, retryable = 0;
	char *body = NULL, *etag = NULL, err[512];
	if (target_read(a->target, w->entity_set, w->key, w->nkey, &found, &body, &etag, &retryable, err,
			sizeof(err)) != 0) {
		to_retry(a, it, "conflict_read", 0);
		return 0;
	}
	int again = 0;
	if (!found) {
		if (w->op == TARGET_DELETE) {
			set_outcome(it, APPLYSTATE_APPLIED, it->tkey);
			it->out.deleted = 1;
			count(a->m.conflicts, "already_deleted");
		} else {
			/* deleted there meanwhile: the newer change here creates it again */
			free(it->if_match);
			it->if_match = NULL;
			again = 1;
			count(a->m.conflicts, "recreated");
		}
		free(body);
		free(etag);
		goto done;
	}
	char have[SHA256_HEX_LEN + 1] = "";
	cJSON *row = cJSON_Parse(body);
	int same = row && it->thash[0] && map_image_hash(a->map, a->to, row, have) == 0 &&
		   strcmp(have, it->thash) == 0;
	free(body);
	if (same) {
		cJSON_Delete(row);
		/* the target already holds exactly this (our own write whose outcome was not recorded) */
		target_write_clear(w);
		w->outcome = TARGET_OK;
		w->etag = etag;
		set_outcome(it, APPLYSTATE_APPLIED, it->tkey);
		it->out.content_hash = it->thash;
		memcpy(it->rhash, have, sizeof(have));
		it->out.seen_hash = it->rhash;
		it->out.etag = w->etag;
		count(a->m.conflicts, "already_applied");
		return 0;
	}
	if (w->op == TARGET_DELETE || !it->w.payload) {
		cJSON_Delete(row);
		/* a delete of a record changed there meanwhile: the policy decides for the whole record */
		if (source_wins(a)) {
			free(it->if_match);
			it->if_match = etag;
			again = 1;
			count(a->m.conflicts, "source_won");
		} else {
			free(etag);
			set_outcome(it, APPLYSTATE_DUPLICATE, it->tkey);
			count(a->m.conflicts, "target_won");
		}
		goto done;
	}
	/* field-level merge (rule 4): keep our changed fields the target did not change, settle the
	 * fields both changed by the map's policy, write the rest with the new ETag */
	struct fieldmerge_plan c;
	long long tts = a->to == EVENT_SIDE_CE ? fieldmerge_ce_modified_ms(row) : 0;
	/* waited long enough for the target's change event: our change is written over it */
	int settle = waits_of(a, it->tkey) >= CONFLICT_WAIT_MAX;
	/* the first plan's times date each field's change (later than the event for a change made
	 * after our write); a merge's entries carry write times, not change times */
	const cJSON *planned = it->plan_merged ? NULL : it->plan.written;
	if (!row || fieldmerge_conflict(a->map, a->from, row, tts, settle, apply_wall_ms(), known_dst_of(it), planned, it->ts,
					it->w.payload, &c) != 0) {
		cJSON_Delete(row);
		free(etag);
		to_retry(a, it, "memory", 0);
		return 0;
	}
	it->etag_unseen = fieldmerge_unseen(known_dst_of(it), row, c.written);
	cJSON_Delete(row);
	if (log_enabled(LOG_DEBUG)) {
		char s1[32], s2[32], s3[16], s4[16], s5[16], s6[16];
		snprintf(s1, sizeof(s1), "%lld", it->ts);
		snprintf(s2, sizeof(s2), "%lld", tts);
		snprintf(s3, sizeof(s3), "%d", c.nwrite);
		snprintf(s4, sizeof(s4), "%d", c.nwon);
		snprintf(s5, sizeof(s5), "%d", c.nlost);
		snprintf(s6, sizeof(s6), "%d", c.nwait);
		log_debug("conflict merge", "map", a->map->name, "record", it->tkey, "ts", s1, "target_ts", s2, "write",
			  s3, "won", s4, "lost", s5, "wait", s6, "payload", it->body ? it->body : "");
	}
	if (c.nwait > 0) {
		/* the target changed a field we write and its change event is not known yet: decide once
		 * it is (the other direction's worker records it) */
		fieldmerge_plan_clear(&c);
		free(etag);
		count(a->m.conflicts, "wait");
		wait_note(a, it->tkey);
		to_retry(a, it, "conflict_wait", 0);
		it->wait_noted = 1;
		return 0;
	}
	if (c.nsettled > 0) {
		log_warn("conflict: the target's change event did not come in time; our change is written over it",
			 "map", a->map->name, "record", it->tkey);
		count(a->m.conflicts, "wait_ended");
	}
	fieldmerge_plan_clear(&it->plan);
	it->plan = c;
	it->plan_merged = 1;
	if (c.nwrite == 0) {
		free(etag);
		set_outcome(it, APPLYSTATE_ECHO, it->tkey);
		count(a->m.conflicts, "target_won");
		return 0;
	}
	free(it->body);
	it->body = jsonout_print(it->w.payload);
	if (!it->body) {
		free(etag);
		to_retry(a, it, "memory", 0);
		return 0;
	}
	it->tw.body = it->body;
	free(it->if_match);
	it->if_match = etag;
	again = 1;
	count(a->m.conflicts, c.nlost ? "merged_target_won" : c.nwon ? "merged_source_won" : "merged");
done:
	if (again) {
		it->tw.if_match = it->if_match;
		return 1;
	}
	return 0;
}

static void note_error(struct apply *a, const char *what);

/* Produces every dead letter of the batch and waits for delivery. Items whose dead letter was not
 * delivered turn into retries. */
int produce_dlq(struct apply *a, struct item *items, size_t n)
{
	char err[512];
	size_t queued = 0;
	long long now = apply_wall_ms();
	for (size_t i = 0; i < n; i++) {
		struct item *it = &items[i];
		if (!it->dlq || it->st != ST_DONE)
			continue;
		char status[16], ts[32], part[16], off[32];
		snprintf(status, sizeof(status), "%ld", it->http_status);
		snprintf(ts, sizeof(ts), "%lld", now);
		snprintf(part, sizeof(part), "%" PRId32, it->msg->partition);
		snprintf(off, sizeof(off), "%" PRId64, it->msg->offset);
		const char *e = it->error ? it->error : "";
		const char *b = it->error_body ? it->error_body : "";
		struct kafka_header h[] = {
			{ "dw.reason", it->dlq_reason, strlen(it->dlq_reason) },
			{ "dw.error", e, strlen(e) },
			{ "dw.http.status", status, strlen(status) },
			{ "dw.target.error.body", b, strlen(b) },
			{ "dw.attempts", "1", 1 },
			{ "dw.first.failure.ms", ts, strlen(ts) },
			{ "dw.last.failure.ms", ts, strlen(ts) },
			{ "dw.source.topic", it->msg->topic, strlen(it->msg->topic) },
			{ "dw.source.partition", part, strlen(part) },
			{ "dw.source.offset", off, strlen(off) },
		};
		const char *topic = it->dlq_topic ? it->dlq_topic : a->dlq_topic;
		int rc = kafka_produce(a->dlq, topic, it->msg->key, it->msg->key ? it->msg->key_len : 0,
				       it->msg->value, it->msg->value ? it->msg->value_len : 0, h,
				       sizeof(h) / sizeof(h[0]), NULL, err, sizeof(err));
		if (rc == KAFKA_ERR_FATAL)
			return APPLY_FATAL;
		if (rc != 0) {
			log_error("dead letter not queued; will retry", "topic", topic, "error", err);
			it->dlq = 0;
			to_retry(a, it, "dead_letter", 0);
			continue;
		}
		log_warn("event dead-lettered", "map", a->map->name, "reason", it->dlq_reason, "error", e, "topic",
			 it->msg->topic, "partition", part, "offset", off);
		note_error(a, e);
		queued++;
	}
	if (queued == 0)
		return APPLY_OK;
	uint64_t failed_before = 0, failed_after = 0, delivered;
	kafka_producer_counts(a->dlq, &delivered, &failed_before);
	int rc = kafka_producer_flush(a->dlq, 30000, err, sizeof(err));
	if (rc == KAFKA_ERR_FATAL)
		return APPLY_FATAL;
	kafka_producer_counts(a->dlq, &delivered, &failed_after);
	if (rc != 0 || failed_after != failed_before) {
		log_error("dead letters not delivered; the batch will be retried", "topic", a->dlq_topic, "error",
			  rc != 0 ? err : "delivery failed");
		for (size_t i = 0; i < n; i++)
			if (items[i].dlq && items[i].st == ST_DONE) {
				items[i].dlq = 0;
				items[i].has_out = 0;
				to_retry(a, &items[i], "dead_letter", 0);
			}
	}
	return APPLY_OK;
}

/* Back-off for the next retry: exponential from backoff_min, capped, with +-20% jitter, and at
 * least what the target asked for. */
static long backoff_ms(struct apply *a, long asked)
{
	long d = a->backoff_min_ms;
	for (unsigned i = 1; i < a->consecutive_retries && d < a->backoff_max_ms; i++)
		d *= 2;
	if (d > a->backoff_max_ms)
		d = a->backoff_max_ms;
	d = d * 8 / 10 + (long)(random() % (d * 4 / 10 + 1));
	return asked > d ? asked : d;
}

void apply_resume_due(struct apply *a)
{
	if (!a->paused || apply_now_ms() < a->resume_at_ms)
		return;
	rd_kafka_resp_err_t e = rd_kafka_resume_partitions(kafka_consumer_handle(a->consumer), a->paused);
	if (e)
		log_warn("resume failed", "error", rd_kafka_err2str(e));
	else
		log_info("partitions resumed after back-off", "map", a->map->name);
	rd_kafka_topic_partition_list_destroy(a->paused);
	a->paused = NULL;
}

/* Pauses (or resumes) everything assigned now. */
static void pause_assignment(struct apply *a, int pause)
{
	rd_kafka_t *rk = kafka_consumer_handle(a->consumer);
	rd_kafka_topic_partition_list_t *l = NULL;
	if (rd_kafka_assignment(rk, &l) != RD_KAFKA_RESP_ERR_NO_ERROR || !l)
		return;
	if (l->cnt > 0) {
		rd_kafka_resp_err_t e = pause ? rd_kafka_pause_partitions(rk, l) : rd_kafka_resume_partitions(rk, l);
		if (e)
			log_warn(pause ? "pause failed" : "resume failed", "error", rd_kafka_err2str(e));
	}
	rd_kafka_topic_partition_list_destroy(l);
}

int apply_check_map_state(struct apply *a, char *errbuf, size_t errlen)
{
	long long now = apply_now_ms();
	if (now < a->next_state_check_ms)
		return 0;
	a->next_state_check_ms = now + a->state_check_ms;
	enum applystate_map_state st;
	char *reason = NULL;
	if (applystate_map_get(a->state, &st, &reason, errbuf, errlen) != 0)
		return -1;
	int paused = st != APPLYSTATE_MAP_RUNNING;
	if (paused && !a->map_paused) {
		pause_assignment(a, 1);
		a->map_paused = 1;
		log_warn("map paused: consumption stops, Kafka keeps the backlog", "map", a->map->name, "state",
			 applystate_map_state_name(st), "reason", reason ? reason : "");
		if (a->httpd)
			httpd_set_ready(a->httpd, 1, NULL);
	} else if (!paused && a->map_paused) {
		if (a->paused) {
			rd_kafka_topic_partition_list_destroy(a->paused);
			a->paused = NULL;
		}
		pause_assignment(a, 0);
		a->map_paused = 0;
		a->err_count = 0;
		log_info("map running again: catching up in order", "map", a->map->name);
	}
	free(reason);
	return 0;
}

void apply_seek_back(struct apply *a, const struct kafka_message *m)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(l, m->topic, m->partition)->offset = m->offset;
	rd_kafka_error_t *e = rd_kafka_seek_partitions(kafka_consumer_handle(a->consumer), l, 10000);
	if (e) {
		log_warn("seek back failed; the message is redelivered after a restart", "error",
			 rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
	}
	rd_kafka_topic_partition_list_destroy(l);
}

void apply_on_assigned(struct apply *a, const rd_kafka_topic_partition_list_t *parts)
{
	if (!a->map_paused || !parts || parts->cnt == 0)
		return;
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(parts);
	rd_kafka_resp_err_t e = rd_kafka_pause_partitions(kafka_consumer_handle(a->consumer), l);
	if (e)
		log_warn("pause of new partitions failed", "error", rd_kafka_err2str(e));
	rd_kafka_topic_partition_list_destroy(l);
}

/* Counts one error against the map's threshold; crossing it marks the map failed with the reason
 * (the next state check pauses it). */
static void note_error(struct apply *a, const char *what)
{
	int limit = a->map->threshold.count;
	if (limit <= 0 || !a->err_times)
		return;
	long long now = apply_now_ms();
	a->err_times[a->err_next] = now;
	a->err_next = (a->err_next + 1) % (size_t)limit;
	if (a->err_count < (size_t)limit)
		a->err_count++;
	/* the oldest of the last `limit` errors is at err_next once the ring is full */
	if (a->err_count < (size_t)limit || now - a->err_times[a->err_next] > a->map->threshold.window_ms)
		return;
	char reason[512], err[256];
	snprintf(reason, sizeof(reason), "error threshold crossed: %d errors within %lld ms; last: %s", limit,
		 a->map->threshold.window_ms, what);
	if (applystate_map_set(a->state, APPLYSTATE_MAP_FAILED, reason, err, sizeof(err)) != 0) {
		log_error("could not mark the map failed", "map", a->map->name, "error", err);
		return;
	}
	log_error("map failed: pausing itself", "map", a->map->name, "reason", reason);
	a->next_state_check_ms = 0;
	a->err_count = 0;
}

/* Whether two messages come from one partition. */
static int same_partition(const struct kafka_message *x, const struct kafka_message *y)
{
	return x->partition == y->partition && strcmp(x->topic, y->topic) == 0;
}

/* The entry of a->owed for m's partition: offset, the one it was sought back to for a retry and
 * not yet applied again; opaque, the seek_gen of that seek. NULL when it owes nothing. */
static const rd_kafka_topic_partition_t *owed_entry(const struct apply *a, const struct kafka_message *m)
{
	return a->owed && m->partition >= 0 ? rd_kafka_topic_partition_list_find(a->owed, m->topic, m->partition) : NULL;
}

/* The offset m's partition owes (-1: none). A message after it that is in hand was polled before
 * the seek (a batch on its way when the retry came): it comes again from there, so its offset
 * must not be stored. */
static int64_t owed_offset(const struct apply *a, const struct kafka_message *m)
{
	const rd_kafka_topic_partition_t *t = owed_entry(a, m);
	return t ? t->offset : -1;
}

/*
 * A partition sought back to offset X delivers X first, if it still exists: when the first
 * message of an owed partition in items[0..n), polled after that seek (gen: apply.seek_gen then),
 * comes after X, X was deleted meanwhile (topic retention or compaction during the back-off).
 * Nothing of X can be applied any more; holding the later offsets would only stop the
 * partition's commits for good, so the partition owes nothing from then on.
 */
static void forget_deleted_owed(struct apply *a, const struct item *items, size_t n, uint64_t gen)
{
	for (size_t i = 0; i < n && a->owed && a->owed->cnt > 0; i++) {
		const struct kafka_message *m = items[i].msg;
		const rd_kafka_topic_partition_t *t = owed_entry(a, m);
		if (!t || gen < (uint64_t)(uintptr_t)t->opaque || m->offset <= t->offset)
			continue;
		int first = 1;
		for (size_t j = 0; j < i && first; j++)
			first = !same_partition(items[j].msg, m);
		if (!first)
			continue;
		char ps[16], os[24], fs[24];
		snprintf(ps, sizeof(ps), "%" PRId32, m->partition);
		snprintf(os, sizeof(os), "%" PRId64, t->offset);
		snprintf(fs, sizeof(fs), "%" PRId64, m->offset);
		log_warn("the message a retry was sought back to is no longer in the topic (retention?); going on "
			 "from the first one left",
			 "map", a->map->name, "topic", m->topic, "partition", ps, "offset", os, "first_offset", fs);
		rd_kafka_topic_partition_list_del(a->owed, m->topic, m->partition);
	}
}

/* Seeks each partition with a retry back to its first unapplied message and pauses it. */
static int pause_for_retry(struct apply *a, struct item *items, size_t n, long delay_ms, char *errbuf,
			   size_t errlen)
{
	rd_kafka_t *rk = kafka_consumer_handle(a->consumer);
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
	for (size_t i = 0; i < n; i++) {
		if (items[i].st != ST_RETRY)
			continue;
		/* already sought back to an earlier message (a retry of the batch before this one) */
		int64_t ow = owed_offset(a, items[i].msg);
		if ((ow >= 0 && items[i].msg->offset > ow) ||
		    rd_kafka_topic_partition_list_find(l, items[i].msg->topic, items[i].msg->partition))
			continue;
		rd_kafka_topic_partition_list_add(l, items[i].msg->topic, items[i].msg->partition)->offset =
			items[i].msg->offset;
	}
	long long at = apply_now_ms() + delay_ms;
	if (l->cnt == 0) {
		/* every partition is already sought back to an earlier message: the back-off goes on */
		rd_kafka_topic_partition_list_destroy(l);
		if (at > a->resume_at_ms)
			a->resume_at_ms = at;
		return 0;
	}
	/* pause first, then seek without waiting (librdkafka 2.0 applies the position in its fetcher;
	 * a blocking seek could time out under load and stop the worker) */
	rd_kafka_resp_err_t pe = rd_kafka_pause_partitions(rk, l);
	if (pe) {
		snprintf(errbuf, errlen, "pause for a retry: %s", rd_kafka_err2str(pe));
		rd_kafka_topic_partition_list_destroy(l);
		return -1;
	}
	rd_kafka_error_t *e = rd_kafka_seek_partitions(rk, l, 0);
	if (e) {
		snprintf(errbuf, errlen, "seek back for a retry: %s", rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
		rd_kafka_topic_partition_list_destroy(l);
		return -1;
	}
	/* owed until the message sought back to is applied again (offsets after it are held) */
	if (!a->owed)
		a->owed = rd_kafka_topic_partition_list_new(4);
	a->seek_gen++;
	for (int i = 0; i < l->cnt; i++) {
		rd_kafka_topic_partition_t *t =
			rd_kafka_topic_partition_list_find(a->owed, l->elems[i].topic, l->elems[i].partition);
		if (!t)
			t = rd_kafka_topic_partition_list_add(a->owed, l->elems[i].topic, l->elems[i].partition);
		t->offset = l->elems[i].offset;
		t->opaque = (void *)(uintptr_t)a->seek_gen;
	}
	if (a->paused) {
		for (int i = 0; i < l->cnt; i++)
			if (!rd_kafka_topic_partition_list_find(a->paused, l->elems[i].topic, l->elems[i].partition))
				rd_kafka_topic_partition_list_add(a->paused, l->elems[i].topic, l->elems[i].partition);
		rd_kafka_topic_partition_list_destroy(l);
	} else {
		a->paused = l;
	}
	if (at > a->resume_at_ms)
		a->resume_at_ms = at;
	return 0;
}

/* Parking back-off: backoff_min doubled per failed attempt, capped at backoff_max, at least what
 * the target asked for. */
static long long park_delay_ms(const struct apply *a, int attempts, long asked)
{
	long long d = a->backoff_min_ms;
	for (int i = 0; i < attempts && d < a->backoff_max_ms; i++)
		d *= 2;
	if (d > a->backoff_max_ms)
		d = a->backoff_max_ms;
	return asked > d ? asked : d;
}

/*
 * One batch of n events on its way: Kafka messages (pk NULL) or the parked events pk[0..n)
 * re-driven (msgs then hold synthetic messages carrying their documents). front() decodes, maps,
 * decides, writes and dead-letters, leaving the outcomes in outs; back() acts on their recording
 * (b->record_rc) and stores and commits the offsets. In re-drive mode no offsets are touched: an
 * event that ends recorded is unparked, one that fails again (parked again or retryable) stays the
 * head of its record with its next attempt backed off.
 */
struct batch {
	struct kafka_message **msgs; /* the messages themselves are owned when own_msgs */
	int own_msgs;
	size_t n;
	const struct applystate_parked *pk;
	long long t0;
	uint64_t gen; /* apply.seek_gen when its first message was polled: later seeks came after it */
	struct item *items;
	struct target_write *tw;
	size_t *widx;
	struct applystate_item *ai;
	size_t *aidx;
	struct applystate_outcome *outs;
	size_t no;
	int record; /* outs are to be recorded (not when the decision failed) */
	int record_rc;
	char record_err[1024];
	/* recorded in the background (apply.inflight) */
	struct applystate *rec_state; /* its connection (apply.record_state) */
	pthread_t thread;
	atomic_int recorded;
	uint64_t *keys; /* sorted hashes of the record keys its outcomes write */
	size_t nkeys;
};

static void batch_free(struct batch *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++) {
		item_clear(&b->items[i]);
		applystate_item_clear(&b->ai[i]);
		if (b->own_msgs)
			kafka_message_free(b->msgs[i]);
	}
	free(b->msgs);
	free(b->items);
	free(b->tw);
	free(b->widx);
	free(b->ai);
	free(b->aidx);
	free(b->outs);
	free(b->keys);
	free(b);
}

static struct batch *batch_new(struct kafka_message **msgs, size_t n, int own, const struct applystate_parked *pk)
{
	size_t m = n ? n : 1;
	struct batch *b = calloc(1, sizeof(*b));
	if (b) {
		b->msgs = calloc(m, sizeof(*b->msgs));
		b->items = calloc(m, sizeof(*b->items));
		b->tw = calloc(m, sizeof(*b->tw));
		b->widx = calloc(m, sizeof(*b->widx));
		b->ai = calloc(m, sizeof(*b->ai));
		b->aidx = calloc(m, sizeof(*b->aidx));
		b->outs = calloc(2 * m, sizeof(*b->outs));
	}
	if (!b || !b->msgs || !b->items || !b->tw || !b->widx || !b->ai || !b->aidx || !b->outs) {
		batch_free(b); /* n is 0: the arrays only */
		if (own)
			for (size_t i = 0; i < n; i++)
				kafka_message_free(msgs[i]);
		return NULL;
	}
	memcpy(b->msgs, msgs, n * sizeof(*msgs));
	b->own_msgs = own;
	b->n = n;
	b->pk = pk;
	b->t0 = apply_now_ms();
	atomic_init(&b->recorded, 0);
	return b;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t p = *(const uint64_t *)x, q = *(const uint64_t *)y;
	return p < q ? -1 : p > q;
}

static int batch_has_key(const struct batch *b, const char *key)
{
	if (!key)
		return 0;
	uint64_t h = key_hash(key);
	return bsearch(&h, b->keys, b->nkeys, sizeof(h), cmp_u64) != NULL;
}

/* Whether items[0..n) (decoded) need the outcomes of batch b in PostgreSQL first: a part of a
 * unit, or a record b touched (target key, source key, or the key its events park under). */
static int depends_on(const struct batch *b, const struct item *items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (items[i].txn || batch_has_key(b, items[i].tkey) || batch_has_key(b, items[i].skey) ||
		    batch_has_key(b, items[i].skey_fallback))
			return 1;
	return 0;
}

/* Whether b may be recorded while the next batch is processed: a polled batch with no retry, no
 * parked event and no part of a unit (those change what the next batch must see at once). */
static int may_overlap(const struct apply *a, const struct batch *b)
{
	if (!a->record_state || b->pk)
		return 0;
	for (size_t i = 0; i < b->n; i++) {
		const struct item *it = &b->items[i];
		if (it->st == ST_RETRY || it->txn || it->in_unit ||
		    (it->has_out && it->out.result == APPLYSTATE_PARKED))
			return 0;
	}
	return 1;
}

static void *record_main(void *arg)
{
	struct batch *b = arg;
	b->record_rc = applystate_record(b->rec_state, b->outs, b->no, b->record_err, sizeof(b->record_err));
	atomic_store(&b->recorded, 1);
	return NULL;
}

/* Frees what the items of a written batch no longer need (its outcomes point to keys, hashes,
 * ETags and image entries, which stay): two batches are alive while one is recorded. */
static void batch_trim(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		struct item *it = &b->items[i];
		cJSON_Delete(it->ev.data);
		it->ev.data = NULL;
		map_write_clear(&it->w);
		free(it->body);
		it->body = NULL;
		it->tw.body = NULL;
		cJSON_Delete(it->known_src);
		cJSON_Delete(it->known_dst);
		it->known_src = it->known_dst = NULL;
		fieldmerge_plan_clear(&it->plan);
		free(it->tw.representation);
		it->tw.representation = NULL;
		free(it->ai.src_image);
		free(it->ai.prev.image);
		it->ai.src_image = it->ai.prev.image = NULL;
	}
}

/* Starts recording b on a->record_state in a thread of its own; 0, or -1 (record it in line). */
static int record_start(struct apply *a, struct batch *b)
{
	batch_trim(b);
	b->keys = calloc(3 * b->n + 1, sizeof(*b->keys));
	if (!b->keys)
		return -1;
	for (size_t i = 0; i < b->n; i++) {
		const char *ks[] = { b->items[i].tkey, b->items[i].skey, b->items[i].skey_fallback };
		for (size_t k = 0; k < 3; k++)
			if (ks[k])
				b->keys[b->nkeys++] = key_hash(ks[k]);
	}
	qsort(b->keys, b->nkeys, sizeof(*b->keys), cmp_u64);
	b->rec_state = a->record_state;
	return pthread_create(&b->thread, NULL, record_main, b) == 0 ? 0 : -1;
}


/* Decodes .. dead-letters the batch; its outcomes end in b->outs (b->record). APPLY_OK or
 * APPLY_FATAL with errbuf. */
static int front(struct apply *a, struct batch *b, char *errbuf, size_t errlen)
{
	size_t n = b->n;
	const struct applystate_parked *pk = b->pk;
	struct item *items = b->items;
	struct target_write *tw = b->tw;
	size_t *widx = b->widx;
	struct applystate_item *ai = b->ai;
	size_t *aidx = b->aidx;
	struct applystate_outcome *outs = b->outs;
	char err[1024];
	for (size_t i = 0; i < n; i++) {
		items[i].msg = b->msgs[i];
		items[i].rep = (int)i;
		if (pk) {
			items[i].redrive = 1;
			items[i].park_id = pk[i].id;
			items[i].park_attempts = pk[i].attempts;
			items[i].park_expired = a->park_max_age_ms > 0 && pk[i].age_ms >= a->park_max_age_ms;
		}
		prepare(a, &items[i]);
	}
	/* the batch in flight is recorded first when this one stages parts of units (their state is
	 * read and written right away) or touches one of its records (decide must read its outcome) */
	if (a->inflight && depends_on(a->inflight, items, n) && apply_flush(a, errbuf, errlen) == APPLY_FATAL)
		return APPLY_FATAL;
	/* atomic units (rule 5): parts are staged, complete units applied */
	for (size_t i = 0; i < n; i++)
		if (items[i].txn && items[i].st == ST_PENDING && stage_part(a, &items[i]) == APPLY_FATAL) {
			snprintf(errbuf, errlen, "dead-letter producer: fatal error");
			return APPLY_FATAL;
		}
	/* the keys' hashes, so that the pairwise searches below compare strings only when they match */
	for (size_t i = 0; i < n; i++) {
		items[i].park_kh = items[i].skey_fallback ? key_hash(items[i].skey_fallback) : 0;
		items[i].tkey_kh = items[i].tkey ? key_hash(items[i].tkey) : 0;
	}
	/* per-record order (rule 6): an event whose record had an event parked earlier in this batch
	 * queues behind it */
	for (size_t i = 0; i < n; i++) {
		struct item *it = &items[i];
		if (!it->decoded || it->st != ST_PENDING || !it->skey_fallback)
			continue;
		for (size_t j = 0; j < i; j++) {
			const struct item *o = &items[j];
			if (o->park_kh == it->park_kh && o->has_out && o->out.result == APPLYSTATE_PARKED &&
			    o->skey_fallback && strcmp(o->skey_fallback, it->skey_fallback) == 0) {
				park(it, "queued behind a parked event of the same record");
				break;
			}
		}
	}
	/* collapse: per target record the newest version stands for all */
	for (size_t i = 0; i < n; i++) {
		struct item *it = &items[i];
		if (!it->mapped || it->st != ST_PENDING)
			continue;
		for (size_t j = 0; j < i; j++) {
			struct item *o = &items[j];
			if (o->tkey_kh != it->tkey_kh || !o->mapped || o->st != ST_PENDING || o->rep != (int)j ||
			    strcmp(o->tkey, it->tkey) != 0)
				continue;
			if (it->ev.source.version >= o->ev.source.version) {
				/* i is newer: it stands for j and whatever j stood for. Events of one version
				 * are one change: FO sends one per trigger, each with the record re-read (the
				 * same image), so the change is dated by the earliest of them, as when that one
				 * was applied alone (a later one is then a duplicate); dating it by the newest
				 * would let the two directions compare one change at two different times */
				if (it->ev.source.version == o->ev.source.version && o->ts < it->ts)
					it->ts = o->ts;
				for (size_t k = 0; k < i; k++)
					if (items[k].rep == (int)j)
						items[k].rep = (int)i;
			} else {
				it->rep = (int)j;
			}
			break;
		}
	}
	/* decide */
	size_t na = 0;
	for (size_t i = 0; i < n; i++) {
		struct item *it = &items[i];
		if (!it->mapped || it->st != ST_PENDING || it->rep != (int)i)
			continue;
		ai[na] = (struct applystate_item){ .record_key = it->tkey, .event_id = it->ev.id,
						   .version = it->ev.source.version,
						   .content_hash = it->w.op == MAP_WRITE_DELETE ? NULL : it->thash,
						   .is_delete = it->w.op == MAP_WRITE_DELETE,
						   /* no echo by image hash: an image of the source may hold its
						    * own unsynced changes besides our write; fieldmerge_plan
						    * tells echoes field by field */
						   .source_key = it->skey, .source_hash = NULL,
						   .park_key = it->skey_fallback, .redrive = it->redrive };
		aidx[na++] = i;
	}
	int src = applystate_decide(a->state, ai, na, err, sizeof(err));
	if (src != 0) {
		log_error("state read failed; the batch will be retried", "error", err);
		for (size_t i = 0; i < n; i++)
			if (items[i].st != ST_RETRY)
				to_retry(a, &items[i], "state", 0);
		return APPLY_OK;
	}
	size_t nw = 0;
	for (size_t k = 0; k < na; k++) {
		struct item *it = &items[aidx[k]];
		it->ai = ai[k];
		memset(&ai[k], 0, sizeof(ai[k]));
		switch (it->ai.decision) {
		case APPLYSTATE_SKIP_DUPLICATE:
		case APPLYSTATE_SKIP_STALE:
			set_outcome(it, APPLYSTATE_DUPLICATE, it->tkey);
			continue;
		case APPLYSTATE_SKIP_ECHO:
			set_outcome(it, APPLYSTATE_ECHO, it->tkey);
			continue;
		case APPLYSTATE_QUEUE_PARKED:
			park(it, "queued behind a parked event of the same record");
			continue;
		case APPLYSTATE_WRITE:
			break;
		}
		if (it->w.op == MAP_WRITE_UPSERT) {
			int prc = plan_write(a, it);
			if (prc < 0) {
				to_retry(a, it, "memory", 0);
				continue;
			}
			if (prc == 0) {
				set_outcome(it, APPLYSTATE_ECHO, it->tkey);
				if (it->plan.nlost)
					count(a->m.conflicts, "target_won");
				continue;
			}
		}
		int krc = key_parts(a, it, err, sizeof(err));
		if (krc == MAP_NOT_FOUND) {
			park(it, err);
			continue;
		}
		if (krc == MAP_ERR_RESOLVE) {
			log_warn("target key lookup failed; will retry", "map", a->map->name, "record", it->tkey, "error",
				 err);
			to_retry(a, it, "resolve", 0);
			continue;
		}
		if (krc != MAP_OK) {
			to_dlq(it, "map", 0, err, NULL);
			continue;
		}
		it->tw.op = it->w.op == MAP_WRITE_DELETE ? TARGET_DELETE : TARGET_UPSERT;
		it->tw.entity_set = it->w.entity_set;
		if (it->tw.op == TARGET_UPSERT) {
			it->body = jsonout_print(it->w.payload);
			if (!it->body) {
				to_retry(a, it, "memory", 0);
				continue;
			}
			it->tw.body = it->body;
		}
		if (it->ai.has_prev && !it->ai.prev.deleted && it->ai.prev.etag)
			it->if_match = strdup(it->ai.prev.etag);
		else if (it->tw.op == TARGET_UPSERT && it->ai.has_prev && it->ai.prev.image && !it->ai.prev.deleted)
			/* a record known on the target (the other direction saw it) that this worker never
			 * wrote: no ETag to guard the write with. A blind write would overwrite a change made
			 * there meanwhile, and with FO's change times (taken when its request began) the
			 * change could then look older than our write and be lost on the way back. An ETag
			 * that matches nothing makes the target answer 412, and the conflict merge below
			 * reads the record, settles what changed there and writes with the real ETag. */
			it->if_match = strdup(ETAG_UNKNOWN);
		it->tw.if_match = it->if_match;
		it->writing = 1;
		widx[nw++] = aidx[k];
	}
	/* write: two rounds at most (the second for conflicts the policy settles) */
	for (int round = 0; round < 2 && nw > 0; round++) {
		long long sent = apply_wall_ms();
		for (size_t k = 0; k < nw; k++) {
			tw[k] = items[widx[k]].tw;
			items[widx[k]].sent_ms = sent;
		}
		if (target_apply(a->target, tw, nw, err, sizeof(err)) != 0) {
			for (size_t k = 0; k < nw; k++) {
				items[widx[k]].tw = tw[k];
				to_retry(a, &items[widx[k]], "target", 0);
			}
			log_error("target writes failed", "error", err);
			break;
		}
		size_t again = 0;
		for (size_t k = 0; k < nw; k++) {
			struct item *it = &items[widx[k]];
			it->tw = tw[k];
			memset(&tw[k], 0, sizeof(tw[k]));
			if (settle(a, it, round) == 1)
				widx[again++] = widx[k];
		}
		nw = again;
	}
	/* a record whose write is settled no longer waits for a target change event */
	for (size_t i = 0; i < n; i++)
		if (items[i].mapped && items[i].rep == (int)i && items[i].st == ST_DONE && items[i].tkey)
			wait_end(a, items[i].tkey);
	/* superseded changes share their stand-in's fate */
	for (size_t i = 0; i < n; i++) {
		struct item *it = &items[i];
		if (!it->mapped || it->rep == (int)i || it->st != ST_PENDING)
			continue;
		if (items[it->rep].st == ST_RETRY)
			to_retry(a, it, "superseded", 0);
		else
			set_outcome(it, APPLYSTATE_DUPLICATE, it->tkey);
	}
	/* dead letters: a decoded event's dead letter is recorded too */
	for (size_t i = 0; i < n; i++) {
		struct item *it = &items[i];
		if (it->dlq && it->decoded && it->st == ST_DONE && (it->tkey || it->skey_fallback))
			set_outcome(it, APPLYSTATE_DEAD_LETTER, it->tkey ? it->tkey : it->skey_fallback);
	}
	if (produce_dlq(a, items, n) == APPLY_FATAL) {
		snprintf(errbuf, errlen, "dead-letter producer: fatal error");
		return APPLY_FATAL;
	}
	/* record every outcome in one transaction */
	size_t no = 0;
	for (size_t i = 0; i < n; i++) {
		struct item *it = &items[i];
		if (it->st != ST_DONE || !it->has_out || (it->redrive && it->out.result == APPLYSTATE_PARKED))
			continue;
		outs[no++] = it->out;
		int seen = it->out.result == APPLYSTATE_APPLIED || (it->out.result == APPLYSTATE_ECHO && it->mapped &&
										 it->w.op == MAP_WRITE_UPSERT);
		if (seen && it->skey && (it->shash[0] || it->out.deleted) && it->seen_planned && !it->out.deleted) {
			outs[no++] = (struct applystate_outcome){ .result = APPLYSTATE_SEEN, .record_key = it->skey,
								  .seen_hash = it->shash,
								  .image = it->seen_image,
								  .image_guard = it->seen_guard ? it->ai.src_image_rev
												: NULL };
		} else if (seen && it->skey && (it->shash[0] || it->out.deleted)) {
			/* what the source side holds: its image hash and its known-image entries */
			if (!it->known_src && it->ai.src_image)
				it->known_src = cJSON_Parse(it->ai.src_image);
			cJSON *e = it->out.deleted ? NULL
						   : fieldmerge_changed_entries(a->map, a->from, it->ev.data,
										it->ev.source.version, it->ts,
										it->known_src);
			it->seen_image = jsonout_print(e);
			/* every entry newer than the known image the decision read: no merge needed */
			const char *guard = it->seen_image && it->known_src && it->ai.src_image_rev &&
						    fieldmerge_wins_all(it->known_src, e)
						    ? it->ai.src_image_rev
						    : NULL;
			cJSON_Delete(e);
			cJSON_Delete(it->known_src);
			it->known_src = NULL;
			outs[no++] = (struct applystate_outcome){ .result = APPLYSTATE_SEEN, .record_key = it->skey,
								  .seen_hash = it->shash[0] ? it->shash : NULL,
								  .deleted = it->out.deleted, .image = it->seen_image,
								  .image_guard = guard };
		}
	}
	/* a write waiting for the target's change event notes its own source change as pending, for the
	 * other direction's write, which may wait on it in turn (fieldmerge_pending_entries) */
	for (size_t i = 0; i < n; i++) {
		struct item *it = &items[i];
		if (it->st != ST_RETRY || !it->wait_noted || !it->skey || !it->shash[0] || no >= n * 2)
			continue;
		cJSON *ks = it->ai.src_image ? cJSON_Parse(it->ai.src_image) : NULL;
		cJSON *e = fieldmerge_pending_entries(a->map, a->from, it->ev.data, it->ev.source.version, it->ts, ks);
		cJSON_Delete(ks);
		no += seen_outcome(it, e, &outs[no]);
	}
	b->no = no;
	b->record = 1;
	return APPLY_OK;
}

/* Acts on the batch's recording: counts, unparks (re-drive), stores and commits offsets, pauses
 * for retries. APPLY_OK, APPLY_RETRY or APPLY_FATAL with errbuf. */
static int back(struct apply *a, struct batch *b, size_t *unparked, char *errbuf, size_t errlen)
{
	size_t n = b->n;
	const struct applystate_parked *pk = b->pk;
	struct item *items = b->items;
	int rc = APPLY_OK;
	char err[1024];
	if (b->record && b->record_rc != 0) {
		log_error("recording outcomes failed; the batch will be retried", "error", b->record_err);
		for (size_t i = 0; i < n; i++)
			if (items[i].st != ST_RETRY)
				to_retry(a, &items[i], "state", 0);
	}
	for (size_t i = 0; i < n; i++) {
		struct item *it = &items[i];
		if (it->st == ST_RETRY || (it->redrive && it->has_out && it->out.result == APPLYSTATE_PARKED))
			continue;
		const char *name = it->dlq       ? "dead_letter"
				   : it->has_out ? applystate_result_name(it->out.result)
				   : it->label   ? it->label
						 : "none";
		count(a->m.events, name);
	}
	if (pk) {
		/* re-drive: unpark what is recorded; back off what failed again */
		for (size_t i = 0; i < n; i++) {
			struct item *it = &items[i];
			/* a unit's part ends done without an outcome of its own (staged, unit applied) */
			int again = it->st == ST_RETRY || (it->has_out ? it->out.result == APPLYSTATE_PARKED
								       : !it->dlq && !it->label);
			int src2 = again ? applystate_park_retry_later(a->state, it->park_id,
								      park_delay_ms(a, it->park_attempts, it->retry_after_ms),
								      err, sizeof(err))
					 : applystate_unpark(a->state, it->park_id, err, sizeof(err));
			if (src2 != 0)
				log_warn("parked event bookkeeping failed (re-driven again later; harmless)", "map",
					 a->map->name, "error", err);
			else if (!again)
				(*unparked)++;
			if (!again)
				log_info("parked event re-driven", "map", a->map->name, "record", it->skey_fallback ? it->skey_fallback : "",
					 "outcome", it->dlq ? "dead_letter" : it->has_out ? applystate_result_name(it->out.result) : it->label);
		}
		rc = APPLY_OK;
		goto gauges;
	}
	forget_deleted_owed(a, items, n, b->gen);
	/* store offsets up to the first retry per partition, then commit */
	int any_retry = 0;
	long asked = 0;
	for (size_t i = 0; i < n; i++) {
		if (items[i].st == ST_RETRY) {
			any_retry = 1;
			if (items[i].retry_after_ms > asked)
				asked = items[i].retry_after_ms;
			continue;
		}
		/* a partition sought back for an earlier batch's retry is redelivered from there (this
		 * batch was polled before that retry, see apply_flush) */
		int64_t ow = owed_offset(a, items[i].msg);
		int blocked = ow >= 0 && items[i].msg->offset > ow;
		for (size_t j = 0; j < i && !blocked; j++)
			blocked = items[j].st == ST_RETRY && same_partition(items[j].msg, items[i].msg);
		if (blocked)
			continue;
		if (kafka_consumer_store(a->consumer, items[i].msg, err, sizeof(err)) != 0)
			log_warn("offset not stored (partition revoked?)", "error", err);
		if (ow >= 0) /* the message sought back to is applied: the partition owes nothing */
			rd_kafka_topic_partition_list_del(a->owed, items[i].msg->topic, items[i].msg->partition);
	}
	int crc = kafka_consumer_commit_async(a->consumer, err, sizeof(err));
	if (crc == KAFKA_ERR_FATAL) {
		snprintf(errbuf, errlen, "commit: %s", err);
		return APPLY_FATAL;
	}
	if (crc != 0)
		log_warn("offset commit failed; the events are recorded and will be skipped if redelivered", "error",
			 err);
	if (any_retry) {
		a->consecutive_retries++;
		long d = backoff_ms(a, asked);
		char ds[32];
		snprintf(ds, sizeof(ds), "%ld", d);
		log_warn("retryable failures: pausing partitions", "map", a->map->name, "delay_ms", ds);
		if (pause_for_retry(a, items, n, d, err, sizeof(err)) != 0) {
			snprintf(errbuf, errlen, "%s", err);
			return APPLY_FATAL;
		}
		rc = APPLY_RETRY;
	} else {
		a->consecutive_retries = 0;
		rc = APPLY_OK;
	}
	if (log_enabled(LOG_DEBUG)) {
		size_t cnt[8] = { 0 }, ndlq = 0, nretry = 0;
		for (size_t i = 0; i < n; i++) {
			if (items[i].st == ST_RETRY)
				nretry++;
			else if (items[i].dlq)
				ndlq++;
			else if (items[i].has_out && items[i].out.result < 8)
				cnt[items[i].out.result]++;
		}
		char s[256];
		snprintf(s, sizeof(s), "applied=%zu echo=%zu duplicate=%zu filtered=%zu parked=%zu dead_letter=%zu retry=%zu",
			 cnt[APPLYSTATE_APPLIED], cnt[APPLYSTATE_ECHO], cnt[APPLYSTATE_DUPLICATE], cnt[APPLYSTATE_FILTERED],
			 cnt[APPLYSTATE_PARKED], ndlq, nretry);
		char ns[32];
		snprintf(ns, sizeof(ns), "%zu", n);
		log_debug("batch", "map", a->map->name, "events", ns, "outcomes", s);
	}
	/* lag per partition from the last message of the batch (cached watermarks: no broker call) */
	for (size_t i = 0; i < n; i++) {
		int last = 1;
		for (size_t j = i + 1; j < n && last; j++)
			last = !same_partition(items[j].msg, items[i].msg);
		int64_t lo = 0, hi = 0;
		if (!last || rd_kafka_get_watermark_offsets(kafka_consumer_handle(a->consumer), items[i].msg->topic,
							   items[i].msg->partition, &lo, &hi) != 0)
			continue;
		char ps[16];
		snprintf(ps, sizeof(ps), "%" PRId32, items[i].msg->partition);
		const char *lv[] = { ps };
		metrics_gauge_set(a->m.lag, lv, hi > items[i].msg->offset ? (double)(hi - items[i].msg->offset - 1) : 0);
	}
gauges:
	{
		/* one PostgreSQL round trip fewer per batch: the count is read again when this batch
		 * parked or re-drove something, else every redrive_ms (other workers' changes) */
		int changed = pk != NULL;
		for (size_t i = 0; i < n && !changed; i++)
			changed = items[i].st == ST_DONE && items[i].has_out && items[i].out.result == APPLYSTATE_PARKED;
		long long now = apply_now_ms();
		int64_t parked = 0;
		if ((changed || now >= a->next_parked_gauge_ms) &&
		    applystate_parked_count(a->state, &parked, err, sizeof(err)) == 0) {
			metrics_gauge_set(a->m.parked, NULL, (double)parked);
			a->next_parked_gauge_ms = now + a->redrive_ms;
		}
	}
	metrics_counter_add(a->m.batches, NULL, 1);
	metrics_histogram_observe(a->m.batch_s, NULL, (double)(apply_now_ms() - b->t0) / 1000.0);
	return rc;
}

static int run(struct apply *a, struct kafka_message **msgs, int own, const struct applystate_parked *pk, size_t n,
	       size_t *unparked, char *errbuf, size_t errlen)
{
	struct batch *b = batch_new(msgs, n, own, pk);
	if (!b) {
		snprintf(errbuf, errlen, "out of memory");
		return APPLY_FATAL;
	}
	/* a seek while the batch was filled (apply_reap) makes it older than the seek: conservative */
	b->gen = pk ? a->seek_gen : a->batch_gen;
	int rc = pk ? apply_flush(a, errbuf, errlen) : APPLY_OK;
	if (rc != APPLY_FATAL)
		rc = front(a, b, errbuf, errlen);
	/* the batch in flight goes first: its offsets come before this one's */
	if (rc != APPLY_FATAL && apply_flush(a, errbuf, errlen) == APPLY_FATAL)
		rc = APPLY_FATAL;
	if (rc == APPLY_FATAL) {
		batch_free(b);
		return rc;
	}
	if (b->record && may_overlap(a, b) && record_start(a, b) == 0) {
		a->inflight = b;
		return APPLY_OK;
	}
	if (b->record)
		b->record_rc = applystate_record(a->state, b->outs, b->no, b->record_err, sizeof(b->record_err));
	rc = back(a, b, unparked, errbuf, errlen);
	batch_free(b);
	return rc;
}

int apply_flush(struct apply *a, char *errbuf, size_t errlen)
{
	struct batch *b = a->inflight;
	if (!b)
		return APPLY_OK;
	a->inflight = NULL;
	pthread_join(b->thread, NULL);
	size_t ignored = 0;
	int rc = back(a, b, &ignored, errbuf, errlen);
	batch_free(b);
	return rc;
}

int apply_reap(struct apply *a, char *errbuf, size_t errlen)
{
	if (!a->inflight || !atomic_load(&a->inflight->recorded))
		return APPLY_OK;
	return apply_flush(a, errbuf, errlen);
}

int apply_batch(struct apply *a, struct kafka_message **msgs, size_t n, char *errbuf, size_t errlen)
{
	size_t ignored = 0;
	return run(a, msgs, 1, NULL, n, &ignored, errbuf, errlen);
}

int apply_redrive(struct apply *a, char *errbuf, size_t errlen)
{
	long long now = apply_now_ms();
	if (a->map_paused || now < a->next_redrive_ms)
		return 0;
	a->next_redrive_ms = now + a->redrive_ms;
	int rc = 0;
	/* each pass re-drives the due head of every parked record; a record's next event becomes its
	 * head once the previous one is unparked, so passes go on while they make progress */
	for (int pass = 0; pass < 64; pass++) {
		struct applystate_parked *pk = NULL;
		size_t np = 0, unparked = 0;
		char err[1024];
		if (applystate_parked_due(a->state, a->batch_max, &pk, &np, err, sizeof(err)) != 0) {
			log_warn("parked events not read; re-drive later", "map", a->map->name, "error", err);
			break;
		}
		if (np == 0) {
			applystate_parked_free(pk, np);
			break;
		}
		struct kafka_message *m = calloc(np, sizeof(*m));
		struct kafka_message **mp = calloc(np, sizeof(*mp));
		if (!m || !mp) {
			free(m);
			free(mp);
			applystate_parked_free(pk, np);
			log_warn("out of memory; re-drive later", "map", a->map->name);
			break;
		}
		for (size_t i = 0; i < np; i++) {
			m[i] = (struct kafka_message){ .topic = a->source_topic, .partition = -1, .offset = pk[i].id,
						       .timestamp_ms = -1, .key = pk[i].record_key,
						       .key_len = strlen(pk[i].record_key), .value = pk[i].event_json,
						       .value_len = strlen(pk[i].event_json) };
			mp[i] = &m[i];
		}
		int brc = run(a, mp, 0, pk, np, &unparked, errbuf, errlen);
		free(m);
		free(mp);
		applystate_parked_free(pk, np);
		if (brc == APPLY_FATAL) {
			rc = -1;
			break;
		}
		if (unparked == 0)
			break;
	}
	return rc;
}
