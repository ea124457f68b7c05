/* Field-level sync decisions: changed fields, conflicts by policy, known-image merges. */
#include "fieldmerge.h"

#include <stdio.h>
#include <string.h>

#include "capture_ce.h"

void fieldmerge_plan_clear(struct fieldmerge_plan *p)
{
	if (!p)
		return;
	cJSON_Delete(p->written);
	memset(p, 0, sizeof(*p));
}

/* The name of field f in side's images (CE lookups by their GUID attribute); NULL when the field
 * has no column on that side. */
static const char *image_name(const struct map_field *f, enum event_side side)
{
	if (side == EVENT_SIDE_FO)
		return f->fo;
	if (!f->ce)
		return NULL;
	return f->lookup ? f->lookup->value : f->ce;
}

#define MEMBER_KEEP (-1) /* a key, the company, or a member the map does not know: always kept */

/* Which map field a payload member written to `to` carries: its index, or MEMBER_KEEP. */
static int member_field(const struct map *m, enum event_side to, const char *name)
{
	const struct map_side *s = map_side_of(m, to);
	for (size_t i = 0; i < s->nkey; i++)
		if (strcmp(s->key[i], name) == 0)
			return MEMBER_KEEP;
	if (m->company) {
		if (to == EVENT_SIDE_FO && strcmp(name, m->company->fo) == 0)
			return MEMBER_KEEP;
		if (to == EVENT_SIDE_CE) {
			size_t n = strlen(m->company->ce_nav);
			if (strncmp(name, m->company->ce_nav, n) == 0 && strcmp(name + n, "@odata.bind") == 0)
				return MEMBER_KEEP;
		}
	}
	for (size_t i = 0; i < m->nfields; i++) {
		const struct map_field *f = &m->fields[i];
		if (to == EVENT_SIDE_FO) {
			if (f->fo && strcmp(f->fo, name) == 0)
				return (int)i;
		} else if (f->ce && f->lookup) {
			size_t n = strlen(f->lookup->nav);
			if (strncmp(name, f->lookup->nav, n) == 0 && strcmp(name + n, "@odata.bind") == 0)
				return (int)i;
		} else if (f->ce && strcmp(f->ce, name) == 0) {
			return (int)i;
		}
	}
	return MEMBER_KEEP;
}

static long long entry_t(const cJSON *e)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "t");
	return cJSON_IsNumber(t) ? (long long)t->valuedouble : 0;
}

static long long entry_n(const cJSON *e)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "n");
	return cJSON_IsNumber(n) ? (long long)n->valuedouble : 0;
}

/* Whether entry a is newer than b (by version when both have one, else by time). */
static int entry_newer(const cJSON *a, const cJSON *b)
{
	if (entry_n(a) > 0 && entry_n(b) > 0)
		return entry_n(a) > entry_n(b);
	return entry_t(a) > entry_t(b);
}

/* Whether an event of the entry's side at version/ts predates the entry's value. */
static int event_older(const cJSON *e, long long version, long long ts)
{
	if (entry_n(e) > 0 && version > 0)
		return version < entry_n(e);
	return ts < entry_t(e);
}

static long long entry_num(const cJSON *e, const char *name)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(e, name);
	return cJSON_IsNumber(x) ? (long long)x->valuedouble : 0;
}

/*
 * Whether source entry ke is a value we wrote on the source that carried the target's change kd (or
 * a later one): ke's "s"/"sn" are the time and version, on the target's own timeline, of the target
 * change our write carried (fieldmerge_stamp), compared with kd's like for like (by version when
 * both have one). An event of the source that changed such a value was made after the target's
 * change reached the source: it supersedes that change and is not a conflict with it.
 */
static int carried(const cJSON *ke, const cJSON *kd, enum event_side to)
{
	const cJSON *o = ke ? cJSON_GetObjectItemCaseSensitive(ke, "o") : NULL;
	if (!cJSON_IsString(o) || strcmp(o->valuestring, event_side_name(to)) != 0)
		return 0;
	long long sn = entry_num(ke, "sn"), st = entry_num(ke, "s");
	if (sn > 0 && entry_n(kd) > 0)
		return sn >= entry_n(kd);
	return st > 0 && st >= entry_t(kd);
}

static const char *entry_o(const cJSON *e)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "o");
	return cJSON_IsString(o) ? o->valuestring : NULL;
}

/* Whether the entry's value is a change made on `side` itself (not one we wrote there); entries
 * without an origin count as the side's own. */
static int entry_own(const cJSON *e, enum event_side side)
{
	const char *o = entry_o(e);
	return !o || strcmp(o, event_side_name(side)) == 0;
}

static const cJSON *entry_v(const cJSON *e)
{
	return cJSON_GetObjectItemCaseSensitive(e, "v");
}

/* Whether the entry is pending (fieldmerge_pending_entries): a change of its side noted while the
 * worker carrying it waits, for the other direction to decide against. */
static int entry_pending(const cJSON *e)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "w"));
}

/* The entry as the direction carrying its change knows it: a pending entry stands for the entry it
 * replaced ("b", NULL when there was none); any other entry for itself. */
static const cJSON *entry_carried_view(const cJSON *e)
{
	return e && entry_pending(e) ? cJSON_GetObjectItemCaseSensitive(e, "b") : e;
}

/* Value equality; absent (NULL) equals JSON null. */
static int same_value(const cJSON *a, const cJSON *b)
{
	int an = !a || cJSON_IsNull(a), bn = !b || cJSON_IsNull(b);
	if (an || bn)
		return an && bn;
	return cJSON_Compare(a, b, 1);
}

/*
 * Whether value sv of an event of `side` at version/ts is a change the side made after our write
 * of entry e, although the event is older than e by time. e must be a value we wrote there (its
 * origin the other side) with "p", the values the side held before it, newest first, each
 * {"v", "t", "n"?}: our writes are guarded by If-Match, so from the time of the oldest until our
 * write landed the side held exactly these values, one after the other. An event's image was read
 * no earlier than its source time (with versions: after the images of older versions), so when the
 * event is not older than one of them (p_j), an image read before our write landed could only hold
 * p_j or a newer one. A value other than ours and those was set after our write: a change, even
 * though its event carries an older time (FO's event carries the time of the change that triggered
 * it, while its image is re-read later and may hold later changes).
 */
static int superseded(const cJSON *e, const cJSON *sv, enum event_side side, long long version, long long ts)
{
	if (!e || entry_own(e, side) || (entry_n(e) > 0 && version > 0) || same_value(sv, entry_v(e)))
		return 0;
	const cJSON *link;
	cJSON_ArrayForEach(link, cJSON_GetObjectItemCaseSensitive(e, "p"))
	{
		if (same_value(sv, entry_v(link)) || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(link, "t")))
			return 0;
		/* read after the image that showed it (a later version), or triggered no earlier */
		if (entry_n(link) > 0 && version > 0 ? version > entry_n(link) : ts >= entry_t(link))
			return 1;
	}
	return 0;
}

/* The time of the event's change of a field whose known entry is e: ts, or for a change made after
 * our write of e (superseded) the time of that write, since it was made after it. */
static long long change_time(const cJSON *e, const cJSON *sv, enum event_side side, long long version, long long ts)
{
	if (superseded(e, sv, side, version, ts) && entry_t(e) > ts)
		return entry_t(e);
	return ts;
}

/* Adds {"v": copy of v (null when NULL), "t": t} under name to obj, replacing an older one. */
static int put_entry(cJSON *obj, const char *name, const cJSON *v, long long t, const char *origin)
{
	cJSON *e = cJSON_CreateObject();
	cJSON *c = v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull();
	if (!e || !c) {
		cJSON_Delete(e);
		cJSON_Delete(c);
		return -1;
	}
	if (!cJSON_AddItemToObject(e, "v", c)) {
		cJSON_Delete(e);
		cJSON_Delete(c);
		return -1;
	}
	if (!cJSON_AddNumberToObject(e, "t", (double)t) || (origin && !cJSON_AddStringToObject(e, "o", origin))) {
		cJSON_Delete(e);
		return -1;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(obj, name);
	if (!cJSON_AddItemToObject(obj, name, e)) {
		cJSON_Delete(e);
		return -1;
	}
	return 0;
}

static int put_image_member(cJSON *obj, const cJSON *image, const char *name, long long ts, const char *origin)
{
	if (!name || cJSON_GetObjectItemCaseSensitive(obj, name))
		return 0;
	return put_entry(obj, name, cJSON_GetObjectItemCaseSensitive(image, name), ts, origin);
}

cJSON *fieldmerge_entries(const struct map *m, enum event_side side, const cJSON *image, long long ts)
{
	if (!cJSON_IsObject(image))
		return NULL;
	cJSON *obj = cJSON_CreateObject();
	if (!obj)
		return NULL;
	const struct map_side *s = map_side_of(m, side);
	int ce = side == EVENT_SIDE_CE;
	const char *o = event_side_name(side);
	for (size_t i = 0; i < s->nkey; i++) {
		const char *name = s->key[i];
		if (ce && m->company && strcmp(name, m->company->ce) == 0)
			name = m->company->ce_value;
		if (put_image_member(obj, image, name, ts, o) != 0)
			goto fail;
	}
	if (m->company && put_image_member(obj, image, ce ? m->company->ce_value : m->company->fo, ts, o) != 0)
		goto fail;
	for (size_t i = 0; i < m->nfields; i++)
		if (put_image_member(obj, image, image_name(&m->fields[i], side), ts, o) != 0)
			goto fail;
	return obj;
fail:
	cJSON_Delete(obj);
	return NULL;
}

cJSON *fieldmerge_changed_entries(const struct map *m, enum event_side side, const cJSON *image, long long version,
				  long long ts, const cJSON *known)
{
	cJSON *e = fieldmerge_entries(m, side, image, ts);
	if (e && version > 0) {
		cJSON *x;
		cJSON_ArrayForEach(x, e)
		if (!cJSON_AddNumberToObject(x, "n", (double)version)) {
			cJSON_Delete(e);
			return NULL;
		}
	}
	if (!e || !known)
		return e;
	cJSON *x = e->child;
	while (x) {
		cJSON *next = x->next;
		const cJSON *k = cJSON_GetObjectItemCaseSensitive(known, x->string);
		if (k && entry_pending(k) && same_value(entry_v(k), entry_v(x))) {
			/* the pending note of this change: the entry replaces it with the note's time and
			 * version, when the change was made (ties go to the update) */
			cJSON *xt = cJSON_GetObjectItemCaseSensitive(x, "t"), *xn = cJSON_GetObjectItemCaseSensitive(x, "n");
			if (xt)
				cJSON_SetNumberValue(xt, (double)entry_t(k));
			if (xn && entry_n(k) > 0)
				cJSON_SetNumberValue(xn, (double)entry_n(k));
			x = next;
			continue;
		}
		k = entry_carried_view(k);
		if (k && same_value(entry_v(k), entry_v(x))) {
			cJSON_Delete(cJSON_DetachItemViaPointer(e, x));
		} else if (k) {
			/* a change made after our write there, in an event older than it: it must
			 * replace our entry, so it takes our write's time */
			long long tc = change_time(k, entry_v(x), side, version, ts);
			cJSON *xt = cJSON_GetObjectItemCaseSensitive(x, "t");
			if (tc != ts && xt)
				cJSON_SetNumberValue(xt, (double)tc);
		}
		x = next;
	}
	return e;
}

cJSON *fieldmerge_pending_entries(const struct map *m, enum event_side side, const cJSON *image, long long version,
				  long long ts, const cJSON *known)
{
	cJSON *e = fieldmerge_changed_entries(m, side, image, version, ts, known);
	cJSON *x;
	cJSON_ArrayForEach(x, e)
	{
		/* the entry the change replaces (for an earlier note of it, the one that note replaced) */
		const cJSON *k = entry_carried_view(cJSON_GetObjectItemCaseSensitive(known, x->string));
		if (!cJSON_AddTrueToObject(x, "w"))
			goto fail;
		if (k) {
			cJSON *b = cJSON_Duplicate(k, 1);
			if (!b || !cJSON_AddItemToObject(x, "b", b)) {
				cJSON_Delete(b);
				goto fail;
			}
		}
	}
	return e;
fail:
	cJSON_Delete(e);
	return NULL;
}

int fieldmerge_merge(cJSON *base, const cJSON *upd)
{
	if (!cJSON_IsObject(base) || !cJSON_IsObject(upd))
		return -1;
	const cJSON *u;
	cJSON_ArrayForEach(u, upd)
	{
		const cJSON *b = cJSON_GetObjectItemCaseSensitive(base, u->string);
		if (b && entry_newer(b, u))
			continue;
		cJSON *c = cJSON_Duplicate(u, 1);
		if (!c)
			return -1;
		cJSON_DeleteItemFromObjectCaseSensitive(base, u->string);
		if (!cJSON_AddItemToObject(base, u->string, c)) {
			cJSON_Delete(c);
			return -1;
		}
	}
	return 0;
}

cJSON *fieldmerge_values(const cJSON *known)
{
	if (!cJSON_IsObject(known))
		return NULL;
	cJSON *out = cJSON_CreateObject();
	const cJSON *e;
	if (!out)
		return NULL;
	cJSON_ArrayForEach(e, known)
	{
		const cJSON *v = entry_v(e);
		cJSON *c = v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull();
		if (!c || !cJSON_AddItemToObject(out, e->string, c)) {
			cJSON_Delete(c);
			cJSON_Delete(out);
			return NULL;
		}
	}
	return out;
}

/* Under a fixed policy, whether the source side wins; under latest_wins -1 (times decide). */
static int fixed_winner(const struct map *m, enum event_side from)
{
	switch (m->conflict) {
	case MAP_CONFLICT_CE_WINS: return from == EVENT_SIDE_CE;
	case MAP_CONFLICT_FO_WINS: return from == EVENT_SIDE_FO;
	case MAP_CONFLICT_LATEST_WINS: break;
	}
	return -1;
}

/*
 * Whether the target's change at t_dst counts as later than the source's at ts. Both directions
 * must see one order: equal times are a conflict for the policy to settle under ce_wins/fo_wins,
 * and under latest_wins go to CE (as fieldmerge_conflict does after a 412).
 */
static int target_later(const struct map *m, enum event_side to, long long t_dst, long long ts)
{
	if (t_dst != ts)
		return t_dst > ts;
	return fixed_winner(m, to) >= 0 || to == EVENT_SIDE_CE;
}

/* How many values a written entry notes as held by the target before it ("p", see superseded). */
#define PRIOR_MAX 4

/* Adds a copy of {"v": v, "t": t, "n": n when > 0} to array links. */
static int add_link(cJSON *links, const cJSON *v, long long t, long long n)
{
	cJSON *l = cJSON_CreateObject();
	cJSON *c = v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull();
	if (!l || !c || !cJSON_AddItemToObject(l, "v", c)) {
		cJSON_Delete(l);
		cJSON_Delete(c);
		return -1;
	}
	if (!cJSON_AddNumberToObject(l, "t", (double)t) || (n > 0 && !cJSON_AddNumberToObject(l, "n", (double)n)) ||
	    !cJSON_AddItemToArray(links, l)) {
		cJSON_Delete(l);
		return -1;
	}
	return 0;
}

/*
 * What the target held in a field before our write lands there: a new array of links for "p"
 * (cJSON_Delete), NULL on out of memory. kd is the known target entry the write goes against (its
 * ETag guards it) or NULL; reread, when not NULL, the value a re-read after a 412 found at time
 * read_ms (the write then goes with that read's ETag). A known value we wrote brings its own links
 * along (up to PRIOR_MAX in all), since it too replaced them under If-Match.
 */
static cJSON *prior_links(const cJSON *kd, enum event_side to, const cJSON *reread, int has_reread, long long read_ms)
{
	cJSON *links = cJSON_CreateArray();
	if (!links)
		return NULL;
	if (has_reread && !(kd && same_value(reread, entry_v(kd)))) {
		/* changed there meanwhile: what came before it is not known */
		if (add_link(links, reread, read_ms, 0) != 0)
			goto fail;
		return links;
	}
	if (!kd)
		return links;
	if (add_link(links, entry_v(kd), entry_t(kd), entry_n(kd)) != 0)
		goto fail;
	if (!entry_own(kd, to)) {
		const cJSON *l;
		cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(kd, "p"))
		{
			if (cJSON_GetArraySize(links) >= PRIOR_MAX)
				break;
			cJSON *c = cJSON_Duplicate(l, 1);
			if (!c || !cJSON_AddItemToArray(links, c)) {
				cJSON_Delete(c);
				goto fail;
			}
		}
	}
	return links;
fail:
	cJSON_Delete(links);
	return NULL;
}

/* Keeps payload member p: counts it and notes its target entry (not for a CE lookup binding) with
 * the values it replaces there (links, borrowed; none when empty). */
static int keep(struct fieldmerge_plan *out, const struct map_field *f, enum event_side to, const cJSON *p,
		long long t, const cJSON *links)
{
	out->nwrite++;
	const char *dname = image_name(f, to);
	if (!dname || (to == EVENT_SIDE_CE && f->lookup))
		return 0;
	if (put_entry(out->written, dname, p, t, event_side_name(to == EVENT_SIDE_CE ? EVENT_SIDE_FO : EVENT_SIDE_CE)) != 0)
		return -1;
	if (cJSON_GetArraySize(links) == 0)
		return 0;
	cJSON *e = cJSON_GetObjectItemCaseSensitive(out->written, dname);
	cJSON *c = cJSON_Duplicate(links, 1);
	if (!c || !cJSON_AddItemToObject(e, "p", c)) {
		cJSON_Delete(c);
		return -1;
	}
	return 0;
}

static int plan_start(struct fieldmerge_plan *out)
{
	memset(out, 0, sizeof(*out));
	out->written = cJSON_CreateObject();
	return out->written ? 0 : -1;
}

int fieldmerge_plan(const struct map *m, enum event_side from, const cJSON *src_image, long long version,
		    long long ts, const cJSON *known_src, const cJSON *known_dst, cJSON *payload, struct fieldmerge_plan *out)
{
	enum event_side to = from == EVENT_SIDE_CE ? EVENT_SIDE_FO : EVENT_SIDE_CE;
	if (plan_start(out) != 0)
		return -1;
	for (cJSON *p = payload ? payload->child : NULL, *next; p; p = next) {
		next = p->next;
		int idx = member_field(m, to, p->string);
		if (idx == MEMBER_KEEP)
			continue;
		const struct map_field *f = &m->fields[idx];
		const char *sname = image_name(f, from), *dname = image_name(f, to);
		int drop = 0;
		long long t = ts, tc = ts; /* tc: when the source changed this field */
		if (!sname) {
			drop = known_dst != NULL; /* a constant: written with the first write only */
		} else if (known_src) {
			const cJSON *sv = cJSON_GetObjectItemCaseSensitive(src_image, sname);
			const cJSON *noted = cJSON_GetObjectItemCaseSensitive(known_src, sname);
			const cJSON *ke = entry_carried_view(noted);
			/* absent from the event: not changed by it */
			drop = !sv || (ke && (same_value(sv, entry_v(ke)) ||
					      (event_older(ke, version, ts) && !superseded(ke, sv, from, version, ts))));
			if (!drop && ke) {
				t = tc = change_time(ke, sv, from, version, ts);
				out->nlate += tc != ts;
			}
			if (!drop && entry_pending(noted) && same_value(sv, entry_v(noted))) {
				/* a change an earlier event carried and noted as pending: it was made then (a
				 * later event's image still shows it), and the other direction decides by
				 * that time */
				t = tc = entry_t(noted);
			}
		}
		if (drop) {
			out->nunchanged++;
			cJSON_Delete(cJSON_DetachItemViaPointer(payload, p));
			continue;
		}
		const cJSON *kd = known_dst && dname ? cJSON_GetObjectItemCaseSensitive(known_dst, dname) : NULL;
		const cJSON *ke = known_src && sname ? entry_carried_view(cJSON_GetObjectItemCaseSensitive(known_src, sname))
						     : NULL;
		int bind = to == EVENT_SIDE_CE && f->lookup;
		if (kd && entry_own(kd, to) && target_later(m, to, entry_t(kd), tc) && (bind || !same_value(p, entry_v(kd))) &&
		    !carried(ke, kd, to)) {
			/* the target changed this field after the source did */
			if (fixed_winner(m, from) == 1) {
				out->nwon++;
				t = entry_t(kd);
			} else {
				out->nlost++;
				cJSON_Delete(cJSON_DetachItemViaPointer(payload, p));
				continue;
			}
		}
		cJSON *links = prior_links(kd, to, NULL, 0, 0);
		int krc = links ? keep(out, f, to, p, t, links) : -1;
		cJSON_Delete(links);
		if (krc != 0)
			return -1;
	}
	return 0;
}

cJSON *fieldmerge_payload_entries(const struct map *m, enum event_side to, const cJSON *payload, long long ts)
{
	struct fieldmerge_plan out;
	if (plan_start(&out) != 0)
		return NULL;
	const cJSON *p;
	cJSON_ArrayForEach(p, payload)
	{
		int idx = member_field(m, to, p->string);
		if (idx != MEMBER_KEEP && keep(&out, &m->fields[idx], to, p, ts, NULL) != 0) {
			fieldmerge_plan_clear(&out);
			return NULL;
		}
	}
	return out.written;
}

/* keep() for a write that goes with the ETag of a re-read that found rv at read_ms. */
static int keep_after_read(struct fieldmerge_plan *out, const struct map_field *f, enum event_side to, const cJSON *p,
			   long long t, const cJSON *kd, const cJSON *rv, long long read_ms)
{
	cJSON *links = prior_links(kd, to, rv, 1, read_ms);
	int rc = links ? keep(out, f, to, p, t, links) : -1;
	cJSON_Delete(links);
	return rc;
}

int fieldmerge_conflict(const struct map *m, enum event_side from, const cJSON *reread, long long target_ts, int settle,
			long long now_ms, const cJSON *known_dst, const cJSON *planned, long long ts, cJSON *payload,
			struct fieldmerge_plan *out)
{
	long long event_ts = ts;
	enum event_side to = from == EVENT_SIDE_CE ? EVENT_SIDE_FO : EVENT_SIDE_CE;
	if (plan_start(out) != 0)
		return -1;
	for (cJSON *p = payload ? payload->child : NULL, *next; p; p = next) {
		next = p->next;
		int idx = member_field(m, to, p->string);
		if (idx == MEMBER_KEEP)
			continue;
		const struct map_field *f = &m->fields[idx];
		const char *dname = image_name(f, to);
		const cJSON *kd = known_dst && dname ? cJSON_GetObjectItemCaseSensitive(known_dst, dname) : NULL;
		const cJSON *rv = dname ? cJSON_GetObjectItemCaseSensitive(reread, dname) : NULL;
		int bind = to == EVENT_SIDE_CE && f->lookup;
		const cJSON *pe = planned && dname ? cJSON_GetObjectItemCaseSensitive(planned, dname) : NULL;
		ts = pe && entry_t(pe) > event_ts ? entry_t(pe) : event_ts; /* this field's change time */
		long long t = kd && entry_t(kd) > ts ? entry_t(kd) : ts;
		int changed_there = kd && !same_value(rv, entry_v(kd)) && (bind || !same_value(rv, p));
		if (!changed_there) {
			if (keep_after_read(out, f, to, p, t, kd, rv, now_ms) != 0)
				return -1;
			continue;
		}
		int win = fixed_winner(m, from);
		if (win < 0 && target_ts > 0 && target_ts < ts) {
			win = 1;
		} else if (win < 0 && settle) {
			/* waited long enough: our change is written over the target's, dated now, so that the
			 * target's change event, when it comes, is older than our write and changes nothing;
			 * letting the target's value stand instead would leave it to the other direction,
			 * which may decide by the two change times for the side we dropped */
			win = 1;
			t = t > now_ms ? t : now_ms;
			out->nsettled++;
		} else if (win < 0) {
			out->nwait++;
			if (keep_after_read(out, f, to, p, t, kd, rv, now_ms) != 0)
				return -1;
			continue;
		} else if (win) {
			t = t > now_ms ? t : now_ms;
		}
		if (win) {
			out->nwon++;
			if (keep_after_read(out, f, to, p, t, kd, rv, now_ms) != 0)
				return -1;
		} else {
			out->nlost++;
			cJSON_Delete(cJSON_DetachItemViaPointer(payload, p));
		}
	}
	return 0;
}

int fieldmerge_unseen(const cJSON *known, const cJSON *reread, const cJSON *written)
{
	const cJSON *e;
	if (!cJSON_IsObject(known) || !cJSON_IsObject(reread))
		return 0;
	cJSON_ArrayForEach(e, known)
	{
		if (written && cJSON_GetObjectItemCaseSensitive(written, e->string))
			continue;
		if (!same_value(cJSON_GetObjectItemCaseSensitive(reread, e->string), entry_v(e)))
			return 1;
	}
	return 0;
}

int fieldmerge_observe(const struct map *m, enum event_side to, const cJSON *payload, const cJSON *rep, long long ts,
		       cJSON *written)
{
	const cJSON *p;
	if (!cJSON_IsObject(rep) || !cJSON_IsObject(written))
		return 0;
	cJSON_ArrayForEach(p, payload)
	{
		int idx = member_field(m, to, p->string);
		if (idx == MEMBER_KEEP)
			continue;
		const char *dname = image_name(&m->fields[idx], to);
		const cJSON *rv = dname ? cJSON_GetObjectItemCaseSensitive(rep, dname) : NULL;
		if (!rv)
			continue;
		cJSON *old = cJSON_GetObjectItemCaseSensitive(written, dname);
		if (!old) {
			if (put_entry(written, dname, rv, ts, NULL) != 0)
				return -1;
			continue;
		}
		cJSON *c = cJSON_Duplicate(rv, 1);
		if (!c || !cJSON_ReplaceItemInObjectCaseSensitive(old, "v", c)) {
			cJSON_Delete(c);
			return -1;
		}
	}
	return 0;
}

int fieldmerge_stamp(cJSON *written, long long t, enum event_side origin, long long version, long long src_ts,
		     long long src_version)
{
	cJSON *e;
	cJSON_ArrayForEach(e, written)
	{
		cJSON_DeleteItemFromObjectCaseSensitive(e, "s");
		cJSON_DeleteItemFromObjectCaseSensitive(e, "sn");
		if ((src_ts > 0 && !cJSON_AddNumberToObject(e, "s", (double)src_ts)) ||
		    (src_version > 0 && !cJSON_AddNumberToObject(e, "sn", (double)src_version)))
			return -1;
		cJSON *et = cJSON_GetObjectItemCaseSensitive(e, "t");
		if (cJSON_IsNumber(et) && et->valuedouble < (double)t)
			cJSON_SetNumberValue(et, (double)t);
		cJSON_DeleteItemFromObjectCaseSensitive(e, "o");
		cJSON_DeleteItemFromObjectCaseSensitive(e, "n");
		if (!cJSON_AddStringToObject(e, "o", event_side_name(origin)) ||
		    (version > 0 && !cJSON_AddNumberToObject(e, "n", (double)version)))
			return -1;
	}
	return 0;
}

long long fieldmerge_ce_modified_ms(const cJSON *image)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(image, "modifiedon");
	long long ms = 0;
	if (!cJSON_IsString(v) ||
	    (capture_ce_parse_iso(v->valuestring, &ms) != 0 && capture_ce_parse_date(v->valuestring, &ms) != 0))
		return 0;
	return ms;
}

/* A stamp of an entry as dw_image_merge reads it ((e ->> name)::bigint): 1 with *v set when the
 * member is an integral number the cast takes as is, 0 when absent or null (*v 0, as COALESCE
 * gives for t), -1 when anything else (the SQL could read it otherwise, or fail). */
static int sql_stamp(const cJSON *e, const char *name, long long *v)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(e, name);
	*v = 0;
	if (!x || cJSON_IsNull(x))
		return 0;
	if (!cJSON_IsNumber(x) || x->valuedouble != x->valuedouble || x->valuedouble > 9007199254740992.0 ||
	    x->valuedouble < -9007199254740992.0 || (double)(long long)x->valuedouble != x->valuedouble)
		return -1;
	*v = (long long)x->valuedouble;
	return 1;
}

int fieldmerge_wins_all(const cJSON *base, const cJSON *upd)
{
	if (!cJSON_IsObject(base) || !cJSON_IsObject(upd) || !upd->child)
		return 0;
	for (const cJSON *u = upd->child; u; u = u->next) {
		if (!u->string || !cJSON_IsObject(u))
			return 0;
		for (const cJSON *o = upd->child; o != u; o = o->next)
			if (strcmp(o->string, u->string) == 0)
				return 0; /* jsonb keeps one member per name */
		const cJSON *b = cJSON_GetObjectItemCaseSensitive(base, u->string);
		if (!b)
			continue;
		if (!cJSON_IsObject(b))
			return 0;
		long long un, bn, ut, bt;
		int hun = sql_stamp(u, "n", &un), hbn = sql_stamp(b, "n", &bn);
		int hut = sql_stamp(u, "t", &ut), hbt = sql_stamp(b, "t", &bt);
		/* the SQL tests for the key n (u.value ? 'n'); a null n is a key whose cast is NULL */
		int kun = cJSON_GetObjectItemCaseSensitive(u, "n") != NULL, kbn = cJSON_GetObjectItemCaseSensitive(b, "n") != NULL;
		if (hun < 0 || hbn < 0 || hut < 0 || hbt < 0 || (kun && hun == 0) || (kbn && hbn == 0))
			return 0;
		if (kun && kbn ? un < bn : ut < bt)
			return 0;
	}
	return 1;
}
