/* `ctl topics create`: the per-table topics, created or checked against what is asked. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "kafka.h"

#define DEFAULT_PARTITIONS 6
#define DEFAULT_REPLICATION 1
#define DEFAULT_RETENTION "7d"
#define MAX_PARTITIONS 10000
#define MAX_REPLICATION 32767
#define MAX_TABLES 256
#define ADMIN_TIMEOUT_MS 30000
#define TOPIC_MAX 256

static const char usage[] =
	"usage: ctl topics create [--partitions N] [--replication-factor N] [--retention DUR] [NAME...]\n"
	"\n"
	"Creates one Kafka topic per table, <DW_TOPIC_PREFIX>.<NAME>. NAME is <side>.<entity>: side ce\n"
	"or fo, entity [a-z0-9_]+ (e.g. ce.account, fo.customersv3). Without NAME, the comma-separated\n"
	"list in DW_TABLES is used. A topic that already exists with the same partition count and\n"
	"retention is reported as \"exists\" and is not an error; one with other settings is an error\n"
	"that names the topic, what it has and what was asked.\n"
	"\n"
	"options:\n"
	"  --partitions N           partitions per topic (default 6; the most apply replicas that\n"
	"                           can share a table)\n"
	"  --replication-factor N   replicas per partition (default 1, for a single-broker cluster;\n"
	"                           use 3 in production)\n"
	"  --retention DUR          how long Kafka keeps events, e.g. 36h, 7d (default 7d; units ms,\n"
	"                           s, m, h, d)\n"
	"  -h, --help               this text\n"
	"\n"
	"settings: DW_KAFKA_BROKERS, DW_TOPIC_PREFIX (default dw), DW_TABLES, DW_KAFKA_* (TLS, SASL)\n"
	"exit status: 0 done, 1 failed, 2 usage error\n";

/* A whole number in [min, max]; -1 with a message naming the option otherwise. */
static int parse_count(const char *opt, const char *text, long min, long max, int *out)
{
	char *end = NULL;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno || end == text || *end || v < min || v > max) {
		fprintf(stderr, "ctl topics create: %s must be a whole number from %ld to %ld, got '%s'\n", opt, min,
			max, text);
		return -1;
	}
	*out = (int)v;
	return 0;
}

/* Splits DW_TABLES (comma-separated, blanks around names ignored) into names[] pointing into
 * `list`, which is modified. Returns the count, or -1 when there are too many. */
static int split_tables(char *list, char **names, int max)
{
	int n = 0;
	char *p = list;
	while (*p) {
		char *comma = strchr(p, ',');
		char *end = comma ? comma : p + strlen(p);
		char *next = comma ? comma + 1 : end;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		*end = '\0';
		if (*p) {
			if (n == max)
				return -1;
			names[n++] = p;
		}
		p = next;
	}
	return n;
}

static int create(int argc, char **argv, const struct config_common *cfg)
{
	static const struct option longopts[] = {
		{ "partitions", required_argument, NULL, 'p' },
		{ "replication-factor", required_argument, NULL, 'r' },
		{ "retention", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	struct kafka_topic_spec want = { DEFAULT_PARTITIONS, DEFAULT_REPLICATION, 0 };
	const char *retention = DEFAULT_RETENTION;
	char err[1024];
	char *tables_env = NULL;
	char *names[MAX_TABLES];
	char (*topics)[TOPIC_MAX] = NULL;
	struct kafka_admin *admin = NULL;
	int n = 0, rc = 2, opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			if (parse_count("--partitions", optarg, 1, MAX_PARTITIONS, &want.partitions) != 0)
				goto out;
			break;
		case 'r':
			if (parse_count("--replication-factor", optarg, 1, MAX_REPLICATION,
					&want.replication_factor) != 0)
				goto out;
			break;
		case 't':
			retention = optarg;
			break;
		default:
			goto out;
		}
	}
	if (config_parse_duration_ms("--retention", retention, &want.retention_ms, err, sizeof(err)) != 0) {
		fprintf(stderr, "ctl topics create: %s\n", err);
		goto out;
	}
	if (want.retention_ms <= 0) {
		fprintf(stderr, "ctl topics create: --retention must be longer than 0, got '%s'\n", retention);
		goto out;
	}

	const char *source = "argument";
	if (optind < argc) {
		if (argc - optind > MAX_TABLES) {
			fprintf(stderr, "ctl topics create: at most %d names at once\n", MAX_TABLES);
			goto out;
		}
		for (int i = optind; i < argc; i++)
			names[n++] = argv[i];
	} else {
		if (config_str("DW_TABLES", NULL, &tables_env, err, sizeof(err)) != 0) {
			fprintf(stderr, "ctl topics create: %s\n", err);
			goto out;
		}
		n = tables_env ? split_tables(tables_env, names, MAX_TABLES) : 0;
		if (n < 0) {
			fprintf(stderr, "ctl topics create: DW_TABLES lists more than %d tables\n", MAX_TABLES);
			goto out;
		}
		if (n == 0) {
			fprintf(stderr, "ctl topics create: no table given: name them (e.g. ce.account) or set "
					"DW_TABLES (see ctl topics create --help)\n");
			goto out;
		}
		source = "DW_TABLES entry";
	}
	topics = calloc((size_t)n, sizeof(*topics));
	if (!topics) {
		fprintf(stderr, "ctl topics create: out of memory\n");
		rc = 1;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		if (kafka_table_topic(cfg->topic_prefix, names[i], topics[i], sizeof(topics[i]), err, sizeof(err)) != 0) {
			fprintf(stderr, "ctl topics create: bad %s: %s\n", source, err);
			goto out;
		}
	}

	rc = 1;
	if (kafka_admin_new(cfg, &admin, err, sizeof(err)) != 0) {
		fprintf(stderr, "ctl topics create: %s\n", err);
		goto out;
	}
	int failed = 0;
	for (int i = 0; i < n; i++) {
		enum kafka_topic_outcome outcome;
		if (kafka_topic_ensure(admin, topics[i], &want, ADMIN_TIMEOUT_MS, &outcome, err, sizeof(err)) != 0) {
			fprintf(stderr, "ctl topics create: %s\n", err);
			failed++;
			continue;
		}
		printf("%-7s %s (partitions %d, replication factor %d, retention.ms %lld)\n",
		       outcome == KAFKA_TOPIC_CREATED ? "created" : "exists", topics[i], want.partitions,
		       want.replication_factor, want.retention_ms);
	}
	rc = failed ? 1 : 0;
out:
	kafka_admin_free(admin);
	free(topics);
	free(tables_env);
	return rc;
}

static int run(int argc, char **argv, const struct config_common *cfg)
{
	if (argc < 2) {
		fprintf(stderr, "ctl topics: missing subcommand (create)\n\n%s", usage);
		return 2;
	}
	if (strcmp(argv[1], "create") == 0)
		return create(argc - 1, argv + 1, cfg);
	fprintf(stderr, "ctl topics: unknown subcommand '%s'\n\n%s", argv[1], usage);
	return 2;
}

const struct ctl_command ctl_topics_command = {
	.name = "topics",
	.summary = "create the per-table Kafka topics (ctl topics create --help)",
	.usage = usage,
	.run = run,
};
