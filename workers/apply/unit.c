/* Atomic units (DESIGN 5 rule 5): parts of a source transaction are staged in PostgreSQL and the
 * unit is applied as one changeset once complete, or dead-lettered whole. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "apply.h"
#include "log.h"

/* A unit that must be tried again: the completing message is retried (none for an expired unit:
 * the next expiry check takes it again). */
static void unit_retry(struct apply *a, struct item *it, const char *reason, long retry_after_ms)
{
	if (it)
		to_retry(a, it, reason, retry_after_ms);
	else
		count(a->m.retries, reason);
}

/* Applies the complete unit txn_id (from `side`, `total` parts) whose last part `it` just staged,
 * as ONE changeset: every part is decoded and mapped again from its staged document; a part the
 * map or the target rejects sends the whole unit to the dead-letter topic with the reason;
 * anything retryable (a lookup not resolved yet included) retries the completing message, the
 * parts staying staged. Outcomes of all parts are recorded in one transaction, then the parts are
 * cleared. With `expired` (it is then NULL) the unit timed out incomplete: its staged parts are
 * dead-lettered with that reason. Returns APPLY_OK or APPLY_FATAL (dead-letter producer). */
static int apply_unit(struct apply *a, struct item *it, const char *side, const char *txn_id, int total,
		      const char *expired)
{
	char err[1024];
	char **parts = NULL;
	size_t np = 0, nw = 0;
	int rc = APPLY_OK;
	struct item *u = NULL;
	struct kafka_message *um = NULL;
	struct target_write *tw = NULL;
	size_t *widx = NULL;
	struct applystate_outcome *outs = NULL;
	char *bad_error = NULL, *bad_body = NULL;
	long bad_status = 0;
	int bad = -1, retry = 0;
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
	outs = calloc(np ? np : 1, sizeof(*outs));
	if (!u || !um || !tw || !widx || !outs) {
		unit_retry(a, it, "memory", 0);
		goto out;
	}
	for (size_t k = 0; k < np; k++) {
		um[k] = (struct kafka_message){ .topic = it ? it->msg->topic : a->source_topic,
						.partition = it ? it->msg->partition : -1, .offset = it ? it->msg->offset : -1,
						.timestamp_ms = -1, .value = parts[k], .value_len = strlen(parts[k]) };
		u[k].msg = &um[k];
		u[k].rep = (int)k;
		u[k].in_unit = 1;
		prepare(a, &u[k]);
		if (u[k].skey_fallback) {
			um[k].key = u[k].skey_fallback;
			um[k].key_len = strlen(u[k].skey_fallback);
		}
	}
	if (expired) {
		bad = 0;
		bad_error = strdup(expired);
	}
	for (size_t k = 0; k < np && bad < 0; k++) {
		struct item *p = &u[k];
		if (p->st == ST_RETRY || (p->has_out && p->out.result == APPLYSTATE_PARKED)) {
			retry = 1;
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
		int krc = key_parts(a, p, err, sizeof(err));
		if (krc == MAP_NOT_FOUND || krc == MAP_ERR_RESOLVE) {
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
			p->body = cJSON_PrintUnformatted(p->w.payload);
			if (!p->body) {
				retry = 1;
				continue;
			}
			p->tw.body = p->body;
		}
		p->writing = 1;
		widx[nw++] = k;
	}
	if (bad < 0 && retry) {
		log_warn("unit not applicable yet; will retry", "map", a->map->name, "txn", txn_id);
		unit_retry(a, it, "txn", 0);
		goto out;
	}
	if (bad < 0 && nw > 0) {
		for (size_t j = 0; j < nw; j++)
			tw[j] = u[widx[j]].tw;
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
			else if (w->outcome != TARGET_OK && w->outcome != TARGET_INVALID) {
				retry = 1;
				if (w->retry_after_ms > after)
					after = w->retry_after_ms;
			}
		}
		if (bad >= 0) {
			bad_status = u[bad].tw.status;
			bad_error = u[bad].tw.error ? strdup(u[bad].tw.error) : NULL;
			bad_body = u[bad].tw.error_body ? strdup(u[bad].tw.error_body) : NULL;
		} else if (retry) {
			log_warn("unit write will be retried", "map", a->map->name, "txn", txn_id);
			unit_retry(a, it, "target", after);
			goto out;
		} else {
			for (size_t j = 0; j < nw; j++)
				(void)settle(a, &u[widx[j]], 1);
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
	size_t no = 0;
	for (size_t k = 0; k < np; k++)
		if (u[k].has_out && u[k].st == ST_DONE)
			outs[no++] = u[k].out;
	if (applystate_record(a->state, outs, no, err, sizeof(err)) != 0) {
		log_error("recording the unit failed; will retry", "map", a->map->name, "txn", txn_id, "error", err);
		unit_retry(a, it, "state", 0);
		goto out;
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
	free(u);
	free(um);
	free(tw);
	free(widx);
	free(outs);
	free(bad_error);
	free(bad_body);
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
				     .version = it->ev.source.version };
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
