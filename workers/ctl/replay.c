/*
 * `ctl replay`: moves the committed offsets of a map's apply group (<prefix>.apply.<map>.<to>) on its
 * source topic back to a point in time or to the beginning, so the worker re-reads from there.
 * Safe: it refuses while the group has members; re-read events already applied are skipped by
 * their recorded event ids.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "log.h"
#include "ops.h"

static const char usage[] =
	"usage: ctl replay --map NAME --to ce|fo (--since TIME | --from-beginning)\n"
	"\n"
	"Resets the committed offsets of the apply group <DW_TOPIC_PREFIX>.apply.NAME.<to> on the map's\n"
	"source topic (<DW_TOPIC_PREFIX>.<other side>.<entity>): with --since to the first message at or\n"
	"after TIME "
	"in each partition (Kafka's offsets-for-times; a partition with nothing newer goes to its end),\n"
	"with --from-beginning to the oldest message kept. The next worker of the group then re-reads\n"
	"from there, in order. Events whose outcome is already recorded are skipped (no second write).\n"
	"\n"
	"The group must have no active members: stop the map's apply workers for that side first (a\n"
	"paused worker is still a member). ctl refuses, naming the group's members count and state,\n"
	"while it has any; a worker that joins meanwhile makes Kafka reject the commit (a non-member\n"
	"may only commit offsets of an empty group).\n"
	"Kafka's own tool works too while the workers are stopped:\n"
	"  kafka-consumer-groups.sh --bootstrap-server B --group <prefix>.apply.NAME.<to> --topic T\n"
	"    --reset-offsets --to-datetime 2026-11-30T01:00:00.000 --execute\n"
	"\n"
	"options:\n"
	"  --map NAME          the map (required)\n"
	"  --to ce|fo          the side the map writes to (required)\n"
	"  --since TIME        RFC 3339 (2026-11-30T01:00:00Z, 2026-11-30T02:00:00+01:00) or relative to\n"
	"                      now: N followed by s, m, h or d (30m, 2h, 7d)\n"
	"  --from-beginning    the oldest message each partition still holds\n"
	"  -h, --help          this text\n"
	"settings: DW_KAFKA_BROKERS, DW_TOPIC_PREFIX, DW_MAPS_DIR, DW_KAFKA_*\n"
	"exit status: 0 offsets reset, 1 failure or refused (active members), 2 usage error\n";

/* 0 when the group has no members; 1 (and a message on stderr) when it has; -1 on failure. */
static int group_active(rd_kafka_t *rk, const char *group, char *err, size_t errlen)
{
	const struct rd_kafka_group_list *gl = NULL;
	rd_kafka_resp_err_t e = rd_kafka_list_groups(rk, group, &gl, OPS_TIMEOUT_MS);
	if (e) {
		snprintf(err, errlen, "describe group %s: %s", group, rd_kafka_err2str(e));
		return -1;
	}
	int rc = 0;
	for (int i = 0; i < gl->group_cnt; i++) {
		const struct rd_kafka_group_info *g = &gl->groups[i];
		if (strcmp(g->group, group) != 0)
			continue;
		if (g->err) {
			snprintf(err, errlen, "describe group %s: %s", group, rd_kafka_err2str(g->err));
			rc = -1;
		} else if (g->member_cnt > 0) {
			fprintf(stderr,
				"ctl replay: refused: group %s has %d active member(s) (state %s); stop the apply "
				"workers of this map and side first, then run replay again\n",
				group, g->member_cnt, g->state ? g->state : "?");
			for (int m = 0; m < g->member_cnt; m++)
				fprintf(stderr, "  member %s (client %s, host %s)\n", g->members[m].member_id,
					g->members[m].client_id, g->members[m].client_host);
			rc = 1;
		}
	}
	rd_kafka_group_list_destroy(gl);
	return rc;
}

static int run(int argc, char **argv, const struct config_common *cfg)
{
	static const struct option longopts[] = {
		{ "map", required_argument, NULL, 'm' },
		{ "to", required_argument, NULL, 't' },
		{ "since", required_argument, NULL, 's' },
		{ "from-beginning", no_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	const char *map = NULL, *to = NULL, *since = NULL;
	int beginning = 0, opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'm': map = optarg; break;
		case 't': to = optarg; break;
		case 's': since = optarg; break;
		case 'b': beginning = 1; break;
		default: fprintf(stderr, "ctl replay: see `ctl replay --help`\n"); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ctl replay: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!map || !to) {
		fprintf(stderr, "ctl replay: --map NAME and --to ce|fo are required\n");
		return 2;
	}
	if (strcmp(to, "ce") != 0 && strcmp(to, "fo") != 0) {
		fprintf(stderr, "ctl replay: --to must be ce or fo, not '%s'\n", to);
		return 2;
	}
	if (!since == !beginning) {
		fprintf(stderr, "ctl replay: give exactly one of --since TIME and --from-beginning\n");
		return 2;
	}
	int64_t since_ms = 0;
	if (since && ops_parse_time(since, ops_now_ms(), &since_ms) != 0) {
		fprintf(stderr, "ctl replay: --since '%s' is neither RFC 3339 (2026-11-30T01:00:00Z) nor relative "
				"(30m, 2h, 7d)\n", since);
		return 2;
	}

	char err[1024], when[48];
	struct ops_target *t = NULL;
	size_t n = 0;
	rd_kafka_t *rk = NULL;
	rd_kafka_topic_partition_list_t *old = NULL, *want = NULL;
	int rc = 1, parts = 0, exists = 0;
	if (ops_targets(cfg, map, to, &t, &n, err, sizeof(err)) != 0 || n != 1) {
		fprintf(stderr, "ctl replay: %s\n", n != 1 && t ? "no such direction" : err);
		goto out;
	}
	if (!(rk = ops_kafka_handle(cfg, t->group, err, sizeof(err))) ||
	    ops_partitions(rk, t->source_topic, &parts, &exists, err, sizeof(err)) != 0) {
		fprintf(stderr, "ctl replay: %s\n", err);
		goto out;
	}
	if (!exists) {
		fprintf(stderr, "ctl replay: source topic %s does not exist\n", t->source_topic);
		goto out;
	}
	int act = group_active(rk, t->group, err, sizeof(err));
	if (act != 0) {
		if (act < 0)
			fprintf(stderr, "ctl replay: %s\n", err);
		goto out;
	}
	old = rd_kafka_topic_partition_list_new(parts);
	want = rd_kafka_topic_partition_list_new(parts);
	for (int p = 0; p < parts; p++) {
		rd_kafka_topic_partition_list_add(old, t->source_topic, p);
		rd_kafka_topic_partition_list_add(want, t->source_topic, p)->offset = since_ms;
	}
	rd_kafka_resp_err_t e = rd_kafka_committed(rk, old, OPS_TIMEOUT_MS);
	if (e) {
		fprintf(stderr, "ctl replay: committed offsets of %s: %s\n", t->group, rd_kafka_err2str(e));
		goto out;
	}
	if (since) {
		e = rd_kafka_offsets_for_times(rk, want, OPS_TIMEOUT_MS);
		if (e) {
			fprintf(stderr, "ctl replay: offsets for %s: %s\n", since, rd_kafka_err2str(e));
			goto out;
		}
	}
	for (int p = 0; p < parts; p++) {
		rd_kafka_topic_partition_t *w = &want->elems[p];
		if (w->err) {
			fprintf(stderr, "ctl replay: %s [%d]: %s\n", t->source_topic, p, rd_kafka_err2str(w->err));
			goto out;
		}
		int64_t lo = 0, hi = 0;
		e = rd_kafka_query_watermark_offsets(rk, t->source_topic, p, &lo, &hi, OPS_TIMEOUT_MS);
		if (e) {
			fprintf(stderr, "ctl replay: watermarks of %s [%d]: %s\n", t->source_topic, p, rd_kafka_err2str(e));
			goto out;
		}
		if (beginning)
			w->offset = lo;
		else if (w->offset < 0) /* nothing at or after the time: the end */
			w->offset = hi;
	}
	e = rd_kafka_commit(rk, want, 0);
	if (e) {
		fprintf(stderr, "ctl replay: committing the new offsets of %s failed (%s); nothing was changed "
				"unless stated by Kafka, check with `ctl status`\n", t->group, rd_kafka_err2str(e));
		goto out;
	}
	ops_format_time(since_ms, when, sizeof(when));
	printf("group %s on %s reset to %s:\n", t->group, t->source_topic, beginning ? "the beginning" : when);
	int64_t total = 0;
	for (int p = 0; p < parts; p++) {
		int64_t o = old->elems[p].offset, w = want->elems[p].offset;
		char ob[32];
		if (o < 0)
			snprintf(ob, sizeof(ob), "none");
		else
			snprintf(ob, sizeof(ob), "%" PRId64, o);
		printf("  partition %d: %s -> %" PRId64 "\n", p, ob, w);
		if (o >= 0 && w < o)
			total += o - w;
	}
	printf("%" PRId64 " event(s) to re-read; already applied ones are skipped\n", total);
	log_info("group offsets reset", "group", t->group, "topic", t->source_topic, "to",
		 beginning ? "beginning" : when);
	rc = 0;
out:
	if (old)
		rd_kafka_topic_partition_list_destroy(old);
	if (want)
		rd_kafka_topic_partition_list_destroy(want);
	if (rk)
		rd_kafka_destroy(rk);
	free(t);
	return rc;
}

const struct ctl_command ctl_replay_command = {
	.name = "replay",
	.summary = "re-read a map's source topic from a time or the beginning (workers stopped)",
	.usage = usage,
	.run = run,
};
