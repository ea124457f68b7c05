/* Unit tests of the field-level sync decisions (common/fieldmerge.c) on the accounts map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fieldmerge.h"
#include "map.h"

static struct map *load(void)
{
	struct map *m = NULL;
	char err[512];
	if (map_load_file("schemas/maps/accounts.json", &m, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	return m;
}

static cJSON *json(const char *text)
{
	cJSON *j = cJSON_Parse(text);
	assert_non_null(j);
	return j;
}

static int has(const cJSON *o, const char *name)
{
	return cJSON_GetObjectItemCaseSensitive(o, name) != NULL;
}

/* A CE event image of account A1 with the given name and city. */
static cJSON *ce_image(const char *name, const char *city)
{
	char text[512];
	snprintf(text, sizeof(text),
		 "{\"accountnumber\":\"A1\",\"_msdyn_company_value\":\"usmf\",\"name\":\"%s\",\"address1_city\":\"%s\","
		 "\"telephone1\":\"t0\"}",
		 name, city);
	return json(text);
}

static cJSON *fo_payload(const char *name, const char *city)
{
	char text[512];
	snprintf(text, sizeof(text),
		 "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A1\",\"OrganizationName\":\"%s\",\"AddressCity\":\"%s\","
		 "\"PrimaryContactPhone\":\"t0\",\"PartyType\":\"Organization\"}",
		 name, city);
	return json(text);
}

/* Only the fields the event changed against the known source image are written; keys always go. */
static void test_plan_writes_only_changed_fields(void **state)
{
	(void)state;
	struct map *m = load();
	cJSON *old = ce_image("n0", "c0"), *now = ce_image("n0", "Springfield");
	cJSON *known_src = fieldmerge_entries(m, EVENT_SIDE_CE, old, 1000);
	cJSON *known_dst = json("{\"OrganizationName\":{\"v\":\"n0\",\"t\":1000}}");
	cJSON *p = fo_payload("n0", "Springfield");
	struct fieldmerge_plan plan;
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, now, 0, 2000, known_src, known_dst, p, &plan));
	assert_int_equal(1, plan.nwrite);
	assert_true(has(p, "AddressCity"));
	assert_true(has(p, "CustomerAccount"));
	assert_true(has(p, "dataAreaId"));
	assert_false(has(p, "OrganizationName"));
	assert_false(has(p, "PrimaryContactPhone"));
	assert_false(has(p, "PartyType")); /* a constant: first write only */
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(plan.written, "AddressCity");
	assert_non_null(e);
	assert_string_equal("Springfield", cJSON_GetObjectItemCaseSensitive(e, "v")->valuestring);
	assert_int_equal(2000, (int)cJSON_GetObjectItemCaseSensitive(e, "t")->valuedouble);
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(old);
	cJSON_Delete(now);
	cJSON_Delete(known_src);
	cJSON_Delete(known_dst);
	cJSON_Delete(p);
	map_free(m);
}

/* The echo of our own write (same values as known) writes nothing; nothing known writes everything. */
static void test_plan_echo_writes_nothing_and_first_write_is_full(void **state)
{
	(void)state;
	struct map *m = load();
	cJSON *img = ce_image("n1", "c1");
	cJSON *known_src = fieldmerge_entries(m, EVENT_SIDE_CE, img, 1000);
	cJSON *known_dst = json("{}");
	cJSON *p = fo_payload("n1", "c1");
	struct fieldmerge_plan plan;
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, img, 0, 5000, known_src, known_dst, p, &plan));
	assert_int_equal(0, plan.nwrite);
	assert_int_equal(4, plan.nunchanged);
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(p);
	p = fo_payload("n1", "c1");
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, img, 0, 5000, NULL, NULL, p, &plan));
	assert_int_equal(4, plan.nwrite);
	assert_true(has(p, "PartyType"));
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(img);
	cJSON_Delete(known_src);
	cJSON_Delete(known_dst);
	cJSON_Delete(p);
	map_free(m);
}

/* A source value older than the known one (an event overtaken by a newer value) is not written. */
static void test_plan_skips_values_older_than_known(void **state)
{
	(void)state;
	struct map *m = load();
	cJSON *known_src = json("{\"name\":{\"v\":\"from-fo\",\"t\":3000},\"address1_city\":{\"v\":\"c0\",\"t\":1000}}");
	cJSON *img = ce_image("stale", "c0");
	cJSON *p = fo_payload("stale", "c0");
	struct fieldmerge_plan plan;
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, img, 0, 2000, known_src, NULL, p, &plan));
	assert_false(has(p, "OrganizationName"));
	assert_false(has(p, "AddressCity"));
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(known_src);
	cJSON_Delete(img);
	cJSON_Delete(p);
	map_free(m);
}

/* The same field changed later on the target: latest_wins keeps the target's, ce_wins the CE one. */
static void test_plan_conflict_follows_policy(void **state)
{
	(void)state;
	struct map *m = load();
	cJSON *known_src = json("{\"name\":{\"v\":\"n0\",\"t\":1000}}");
	cJSON *known_dst = json("{\"OrganizationName\":{\"v\":\"fo-newer\",\"t\":3000}}");
	cJSON *img = ce_image("ce-older", "c0");
	struct fieldmerge_plan plan;
	cJSON *p = fo_payload("ce-older", "c0");
	m->conflict = MAP_CONFLICT_LATEST_WINS;
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, img, 0, 2000, known_src, known_dst, p, &plan));
	assert_int_equal(1, plan.nlost);
	assert_false(has(p, "OrganizationName"));
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(p);
	p = fo_payload("ce-older", "c0");
	m->conflict = MAP_CONFLICT_CE_WINS;
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, img, 0, 2000, known_src, known_dst, p, &plan));
	assert_int_equal(1, plan.nwon);
	assert_true(has(p, "OrganizationName"));
	/* recorded with the overruled change's time, so its event is older when it arrives */
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(plan.written, "OrganizationName");
	assert_int_equal(3000, (int)cJSON_GetObjectItemCaseSensitive(e, "t")->valuedouble);
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(p);
	p = fo_payload("ce-older", "c0");
	m->conflict = MAP_CONFLICT_FO_WINS;
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, img, 0, 2000, known_src, known_dst, p, &plan));
	assert_int_equal(1, plan.nlost);
	assert_false(has(p, "OrganizationName"));
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(p);
	cJSON_Delete(known_src);
	cJSON_Delete(known_dst);
	cJSON_Delete(img);
	map_free(m);
}

/* After a 412: fields the target did not change are merged; a field it changed is settled by the
 * policy, or waits when latest_wins has no time for the target's change. */
static void test_conflict_merges_and_settles(void **state)
{
	(void)state;
	struct map *m = load();
	cJSON *known_dst = json("{\"OrganizationName\":{\"v\":\"n0\",\"t\":1000},\"AddressCity\":{\"v\":\"c0\",\"t\":1000}}");
	cJSON *reread = json("{\"OrganizationName\":\"n0\",\"AddressCity\":\"fo-city\"}");
	struct fieldmerge_plan c;
	cJSON *p = json("{\"CustomerAccount\":\"A1\",\"OrganizationName\":\"ce-name\"}");
	m->conflict = MAP_CONFLICT_LATEST_WINS;
	assert_int_equal(0, fieldmerge_conflict(m, EVENT_SIDE_CE, reread, 0, 0, 9000, known_dst, NULL, 2000, p, &c));
	assert_int_equal(1, c.nwrite);
	assert_int_equal(0, c.nwait);
	assert_true(has(p, "OrganizationName"));
	fieldmerge_plan_clear(&c);
	cJSON_Delete(p);
	p = json("{\"CustomerAccount\":\"A1\",\"AddressCity\":\"ce-city\"}");
	assert_int_equal(0, fieldmerge_conflict(m, EVENT_SIDE_CE, reread, 0, 0, 9000, known_dst, NULL, 2000, p, &c));
	assert_int_equal(1, c.nwait);
	fieldmerge_plan_clear(&c);
	assert_int_equal(0, fieldmerge_conflict(m, EVENT_SIDE_CE, reread, 1500, 0, 9000, known_dst, NULL, 2000, p, &c));
	assert_int_equal(1, c.nwon);
	assert_true(has(p, "AddressCity"));
	fieldmerge_plan_clear(&c);
	/* the target's record changed last at 2500, after this change: its city may have changed
	 * before or after 2000, so the field waits for the target's event (the other direction then
	 * decides by the same two times) */
	assert_int_equal(0, fieldmerge_conflict(m, EVENT_SIDE_CE, reread, 2500, 0, 9000, known_dst, NULL, 2000, p, &c));
	assert_int_equal(1, c.nwait);
	assert_int_equal(0, c.nlost);
	fieldmerge_plan_clear(&c);
	assert_int_equal(0, fieldmerge_conflict(m, EVENT_SIDE_CE, reread, 2000, 0, 9000, known_dst, NULL, 2000, p, &c));
	assert_int_equal(1, c.nwait);
	fieldmerge_plan_clear(&c);
	/* waited long enough: the target's value stays */
	assert_int_equal(0, fieldmerge_conflict(m, EVENT_SIDE_CE, reread, 2500, 1, 9000, known_dst, NULL, 2000, p, &c));
	assert_int_equal(1, c.nlost);
	assert_false(has(p, "AddressCity"));
	fieldmerge_plan_clear(&c);
	/* the plan dated this change later than its event (a change made after our write, at 3000):
	 * it wins against the target's change at 2500, as the plan decided for the other direction */
	cJSON_Delete(p);
	p = json("{\"CustomerAccount\":\"A1\",\"AddressCity\":\"ce-city\"}");
	cJSON *planned = json("{\"AddressCity\":{\"v\":\"ce-city\",\"t\":3000}}");
	assert_int_equal(0, fieldmerge_conflict(m, EVENT_SIDE_CE, reread, 2500, 0, 9000, known_dst, planned, 2000, p, &c));
	assert_int_equal(1, c.nwon);
	assert_true(has(p, "AddressCity"));
	fieldmerge_plan_clear(&c);
	cJSON_Delete(planned);
	cJSON_Delete(p);
	p = json("{\"CustomerAccount\":\"A1\",\"AddressCity\":\"ce-city\"}");
	m->conflict = MAP_CONFLICT_CE_WINS;
	assert_int_equal(0, fieldmerge_conflict(m, EVENT_SIDE_CE, reread, 0, 0, 9000, known_dst, NULL, 2000, p, &c));
	assert_int_equal(1, c.nwon);
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(c.written, "AddressCity");
	assert_int_equal(9000, (int)cJSON_GetObjectItemCaseSensitive(e, "t")->valuedouble);
	fieldmerge_plan_clear(&c);
	cJSON_Delete(p);
	cJSON_Delete(known_dst);
	cJSON_Delete(reread);
	map_free(m);
}

/* A value we wrote on the target is not the target's own change: no conflict. A CE event is placed
 * by its version against an entry that has one, whatever the times say. */
static void test_plan_origin_and_versions(void **state)
{
	(void)state;
	struct map *m = load();
	cJSON *img = ce_image("new", "c0");
	cJSON *known_dst = json("{\"OrganizationName\":{\"v\":\"x\",\"t\":3000,\"o\":\"ce\"}}");
	cJSON *p = fo_payload("new", "c0");
	struct fieldmerge_plan plan;
	m->conflict = MAP_CONFLICT_LATEST_WINS;
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, img, 0, 2000, NULL, known_dst, p, &plan));
	assert_int_equal(0, plan.nlost);
	assert_true(has(p, "OrganizationName"));
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(p);
	cJSON *known_src = json("{\"name\":{\"v\":\"old\",\"t\":9000,\"n\":5,\"o\":\"fo\"}}");
	p = fo_payload("new", "c0");
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, img, 6, 1000, known_src, NULL, p, &plan));
	assert_true(has(p, "OrganizationName"));
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(p);
	p = fo_payload("new", "c0");
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, img, 4, 99999, known_src, NULL, p, &plan));
	assert_false(has(p, "OrganizationName"));
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(p);
	cJSON_Delete(known_src);
	cJSON_Delete(known_dst);
	cJSON_Delete(img);
	map_free(m);
}

/*
 * The e2e race (issue 5): FO changes the phone at 3780 (its version 7), the FO->CE worker writes it
 * to CE (CE version 10), then CE changes the phone again within the same second (version 11, CE's
 * time has whole seconds: 3000). The CE change overwrote our copy of FO's change: it follows it and
 * must reach FO under every policy, though its time is older. Only an FO change our write did not
 * carry (one made after it) is a conflict the policy settles.
 */
static void test_plan_change_after_our_copy_is_no_conflict(void **state)
{
	(void)state;
	struct map *m = load();
	cJSON *img = json("{\"accountnumber\":\"A1\",\"_msdyn_company_value\":\"usmf\",\"name\":\"n0\","
			  "\"address1_city\":\"c0\",\"telephone1\":\"ce-later\"}");
	cJSON *known_dst = json("{\"PrimaryContactPhone\":{\"v\":\"fo-v\",\"t\":3780,\"n\":7,\"o\":\"fo\"}}");
	/* what the FO->CE worker recorded for its write: fieldmerge_stamp with FO's change */
	cJSON *known_src = json("{\"telephone1\":{\"v\":\"fo-v\",\"t\":3850,\"n\":10}}");
	cJSON *e = cJSON_GetObjectItemCaseSensitive(known_src, "telephone1");
	assert_int_equal(0, fieldmerge_stamp(known_src, 3850, EVENT_SIDE_FO, 10, 3780, 7));
	assert_int_equal(3780, (int)cJSON_GetObjectItemCaseSensitive(e, "s")->valuedouble);
	assert_int_equal(7, (int)cJSON_GetObjectItemCaseSensitive(e, "sn")->valuedouble);
	const enum map_conflict policies[] = { MAP_CONFLICT_LATEST_WINS, MAP_CONFLICT_FO_WINS, MAP_CONFLICT_CE_WINS };
	struct fieldmerge_plan plan;
	for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
		m->conflict = policies[i];
		cJSON *p = json("{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A1\",\"PrimaryContactPhone\":\"ce-later\"}");
		assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, img, 11, 3000, known_src, known_dst, p, &plan));
		assert_int_equal(1, plan.nwrite);
		assert_int_equal(0, plan.nlost);
		assert_string_equal("ce-later", cJSON_GetObjectItemCaseSensitive(p, "PrimaryContactPhone")->valuestring);
		fieldmerge_plan_clear(&plan);
		cJSON_Delete(p);
	}
	/* FO changed again (version 8) after the change we copied: a real conflict */
	cJSON_Delete(known_dst);
	known_dst = json("{\"PrimaryContactPhone\":{\"v\":\"fo-newer\",\"t\":3900,\"n\":8,\"o\":\"fo\"}}");
	m->conflict = MAP_CONFLICT_LATEST_WINS;
	cJSON *p = json("{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A1\",\"PrimaryContactPhone\":\"ce-later\"}");
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, img, 11, 3000, known_src, known_dst, p, &plan));
	assert_int_equal(1, plan.nlost);
	assert_false(has(p, "PrimaryContactPhone"));
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(p);
	cJSON_Delete(known_src);
	cJSON_Delete(known_dst);
	cJSON_Delete(img);
	map_free(m);
}

/* Equal times of the two sides' changes of one field: both directions must pick the same winner
 * (latest_wins: CE; a fixed policy: its side), else each side takes the other's value. */
static void test_plan_equal_times_one_winner(void **state)
{
	(void)state;
	struct map *m = load();
	cJSON *ce_img = ce_image("n0", "c0");
	cJSON_ReplaceItemInObjectCaseSensitive(ce_img, "telephone1", cJSON_CreateString("ce-v"));
	cJSON *fo_img = json("{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A1\",\"PrimaryContactPhone\":\"fo-v\"}");
	cJSON *known_fo = json("{\"PrimaryContactPhone\":{\"v\":\"fo-v\",\"t\":2000,\"o\":\"fo\"}}");
	cJSON *known_ce = json("{\"telephone1\":{\"v\":\"ce-v\",\"t\":2000,\"o\":\"ce\"}}");
	const struct {
		enum map_conflict policy;
		int ce_written, fo_written;
	} cases[] = { { MAP_CONFLICT_LATEST_WINS, 1, 0 }, { MAP_CONFLICT_CE_WINS, 1, 0 }, { MAP_CONFLICT_FO_WINS, 0, 1 } };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		m->conflict = cases[i].policy;
		struct fieldmerge_plan plan;
		cJSON *p = json("{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A1\",\"PrimaryContactPhone\":\"ce-v\"}");
		assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, ce_img, 0, 2000, NULL, known_fo, p, &plan));
		assert_int_equal(cases[i].ce_written, has(p, "PrimaryContactPhone"));
		fieldmerge_plan_clear(&plan);
		cJSON_Delete(p);
		p = json("{\"accountnumber\":\"A1\",\"telephone1\":\"fo-v\"}");
		assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_FO, fo_img, 0, 2000, NULL, known_ce, p, &plan));
		assert_int_equal(cases[i].fo_written, has(p, "telephone1"));
		fieldmerge_plan_clear(&plan);
		cJSON_Delete(p);
	}
	cJSON_Delete(ce_img);
	cJSON_Delete(fo_img);
	cJSON_Delete(known_fo);
	cJSON_Delete(known_ce);
	map_free(m);
}

/* The FO entry of OrganizationName after our write of `name` sent at `sent`, whose plan knew
 * `known_fo` of FO (the FO write answers 204: no version). The caller deletes it. */
static cJSON *fo_after_write(const struct map *m, const char *name, long long ts, long long sent, const cJSON *known_fo)
{
	char text[256];
	snprintf(text, sizeof(text), "{\"accountnumber\":\"A1\",\"_msdyn_company_value\":\"usmf\",\"name\":\"%s\"}",
		 name);
	cJSON *img = json(text);
	snprintf(text, sizeof(text), "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A1\",\"OrganizationName\":\"%s\"}",
		 name);
	cJSON *p = json(text);
	struct fieldmerge_plan plan;
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, img, 0, ts, NULL, known_fo, p, &plan));
	assert_int_equal(1, plan.nwrite);
	assert_int_equal(0, fieldmerge_stamp(plan.written, sent, EVENT_SIDE_CE, 0, ts, 0));
	cJSON *known = cJSON_Duplicate(known_fo, 1);
	assert_int_equal(0, fieldmerge_merge(known, plan.written));
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(img);
	cJSON_Delete(p);
	return known;
}

/* Whether an FO event at version/ts whose image has OrganizationName `name` writes it to CE; it
 * counts as a late change (made after our write) exactly when it is written. */
static int fo_event_writes(const struct map *m, const cJSON *known_fo, const cJSON *known_ce, const char *name,
			   long long version, long long ts, long long *t_written)
{
	char text[256];
	snprintf(text, sizeof(text), "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A1\",\"OrganizationName\":\"%s\"}",
		 name);
	cJSON *img = json(text);
	snprintf(text, sizeof(text), "{\"accountnumber\":\"A1\",\"name\":\"%s\"}", name);
	cJSON *p = json(text);
	struct fieldmerge_plan plan;
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_FO, img, version, ts, known_fo, known_ce, p, &plan));
	int w = has(p, "name");
	assert_int_equal(w, plan.nlate);
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(plan.written, "name");
	if (t_written)
		*t_written = e ? (long long)cJSON_GetObjectItemCaseSensitive(e, "t")->valuedouble : 0;
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(img);
	cJSON_Delete(p);
	return w;
}

/*
 * Issue 5 (e2e concurrent edits ended with the name different on the two sides): our FO writes
 * answer 204 without a version, so FO's events are placed against them by time. FO's event of a
 * change carries that change's time but an image re-read later, which can hold a change made on FO
 * after our next write: a value that is neither ours nor the one our write replaced. It is a
 * change made after our write and reaches CE, and its known-image entry replaces ours; an image
 * read before our write landed (it holds the replaced value, or an older one by its time) stays
 * stale.
 */
static void test_plan_change_after_our_write_in_older_event(void **state)
{
	(void)state;
	struct map *m = load();
	cJSON *k0 = json("{\"OrganizationName\":{\"v\":\"start\",\"t\":500,\"o\":\"fo\",\"n\":1}}");
	cJSON *k1 = fo_after_write(m, "ce-1", 900, 1000, k0);  /* our first write, sent at 1000 */
	cJSON *k2 = fo_after_write(m, "ce-2", 1900, 2000, k1); /* our second, sent at 2000 */
	/* our second write notes what FO held before it: our first write's value and time, then what
	 * that one replaced */
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(k2, "OrganizationName");
	const cJSON *links = cJSON_GetObjectItemCaseSensitive(e, "p");
	assert_int_equal(2, cJSON_GetArraySize(links));
	const cJSON *l0 = cJSON_GetArrayItem(links, 0), *l1 = cJSON_GetArrayItem(links, 1);
	assert_string_equal("ce-1", cJSON_GetObjectItemCaseSensitive(l0, "v")->valuestring);
	assert_int_equal(1000, (int)cJSON_GetObjectItemCaseSensitive(l0, "t")->valuedouble);
	assert_string_equal("start", cJSON_GetObjectItemCaseSensitive(l1, "v")->valuestring);
	assert_int_equal(1, (int)cJSON_GetObjectItemCaseSensitive(l1, "n")->valuedouble);
	cJSON *known_ce = json("{\"name\":{\"v\":\"ce-2\",\"t\":1900,\"o\":\"ce\",\"n\":7}}");
	/* FO's event of our first write (time 1500), re-read after a later FO change */
	long long t = 0;
	assert_true(fo_event_writes(m, k2, known_ce, "fo-later", 3, 1500, &t));
	assert_int_equal(2000, (int)t);
	/* its known-image entry replaces our write's */
	cJSON *img = json("{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A1\",\"OrganizationName\":\"fo-later\"}");
	cJSON *seen = fieldmerge_changed_entries(m, EVENT_SIDE_FO, img, 3, 1500, k2);
	assert_non_null(seen);
	cJSON *k3 = cJSON_Duplicate(k2, 1);
	assert_int_equal(0, fieldmerge_merge(k3, seen));
	cJSON *v = fieldmerge_values(k3);
	assert_string_equal("fo-later", cJSON_GetObjectItemCaseSensitive(v, "OrganizationName")->valuestring);
	cJSON_Delete(v);
	/* images read before our second write landed stay stale: the value it replaced, or an older
	 * value in an event older than that value */
	assert_false(fo_event_writes(m, k2, known_ce, "ce-1", 3, 1500, NULL));
	assert_false(fo_event_writes(m, k2, known_ce, "start", 2, 800, NULL));
	/* an event triggered before our first write, re-read after both and a later FO change: not
	 * older than the value our first write replaced, whose version is known */
	assert_true(fo_event_writes(m, k2, known_ce, "fo-later", 3, 800, NULL));
	assert_false(fo_event_writes(m, k2, known_ce, "fo-later", 1, 400, NULL));
	/* with FO's version of the replaced value known, the version decides */
	cJSON *k4 = fo_after_write(m, "ce-3", 2900, 3000, k3);
	assert_false(fo_event_writes(m, k4, known_ce, "other", 3, 2500, NULL));
	assert_true(fo_event_writes(m, k4, known_ce, "other", 4, 2500, NULL));
	cJSON_Delete(img);
	cJSON_Delete(seen);
	cJSON_Delete(k0);
	cJSON_Delete(k1);
	cJSON_Delete(k2);
	cJSON_Delete(k3);
	cJSON_Delete(k4);
	cJSON_Delete(known_ce);
	map_free(m);
}

/* Known images merge field by field: the newer time wins, a tie goes to the update. */
static void test_merge_newer_time_wins(void **state)
{
	(void)state;
	cJSON *base = json("{\"a\":{\"v\":1,\"t\":5},\"b\":{\"v\":1,\"t\":5},\"c\":{\"v\":1,\"t\":5}}");
	cJSON *upd = json("{\"a\":{\"v\":2,\"t\":4},\"b\":{\"v\":2,\"t\":5},\"c\":{\"v\":2,\"t\":6},\"d\":{\"v\":2,\"t\":1}}");
	assert_int_equal(0, fieldmerge_merge(base, upd));
	cJSON *v = fieldmerge_values(base);
	assert_non_null(v);
	assert_int_equal(1, cJSON_GetObjectItemCaseSensitive(v, "a")->valueint);
	assert_int_equal(2, cJSON_GetObjectItemCaseSensitive(v, "b")->valueint);
	assert_int_equal(2, cJSON_GetObjectItemCaseSensitive(v, "c")->valueint);
	assert_int_equal(2, cJSON_GetObjectItemCaseSensitive(v, "d")->valueint);
	cJSON_Delete(v);
	cJSON_Delete(base);
	cJSON_Delete(upd);
	/* with versions on both sides the version decides */
	base = json("{\"a\":{\"v\":1,\"t\":9,\"n\":3}}");
	upd = json("{\"a\":{\"v\":2,\"t\":1,\"n\":4}}");
	assert_int_equal(0, fieldmerge_merge(base, upd));
	v = fieldmerge_values(base);
	assert_int_equal(2, cJSON_GetObjectItemCaseSensitive(v, "a")->valueint);
	cJSON_Delete(v);
	cJSON_Delete(base);
	cJSON_Delete(upd);
}

/*
 * A write waiting after a 412 notes its source change as pending: the other direction decides the
 * field against it by the two change times (no mutual wait), while the waiting direction's own
 * re-plan still sees the change as one to carry; once handled, the pending note is replaced.
 */
static void test_pending_note_decides_other_direction_and_keeps_own_change(void **state)
{
	(void)state;
	struct map *m = load();
	m->conflict = MAP_CONFLICT_LATEST_WINS;
	cJSON *old = ce_image("n0", "c0"), *now = ce_image("n0", "ce-city");
	cJSON *known_ce = fieldmerge_entries(m, EVENT_SIDE_CE, old, 1000);
	/* CE changed the city at 2000; its write to FO waits */
	cJSON *pend = fieldmerge_pending_entries(m, EVENT_SIDE_CE, now, 0, 2000, known_ce);
	assert_non_null(pend);
	assert_int_equal(1, cJSON_GetArraySize(pend));
	const cJSON *pc = cJSON_GetObjectItemCaseSensitive(pend, "address1_city");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pc, "w")));
	assert_string_equal("c0", cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(pc, "b"), "v")->valuestring);
	assert_int_equal(0, fieldmerge_merge(known_ce, pend));
	/* the same change noted twice keeps the first note's "b" */
	cJSON *again = fieldmerge_pending_entries(m, EVENT_SIDE_CE, now, 0, 2000, known_ce);
	assert_string_equal("c0", cJSON_GetObjectItemCaseSensitive(
					   cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(again, "address1_city"), "b"),
					   "v")->valuestring);
	cJSON_Delete(again);

	/* the CE -> FO re-plan still carries the city */
	cJSON *p = fo_payload("n0", "ce-city"), *known_fo = json("{}");
	struct fieldmerge_plan plan;
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, now, 0, 2000, known_ce, known_fo, p, &plan));
	assert_true(has(p, "AddressCity"));
	assert_int_equal(1, plan.nwrite);
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(p);

	/* FO -> CE: FO's city change at 1500 is older than CE's pending one: CE's stays */
	cJSON *ce_pay = json("{\"accountnumber\":\"A1\",\"address1_city\":\"fo-city\"}");
	cJSON *fo_img = json("{\"CustomerAccount\":\"A1\",\"dataAreaId\":\"usmf\",\"AddressCity\":\"fo-city\"}");
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_FO, fo_img, 0, 1500, NULL, known_ce, ce_pay, &plan));
	assert_int_equal(1, plan.nlost);
	assert_false(has(ce_pay, "address1_city"));
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(ce_pay);
	/* at 2500 it is newer: FO's is written */
	ce_pay = json("{\"accountnumber\":\"A1\",\"address1_city\":\"fo-city\"}");
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_FO, fo_img, 0, 2500, NULL, known_ce, ce_pay, &plan));
	assert_int_equal(0, plan.nlost);
	assert_true(has(ce_pay, "address1_city"));
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(ce_pay);
	cJSON_Delete(fo_img);

	/* handled: the seen entries replace the pending note */
	cJSON *seen = fieldmerge_changed_entries(m, EVENT_SIDE_CE, now, 0, 2000, known_ce);
	assert_true(has(seen, "address1_city"));
	assert_int_equal(0, fieldmerge_merge(known_ce, seen));
	pc = cJSON_GetObjectItemCaseSensitive(known_ce, "address1_city");
	assert_false(has(pc, "w"));
	assert_string_equal("ce-city", cJSON_GetObjectItemCaseSensitive(pc, "v")->valuestring);
	/* and a replay of the event is an echo again */
	p = fo_payload("n0", "ce-city");
	assert_int_equal(0, fieldmerge_plan(m, EVENT_SIDE_CE, now, 0, 2000, known_ce, known_fo, p, &plan));
	assert_int_equal(0, plan.nwrite);
	cJSON_Delete(known_fo);
	fieldmerge_plan_clear(&plan);
	cJSON_Delete(p);
	cJSON_Delete(seen);
	cJSON_Delete(pend);
	cJSON_Delete(known_ce);
	cJSON_Delete(old);
	cJSON_Delete(now);
	map_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_writes_only_changed_fields),
		cmocka_unit_test(test_plan_echo_writes_nothing_and_first_write_is_full),
		cmocka_unit_test(test_plan_skips_values_older_than_known),
		cmocka_unit_test(test_plan_conflict_follows_policy),
		cmocka_unit_test(test_conflict_merges_and_settles),
		cmocka_unit_test(test_plan_origin_and_versions),
		cmocka_unit_test(test_plan_change_after_our_copy_is_no_conflict),
		cmocka_unit_test(test_plan_equal_times_one_winner),
		cmocka_unit_test(test_plan_change_after_our_write_in_older_event),
		cmocka_unit_test(test_merge_newer_time_wins),
		cmocka_unit_test(test_pending_note_decides_other_direction_and_keeps_own_change),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
