#ifndef DW_CTL_H
#define DW_CTL_H

#include "config.h"

/*
 * One `ctl` command. main.c prints `usage` for --help/-h (before any configuration is loaded),
 * loads the common configuration, then calls run() with argv[0] = the command name. run() parses
 * its own options (getopt_long), prints errors to stderr via the logger or plain text, and returns
 * the process exit status: 0 success, 1 failure, 2 usage error.
 */
struct ctl_command {
	const char *name;    /* "migrate", "topics" */
	const char *summary; /* one line for `ctl --help` */
	const char *usage;   /* full help text for `ctl NAME --help` */
	int (*run)(int argc, char **argv, const struct config_common *cfg);
};

extern const struct ctl_command ctl_migrate_command; /* migrate.c */
extern const struct ctl_command ctl_topics_command;  /* topics.c */
extern const struct ctl_command ctl_validate_maps_command; /* validate_maps.c */
extern const struct ctl_command ctl_initial_sync_command; /* initial_sync.c */
extern const struct ctl_command ctl_status_command; /* status.c */
extern const struct ctl_command ctl_pause_command;  /* pause.c */
extern const struct ctl_command ctl_resume_command; /* pause.c */
extern const struct ctl_command ctl_replay_command; /* replay.c */
extern const struct ctl_command ctl_dlq_command;    /* dlq.c */

#endif
