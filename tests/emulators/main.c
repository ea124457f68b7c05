/*
 * dw-emulator: a stand-in for the Dataverse Web API (--flavour ce) or the FO OData service
 * (--flavour fo) for tests and the local demo. See tests/emulators/README.md ("## Running").
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "api.h"
#include "auth.h"
#include "ce.h"
#include "config.h"
#include "emu.h"
#include "estore.h"
#include "fo.h"
#include "throttle.h"
#include "log.h"
#include "notify.h"
#include "schema.h"
#include "server.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	if (stop_requested)
		_exit(1); /* second signal: leave at once */
	stop_requested = 1;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: dw-emulator --flavour ce|fo --port N [--schema FILE] [--db NAME] [--base-url URL]\n"
		"                   [--client-id ID] [--token-ttl SECONDS] [--pool N] [--body-cap BYTES]\n"
		"  PostgreSQL: DW_PG_DSN[_FILE]; client secret: DW_EMU_CLIENT_SECRET[_FILE] (default \"secret\")\n");
}

static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (end == s || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	const char *flavour = NULL, *schema_path = NULL, *db = NULL, *base_url = NULL, *client_id = NULL;
	long port = 0, ttl = 3600, pool = 16, body_cap = 64L * 1024 * 1024;
	char err[1024];
	char *dsn = NULL, *secret = NULL, *lvl = NULL;
	struct schema *schema = NULL;
	struct estore *store = NULL;
	struct notify *notify = NULL;
	struct auth *auth = NULL;
	struct throttle *limits = NULL;
	struct server *srv = NULL;
	int rc = 1;

	static const struct option opts[] = {
		{"flavour", required_argument, NULL, 'f'}, {"port", required_argument, NULL, 'p'},
		{"schema", required_argument, NULL, 's'},  {"db", required_argument, NULL, 'd'},
		{"base-url", required_argument, NULL, 'b'}, {"client-id", required_argument, NULL, 'c'},
		{"token-ttl", required_argument, NULL, 't'}, {"pool", required_argument, NULL, 'P'},
		{"body-cap", required_argument, NULL, 'B'}, {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'f': flavour = optarg; break;
		case 's': schema_path = optarg; break;
		case 'd': db = optarg; break;
		case 'b': base_url = optarg; break;
		case 'c': client_id = optarg; break;
		case 'p':
			if (parse_long(optarg, 1, 65535, &port) < 0) { usage(); return 2; }
			break;
		case 't':
			if (parse_long(optarg, 1, 86400, &ttl) < 0) { usage(); return 2; }
			break;
		case 'P':
			if (parse_long(optarg, 1, 256, &pool) < 0) { usage(); return 2; }
			break;
		case 'B':
			if (parse_long(optarg, 1024, 1024L * 1024 * 1024, &body_cap) < 0) { usage(); return 2; }
			break;
		default: usage(); return 2;
		}
	}
	if (!flavour || (strcmp(flavour, "ce") != 0 && strcmp(flavour, "fo") != 0) || port == 0) {
		usage();
		return 2;
	}
	int ce = strcmp(flavour, "ce") == 0;

	/* SIGTERM/SIGINT are blocked in every thread (the threads started below inherit the mask) and
	 * taken only by the main thread in sigsuspend(), so the stop flag always wakes it. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigset_t stop_set, old_set;
	sigemptyset(&stop_set);
	sigaddset(&stop_set, SIGTERM);
	sigaddset(&stop_set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_set, &old_set);

	log_init(ce ? "dw-emulator-ce" : "dw-emulator-fo", LOG_INFO);
	if (config_str("DW_LOG_LEVEL", "info", &lvl, err, sizeof(err)) == 0 && log_level_parse(lvl) >= 0)
		log_init(ce ? "dw-emulator-ce" : "dw-emulator-fo", (enum log_level)log_level_parse(lvl));
	free(lvl);
	if (config_secret("DW_PG_DSN", 1, &dsn, err, sizeof(err)) < 0 ||
	    config_secret("DW_EMU_CLIENT_SECRET", 0, &secret, err, sizeof(err)) < 0) {
		log_error("configuration", "error", err);
		goto out;
	}
	char default_schema[512], default_db[64], default_base[128];
	snprintf(default_schema, sizeof(default_schema), "tests/emulators/schemas/%s.json", flavour);
	snprintf(default_db, sizeof(default_db), "dw_emu_%s", flavour);
	snprintf(default_base, sizeof(default_base), "http://127.0.0.1:%ld", port);
	if (schema_load(schema_path ? schema_path : default_schema, &schema, err, sizeof(err)) < 0) {
		log_error("schema", "error", err);
		goto out;
	}
	if (estore_open(dsn, db ? db : default_db, (int)pool, &store, err, sizeof(err)) < 0) {
		log_error("store", "error", err);
		goto out;
	}
	struct api api = {
		.flavour = ce ? SCHEMA_CE : SCHEMA_FO,
		.schema = schema,
		.store = store,
		.prefix = ce ? "/api/data/v9.2/" : "/data/",
		.max_body = (size_t)body_cap,
		.max_page = ce ? 5000 : 10000,
	};
	snprintf(api.base_url, sizeof(api.base_url), "%s", base_url ? base_url : default_base);
	struct notify_options nopt = {
		.schema = schema,
		.organization = api.base_url + (strncmp(api.base_url, "http://", 7) == 0 ? 7 : 0),
		.organization_name = "emulator",
	};
	if (notify_new(&nopt, &notify, err, sizeof(err)) < 0) {
		/* The API works without webhooks; say so and go on. */
		log_warn("webhooks and data events disabled", "error", err);
		notify = NULL;
	}
	api.notify = notify;
	auth = auth_new(client_id ? client_id : "dw-emulator", secret ? secret : "secret", ttl);
	limits = throttle_new(flavour);
	if (!auth || !limits) {
		log_error("out of memory");
		goto out;
	}
	struct emu_router router = {
		.flavour = flavour,
		.api = &api,
		.handler = ce ? ce_handle : fo_handle,
		.auth = auth,
		.limits = limits,
	};
	router.admin.api = &api;
	router.admin.exec = ce ? ce_exec : fo_exec;
	router.admin.auth = auth;
	router.admin.limits = limits;
	router.admin.requests = &router.requests;

	struct server_config scfg = {
		.port = (int)port,
		.body_cap = (size_t)body_cap,
		.handler = emu_dispatch,
		.handler_ctx = &router,
	};
	srv = server_start(&scfg, err, sizeof(err));
	if (!srv) {
		log_error("server", "error", err);
		goto out;
	}
	char portbuf[16];
	snprintf(portbuf, sizeof(portbuf), "%ld", port);
	log_info("listening", "flavour", flavour, "port", portbuf, "base_url", api.base_url);
	while (!stop_requested)
		sigsuspend(&old_set);
	/* From here a second signal ends the process at once (see on_signal). */
	pthread_sigmask(SIG_SETMASK, &old_set, NULL);
	log_info("stopping");
	rc = 0;
out:
	server_stop(srv);
	notify_free(notify);
	throttle_free(limits);
	auth_free(auth);
	estore_close(store);
	schema_free(schema);
	free(dsn);
	free(secret);
	return rc;
}
