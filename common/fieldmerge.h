#ifndef DW_FIELDMERGE_H
#define DW_FIELDMERGE_H

#include <cjson/cJSON.h>

#include "event.h"
#include "map.h"

/*
 * Field-level sync decisions (DESIGN 5 rules 3 and 4; docs/conflicts.md). Pure functions, no I/O.
 *
 * A "known image" is what the apply workers know of one record on one side, per mapped field in
 * that side's image names (CE lookups and the company by their _<name>_value attribute, FO by
 * field name): a JSON object {"<field>": {"v": <value>, "t": <ms>, "o": "ce"|"fo"}}. t is a time
 * on that side's own timeline: when the side changed the value (its change event's source time),
 * or, for a value we wrote there, when our write was sent; so an event of that side older than t
 * predates the value and does not change it. n, when known, is the side's own version of the record
 * with that value (CE versionnumber; the event's source version): an event is then placed by its
 * version rather than its time (CE change times have whole seconds only). o is the side whose change the value is (the side
 * itself, or the other side for a value we wrote); only a side's own changes are conflicts. Known images merge field by field, the newer t winning (fieldmerge_merge, and
 * dw_image_merge in schemas/sql/004_merge.sql, which must agree). A value we wrote also notes, when
 * known, the values the side held before it: p, [{"v", "t", "n"?}] newest first, up to 4 (writes go
 * with If-Match, so from the oldest until our write landed the side held exactly these).
 *
 * An event from side S with image I at time ts changes field f when the known image of S has no
 * entry for f, or holds another value with an older time, or holds a value we wrote (with a newer
 * time) while I's value is neither ours nor in its p and the event is not older than a value of p
 * (all newer ones differing from I's too): I was then read after our write landed (FO's events
 * carry the time of the change that triggered them and an image re-read later), and the change
 * counts from our write's time. Only changed fields are written to the
 * other side T (its key and company always go along), so a change never carries stale values of
 * fields it did not touch over T's newer ones; an event that changes nothing is an echo.
 * A field the known image of T shows changed later than ts is a conflict: the map's policy decides
 * (latest_wins: the later change; ce_wins/fo_wins: that side). It is not one when the known image
 * of S shows that T's change (or a later one) was already written to S and the event changed it
 * since: the event then follows T's change, whatever the times of the two sides say (CE's change
 * times have whole seconds only).
 */

/* What a plan or a conflict merge left in the payload. */
struct fieldmerge_plan {
	int nwrite;          /* payload members left to write, keys and company not counted */
	int nunchanged;      /* members dropped: the source did not change them */
	int nwon;            /* conflicts the source won (written) */
	int nlost;           /* conflicts the target won (dropped) */
	int nwait;           /* conflict merge only: fields changed on the target at an unknown time */
	int nsettled;        /* conflict merge only: of nwon, fields won because the caller waited long enough */
	int nlate;           /* plan only: changes made after our write, found in an event older than it */
	cJSON *written;      /* known-image entries of the target for the members left (image names;
			      * lookups written by binding are left out: their GUID is not known) */
};

/*
 * The known-image entries of the target for every mapped member of payload (a write to side `to`;
 * a CE lookup binding left out, its GUID is not known), as fieldmerge_plan notes a member it
 * keeps, at time ts: for a write that carries its whole payload (an atomic unit's part). New
 * object (cJSON_Delete), NULL on out of memory.
 */
cJSON *fieldmerge_payload_entries(const struct map *m, enum event_side to, const cJSON *payload, long long ts);

/* Frees plan->written and zeroes the plan; NULL-safe. */
void fieldmerge_plan_clear(struct fieldmerge_plan *p);

/*
 * The known-image entries of every mapped field of `side` (keys and company included) in image
 * (a record image of that side; an absent field is null) with time ts. Returns a new object the
 * caller frees with cJSON_Delete, or NULL when image is not an object or memory ran out.
 */
cJSON *fieldmerge_entries(const struct map *m, enum event_side side, const cJSON *image, long long ts);

/*
 * As fieldmerge_entries (with the side's record version when version > 0), but only the fields whose value differs from the known image `known` (or
 * that it lacks): what the side changed at ts (a change made after our write of a field, in an
 * event older than that write, at the write's time). Unchanged fields keep the time they were set.
 * known NULL: every field. New object (cJSON_Delete), NULL when image is not an object or on OOM.
 */
cJSON *fieldmerge_changed_entries(const struct map *m, enum event_side side, const cJSON *image, long long version,
				  long long ts, const cJSON *known);

/*
 * Pending entries: what an event of `side` changed (as fieldmerge_changed_entries, against the
 * known image `known` of that side), each marked "w": true and carrying the entry it replaces in
 * "b" (none when there was none). The worker carrying the event notes them in the known image of
 * the source while it waits after a 412 (fieldmerge_conflict's nwait), so that the other direction,
 * whose write may wait on this change in turn, finds the source's change time and decides the field
 * by the same two times instead of both waiting on each other. fieldmerge_plan reads a pending
 * entry of the source as the entry in its "b" (the change is still to be carried); as the target's
 * entry it is a change of that side like any other. fieldmerge_changed_entries keeps (replaces) a
 * pending entry once its change is handled. New object (cJSON_Delete), NULL on failure.
 */
cJSON *fieldmerge_pending_entries(const struct map *m, enum event_side side, const cJSON *image, long long version,
				  long long ts, const cJSON *known);

/*
 * Merges known-image entries upd into base (modified in place; upd borrowed): per field the entry
 * with the newer t wins, ties go to upd. Returns 0, or -1 when memory ran out (base then partly
 * merged) or either is not an object.
 */
int fieldmerge_merge(cJSON *base, const cJSON *upd) __attribute__((warn_unused_result));

/*
 * Whether merging known-image entries upd into base (dw_image_merge in schemas/sql/004, and
 * fieldmerge_merge for the entries it writes) takes every entry of upd, so that the merge is
 * exactly base || upd (each member of upd replacing or adding its field): 1 when upd is a
 * non-empty object of entries each newer than, or as new as, base's entry of that field (by n when
 * both carry one, else by t, as the SQL compares them) or of a field base lacks. 0 otherwise, and
 * whenever a stamp is not an integral number (the SQL could read it otherwise): the caller then
 * merges. Borrows both.
 */
int fieldmerge_wins_all(const cJSON *base, const cJSON *upd);

/* The plain values {"<field>": <v>} of a known image. New object (cJSON_Delete), NULL on failure. */
cJSON *fieldmerge_values(const cJSON *known);

/*
 * Restricts payload (the write of map_transform for the side other than `from`, modified in place)
 * to the fields the event changed: src_image is the event's image (borrowed), version and ts its
 * source version (0: unknown) and time,
 * known_src / known_dst the known images of the source and target sides (NULL: nothing known; then
 * nothing is dropped for that reason). A payload member whose field has no source (a constant) is
 * written only while nothing is known of the target. Conflicts against known_dst follow the map's
 * policy. Fills *out (clear it with fieldmerge_plan_clear); the entries of written members note
 * the known target values they replace (p). Returns 0, or -1 on out of memory.
 */
int fieldmerge_plan(const struct map *m, enum event_side from, const cJSON *src_image, long long version,
		    long long ts, const cJSON *known_src, const cJSON *known_dst, cJSON *payload, struct fieldmerge_plan *out)
	__attribute__((warn_unused_result));

/*
 * After a 412: reread is the target's record as it is now, target_ts the time of its last change
 * when the target tells it (CE modifiedon), else 0; now_ms the current time. A payload member
 * whose target value differs both from the known image of the target and from the value being
 * written was changed there concurrently: under ce_wins/fo_wins the policy decides at once (a
 * win is recorded with time max(ts, now_ms), so the overruled change, when its event arrives, is
 * older than it). Under latest_wins it is decided at once only when target_ts is before the
 * field's change time (the target's change then certainly came first: target_ts is the record's
 * last change, not the field's); otherwise the field counts in nwait, and the caller should retry
 * once the target's change event is known, so that both directions compare the same two change
 * times (deciding by the record's last change time would date a field changed earlier too late,
 * and the two directions would each keep the other side's value). settle nonzero (the caller
 * waited long enough) decides such a field for the source: it is written, dated now_ms (the
 * target's change event is then older than our write: both sides end with the source's value). Other
 * members are merged (kept). A field's change time is ts, or later when `planned` (the entries of
 * the plan the write came from, may be NULL) dates it later: a change made after our write, found
 * in an event older than it, is dated at that write by fieldmerge_plan and keeps that time here,
 * so both directions decide the field alike. Fills *out as fieldmerge_plan does; the entries of
 * written members note the re-read value as the one they replace (at now_ms unless it is the
 * known one). Returns 0, or -1 on out of memory.
 */
int fieldmerge_conflict(const struct map *m, enum event_side from, const cJSON *reread, long long target_ts, int settle,
			long long now_ms, const cJSON *known_dst, const cJSON *planned, long long ts, cJSON *payload,
			struct fieldmerge_plan *out) __attribute__((warn_unused_result));

/*
 * After a 412: whether the re-read record (reread) holds, in a field of the known target image
 * `known` that the write does not carry (not in `written`, the plan's entries), a value other than
 * the known one: a change of the target not seen yet. The ETag the merged write gets back then
 * covers that change, and a later write guarded by it would overwrite the change unnoticed; the
 * caller keeps no such ETag. 0 when known or reread is NULL.
 */
int fieldmerge_unseen(const cJSON *known, const cJSON *reread, const cJSON *written);

/*
 * After a write the target answered with its record (rep, borrowed): the entries of `written` for
 * the payload's fields take the values the target holds (normalised as it stores them; their other
 * members stay), and fields written by a CE lookup binding get their GUID attribute's value, with
 * time ts. Returns 0, or -1
 * on out of memory.
 */
int fieldmerge_observe(const struct map *m, enum event_side to, const cJSON *payload, const cJSON *rep, long long ts,
		       cJSON *written) __attribute__((warn_unused_result));

/* Raises the time of every entry of `written` to at least t (when the write was sent), marks the
 * entries as changes of side `origin` and, when version > 0, as the target's record version. Each
 * entry also notes the source change it carries: "s" its time src_ts and, when src_version > 0,
 * "sn" its version, on the origin side's timeline. With them fieldmerge_plan tells a later change
 * of the target that overwrote our copy of a source change (no conflict) from a concurrent one.
 * Returns 0, or -1 on out of memory. */
int fieldmerge_stamp(cJSON *written, long long t, enum event_side origin, long long version, long long src_ts,
		     long long src_version) __attribute__((warn_unused_result));

/* The CE image's change time (modifiedon, ms) or 0 when absent or unreadable. */
long long fieldmerge_ce_modified_ms(const cJSON *image);

#endif
