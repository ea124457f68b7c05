/* The apply worker's PostgreSQL state against the real server: each decision, atomic outcomes,
 * parked queues, staged units, map state. One fresh, migrated database per run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "applystate.h"
#include "fieldmerge.h"
#include "harness.h"
#include "migrate.h"
#include "store.h"

static char err[1024];
static char dbname[64];
static PGconn *conn;

static PGconn *connect_to(const char *db)
{
	const struct store_opts opts = { .application_name = "dw-test-applystate", .dbname = db };
	PGconn *c = NULL;
	if (store_connect(harness_env("DW_PG_DSN"), &opts, &c, err, sizeof(err)) != 0)
		fail_msg("connect to %s: %s", db ? db : "(default)", err);
	return c;
}

static void admin_exec(const char *verb, const char *suffix)
{
	PGconn *admin = connect_to(NULL);
	char *ident = PQescapeIdentifier(admin, dbname, strlen(dbname));
	assert_non_null(ident);
	char sql[256];
	snprintf(sql, sizeof(sql), "%s %s%s", verb, ident, suffix);
	PQfreemem(ident);
	if (store_exec(admin, sql, 0, NULL, NULL, err, sizeof(err)) != 0)
		fail_msg("%s: %s", sql, err);
	store_close(admin);
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(dbname, sizeof(dbname), "dwt_applystate_%d_%lld", (int)getpid(), harness_now_ms());
	admin_exec("CREATE DATABASE", "");
	conn = connect_to(dbname);
	struct migrate_result res;
	if (migrate_run(conn, migrate_files, migrate_files_len, &res, err, sizeof(err)) != 0)
		fail_msg("migrate: %s", err);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	store_close(conn);
	admin_exec("DROP DATABASE", " WITH (FORCE)");
	return 0;
}

/* A state handle for a map name unique to the test. */
static struct applystate *new_state(const char *side)
{
	char *map = harness_unique("map");
	struct applystate *s = NULL;
	if (applystate_new(conn, map, side, &s, err, sizeof(err)) != 0)
		fail_msg("applystate_new: %s", err);
	free(map);
	return s;
}

static enum applystate_decision decide1(struct applystate *s, const char *key, const char *id, int64_t version,
					const char *hash, int is_delete, struct applystate_item *out)
{
	struct applystate_item it = { .record_key = key, .event_id = id, .version = version, .content_hash = hash,
				      .is_delete = is_delete };
	if (applystate_decide(s, &it, 1, err, sizeof(err)) != 0)
		fail_msg("decide: %s", err);
	enum applystate_decision d = it.decision;
	if (out)
		*out = it;
	else
		applystate_item_clear(&it);
	return d;
}

static void record1(struct applystate *s, struct applystate_outcome o)
{
	if (applystate_record(s, &o, 1, err, sizeof(err)) != 0)
		fail_msg("record: %s", err);
}

static struct applystate_outcome applied(const char *key, const char *id, int64_t v, const char *hash,
					 const char *etag, const char *tid)
{
	return (struct applystate_outcome){ .result = APPLYSTATE_APPLIED, .record_key = key, .event_id = id,
					    .version = v, .content_hash = hash, .etag = etag, .target_id = tid,
					    .source_ts_ms = 1764464400000LL };
}

static void test_new_record_is_written(void **state)
{
	(void)state;
	struct applystate *s = new_state("fo");
	struct applystate_item it;
	assert_int_equal(APPLYSTATE_WRITE, decide1(s, "CustomerAccount=US-001", "e1", 1, "h1", 0, &it));
	assert_int_equal(0, it.has_prev);
	assert_null(it.prev.etag);
	applystate_item_clear(&it);
	applystate_free(s);
}

static void test_recorded_event_id_is_duplicate(void **state)
{
	(void)state;
	struct applystate *s = new_state("fo");
	record1(s, applied("k1", "e1", 3, "h1", "W/\"1\"", "tid-1"));
	struct applystate_item it;
	assert_int_equal(APPLYSTATE_SKIP_DUPLICATE, decide1(s, "k1", "e1", 3, "h1", 0, &it));
	assert_int_equal(1, it.has_prev);
	assert_int_equal(3, it.prev.source_version);
	assert_string_equal("h1", it.prev.content_hash);
	assert_string_equal("W/\"1\"", it.prev.etag);
	assert_string_equal("tid-1", it.prev.target_id);
	assert_int_equal(0, it.prev.deleted);
	applystate_item_clear(&it);
	/* the id counts even with a version that would otherwise be written */
	assert_int_equal(APPLYSTATE_SKIP_DUPLICATE, decide1(s, "k1", "e1", 99, "h9", 0, NULL));
	applystate_free(s);
}

static void test_older_or_equal_version_is_stale(void **state)
{
	(void)state;
	struct applystate *s = new_state("ce");
	record1(s, applied("k1", "e5", 5, "h5", NULL, NULL));
	assert_int_equal(APPLYSTATE_SKIP_STALE, decide1(s, "k1", "e4", 4, "h4", 0, NULL));
	assert_int_equal(APPLYSTATE_SKIP_STALE, decide1(s, "k1", "e5b", 5, "hx", 0, NULL));
	assert_int_equal(APPLYSTATE_SKIP_STALE, decide1(s, "k1", "e3", 3, NULL, 1, NULL));
	assert_int_equal(APPLYSTATE_WRITE, decide1(s, "k1", "e6", 6, "h6", 0, NULL));
	/* another record is not affected */
	assert_int_equal(APPLYSTATE_WRITE, decide1(s, "k2", "e4-k2", 4, "h4", 0, NULL));
	applystate_free(s);
}

static void test_same_content_is_echo_and_recorded(void **state)
{
	(void)state;
	struct applystate *s = new_state("ce");
	record1(s, applied("k1", "e1", 1, "hA", "etag-1", "tid-1"));
	assert_int_equal(APPLYSTATE_SKIP_ECHO, decide1(s, "k1", "e2", 2, "hA", 0, NULL));
	struct applystate_outcome o = { .result = APPLYSTATE_ECHO, .record_key = "k1", .event_id = "e2", .version = 2 };
	record1(s, o);
	struct applystate_record r;
	int found = 0;
	if (applystate_get(s, "k1", &found, &r, err, sizeof(err)) != 0)
		fail_msg("get: %s", err);
	assert_int_equal(1, found);
	assert_int_equal(2, r.source_version); /* the version moved on */
	assert_string_equal("hA", r.content_hash);
	assert_string_equal("etag-1", r.etag);
	assert_string_equal("tid-1", r.target_id);
	applystate_record_clear(&r);
	/* the echo's id is recorded; a version-1 replay is stale; new content is written */
	assert_int_equal(APPLYSTATE_SKIP_DUPLICATE, decide1(s, "k1", "e2", 2, "hA", 0, NULL));
	assert_int_equal(APPLYSTATE_SKIP_STALE, decide1(s, "k1", "e1b", 2, "hB", 0, NULL));
	assert_int_equal(APPLYSTATE_WRITE, decide1(s, "k1", "e3", 3, "hB", 0, NULL));
	applystate_free(s);
}

static void test_delete_then_delete_is_echo_then_create_writes(void **state)
{
	(void)state;
	struct applystate *s = new_state("fo");
	record1(s, applied("k1", "e1", 1, "hA", "etag-1", "tid-1"));
	assert_int_equal(APPLYSTATE_WRITE, decide1(s, "k1", "e2", 2, NULL, 1, NULL));
	struct applystate_outcome del = { .result = APPLYSTATE_APPLIED, .record_key = "k1", .event_id = "e2",
					  .version = 2, .deleted = 1 };
	record1(s, del);
	struct applystate_item it;
	assert_int_equal(APPLYSTATE_SKIP_ECHO, decide1(s, "k1", "e3", 3, NULL, 1, &it));
	assert_int_equal(1, it.prev.deleted);
	assert_null(it.prev.content_hash);
	applystate_item_clear(&it);
	/* the same content as before the delete must be written again: the record is gone */
	assert_int_equal(APPLYSTATE_WRITE, decide1(s, "k1", "e4", 4, "hA", 0, NULL));
	/* a delete of a record never seen is written (the target may hold it from elsewhere) */
	assert_int_equal(APPLYSTATE_WRITE, decide1(s, "k-unknown", "e5", 1, NULL, 1, NULL));
	applystate_free(s);
}

static void test_batch_decides_each_item(void **state)
{
	(void)state;
	struct applystate *s = new_state("fo");
	record1(s, applied("a", "ea1", 10, "ha", NULL, NULL));
	record1(s, applied("b", "eb1", 10, "hb", NULL, NULL));
	struct applystate_item items[] = {
		{ .record_key = "a", .event_id = "ea1", .version = 10, .content_hash = "ha" },
		{ .record_key = "b", .event_id = "eb2", .version = 11, .content_hash = "hb" },
		{ .record_key = "c", .event_id = "ec1", .version = 1, .content_hash = "hc" },
		{ .record_key = "a", .event_id = "ea0", .version = 9, .content_hash = "hz" },
		{ .record_key = "b", .event_id = "eb3", .version = 12, .content_hash = "hz" },
	};
	size_t n = sizeof(items) / sizeof(items[0]);
	if (applystate_decide(s, items, n, err, sizeof(err)) != 0)
		fail_msg("decide: %s", err);
	assert_int_equal(APPLYSTATE_SKIP_DUPLICATE, items[0].decision);
	assert_int_equal(APPLYSTATE_SKIP_ECHO, items[1].decision);
	assert_int_equal(APPLYSTATE_WRITE, items[2].decision);
	assert_int_equal(APPLYSTATE_SKIP_STALE, items[3].decision);
	assert_int_equal(APPLYSTATE_WRITE, items[4].decision);
	for (size_t i = 0; i < n; i++)
		applystate_item_clear(&items[i]);
	applystate_free(s);
}

static void test_newest_outcome_per_key_wins_and_never_regresses(void **state)
{
	(void)state;
	struct applystate *s = new_state("ce");
	struct applystate_outcome batch[] = {
		applied("k", "e7", 7, "h7", "t7", NULL),
		applied("k", "e3", 3, "h3", "t3", NULL),
		applied("j", "j1", 1, "hj", NULL, "tid-j"),
	};
	if (applystate_record(s, batch, 3, err, sizeof(err)) != 0)
		fail_msg("record: %s", err);
	struct applystate_record r;
	int found;
	if (applystate_get(s, "k", &found, &r, err, sizeof(err)) != 0)
		fail_msg("get: %s", err);
	assert_int_equal(7, r.source_version);
	assert_string_equal("h7", r.content_hash);
	assert_string_equal("t7", r.etag);
	applystate_record_clear(&r);
	/* both ids are recorded */
	assert_int_equal(APPLYSTATE_SKIP_DUPLICATE, decide1(s, "k", "e3", 3, "h3", 0, NULL));
	assert_int_equal(APPLYSTATE_SKIP_DUPLICATE, decide1(s, "k", "e7", 7, "h7", 0, NULL));
	/* a later call with an older version does not regress the state */
	record1(s, applied("k", "e5", 5, "h5", "t5", NULL));
	if (applystate_get(s, "k", &found, &r, err, sizeof(err)) != 0)
		fail_msg("get: %s", err);
	assert_int_equal(7, r.source_version);
	assert_string_equal("h7", r.content_hash);
	applystate_record_clear(&r);
	/* a NULL etag keeps the one recorded */
	record1(s, applied("j", "j2", 2, "hj2", NULL, NULL));
	if (applystate_get(s, "j", &found, &r, err, sizeof(err)) != 0)
		fail_msg("get: %s", err);
	assert_int_equal(2, r.source_version);
	assert_string_equal("tid-j", r.target_id);
	applystate_record_clear(&r);
	applystate_free(s);
}

static void test_echo_of_what_was_written_to_the_source_side(void **state)
{
	(void)state;
	char *map = harness_unique("map");
	struct applystate *to_fo = NULL, *to_ce = NULL;
	if (applystate_new(conn, map, "fo", &to_fo, err, sizeof(err)) != 0 ||
	    applystate_new(conn, map, "ce", &to_ce, err, sizeof(err)) != 0)
		fail_msg("applystate_new: %s", err);
	/* a CE change was written to FO as payload HF; FO answered with its image SF */
	struct applystate_outcome w = applied("F1", "ce-e1", 7, "HF", "etag-fo", NULL);
	w.seen_hash = "SF";
	record1(to_fo, w);
	/* FO's change event for that record comes back carrying that image: echo */
	struct applystate_item it = { .record_key = "C1", .event_id = "fo-e1", .version = 100, .content_hash = "HC",
				      .source_key = "F1", .source_hash = "SF" };
	if (applystate_decide(to_ce, &it, 1, err, sizeof(err)) != 0)
		fail_msg("decide: %s", err);
	assert_int_equal(APPLYSTATE_SKIP_ECHO, it.decision);
	applystate_item_clear(&it);
	/* the payload hash is not the image hash: an event whose image hashes to HF is no echo */
	it.source_hash = "HF";
	if (applystate_decide(to_ce, &it, 1, err, sizeof(err)) != 0)
		fail_msg("decide: %s", err);
	assert_int_equal(APPLYSTATE_WRITE, it.decision);
	applystate_item_clear(&it);
	/* writing HF to FO again is a no-op */
	assert_int_equal(APPLYSTATE_SKIP_ECHO, decide1(to_fo, "F1", "ce-e2", 8, "HF", 0, NULL));
	/* a real FO edit (image SX) is applied to CE and recorded as seen on FO ... */
	struct applystate_outcome o[] = {
		{ .result = APPLYSTATE_APPLIED, .record_key = "C1", .event_id = "fo-e1", .version = 100,
		  .content_hash = "HC" },
		{ .result = APPLYSTATE_SEEN, .record_key = "F1", .seen_hash = "SX" },
	};
	if (applystate_record(to_ce, o, 2, err, sizeof(err)) != 0)
		fail_msg("record: %s", err);
	/* ... so FO no longer holds HF: writing HF there is a real write now */
	assert_int_equal(APPLYSTATE_WRITE, decide1(to_fo, "F1", "ce-e2", 8, "HF", 0, NULL));
	/* and an FO event with the old image SF is a real change too */
	it = (struct applystate_item){ .record_key = "C1", .event_id = "fo-e2", .version = 101, .content_hash = "HC2",
				       .source_key = "F1", .source_hash = "SF" };
	if (applystate_decide(to_ce, &it, 1, err, sizeof(err)) != 0)
		fail_msg("decide: %s", err);
	assert_int_equal(APPLYSTATE_WRITE, it.decision);
	applystate_item_clear(&it);
	/* SEEN kept FO's version and etag */
	struct applystate_record r;
	int found = 0;
	if (applystate_get(to_fo, "F1", &found, &r, err, sizeof(err)) != 0)
		fail_msg("get: %s", err);
	assert_int_equal(7, r.source_version);
	assert_null(r.content_hash);
	assert_string_equal("SX", r.seen_hash);
	assert_string_equal("etag-fo", r.etag);
	applystate_record_clear(&r);
	/* the image known already, seen again (our own write coming back), keeps the payload hash */
	struct applystate_outcome w9 = applied("F1", "ce-e3", 9, "HF9", "etag-9", NULL);
	w9.seen_hash = "SF9";
	record1(to_fo, w9);
	struct applystate_outcome again = { .result = APPLYSTATE_SEEN, .record_key = "F1", .seen_hash = "SF9" };
	record1(to_ce, again);
	assert_int_equal(APPLYSTATE_SKIP_ECHO, decide1(to_fo, "F1", "ce-e4", 10, "HF9", 0, NULL));
	/* SEEN of a record never written creates a row with version -1 and no payload hash */
	struct applystate_outcome seen2 = { .result = APPLYSTATE_SEEN, .record_key = "F2", .seen_hash = "S2" };
	record1(to_ce, seen2);
	struct applystate_item it2;
	assert_int_equal(APPLYSTATE_WRITE, decide1(to_fo, "F2", "ce-e5", 0, "H2", 0, &it2));
	assert_int_equal(-1, it2.prev.source_version);
	assert_string_equal("S2", it2.prev.seen_hash);
	applystate_item_clear(&it2);
	applystate_free(to_fo);
	applystate_free(to_ce);
	free(map);
}

static void test_failed_record_leaves_nothing(void **state)
{
	(void)state;
	struct applystate *s = new_state("fo");
	struct applystate_outcome batch[] = {
		applied("k1", "e1", 1, "h1", NULL, NULL),
		{ .result = APPLYSTATE_PARKED, .record_key = "k2", .event_id = "e2", .event_json = "{not json",
		  .reason = "lookup" },
	};
	assert_int_equal(STORE_ERR, applystate_record(s, batch, 2, err, sizeof(err)));
	assert_non_null(strstr(err, "SQLSTATE 22P02")); /* invalid json */
	/* nothing of the batch is there: k1 is still new, e1 not recorded, nothing parked */
	assert_int_equal(APPLYSTATE_WRITE, decide1(s, "k1", "e1", 1, "h1", 0, NULL));
	int64_t parked = -1;
	if (applystate_parked_count(s, &parked, err, sizeof(err)) != 0)
		fail_msg("count: %s", err);
	assert_int_equal(0, parked);
	/* and the connection is usable, outside a transaction */
	record1(s, applied("k1", "e1", 1, "h1", NULL, NULL));
	assert_int_equal(APPLYSTATE_SKIP_DUPLICATE, decide1(s, "k1", "e1", 1, "h1", 0, NULL));
	assert_int_equal(PQTRANS_IDLE, PQtransactionStatus(conn));
	applystate_free(s);
}

static void test_dead_letter_is_recorded_without_state(void **state)
{
	(void)state;
	struct applystate *s = new_state("fo");
	char *id = harness_unique("dead");
	struct applystate_outcome dl = { .result = APPLYSTATE_DEAD_LETTER, .record_key = "k", .event_id = id,
					 .version = 4 };
	record1(s, dl);
	struct applystate_item it;
	assert_int_equal(APPLYSTATE_SKIP_DUPLICATE, decide1(s, "k", id, 4, "h", 0, &it));
	assert_int_equal(0, it.has_prev);
	applystate_item_clear(&it);
	PGresult *r = NULL;
	const char *p[] = { id };
	if (store_exec(conn, "SELECT outcome FROM dw_applied_event WHERE event_id = $1", 1, p, &r, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(1, PQntuples(r));
	assert_string_equal("dead_letter", PQgetvalue(r, 0, 0));
	PQclear(r);
	free(id);
	applystate_free(s);
}

static void test_parked_record_queues_later_events(void **state)
{
	(void)state;
	struct applystate *s = new_state("ce");
	struct applystate_outcome batch[] = {
		{ .result = APPLYSTATE_PARKED, .record_key = "k", .event_id = "p1", .event_json = "{\"n\":1}",
		  .reason = "lookup to accounts(x) not found" },
		{ .result = APPLYSTATE_PARKED, .record_key = "k", .event_id = "p2", .event_json = "{\"n\":2}",
		  .reason = "queued behind p1" },
		{ .result = APPLYSTATE_PARKED, .record_key = "other", .event_id = "o1", .event_json = "{\"n\":3}",
		  .reason = "lookup" },
	};
	if (applystate_record(s, batch, 3, err, sizeof(err)) != 0)
		fail_msg("record: %s", err);
	assert_int_equal(APPLYSTATE_QUEUE_PARKED, decide1(s, "k", "p3", 9, "h", 0, NULL));
	assert_int_equal(APPLYSTATE_SKIP_DUPLICATE, decide1(s, "k", "p1", 1, "h", 0, NULL));
	assert_int_equal(APPLYSTATE_WRITE, decide1(s, "free", "f1", 1, "h", 0, NULL));
	struct applystate_parked *due = NULL;
	size_t n = 0;
	if (applystate_parked_due(s, 10, &due, &n, err, sizeof(err)) != 0)
		fail_msg("due: %s", err);
	assert_int_equal(2, n); /* the head of each record only, oldest first */
	assert_string_equal("p1", due[0].event_id);
	assert_string_equal("{\"n\": 1}", due[0].event_json);
	assert_string_equal("lookup to accounts(x) not found", due[0].reason);
	assert_string_equal("o1", due[1].event_id);
	int64_t p1 = due[0].id, o1 = due[1].id;
	applystate_parked_free(due, n);
	if (applystate_unpark(s, p1, err, sizeof(err)) != 0 || applystate_park_retry_later(s, o1, 60000, err, sizeof(err)))
		fail_msg("unpark/retry: %s", err);
	if (applystate_parked_due(s, 10, &due, &n, err, sizeof(err)) != 0)
		fail_msg("due: %s", err);
	assert_int_equal(1, n); /* p2 is now the head; o1 waits a minute */
	assert_string_equal("p2", due[0].event_id);
	assert_int_equal(0, due[0].attempts);
	int64_t p2 = due[0].id;
	applystate_parked_free(due, n);
	if (applystate_unpark(s, p2, err, sizeof(err)) != 0)
		fail_msg("unpark: %s", err);
	assert_int_equal(APPLYSTATE_WRITE, decide1(s, "k", "p3", 9, "h", 0, NULL));
	int64_t left = 0;
	if (applystate_parked_count(s, &left, err, sizeof(err)) != 0)
		fail_msg("count: %s", err);
	assert_int_equal(1, left);
	applystate_free(s);
}

/* Parked events filed under another key than the record's (the worker files them under the
 * event's source key): park_key finds them; a redrive item passes both the duplicate and the
 * parked checks. */
static void test_park_key_and_redrive(void **state)
{
	(void)state;
	struct applystate *s = new_state("ce");
	struct applystate_outcome pk = { .result = APPLYSTATE_PARKED, .record_key = "src=1", .event_id = "q1",
					 .event_json = "{}", .reason = "lookup" };
	if (applystate_record(s, &pk, 1, err, sizeof(err)) != 0)
		fail_msg("record: %s", err);
	struct applystate_item it[3] = {
		{ .record_key = "tgt=1", .event_id = "q2", .version = 2, .content_hash = "h" },
		{ .record_key = "tgt=1", .event_id = "q2", .version = 2, .content_hash = "h", .park_key = "src=1" },
		{ .record_key = "tgt=1", .event_id = "q1", .version = 1, .content_hash = "h", .park_key = "src=1",
		  .redrive = 1 },
	};
	if (applystate_decide(s, it, 3, err, sizeof(err)) != 0)
		fail_msg("decide: %s", err);
	assert_int_equal(APPLYSTATE_WRITE, it[0].decision);        /* the target key knows nothing parked */
	assert_int_equal(APPLYSTATE_QUEUE_PARKED, it[1].decision); /* the source key does */
	assert_int_equal(APPLYSTATE_WRITE, it[2].decision);        /* the head itself, re-driven */
	for (int i = 0; i < 3; i++)
		applystate_item_clear(&it[i]);
	applystate_free(s);
}

/* Units staged long enough ago are listed by applystate_txn_expired; fresh ones are not. */
static void test_txn_expired_lists_old_units(void **state)
{
	(void)state;
	struct applystate *s = new_state("ce"); /* units come from fo */
	char *old_id = harness_unique("old"), *new_id = harness_unique("new");
	int staged = 0, complete = 0;
	if (applystate_txn_stage(s, "fo", old_id, 1, 3, "eo1", "{}", &staged, &complete, err, sizeof(err)) != 0 ||
	    applystate_txn_stage(s, "fo", new_id, 1, 2, "en1", "{}", &staged, &complete, err, sizeof(err)) != 0)
		fail_msg("stage: %s", err);
	const char *p[] = { old_id };
	if (store_exec(conn, "UPDATE dw_txn_part SET first_seen_at = now() - interval '10 minutes' WHERE txn_id = $1",
		       1, p, NULL, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	char **sides = NULL, **ids = NULL;
	int *st = NULL, *tot = NULL;
	size_t n = 0;
	if (applystate_txn_expired(s, 5 * 60 * 1000, 100, &sides, &ids, &st, &tot, &n, err, sizeof(err)) != 0)
		fail_msg("expired: %s", err);
	int found_old = 0, found_new = 0;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(ids[i], old_id) == 0) {
			found_old = 1;
			assert_string_equal("fo", sides[i]);
			assert_int_equal(1, st[i]);
			assert_int_equal(3, tot[i]);
		}
		found_new |= strcmp(ids[i], new_id) == 0;
	}
	applystate_strings_free(sides, n);
	applystate_strings_free(ids, n);
	free(st);
	free(tot);
	assert_true(found_old);
	assert_false(found_new);
	if (applystate_txn_clear(s, "fo", old_id, err, sizeof(err)) != 0 ||
	    applystate_txn_clear(s, "fo", new_id, err, sizeof(err)) != 0)
		fail_msg("clear: %s", err);
	free(old_id);
	free(new_id);
	applystate_free(s);
}

static void test_txn_parts_staged_until_complete(void **state)
{
	(void)state;
	struct applystate *s = new_state("fo");
	char *txn = harness_unique("txn");
	int staged = 0, complete = 0;
	if (applystate_txn_stage(s, "ce", txn, 2, 3, "e2", "{\"part\":2}", &staged, &complete, err, sizeof(err)))
		fail_msg("stage: %s", err);
	assert_int_equal(1, staged);
	assert_int_equal(0, complete);
	if (applystate_txn_stage(s, "ce", txn, 1, 3, "e1", "{\"part\":1}", &staged, &complete, err, sizeof(err)))
		fail_msg("stage: %s", err);
	/* re-delivery of a part changes nothing */
	if (applystate_txn_stage(s, "ce", txn, 1, 3, "e1", "{\"part\":1}", &staged, &complete, err, sizeof(err)))
		fail_msg("stage: %s", err);
	assert_int_equal(2, staged);
	assert_int_equal(0, complete);
	/* a part that disagrees on the total is refused and not kept */
	assert_int_equal(STORE_ERR, applystate_txn_stage(s, "ce", txn, 3, 4, "e3", "{}", &staged, &complete, err,
							  sizeof(err)));
	assert_non_null(strstr(err, "total"));
	assert_int_equal(STORE_ERR, applystate_txn_stage(s, "ce", txn, 4, 3, "e4", "{}", &staged, &complete, err,
							  sizeof(err)));
	if (applystate_txn_stage(s, "ce", txn, 3, 3, "e3", "{\"part\":3}", &staged, &complete, err, sizeof(err)))
		fail_msg("stage: %s", err);
	assert_int_equal(3, staged);
	assert_int_equal(1, complete);
	char **ev = NULL;
	size_t n = 0;
	if (applystate_txn_parts(s, "ce", txn, &ev, &n, err, sizeof(err)) != 0)
		fail_msg("parts: %s", err);
	assert_int_equal(3, n);
	assert_string_equal("{\"part\": 1}", ev[0]);
	assert_string_equal("{\"part\": 2}", ev[1]);
	assert_string_equal("{\"part\": 3}", ev[2]);
	applystate_strings_free(ev, n);
	/* the same txn id from the other side is another unit */
	if (applystate_txn_parts(s, "fo", txn, &ev, &n, err, sizeof(err)) != 0)
		fail_msg("parts: %s", err);
	assert_int_equal(0, n);
	if (applystate_txn_clear(s, "ce", txn, err, sizeof(err)) != 0)
		fail_msg("clear: %s", err);
	if (applystate_txn_parts(s, "ce", txn, &ev, &n, err, sizeof(err)) != 0)
		fail_msg("parts: %s", err);
	assert_int_equal(0, n);
	free(txn);
	applystate_free(s);
}

static void test_map_state(void **state)
{
	(void)state;
	struct applystate *s = new_state("ce");
	enum applystate_map_state st = 0;
	char *reason = NULL;
	if (applystate_map_get(s, &st, &reason, err, sizeof(err)) != 0)
		fail_msg("get: %s", err);
	assert_int_equal(APPLYSTATE_MAP_RUNNING, st);
	assert_null(reason);
	if (applystate_map_set(s, APPLYSTATE_MAP_FAILED, "error rate 12% over threshold 5%", err, sizeof(err)))
		fail_msg("set: %s", err);
	if (applystate_map_get(s, &st, &reason, err, sizeof(err)) != 0)
		fail_msg("get: %s", err);
	assert_int_equal(APPLYSTATE_MAP_FAILED, st);
	assert_string_equal("error rate 12% over threshold 5%", reason);
	free(reason);
	if (applystate_map_set(s, APPLYSTATE_MAP_RUNNING, NULL, err, sizeof(err)))
		fail_msg("set: %s", err);
	if (applystate_map_get(s, &st, &reason, err, sizeof(err)) != 0)
		fail_msg("get: %s", err);
	assert_int_equal(APPLYSTATE_MAP_RUNNING, st);
	assert_null(reason);
	assert_int_equal(STORE_ERR, applystate_map_set(s, 0, NULL, err, sizeof(err)));
	applystate_free(s);
}

static void test_keys_with_array_syntax_round_trip(void **state)
{
	(void)state;
	struct applystate *s = new_state("fo");
	const char *keys[] = { "a\"b", "back\\slash", "{brace},comma", "NULL", "", " spaced ", "O'Brien" };
	size_t nk = sizeof(keys) / sizeof(keys[0]);
	/* the empty key is refused with the item named */
	struct applystate_item bad = { .record_key = "", .event_id = "x", .version = 1 };
	assert_int_equal(STORE_ERR, applystate_decide(s, &bad, 1, err, sizeof(err)));
	assert_non_null(strstr(err, "item 0: record_key"));
	applystate_item_clear(&bad);
	struct applystate_outcome o[8];
	char ids[8][16];
	size_t n = 0;
	for (size_t i = 0; i < nk; i++) {
		if (!*keys[i])
			continue;
		snprintf(ids[n], sizeof(ids[n]), "id-%zu", i);
		o[n] = applied(keys[i], ids[n], 2, keys[i], NULL, NULL);
		n++;
	}
	if (applystate_record(s, o, n, err, sizeof(err)) != 0)
		fail_msg("record: %s", err);
	for (size_t i = 0; i < n; i++) {
		struct applystate_item it;
		/* the stored hash is the key itself: it read back unchanged */
		assert_int_equal(APPLYSTATE_SKIP_ECHO, decide1(s, o[i].record_key, "new", 3, o[i].record_key, 0, &it));
		assert_string_equal(o[i].record_key, it.prev.content_hash);
		applystate_item_clear(&it);
	}
	applystate_free(s);
}

/* The known image and its revision as applystate_get reads them (caller frees both). */
static void get_image(struct applystate *s, const char *key, char **image, char **rev)
{
	struct applystate_record r;
	int found = 0;
	if (applystate_get(s, key, &found, &r, err, sizeof(err)) != 0)
		fail_msg("get: %s", err);
	assert_true(found);
	*image = r.image;
	*rev = r.image_rev;
	r.image = r.image_rev = NULL;
	applystate_record_clear(&r);
}

/* Whether two JSON texts are the same jsonb value. */
static int same_jsonb(const char *a, const char *b)
{
	const char *p[] = { a, b };
	PGresult *r = NULL;
	if (store_exec(conn, "SELECT $1::jsonb = $2::jsonb", 2, p, &r, err, sizeof(err)) != 0)
		fail_msg("compare: %s", err);
	int same = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	return same;
}

/* Records an APPLIED outcome of record "g" at version v with image entries and a guard, checks
 * the image the row then holds, and returns its new revision (caller frees). */
static char *record_guarded(struct applystate *s, int64_t v, const char *image, const char *guard, const char *want)
{
	char id[32];
	snprintf(id, sizeof(id), "g%lld", (long long)v);
	struct applystate_outcome o = applied("g", id, v, "h", NULL, NULL);
	o.image = image;
	o.image_guard = guard;
	record1(s, o);
	char *img = NULL, *rev = NULL;
	get_image(s, "g", &img, &rev);
	if (!same_jsonb(img, want))
		fail_msg("image %s, want %s", img, want);
	free(img);
	return rev;
}

static void test_image_guard_concatenates_only_while_the_image_is_unchanged(void **state)
{
	(void)state;
	struct applystate *s = new_state("fo");
	struct applystate_outcome o = applied("g", "g1", 1, "h1", "t1", NULL);
	o.image = "{\"a\":{\"v\":1,\"t\":100},\"b\":{\"v\":2,\"t\":100}}";
	record1(s, o);
	char *img = NULL, *rev = NULL;
	get_image(s, "g", &img, &rev);
	assert_true(same_jsonb(img, o.image));
	/* decide reads the same revision with the image */
	struct applystate_item it;
	assert_int_equal(APPLYSTATE_WRITE, decide1(s, "g", "g2", 2, "h2", 0, &it));
	assert_string_equal(rev, it.prev.image_rev);
	applystate_item_clear(&it);
	/* a guard at the current revision is trusted: the entries are laid over the image as they
	 * are (this one is older than the known entry, which a merge would keep) */
	char *rev2 = record_guarded(s, 2, "{\"a\":{\"v\":9,\"t\":50}}", rev,
				    "{\"a\":{\"v\":9,\"t\":50},\"b\":{\"v\":2,\"t\":100}}");
	assert_string_not_equal(rev, rev2);
	/* a guard from before that change is stale: the entries are merged, the older one loses */
	free(record_guarded(s, 3, "{\"b\":{\"v\":7,\"t\":50},\"c\":{\"v\":3,\"t\":50}}", rev,
			    "{\"a\":{\"v\":9,\"t\":50},\"b\":{\"v\":2,\"t\":100},\"c\":{\"v\":3,\"t\":50}}"));
	/* SEEN rows (the event's source side, here ce) take guards the same way */
	struct applystate_outcome seen = { .result = APPLYSTATE_SEEN, .record_key = "src", .seen_hash = "s1",
					   .image = "{\"x\":{\"v\":1,\"t\":100}}" };
	record1(s, seen);
	struct applystate_item si = { .record_key = "g", .event_id = "g4", .version = 4, .content_hash = "h4",
				      .source_key = "src" };
	if (applystate_decide(s, &si, 1, err, sizeof(err)) != 0)
		fail_msg("decide: %s", err);
	assert_non_null(si.src_image_rev);
	seen.image = "{\"x\":{\"v\":5,\"t\":10}}";
	seen.image_guard = si.src_image_rev;
	record1(s, seen);
	seen.image = "{\"x\":{\"v\":6,\"t\":5}}"; /* the same guard is stale now: merged, and loses */
	record1(s, seen);
	applystate_item_clear(&si);
	if (applystate_decide(s, &si, 1, err, sizeof(err)) != 0)
		fail_msg("decide: %s", err);
	assert_true(same_jsonb(si.src_image, "{\"x\":{\"v\":5,\"t\":10}}"));
	applystate_item_clear(&si);
	/* a guard that is not a revision is refused */
	o = applied("g", "g5", 5, "h5", NULL, NULL);
	o.image = "{}";
	o.image_guard = "1; DROP";
	assert_int_equal(STORE_ERR, applystate_record(s, &o, 1, err, sizeof(err)));
	free(img);
	free(rev);
	free(rev2);
	applystate_free(s);
}

/*
 * dw_image_merge (schemas/sql/004) against the C side on tricky stamps: wherever
 * fieldmerge_wins_all says every entry wins, the SQL merge is base || upd (what a guarded record
 * writes); and for well-formed stamps (positive integers) fieldmerge_merge gives what the SQL
 * merge gives.
 */
static void test_sql_merge_agrees_with_the_c_merge(void **state)
{
	(void)state;
	static const struct {
		const char *base, *upd;
		int wins_all;  /* what fieldmerge_wins_all must say */
		int well_formed; /* stamps both merges read alike */
	} cases[] = {
		{ "{\"a\":{\"v\":1,\"t\":100}}", "{\"a\":{\"v\":2,\"t\":200}}", 1, 1 },
		{ "{\"a\":{\"v\":1,\"t\":100}}", "{\"a\":{\"v\":2,\"t\":100}}", 1, 1 },           /* tie: upd */
		{ "{\"a\":{\"v\":1,\"t\":100}}", "{\"a\":{\"v\":2,\"t\":99}}", 0, 1 },
		{ "{\"a\":{\"v\":1,\"t\":100}}", "{\"b\":{\"v\":2,\"t\":1}}", 1, 1 },             /* new field */
		{ "{\"a\":{\"v\":1,\"t\":500,\"n\":3}}", "{\"a\":{\"v\":2,\"t\":100,\"n\":4}}", 1, 1 }, /* n decides */
		{ "{\"a\":{\"v\":1,\"t\":100,\"n\":4}}", "{\"a\":{\"v\":2,\"t\":500,\"n\":3}}", 0, 1 },
		{ "{\"a\":{\"v\":1,\"t\":100,\"n\":4}}", "{\"a\":{\"v\":2,\"t\":500,\"n\":4}}", 1, 1 },
		{ "{\"a\":{\"v\":1,\"t\":500,\"n\":4}}", "{\"a\":{\"v\":2,\"t\":100}}", 0, 1 },     /* one n: t */
		{ "{\"a\":{\"v\":1,\"t\":100}}", "{\"a\":{\"v\":2,\"t\":500,\"n\":1}}", 1, 1 },
		{ "{\"a\":{\"v\":1}}", "{\"a\":{\"v\":2}}", 1, 1 },                                  /* no t: 0 >= 0 */
		{ "{\"a\":{\"v\":1,\"t\":5}}", "{\"a\":{\"v\":2}}", 0, 1 },
		{ "{\"a\":{\"v\":1,\"t\":100},\"b\":{\"v\":1,\"t\":300}}",
		  "{\"a\":{\"v\":2,\"t\":200},\"b\":{\"v\":2,\"t\":200}}", 0, 1 },                  /* one of two loses */
		{ "{\"a\":{\"v\":1,\"t\":100,\"p\":[{\"v\":0,\"t\":1}]}}", "{\"a\":{\"v\":[1,{\"x\":null}],\"t\":100}}", 1, 1 },
		{ "{\"a\":{\"v\":1,\"t\":100}}", "{\"a\":{\"v\":2,\"t\":200,\"n\":null}}", 0, 0 },  /* n null */
		{ "{\"a\":{\"v\":1,\"t\":100,\"n\":\"7\"}}", "{\"a\":{\"v\":2,\"t\":200,\"n\":8}}", 0, 0 },
		{ "{\"a\":{\"v\":1,\"t\":100}}", "{\"a\":{\"v\":2,\"t\":200.5}}", 0, 0 },          /* fraction */
		{ "{\"a\":{\"v\":1,\"t\":100}}", "{\"a\":{\"v\":2,\"t\":300},\"a\":{\"v\":3,\"t\":50}}", 0, 0 },
		{ "{\"a\":{\"v\":1,\"t\":100}}", "{}", 0, 1 },
		{ "{\"a\":7}", "{\"a\":{\"v\":2,\"t\":200}}", 0, 0 },                             /* not an entry */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *base = cJSON_Parse(cases[i].base), *upd = cJSON_Parse(cases[i].upd);
		assert_non_null(base);
		assert_non_null(upd);
		int w = fieldmerge_wins_all(base, upd);
		if (w != cases[i].wins_all)
			fail_msg("case %zu: fieldmerge_wins_all %d, want %d", i, w, cases[i].wins_all);
		const char *p[] = { cases[i].base, cases[i].upd };
		PGresult *r = NULL;
		if (cases[i].wins_all || cases[i].well_formed) {
			if (store_exec(conn, "SELECT dw_image_merge($1::jsonb, $2::jsonb) = ($1::jsonb || $2::jsonb), "
					     "dw_image_merge($1::jsonb, $2::jsonb)::text",
				       2, p, &r, err, sizeof(err)) != 0)
				fail_msg("case %zu: %s", i, err);
			if (w && strcmp(PQgetvalue(r, 0, 0), "t") != 0)
				fail_msg("case %zu: every entry wins, but the SQL merge is not base || upd", i);
		}
		if (cases[i].well_formed) {
			assert_int_equal(0, fieldmerge_merge(base, upd));
			char *c = cJSON_PrintUnformatted(base);
			assert_non_null(c);
			if (!same_jsonb(c, PQgetvalue(r, 0, 1)))
				fail_msg("case %zu: C merge %s, SQL merge %s", i, c, PQgetvalue(r, 0, 1));
			free(c);
		}
		PQclear(r);
		cJSON_Delete(base);
		cJSON_Delete(upd);
	}
}

static void test_constructor_refuses_bad_arguments(void **state)
{
	(void)state;
	struct applystate *s = NULL;
	assert_int_equal(STORE_ERR, applystate_new(conn, "m", "xx", &s, err, sizeof(err)));
	assert_null(s);
	assert_int_equal(STORE_ERR, applystate_new(conn, "", "ce", &s, err, sizeof(err)));
	assert_int_equal(STORE_ERR, applystate_new(NULL, "m", "ce", &s, err, sizeof(err)));
	applystate_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_record_is_written),
		cmocka_unit_test(test_recorded_event_id_is_duplicate),
		cmocka_unit_test(test_older_or_equal_version_is_stale),
		cmocka_unit_test(test_same_content_is_echo_and_recorded),
		cmocka_unit_test(test_delete_then_delete_is_echo_then_create_writes),
		cmocka_unit_test(test_batch_decides_each_item),
		cmocka_unit_test(test_newest_outcome_per_key_wins_and_never_regresses),
		cmocka_unit_test(test_echo_of_what_was_written_to_the_source_side),
		cmocka_unit_test(test_failed_record_leaves_nothing),
		cmocka_unit_test(test_dead_letter_is_recorded_without_state),
		cmocka_unit_test(test_parked_record_queues_later_events),
		cmocka_unit_test(test_park_key_and_redrive),
		cmocka_unit_test(test_txn_expired_lists_old_units),
		cmocka_unit_test(test_txn_parts_staged_until_complete),
		cmocka_unit_test(test_map_state),
		cmocka_unit_test(test_keys_with_array_syntax_round_trip),
		cmocka_unit_test(test_constructor_refuses_bad_arguments),
		cmocka_unit_test(test_image_guard_concatenates_only_while_the_image_is_unchanged),
		cmocka_unit_test(test_sql_merge_agrees_with_the_c_merge),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
