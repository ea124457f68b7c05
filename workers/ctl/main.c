/* ctl: the operator's tool. main() only dispatches; each command lives in its own file. */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "log.h"

static const struct ctl_command *const commands[] = {
	&ctl_migrate_command,
	&ctl_topics_command,
	&ctl_validate_maps_command,
	&ctl_initial_sync_command,
	&ctl_status_command,
	&ctl_pause_command,
	&ctl_resume_command,
	&ctl_replay_command,
	&ctl_dlq_command,
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
	fprintf(out, "usage: ctl COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(out, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
	fprintf(out, "\n`ctl COMMAND --help` describes a command. Settings come from the environment\n"
		     "(DW_KAFKA_BROKERS, DW_PG_DSN or DW_PG_DSN_FILE, DW_TOPIC_PREFIX, ...; see README.md).\n");
}

static int wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const struct ctl_command *cmd = NULL;
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(argv[1], commands[i]->name) == 0)
			cmd = commands[i];
	if (!cmd) {
		fprintf(stderr, "ctl: unknown command '%s'\n\n", argv[1]);
		usage(stderr);
		return 2;
	}
	if (wants_help(argc - 1, argv + 1)) {
		fputs(cmd->usage, stdout);
		return 0;
	}

	log_init("ctl", LOG_INFO);
	struct config_common cfg;
	char err[512];
	if (config_common_load(&cfg, err, sizeof(err)) != 0) {
		log_error("configuration invalid", "reason", err);
		return 1;
	}
	log_init("ctl", (enum log_level)cfg.log_level);
	int rc = cmd->run(argc - 1, argv + 1, &cfg);
	config_common_free(&cfg);
	return rc;
}
