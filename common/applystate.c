/* The apply worker's PostgreSQL state: decisions, outcomes, parked events, units, map state. */
#include "applystate.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "strbuf.h"

struct applystate {
	PGconn *conn;
	char *map;
	char *side;
	const char *other; /* the event's source side: "fo" when side is "ce" and back */
};

/* Appends one element of a PostgreSQL array literal: NULL, or a double-quoted string with '"'
 * and '\' escaped by a backslash. `first` says whether a comma is needed. */
static void sb_array_elem(struct strbuf *b, const char *v, int first)
{
	if (!first)
		strbuf_put(b, ",", 1);
	if (!v) {
		strbuf_puts(b, "NULL");
		return;
	}
	strbuf_put(b, "\"", 1);
	const char *run = v;
	for (const char *c = v; *c; c++) {
		if (*c == '"' || *c == '\\') {
			strbuf_put(b, run, (size_t)(c - run));
			strbuf_put(b, "\\", 1);
			run = c;
		}
	}
	strbuf_puts(b, run);
	strbuf_put(b, "\"", 1);
}

static char *dup_or_null(const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		return NULL;
	return strdup(PQgetvalue(r, row, col));
}

static int64_t parse_i64(const char *s)
{
	return (int64_t)strtoll(s, NULL, 10); /* PostgreSQL's own bigint text: always valid */
}

static int check_text(const char *what, const char *v, int required, char *errbuf, size_t errlen)
{
	if (!v) {
		if (required) {
			snprintf(errbuf, errlen, "%s: missing", what);
			return STORE_ERR;
		}
		return 0;
	}
	size_t n = strnlen(v, APPLYSTATE_TEXT_MAX + 1);
	if (required && n == 0) {
		snprintf(errbuf, errlen, "%s: empty", what);
		return STORE_ERR;
	}
	if (n > APPLYSTATE_TEXT_MAX) {
		snprintf(errbuf, errlen, "%s: longer than %d bytes", what, APPLYSTATE_TEXT_MAX);
		return STORE_ERR;
	}
	return 0;
}

/* check_text for a field of batch item i; the message names the item. */
static int check_item_text(size_t i, const char *what, const char *v, int required, char *errbuf, size_t errlen)
{
	char msg[256];
	if (check_text(what, v, required, msg, sizeof(msg)) == 0)
		return 0;
	snprintf(errbuf, errlen, "item %zu: %s", i, msg);
	return STORE_ERR;
}

int applystate_new(PGconn *conn, const char *map_name, const char *target_side, struct applystate **out,
		   char *errbuf, size_t errlen)
{
	*out = NULL;
	if (!conn) {
		snprintf(errbuf, errlen, "applystate: no connection");
		return STORE_ERR;
	}
	if (!map_name || !*map_name || strlen(map_name) > 200) {
		snprintf(errbuf, errlen, "applystate: map name must be 1..200 bytes");
		return STORE_ERR;
	}
	if (!target_side || (strcmp(target_side, "ce") != 0 && strcmp(target_side, "fo") != 0)) {
		snprintf(errbuf, errlen, "applystate: target side must be ce or fo");
		return STORE_ERR;
	}
	struct applystate *s = calloc(1, sizeof(*s));
	if (!s || !(s->map = strdup(map_name)) || !(s->side = strdup(target_side))) {
		applystate_free(s);
		snprintf(errbuf, errlen, "applystate: out of memory");
		return STORE_ERR;
	}
	s->conn = conn;
	s->other = strcmp(target_side, "ce") == 0 ? "fo" : "ce";
	*out = s;
	return 0;
}

void applystate_free(struct applystate *s)
{
	if (!s)
		return;
	free(s->map);
	free(s->side);
	free(s);
}

const char *applystate_decision_name(enum applystate_decision d)
{
	switch (d) {
	case APPLYSTATE_WRITE: return "write";
	case APPLYSTATE_SKIP_DUPLICATE: return "duplicate";
	case APPLYSTATE_SKIP_STALE: return "stale";
	case APPLYSTATE_SKIP_ECHO: return "echo";
	case APPLYSTATE_QUEUE_PARKED: return "queued";
	}
	return NULL;
}

const char *applystate_result_name(enum applystate_result r)
{
	switch (r) {
	case APPLYSTATE_APPLIED: return "applied";
	case APPLYSTATE_ECHO: return "echo";
	case APPLYSTATE_DUPLICATE: return "duplicate";
	case APPLYSTATE_DEAD_LETTER: return "dead_letter";
	case APPLYSTATE_PARKED: return "parked";
	case APPLYSTATE_SEEN: return "seen";
	case APPLYSTATE_FILTERED: return "filtered";
	}
	return NULL;
}

const char *applystate_map_state_name(enum applystate_map_state st)
{
	switch (st) {
	case APPLYSTATE_MAP_RUNNING: return "running";
	case APPLYSTATE_MAP_PAUSED: return "paused";
	case APPLYSTATE_MAP_FAILED: return "failed";
	}
	return NULL;
}

void applystate_record_clear(struct applystate_record *r)
{
	if (!r)
		return;
	free(r->content_hash);
	free(r->etag);
	free(r->target_id);
	free(r->seen_hash);
	free(r->image);
	free(r->image_rev);
	memset(r, 0, sizeof(*r));
}

void applystate_item_clear(struct applystate_item *item)
{
	if (!item)
		return;
	applystate_record_clear(&item->prev);
	free(item->src_image);
	free(item->src_image_rev);
	item->src_image = NULL;
	item->src_image_rev = NULL;
	item->has_prev = 0;
	item->decision = 0;
}

/* Rows of a result found by the text of one column: the row numbers sorted by that text (byte
 * order), searched by bisection. A batch's results hold up to APPLYSTATE_BATCH_MAX rows, so a
 * linear search per item would cost a batch of n items n * n / 2 comparisons. */
struct rowidx {
	const PGresult *r;
	int col;
	int *rows;
	int n;
};

static int cmp_rows(const void *a, const void *b, void *ctx)
{
	const struct rowidx *x = ctx;
	return strcmp(PQgetvalue(x->r, *(const int *)a, x->col), PQgetvalue(x->r, *(const int *)b, x->col));
}

/* Indexes column col of r (NULL: an empty index). 0, or -1 when out of memory. */
static int rowidx_build(struct rowidx *x, const PGresult *r, int col)
{
	memset(x, 0, sizeof(*x));
	x->r = r;
	x->col = col;
	x->n = r ? PQntuples(r) : 0;
	if (x->n == 0)
		return 0;
	if (!(x->rows = malloc((size_t)x->n * sizeof(*x->rows))))
		return -1;
	for (int i = 0; i < x->n; i++)
		x->rows[i] = i;
	qsort_r(x->rows, (size_t)x->n, sizeof(*x->rows), cmp_rows, x);
	return 0;
}

/* The row whose column holds v, or -1. */
static int rowidx_find(const struct rowidx *x, const char *v)
{
	int lo = 0, hi = x->n - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		int c = strcmp(PQgetvalue(x->r, x->rows[mid], x->col), v);
		if (c == 0)
			return x->rows[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

static void rowidx_free(struct rowidx *x)
{
	free(x->rows);
	memset(x, 0, sizeof(*x));
}

int applystate_decide(struct applystate *s, struct applystate_item *items, size_t n, char *errbuf, size_t errlen)
{
	int rc = STORE_ERR;
	struct strbuf ids = { 0 }, keys = { 0 }, skeys = { 0 }, pkeys = { 0 };
	PGresult *r_ids = NULL, *r_parked = NULL, *r_state = NULL, *r_src = NULL;
	struct rowidx x_ids = { 0 }, x_parked = { 0 }, x_state = { 0 }, x_src = { 0 };
	size_t nsrc = 0;
	for (size_t i = 0; i < n; i++) {
		items[i].decision = 0;
		items[i].has_prev = 0;
		items[i].src_image = NULL;
		items[i].src_image_rev = NULL;
		memset(&items[i].prev, 0, sizeof(items[i].prev));
	}
	if (n == 0)
		return 0;
	if (n > APPLYSTATE_BATCH_MAX) {
		snprintf(errbuf, errlen, "applystate_decide: %zu items exceed the cap of %d", n, APPLYSTATE_BATCH_MAX);
		return STORE_ERR;
	}
	strbuf_put(&ids, "{", 1);
	strbuf_put(&keys, "{", 1);
	strbuf_put(&skeys, "{", 1);
	strbuf_put(&pkeys, "{", 1);
	for (size_t i = 0; i < n; i++) {
		if (check_item_text(i, "record_key", items[i].record_key, 1, errbuf, errlen) != 0 ||
		    check_item_text(i, "event_id", items[i].event_id, 1, errbuf, errlen) != 0 ||
		    check_item_text(i, "source_key", items[i].source_key, 0, errbuf, errlen) != 0 ||
		    check_item_text(i, "park_key", items[i].park_key, 0, errbuf, errlen) != 0)
			goto out;
		sb_array_elem(&pkeys, items[i].park_key ? items[i].park_key : items[i].record_key, i == 0);
		sb_array_elem(&ids, items[i].event_id, i == 0);
		sb_array_elem(&keys, items[i].record_key, i == 0);
		if (items[i].source_key)
			sb_array_elem(&skeys, items[i].source_key, nsrc++ == 0);
	}
	strbuf_put(&ids, "}", 1);
	strbuf_put(&keys, "}", 1);
	strbuf_put(&skeys, "}", 1);
	strbuf_put(&pkeys, "}", 1);
	if (ids.failed || keys.failed || skeys.failed || pkeys.failed) {
		snprintf(errbuf, errlen, "applystate_decide: out of memory");
		goto out;
	}
	/* Each read probes the primary key once per item: with `= ANY(array)` and stale statistics (a
	 * new or fast-growing table) the planner chose to read every row of the map and side and
	 * filter them by the array. Many items: unnest(array) CROSS JOIN LATERAL (... LIMIT 1), which
	 * it cannot turn into a join; one item (one event per request): plain equality with the
	 * array's element, which plans in less time. */
	int one = n == 1;
	static const char *const body[4] = {
		"SELECT event_id FROM dw_applied_event WHERE map_name = $1 AND target_side = $2 AND event_id = ",
		"SELECT record_key FROM dw_parked_event WHERE map_name = $1 AND target_side = $2 AND record_key = ",
		"SELECT record_key, source_version, content_hash, etag, target_id, deleted, seen_hash, CASE WHEN NOT "
		"deleted THEN image::text END, image_rev FROM dw_record_state WHERE map_name = $1 AND target_side = $2 "
		"AND record_key = ",
		"SELECT record_key, seen_hash, image::text, image_rev FROM dw_record_state WHERE map_name = $1 "
		"AND target_side = $2 AND NOT deleted AND record_key = ",
	};
	char sql[4][512];
	for (int q = 0; q < 4; q++)
		snprintf(sql[q], sizeof(sql[q]), "%s%s%s",
			 one ? "" : "SELECT x.* FROM unnest($3::text[]) AS u(k) CROSS JOIN LATERAL (", body[q],
			 one ? "($3::text[])[1] LIMIT 1" : "u.k LIMIT 1) AS x");
	const char *p_ids[] = { s->map, s->side, ids.p };
	rc = store_exec(s->conn, sql[0], 3, p_ids, &r_ids, errbuf, errlen);
	if (rc != 0)
		goto out;
	const char *p_keys[] = { s->map, s->side, keys.p };
	const char *p_pkeys[] = { s->map, s->side, pkeys.p };
	rc = store_exec(s->conn, sql[1], 3, p_pkeys, &r_parked, errbuf, errlen);
	if (rc != 0)
		goto out;
	rc = store_exec(s->conn, sql[2], 3, p_keys, &r_state, errbuf, errlen);
	if (rc != 0)
		goto out;
	if (nsrc > 0) {
		const char *p_src[] = { s->map, s->other, skeys.p };
		rc = store_exec(s->conn, sql[3], 3, p_src, &r_src, errbuf, errlen);
		if (rc != 0)
			goto out;
	}
	if (rowidx_build(&x_ids, r_ids, 0) != 0 || rowidx_build(&x_parked, r_parked, 0) != 0 ||
	    rowidx_build(&x_state, r_state, 0) != 0 || rowidx_build(&x_src, r_src, 0) != 0) {
		snprintf(errbuf, errlen, "applystate_decide: out of memory");
		rc = STORE_ERR;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct applystate_item *it = &items[i];
		int row = rowidx_find(&x_state, it->record_key), srow = -1;
		if (row >= 0) {
			it->has_prev = 1;
			it->prev.source_version = parse_i64(PQgetvalue(r_state, row, 1));
			it->prev.content_hash = dup_or_null(r_state, row, 2);
			it->prev.etag = dup_or_null(r_state, row, 3);
			it->prev.target_id = dup_or_null(r_state, row, 4);
			it->prev.deleted = strcmp(PQgetvalue(r_state, row, 5), "t") == 0;
			it->prev.seen_hash = dup_or_null(r_state, row, 6);
			it->prev.image = dup_or_null(r_state, row, 7);
			it->prev.image_rev = dup_or_null(r_state, row, 8);
			if ((!PQgetisnull(r_state, row, 2) && !it->prev.content_hash) ||
			    (!PQgetisnull(r_state, row, 7) && !it->prev.image) || !it->prev.image_rev ||
			    (!PQgetisnull(r_state, row, 6) && !it->prev.seen_hash) ||
			    (!PQgetisnull(r_state, row, 3) && !it->prev.etag) ||
			    (!PQgetisnull(r_state, row, 4) && !it->prev.target_id)) {
				snprintf(errbuf, errlen, "applystate_decide: out of memory");
				rc = STORE_ERR;
				goto out;
			}
		}
		if (it->source_key && (srow = rowidx_find(&x_src, it->source_key)) >= 0 &&
		    !PQgetisnull(r_src, srow, 2) && (!(it->src_image = strdup(PQgetvalue(r_src, srow, 2))) ||
						     !(it->src_image_rev = strdup(PQgetvalue(r_src, srow, 3))))) {
			snprintf(errbuf, errlen, "applystate_decide: out of memory");
			rc = STORE_ERR;
			goto out;
		}
		if (!it->redrive && rowidx_find(&x_ids, it->event_id) >= 0)
			it->decision = APPLYSTATE_SKIP_DUPLICATE;
		else if (!it->redrive && rowidx_find(&x_parked, it->park_key ? it->park_key : it->record_key) >= 0)
			it->decision = APPLYSTATE_QUEUE_PARKED;
		else if (it->has_prev && it->version <= it->prev.source_version)
			it->decision = APPLYSTATE_SKIP_STALE;
		else if (it->source_key && it->source_hash && srow >= 0 && !PQgetisnull(r_src, srow, 1) &&
			 strcmp(PQgetvalue(r_src, srow, 1), it->source_hash) == 0)
			it->decision = APPLYSTATE_SKIP_ECHO;
		else if (it->has_prev && it->is_delete && it->prev.deleted)
			it->decision = APPLYSTATE_SKIP_ECHO;
		else if (it->has_prev && !it->is_delete && !it->prev.deleted && it->content_hash &&
			 it->prev.content_hash && strcmp(it->content_hash, it->prev.content_hash) == 0)
			it->decision = APPLYSTATE_SKIP_ECHO;
		else
			it->decision = APPLYSTATE_WRITE;
	}
	rc = 0;
out:
	rowidx_free(&x_ids);
	rowidx_free(&x_parked);
	rowidx_free(&x_state);
	rowidx_free(&x_src);
	PQclear(r_ids);
	PQclear(r_parked);
	PQclear(r_state);
	PQclear(r_src);
	strbuf_free(&ids);
	strbuf_free(&keys);
	strbuf_free(&skeys);
	strbuf_free(&pkeys);
	return rc;
}

int applystate_get(struct applystate *s, const char *record_key, int *found, struct applystate_record *out,
		   char *errbuf, size_t errlen)
{
	PGresult *r = NULL;
	*found = 0;
	memset(out, 0, sizeof(*out));
	if (check_text("record_key", record_key, 1, errbuf, errlen) != 0)
		return STORE_ERR;
	const char *p[] = { s->map, s->side, record_key };
	int rc = store_exec(s->conn,
			    "SELECT source_version, content_hash, etag, target_id, deleted, seen_hash, image::text, "
			    "image_rev::text FROM dw_record_state "
			    "WHERE map_name = $1 AND target_side = $2 AND record_key = $3",
			    3, p, &r, errbuf, errlen);
	if (rc != 0)
		return rc;
	if (PQntuples(r) == 1) {
		*found = 1;
		out->source_version = parse_i64(PQgetvalue(r, 0, 0));
		out->content_hash = dup_or_null(r, 0, 1);
		out->etag = dup_or_null(r, 0, 2);
		out->target_id = dup_or_null(r, 0, 3);
		out->deleted = strcmp(PQgetvalue(r, 0, 4), "t") == 0;
		out->seen_hash = dup_or_null(r, 0, 5);
		out->image = dup_or_null(r, 0, 6);
		out->image_rev = dup_or_null(r, 0, 7);
	}
	PQclear(r);
	return 0;
}

/* Appends a bigint element. */
static void sb_array_i64(struct strbuf *b, int64_t v, int first)
{
	char num[32];
	snprintf(num, sizeof(num), "%s%" PRId64, first ? "" : ",", v);
	strbuf_puts(b, num);
}

/* The new image of a state row on conflict (rs the row, EXCLUDED the outcome): none for a delete,
 * the outcome's entries for a row deleted before, else the entries merged field by field into the
 * row's image (dw_image_merge, schemas/sql/004). EXCLUDED.image_rev is one more than the guard
 * (applystate_outcome.image_guard; 0 without one): while the row's image is still at the guard's
 * revision, every entry wins against it, so the merge is the concatenation, which costs less. */
#define IMAGE_MERGE                                                                                   \
	"CASE WHEN EXCLUDED.deleted THEN NULL WHEN rs.deleted THEN EXCLUDED.image "                   \
	"WHEN EXCLUDED.image_rev = rs.image_rev + 1 AND rs.image IS NOT NULL AND EXCLUDED.image IS NOT NULL " \
	"THEN rs.image || EXCLUDED.image ELSE dw_image_merge(rs.image, EXCLUDED.image) END"

/* Records SEEN rows on the event's source side (see applystate_record). What the event's source
 * side holds now: a change there makes the payload last written there stale (content_hash
 * cleared); a new row has version -1 (nothing applied to that side yet). The last SEEN of a key in
 * the batch wins; images merge field by field. */
static int record_seen(struct applystate *s, const struct strbuf *keys, const struct strbuf *hashes, const struct strbuf *del,
		       const struct strbuf *img, const struct strbuf *guard, char *errbuf, size_t errlen)
{
	const char *p[] = { s->map, s->other, keys->p, hashes->p, del->p, img->p, guard->p };
	return store_exec(s->conn,
			  "INSERT INTO dw_record_state AS rs (map_name, target_side, record_key, source_version, "
			  "seen_hash, deleted, image, image_rev, updated_at) "
			  "SELECT $1, $2, k, -1, h, d, im::jsonb, COALESCE(g::bigint + 1, 0), now() FROM (SELECT DISTINCT ON (k) "
			  "k, h, d, im, g FROM unnest($3::text[], $4::text[], $5::boolean[], $6::text[], $7::text[]) "
			  "WITH ORDINALITY AS u(k, h, d, im, g, n) ORDER BY k, n DESC) AS x "
			  "ON CONFLICT (map_name, target_side, record_key) DO UPDATE SET "
			  "content_hash = CASE WHEN rs.seen_hash IS NOT DISTINCT FROM EXCLUDED.seen_hash "
			  "  AND rs.deleted = EXCLUDED.deleted THEN rs.content_hash END, "
			  "image = " IMAGE_MERGE ", image_rev = rs.image_rev + 1, "
			  "seen_hash = EXCLUDED.seen_hash, deleted = EXCLUDED.deleted, updated_at = now()",
			  7, p, NULL, errbuf, errlen);
}

int applystate_record(struct applystate *s, const struct applystate_outcome *o, size_t n, char *errbuf,
		      size_t errlen)
{
	int rc = STORE_ERR, in_txn = 0;
	/* dw_applied_event rows */
	struct strbuf a_ids = { 0 }, a_outcomes = { 0 };
	/* dw_record_state rows */
	struct strbuf r_keys = { 0 }, r_vers = { 0 }, r_hashes = { 0 }, r_etags = { 0 }, r_tids = { 0 },
		    r_ts = { 0 }, r_del = { 0 }, r_seen = { 0 }, r_img = { 0 }, r_guard = { 0 };
	/* SEEN rows, on the other side */
	struct strbuf s_keys = { 0 }, s_hashes = { 0 }, s_del = { 0 }, s_img = { 0 }, s_guard = { 0 };
	/* dw_parked_event rows */
	struct strbuf p_keys = { 0 }, p_ids = { 0 }, p_events = { 0 }, p_reasons = { 0 };
	/* echo outcomes: version moves on only */
	struct strbuf e_keys = { 0 }, e_vers = { 0 }, e_ts = { 0 };
	size_t na = 0, nr = 0, np = 0, ne = 0, ns = 0;
	if (n == 0)
		return 0;
	if (n > APPLYSTATE_BATCH_MAX) {
		snprintf(errbuf, errlen, "applystate_record: %zu outcomes exceed the cap of %d", n,
			 APPLYSTATE_BATCH_MAX);
		return STORE_ERR;
	}
	struct strbuf *all[] = { &a_ids,  &a_outcomes, &r_keys,  &r_vers,   &r_hashes, &r_etags,  &r_tids,
			       &r_ts,   &r_del,      &r_seen,  &r_img,    &r_guard,  &s_keys,   &s_hashes,
			       &s_del,  &s_img,      &s_guard, &p_keys,   &p_ids,    &p_events, &p_reasons,
			       &e_keys, &e_vers,     &e_ts };
	for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++)
		strbuf_put(all[k], "{", 1);
	for (size_t i = 0; i < n; i++) {
		const struct applystate_outcome *x = &o[i];
		const char *name = applystate_result_name(x->result);
		char what[64];
		if (!name) {
			snprintf(errbuf, errlen, "outcome %zu: invalid result %d", i, (int)x->result);
			goto out;
		}
		snprintf(what, sizeof(what), "outcome %zu: record_key", i);
		if (check_text(what, x->record_key, 1, errbuf, errlen) != 0)
			goto out;
		snprintf(what, sizeof(what), "outcome %zu: event_id", i);
		if (check_text(what, x->event_id, x->result != APPLYSTATE_SEEN, errbuf, errlen) != 0)
			goto out;
		snprintf(what, sizeof(what), "outcome %zu: content_hash", i);
		if (check_text(what, x->content_hash, 0, errbuf, errlen) != 0)
			goto out;
		snprintf(what, sizeof(what), "outcome %zu: seen_hash", i);
		if (check_text(what, x->seen_hash, 0, errbuf, errlen) != 0)
			goto out;
		snprintf(what, sizeof(what), "outcome %zu: etag", i);
		if (check_text(what, x->etag, 0, errbuf, errlen) != 0)
			goto out;
		snprintf(what, sizeof(what), "outcome %zu: target_id", i);
		if (check_text(what, x->target_id, 0, errbuf, errlen) != 0)
			goto out;
		snprintf(what, sizeof(what), "outcome %zu: image", i);
		if (check_text(what, x->image, 0, errbuf, errlen) != 0)
			goto out;
		/* a guard is a revision this module read: decimal digits only (it is cast to bigint) */
		if (x->image_guard && (!*x->image_guard || strlen(x->image_guard) > 19 ||
				       strspn(x->image_guard, "0123456789") != strlen(x->image_guard))) {
			snprintf(errbuf, errlen, "outcome %zu: image_guard is not a revision", i);
			goto out;
		}
		if (x->event_id) {
			sb_array_elem(&a_ids, x->event_id, na == 0);
			sb_array_elem(&a_outcomes, name, na == 0);
			na++;
		}
		if (x->result == APPLYSTATE_APPLIED || x->result == APPLYSTATE_ECHO || x->result == APPLYSTATE_SEEN) {
			if (x->version < 0) {
				snprintf(errbuf, errlen, "outcome %zu: negative version", i);
				goto out;
			}
		}
		if (x->result == APPLYSTATE_ECHO) {
			sb_array_elem(&e_keys, x->record_key, ne == 0);
			sb_array_i64(&e_vers, x->version, ne == 0);
			sb_array_i64(&e_ts, x->source_ts_ms, ne == 0);
			ne++;
		}
		if (x->result == APPLYSTATE_APPLIED) {
			sb_array_elem(&r_keys, x->record_key, nr == 0);
			sb_array_i64(&r_vers, x->version, nr == 0);
			sb_array_elem(&r_hashes, x->deleted ? NULL : x->content_hash, nr == 0);
			sb_array_elem(&r_etags, x->etag, nr == 0);
			sb_array_elem(&r_tids, x->target_id, nr == 0);
			sb_array_i64(&r_ts, x->source_ts_ms, nr == 0);
			sb_array_elem(&r_del, x->deleted ? "t" : "f", nr == 0);
			sb_array_elem(&r_seen, x->deleted ? NULL : x->seen_hash, nr == 0);
			sb_array_elem(&r_img, x->deleted ? NULL : x->image, nr == 0);
			sb_array_elem(&r_guard, x->deleted || !x->image ? NULL : x->image_guard, nr == 0);
			nr++;
		}
		if (x->result == APPLYSTATE_SEEN) {
			sb_array_elem(&s_keys, x->record_key, ns == 0);
			sb_array_elem(&s_hashes, x->deleted ? NULL : x->seen_hash, ns == 0);
			sb_array_elem(&s_del, x->deleted ? "t" : "f", ns == 0);
			sb_array_elem(&s_img, x->deleted ? NULL : x->image, ns == 0);
			sb_array_elem(&s_guard, x->deleted || !x->image ? NULL : x->image_guard, ns == 0);
			ns++;
		}
		if (x->result == APPLYSTATE_PARKED) {
			snprintf(what, sizeof(what), "outcome %zu: event_json", i);
			if (check_text(what, x->event_json, 1, errbuf, errlen) != 0)
				goto out;
			snprintf(what, sizeof(what), "outcome %zu: reason", i);
			if (check_text(what, x->reason, 1, errbuf, errlen) != 0)
				goto out;
			sb_array_elem(&p_keys, x->record_key, np == 0);
			sb_array_elem(&p_ids, x->event_id, np == 0);
			sb_array_elem(&p_events, x->event_json, np == 0);
			sb_array_elem(&p_reasons, x->reason, np == 0);
			np++;
		}
	}
	for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++) {
		strbuf_put(all[k], "}", 1);
		if (all[k]->failed) {
			snprintf(errbuf, errlen, "applystate_record: out of memory");
			goto out;
		}
	}
	rc = store_begin(s->conn, errbuf, errlen);
	if (rc != 0)
		goto out;
	in_txn = 1;
	if (na > 0) {
		const char *p[] = { s->map, s->side, a_ids.p, a_outcomes.p };
		rc = store_exec(s->conn,
				"INSERT INTO dw_applied_event (map_name, target_side, event_id, outcome) "
				"SELECT $1, $2, e, o FROM unnest($3::text[], $4::text[]) AS u(e, o) "
				"ON CONFLICT (map_name, target_side, event_id) DO NOTHING",
				4, p, NULL, errbuf, errlen);
		if (rc != 0)
			goto out;
	}
	/* The two workers of a map (one per direction) touch the rows of both sides, each in one
	 * transaction: rows are locked side by side in one order ("ce" rows first) so that they never
	 * wait on each other in a cycle (a deadlock would lose a recorded write's outcome). */
	int seen_first = strcmp(s->other, s->side) < 0;
	if (seen_first && ns > 0 && (rc = record_seen(s, &s_keys, &s_hashes, &s_del, &s_img, &s_guard, errbuf, errlen)) != 0)
		goto out;
	if (nr > 0) {
		/* DISTINCT ON keeps the newest outcome per key: one statement may not touch a row twice */
		const char *p[] = { s->map, s->side, r_keys.p, r_vers.p, r_hashes.p, r_etags.p, r_tids.p, r_ts.p, r_del.p,
				    r_seen.p, r_img.p, r_guard.p };
		rc = store_exec(s->conn,
				"INSERT INTO dw_record_state AS rs (map_name, target_side, record_key, source_version, "
				"content_hash, etag, target_id, source_ts, deleted, seen_hash, image, image_rev, updated_at) "
				"SELECT $1, $2, k, v, h, e, t, CASE WHEN ts > 0 THEN to_timestamp(ts / 1000.0) END, d, sh, "
				"im::jsonb, COALESCE(g::bigint + 1, 0), now() "
				"FROM (SELECT DISTINCT ON (k) k, v, h, e, t, ts, d, sh, im, g FROM unnest($3::text[], $4::bigint[], "
				" $5::text[], $6::text[], $7::text[], $8::bigint[], $9::boolean[], $10::text[], $11::text[], "
				" $12::text[]) AS u(k, v, h, e, t, ts, d, sh, im, g) ORDER BY k, v DESC) AS x "
				"ON CONFLICT (map_name, target_side, record_key) DO UPDATE SET "
				"source_version = EXCLUDED.source_version, content_hash = EXCLUDED.content_hash, "
				"etag = COALESCE(EXCLUDED.etag, rs.etag), target_id = COALESCE(EXCLUDED.target_id, rs.target_id), "
				"source_ts = COALESCE(EXCLUDED.source_ts, rs.source_ts), deleted = EXCLUDED.deleted, "
				"seen_hash = EXCLUDED.seen_hash, image = " IMAGE_MERGE ", image_rev = rs.image_rev + 1, "
				"updated_at = now() "
				"WHERE rs.source_version < EXCLUDED.source_version",
				12, p, NULL, errbuf, errlen);
		if (rc != 0)
			goto out;
	}
	if (ne > 0) {
		/* An echo has the recorded content: only the version (and source time) move on. */
		const char *p[] = { s->map, s->side, e_keys.p, e_vers.p, e_ts.p };
		rc = store_exec(s->conn,
				"UPDATE dw_record_state AS rs SET source_version = x.v, "
				"source_ts = COALESCE(CASE WHEN x.ts > 0 THEN to_timestamp(x.ts / 1000.0) END, rs.source_ts), "
				"updated_at = now() FROM (SELECT DISTINCT ON (k) k, v, ts FROM unnest($3::text[], "
				"$4::bigint[], $5::bigint[]) AS u(k, v, ts) ORDER BY k, v DESC) AS x "
				"WHERE rs.map_name = $1 AND rs.target_side = $2 AND rs.record_key = x.k "
				"AND rs.source_version < x.v",
				5, p, NULL, errbuf, errlen);
		if (rc != 0)
			goto out;
	}
	if (!seen_first && ns > 0 && (rc = record_seen(s, &s_keys, &s_hashes, &s_del, &s_img, &s_guard, errbuf, errlen)) != 0)
		goto out;
	if (np > 0) {
		const char *p[] = { s->map, s->side, p_keys.p, p_ids.p, p_events.p, p_reasons.p };
		rc = store_exec(s->conn,
				"INSERT INTO dw_parked_event (map_name, target_side, record_key, event_id, event, reason) "
				"SELECT $1, $2, k, e, j::jsonb, r FROM unnest($3::text[], $4::text[], $5::text[], "
				"$6::text[]) WITH ORDINALITY AS u(k, e, j, r, n) ORDER BY n "
				"ON CONFLICT (map_name, target_side, event_id) DO NOTHING",
				6, p, NULL, errbuf, errlen);
		if (rc != 0)
			goto out;
	}
	rc = store_commit(s->conn, errbuf, errlen);
	if (rc != 0)
		goto out;
	in_txn = 0;
	rc = 0;
out:
	if (in_txn) {
		char ignored[256];
		(void)store_rollback(s->conn, ignored, sizeof(ignored));
	}
	for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++)
		strbuf_free(all[k]);
	return rc;
}

void applystate_parked_free(struct applystate_parked *p, size_t n)
{
	if (!p)
		return;
	for (size_t i = 0; i < n; i++) {
		free(p[i].record_key);
		free(p[i].event_id);
		free(p[i].event_json);
		free(p[i].reason);
	}
	free(p);
}

int applystate_parked_due(struct applystate *s, size_t max, struct applystate_parked **out, size_t *n,
			  char *errbuf, size_t errlen)
{
	PGresult *r = NULL;
	struct applystate_parked *v = NULL;
	*out = NULL;
	*n = 0;
	char lim[32];
	snprintf(lim, sizeof(lim), "%zu", max > APPLYSTATE_BATCH_MAX ? (size_t)APPLYSTATE_BATCH_MAX : max);
	const char *p[] = { s->map, s->side, lim };
	int rc = store_exec(s->conn,
			    "SELECT id, record_key, event_id, event::text, reason, attempts, "
			    "(extract(epoch FROM now() - parked_at) * 1000)::bigint FROM ("
			    " SELECT DISTINCT ON (record_key) * FROM dw_parked_event "
			    " WHERE map_name = $1 AND target_side = $2 ORDER BY record_key, id) AS h "
			    "WHERE next_attempt_at <= now() ORDER BY id LIMIT $3::bigint",
			    3, p, &r, errbuf, errlen);
	if (rc != 0)
		goto out;
	int rows = PQntuples(r);
	if (rows > 0) {
		v = calloc((size_t)rows, sizeof(*v));
		if (!v)
			goto oom;
	}
	for (int i = 0; i < rows; i++) {
		v[i].id = parse_i64(PQgetvalue(r, i, 0));
		v[i].record_key = strdup(PQgetvalue(r, i, 1));
		v[i].event_id = strdup(PQgetvalue(r, i, 2));
		v[i].event_json = strdup(PQgetvalue(r, i, 3));
		v[i].reason = strdup(PQgetvalue(r, i, 4));
		v[i].attempts = (int)parse_i64(PQgetvalue(r, i, 5));
		v[i].age_ms = parse_i64(PQgetvalue(r, i, 6));
		if (!v[i].record_key || !v[i].event_id || !v[i].event_json || !v[i].reason) {
			applystate_parked_free(v, (size_t)rows);
			v = NULL;
			goto oom;
		}
	}
	*out = v;
	*n = (size_t)rows;
	rc = 0;
	goto out;
oom:
	snprintf(errbuf, errlen, "applystate_parked_due: out of memory");
	rc = STORE_ERR;
out:
	PQclear(r);
	return rc;
}

int applystate_parked_count(struct applystate *s, int64_t *count, char *errbuf, size_t errlen)
{
	PGresult *r = NULL;
	const char *p[] = { s->map, s->side };
	int rc = store_exec(s->conn, "SELECT count(*) FROM dw_parked_event WHERE map_name = $1 AND target_side = $2",
			    2, p, &r, errbuf, errlen);
	if (rc != 0)
		return rc;
	*count = parse_i64(PQgetvalue(r, 0, 0));
	PQclear(r);
	return 0;
}

int applystate_unpark(struct applystate *s, int64_t id, char *errbuf, size_t errlen)
{
	char idt[32];
	snprintf(idt, sizeof(idt), "%" PRId64, id);
	const char *p[] = { s->map, s->side, idt };
	return store_exec(s->conn, "DELETE FROM dw_parked_event WHERE map_name = $1 AND target_side = $2 AND id = $3",
			  3, p, NULL, errbuf, errlen);
}

int applystate_park_retry_later(struct applystate *s, int64_t id, long long delay_ms, char *errbuf, size_t errlen)
{
	char idt[32], ms[32];
	snprintf(idt, sizeof(idt), "%" PRId64, id);
	snprintf(ms, sizeof(ms), "%lld", delay_ms < 0 ? 0 : delay_ms);
	const char *p[] = { s->map, s->side, idt, ms };
	return store_exec(s->conn,
			  "UPDATE dw_parked_event SET attempts = attempts + 1, "
			  "next_attempt_at = now() + $4::bigint * interval '1 millisecond' "
			  "WHERE map_name = $1 AND target_side = $2 AND id = $3",
			  4, p, NULL, errbuf, errlen);
}

int applystate_txn_expired(struct applystate *s, long long older_than_ms, size_t max, char ***sides, char ***ids,
			   int **staged, int **total, size_t *n, char *errbuf, size_t errlen)
{
	PGresult *r = NULL;
	*sides = NULL;
	*ids = NULL;
	*staged = NULL;
	*total = NULL;
	*n = 0;
	char ms[32], lim[32];
	snprintf(ms, sizeof(ms), "%lld", older_than_ms < 0 ? 0 : older_than_ms);
	snprintf(lim, sizeof(lim), "%zu", max > APPLYSTATE_BATCH_MAX ? (size_t)APPLYSTATE_BATCH_MAX : max);
	const char *p[] = { s->map, s->other, ms, lim };
	int rc = store_exec(s->conn,
			    "SELECT source_side, txn_id, count(*), max(total) FROM dw_txn_part "
			    "WHERE map_name = $1 AND source_side = $2 GROUP BY source_side, txn_id "
			    "HAVING min(first_seen_at) < now() - $3::bigint * interval '1 millisecond' "
			    "ORDER BY min(first_seen_at) LIMIT $4::bigint",
			    4, p, &r, errbuf, errlen);
	if (rc != 0)
		return rc;
	size_t rows = (size_t)PQntuples(r);
	char **sv = calloc(rows ? rows : 1, sizeof(*sv)), **iv = calloc(rows ? rows : 1, sizeof(*iv));
	int *st = calloc(rows ? rows : 1, sizeof(*st)), *tt = calloc(rows ? rows : 1, sizeof(*tt));
	int oom = !sv || !iv || !st || !tt;
	for (size_t i = 0; i < rows && !oom; i++) {
		sv[i] = strdup(PQgetvalue(r, (int)i, 0));
		iv[i] = strdup(PQgetvalue(r, (int)i, 1));
		st[i] = (int)parse_i64(PQgetvalue(r, (int)i, 2));
		tt[i] = (int)parse_i64(PQgetvalue(r, (int)i, 3));
		oom = !sv[i] || !iv[i];
	}
	PQclear(r);
	if (oom) {
		applystate_strings_free(sv, rows);
		applystate_strings_free(iv, rows);
		free(st);
		free(tt);
		snprintf(errbuf, errlen, "applystate_txn_expired: out of memory");
		return STORE_ERR;
	}
	*sides = sv;
	*ids = iv;
	*staged = st;
	*total = tt;
	*n = rows;
	return 0;
}

void applystate_strings_free(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int check_side(const char *side, char *errbuf, size_t errlen)
{
	if (!side || (strcmp(side, "ce") != 0 && strcmp(side, "fo") != 0)) {
		snprintf(errbuf, errlen, "source side must be ce or fo");
		return STORE_ERR;
	}
	return 0;
}

int applystate_txn_stage(struct applystate *s, const char *source_side, const char *txn_id, int order,
			 int total, const char *event_id, const char *event_json, int *staged, int *complete,
			 char *errbuf, size_t errlen)
{
	PGresult *r = NULL;
	int rc = STORE_ERR, in_txn = 0;
	*staged = 0;
	*complete = 0;
	if (check_side(source_side, errbuf, errlen) != 0 || check_text("txn_id", txn_id, 1, errbuf, errlen) != 0 ||
	    check_text("event_id", event_id, 1, errbuf, errlen) != 0 ||
	    check_text("event_json", event_json, 1, errbuf, errlen) != 0)
		return STORE_ERR;
	if (total < 1 || order < 1 || order > total) {
		snprintf(errbuf, errlen, "txn %s: part %d of %d is out of range", txn_id, order, total);
		return STORE_ERR;
	}
	char ord[16], tot[16];
	snprintf(ord, sizeof(ord), "%d", order);
	snprintf(tot, sizeof(tot), "%d", total);
	rc = store_begin(s->conn, errbuf, errlen);
	if (rc != 0)
		goto out;
	in_txn = 1;
	/* parts of one unit staged at once by several workers: serialise them, so that the count
	 * below sees every committed part and the last one in always finds the unit complete */
	const char *lk[] = { source_side, txn_id };
	rc = store_exec(s->conn, "SELECT pg_advisory_xact_lock(hashtextextended($1 || E'\\n' || $2, 0))", 2, lk,
			NULL, errbuf, errlen);
	if (rc != 0)
		goto out;
	const char *p[] = { source_side, txn_id, ord, tot, s->map, event_id, event_json };
	rc = store_exec(s->conn,
			"INSERT INTO dw_txn_part (source_side, txn_id, part_order, total, map_name, event_id, event) "
			"VALUES ($1, $2, $3::integer, $4::integer, $5, $6, $7::jsonb) "
			"ON CONFLICT (source_side, txn_id, part_order) DO NOTHING",
			7, p, NULL, errbuf, errlen);
	if (rc != 0)
		goto out;
	const char *q[] = { source_side, txn_id };
	rc = store_exec(s->conn,
			"SELECT count(*), min(total), max(total) FROM dw_txn_part WHERE source_side = $1 AND txn_id = $2",
			2, q, &r, errbuf, errlen);
	if (rc != 0)
		goto out;
	long long cnt = parse_i64(PQgetvalue(r, 0, 0));
	long long tmin = parse_i64(PQgetvalue(r, 0, 1)), tmax = parse_i64(PQgetvalue(r, 0, 2));
	if (tmin != total || tmax != total) {
		snprintf(errbuf, errlen, "txn %s: parts disagree on the total (%lld..%lld, this part says %d)", txn_id,
			 tmin, tmax, total);
		rc = STORE_ERR;
		goto out;
	}
	rc = store_commit(s->conn, errbuf, errlen);
	if (rc != 0)
		goto out;
	in_txn = 0;
	*staged = (int)cnt;
	*complete = cnt == total;
	rc = 0;
out:
	if (in_txn) {
		char ignored[256];
		(void)store_rollback(s->conn, ignored, sizeof(ignored));
	}
	PQclear(r);
	return rc;
}

int applystate_txn_parts(struct applystate *s, const char *source_side, const char *txn_id, char ***events,
			 size_t *n, char *errbuf, size_t errlen)
{
	PGresult *r = NULL;
	*events = NULL;
	*n = 0;
	if (check_side(source_side, errbuf, errlen) != 0 || check_text("txn_id", txn_id, 1, errbuf, errlen) != 0)
		return STORE_ERR;
	const char *p[] = { source_side, txn_id };
	int rc = store_exec(s->conn,
			    "SELECT event::text FROM dw_txn_part WHERE source_side = $1 AND txn_id = $2 ORDER BY part_order",
			    2, p, &r, errbuf, errlen);
	if (rc != 0)
		return rc;
	int rows = PQntuples(r);
	char **v = rows ? calloc((size_t)rows, sizeof(*v)) : NULL;
	if (rows && !v)
		goto oom;
	for (int i = 0; i < rows; i++)
		if (!(v[i] = strdup(PQgetvalue(r, i, 0)))) {
			applystate_strings_free(v, (size_t)rows);
			goto oom;
		}
	PQclear(r);
	*events = v;
	*n = (size_t)rows;
	return 0;
oom:
	PQclear(r);
	snprintf(errbuf, errlen, "applystate_txn_parts: out of memory");
	return STORE_ERR;
}

int applystate_txn_clear(struct applystate *s, const char *source_side, const char *txn_id, char *errbuf,
			 size_t errlen)
{
	if (check_side(source_side, errbuf, errlen) != 0 || check_text("txn_id", txn_id, 1, errbuf, errlen) != 0)
		return STORE_ERR;
	const char *p[] = { source_side, txn_id };
	return store_exec(s->conn, "DELETE FROM dw_txn_part WHERE source_side = $1 AND txn_id = $2", 2, p, NULL,
			  errbuf, errlen);
}

int applystate_map_get(struct applystate *s, enum applystate_map_state *st, char **reason, char *errbuf,
		       size_t errlen)
{
	PGresult *r = NULL;
	*st = APPLYSTATE_MAP_RUNNING;
	if (reason)
		*reason = NULL;
	const char *p[] = { s->map };
	int rc = store_exec(s->conn, "SELECT state, reason FROM dw_map_state WHERE map_name = $1", 1, p, &r, errbuf,
			    errlen);
	if (rc != 0)
		return rc;
	if (PQntuples(r) == 1) {
		const char *v = PQgetvalue(r, 0, 0);
		*st = strcmp(v, "paused") == 0 ? APPLYSTATE_MAP_PAUSED
		      : strcmp(v, "failed") == 0 ? APPLYSTATE_MAP_FAILED
						 : APPLYSTATE_MAP_RUNNING;
		if (reason && !PQgetisnull(r, 0, 1) && !(*reason = strdup(PQgetvalue(r, 0, 1)))) {
			PQclear(r);
			snprintf(errbuf, errlen, "applystate_map_get: out of memory");
			return STORE_ERR;
		}
	}
	PQclear(r);
	return 0;
}

int applystate_map_set(struct applystate *s, enum applystate_map_state st, const char *reason, char *errbuf,
		       size_t errlen)
{
	const char *name = applystate_map_state_name(st);
	if (!name) {
		snprintf(errbuf, errlen, "applystate_map_set: invalid state %d", (int)st);
		return STORE_ERR;
	}
	if (check_text("reason", reason, 0, errbuf, errlen) != 0)
		return STORE_ERR;
	const char *p[] = { s->map, name, reason };
	return store_exec(s->conn,
			  "INSERT INTO dw_map_state (map_name, state, reason, updated_at) VALUES ($1, $2, $3, now()) "
			  "ON CONFLICT (map_name) DO UPDATE SET state = EXCLUDED.state, reason = EXCLUDED.reason, "
			  "updated_at = now()",
			  3, p, NULL, errbuf, errlen);
}

int applystate_prune_applied(struct applystate *s, long long older_than_ms, long limit, long *deleted, char *errbuf,
			     size_t errlen)
{
	PGresult *r = NULL;
	char ms[32], lim[32];
	*deleted = 0;
	snprintf(ms, sizeof(ms), "%lld", older_than_ms < 0 ? 0 : older_than_ms);
	snprintf(lim, sizeof(lim), "%ld", limit < 1 ? 1 : limit);
	const char *p[] = { s->map, s->side, ms, lim };
	int rc = store_exec(s->conn,
			    "WITH old AS (SELECT event_id FROM dw_applied_event WHERE map_name = $1 AND target_side = $2 "
			    "  AND applied_at < now() - $3::bigint * interval '1 millisecond' LIMIT $4::bigint) "
			    "DELETE FROM dw_applied_event e USING old WHERE e.map_name = $1 AND e.target_side = $2 "
			    "AND e.event_id = old.event_id",
			    4, p, &r, errbuf, errlen);
	if (rc != 0)
		return rc;
	*deleted = (long)parse_i64(PQcmdTuples(r));
	PQclear(r);
	return 0;
}
