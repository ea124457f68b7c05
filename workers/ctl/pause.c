/*
 * `ctl pause` and `ctl resume`: set the map's row in dw_map_state. The apply workers read it every
 * DW_APPLY_STATE_CHECK_MS: a paused map's worker stops consuming (Kafka keeps the backlog) and on
 * resume catches up from its committed offsets, in order.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "applystate.h"
#include "ctl.h"
#include "log.h"
#include "ops.h"
#include "store.h"

#define PAUSE_REASON_MAX 1000

static const char pause_usage[] =
	"usage: ctl pause --map NAME [--to ce|fo] [--reason TEXT]\n"
	"\n"
	"Pauses map NAME: its apply workers stop consuming within DW_APPLY_STATE_CHECK_MS (default 5 s)\n"
	"and Kafka keeps the backlog; nothing is lost. `ctl resume` lets them catch up in order.\n"
	"The state is kept per map (table dw_map_state), so a pause holds both directions of the map;\n"
	"--to only checks that the map syncs towards that side.\n"
	"\n"
	"options:\n"
	"  --map NAME       the map (DW_MAPS_DIR/NAME.json; required)\n"
	"  --to ce|fo       the direction named by its target side (optional, see above)\n"
	"  --reason TEXT    why, shown by `ctl status` (at most 1000 bytes; default \"paused by operator\")\n"
	"  -h, --help       this text\n"
	"settings: DW_PG_DSN[_FILE], DW_MAPS_DIR\n"
	"exit status: 0 done, 1 failure, 2 usage error\n";

static const char resume_usage[] =
	"usage: ctl resume --map NAME [--to ce|fo]\n"
	"\n"
	"Sets map NAME running again (also after it was set failed by its error threshold). Its apply\n"
	"workers resume consuming within DW_APPLY_STATE_CHECK_MS and catch up from their committed\n"
	"offsets, in order. The state is per map: both directions resume; --to only checks the map\n"
	"syncs towards that side.\n"
	"\n"
	"options:\n"
	"  --map NAME       the map (required)\n"
	"  --to ce|fo       the direction named by its target side (optional)\n"
	"  -h, --help       this text\n"
	"settings: DW_PG_DSN[_FILE], DW_MAPS_DIR\n"
	"exit status: 0 done, 1 failure, 2 usage error\n";

static int set_state(int argc, char **argv, const struct config_common *cfg, int pause)
{
	static const struct option longopts[] = {
		{ "map", required_argument, NULL, 'm' },
		{ "to", required_argument, NULL, 't' },
		{ "reason", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	const char *map = NULL, *to = NULL, *reason = NULL;
	const char *cmd = pause ? "pause" : "resume";
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'm': map = optarg; break;
		case 't': to = optarg; break;
		case 'r':
			if (!pause) {
				fprintf(stderr, "ctl resume: --reason is for pause\n");
				return 2;
			}
			reason = optarg;
			break;
		default:
			fprintf(stderr, "ctl %s: see `ctl %s --help`\n", cmd, cmd);
			return 2;
		}
	}
	if (optind < argc || !map) {
		fprintf(stderr, "ctl %s: %s\n", cmd, !map ? "--map NAME is required" : "unexpected argument");
		return 2;
	}
	if (to && strcmp(to, "ce") != 0 && strcmp(to, "fo") != 0) {
		fprintf(stderr, "ctl %s: --to must be ce or fo, not '%s'\n", cmd, to);
		return 2;
	}
	if (reason && strlen(reason) > PAUSE_REASON_MAX) {
		fprintf(stderr, "ctl pause: --reason is longer than %d bytes\n", PAUSE_REASON_MAX);
		return 2;
	}
	char err[1024];
	struct ops_target *t = NULL;
	size_t n = 0;
	PGconn *pg = NULL;
	struct applystate *st = NULL;
	int rc = 1;
	if (ops_targets(cfg, map, to, &t, &n, err, sizeof(err)) != 0 || n == 0) {
		fprintf(stderr, "ctl %s: %s\n", cmd, n == 0 && t ? "the map syncs in no direction" : err);
		goto out;
	}
	struct store_opts so = { .application_name = "dw-ctl" };
	if (!cfg->pg_dsn) {
		fprintf(stderr, "ctl %s: DW_PG_DSN is not set\n", cmd);
		goto out;
	}
	if (store_connect(cfg->pg_dsn, &so, &pg, err, sizeof(err)) != 0 ||
	    applystate_new(pg, t[0].map, t[0].to, &st, err, sizeof(err)) != 0 ||
	    applystate_map_set(st, pause ? APPLYSTATE_MAP_PAUSED : APPLYSTATE_MAP_RUNNING,
			       pause ? (reason ? reason : "paused by operator") : NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "ctl %s: postgresql: %s\n", cmd, err);
		goto out;
	}
	log_info(pause ? "map paused" : "map resumed", "map", map, "reason", reason ? reason : "");
	printf("map %s: %s (every direction of the map)\n", map, pause ? "paused" : "running");
	rc = 0;
out:
	applystate_free(st);
	store_close(pg);
	free(t);
	return rc;
}

static int run_pause(int argc, char **argv, const struct config_common *cfg)
{
	return set_state(argc, argv, cfg, 1);
}

static int run_resume(int argc, char **argv, const struct config_common *cfg)
{
	return set_state(argc, argv, cfg, 0);
}

const struct ctl_command ctl_pause_command = {
	.name = "pause",
	.summary = "pause a map: its apply workers stop consuming, Kafka keeps the backlog",
	.usage = pause_usage,
	.run = run_pause,
};

const struct ctl_command ctl_resume_command = {
	.name = "resume",
	.summary = "resume a paused (or failed) map: its workers catch up in order",
	.usage = resume_usage,
	.run = run_resume,
};
