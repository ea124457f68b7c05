/* capture: turns one side's changes into change events on Kafka (docs/capture.md). main() wires
 * the modules, runs the poll loop and shuts down in order. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "ce.h"
#include "config.h"
#include "fo.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "oauth.h"
#include "publish.h"
#include "capture_records.h"
#include "source.h"
#include "txn.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	if (stop_flag)
		_exit(1); /* second signal: exit at once */
	stop_flag = 1;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: capture --side ce|fo [--map NAME]... [--once]\n\n"
		     "Captures the changes of one side (Dataverse \"ce\" or Finance & Operations \"fo\") and\n"
		     "publishes them as change events to Kafka. The tables are those of the maps (--map NAME,\n"
		     "else every map in DW_MAPS_DIR, default schemas/maps) that carry changes from the side;\n"
		     "DW_CAPTURE_TABLES, when set, overrides them. --once polls every table one time and exits.\n"
		     "Settings come from the environment; see docs/capture.md.\n");
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static int metrics_setup(struct app *a, char *err, size_t errlen)
{
	static const char *const l_table_op[] = { "table", "op", NULL };
	static const char *const l_table[] = { "table", NULL };
	static const char *const l_outcome[] = { "outcome", NULL };
	static const double buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
	a->metrics = metrics_new();
	if (!a->metrics) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (metrics_counter_new(a->metrics, "dw_capture_events_total", "Events published (Kafka committed)",
				l_table_op, &a->m_events, err, errlen) != 0 ||
	    metrics_counter_new(a->metrics, "dw_capture_delivery_failures_total",
				"Events whose unit could not be published", l_table, &a->m_failures, err, errlen) != 0 ||
	    metrics_gauge_new(a->metrics, "dw_capture_poll_lag_seconds",
			      "Seconds since the last successful change-tracking poll of the table", l_table, &a->m_lag,
			      err, errlen) != 0 ||
	    metrics_counter_new(a->metrics, "dw_capture_webhook_total", "Webhook posts by outcome", l_outcome,
				&a->m_hooks, err, errlen) != 0 ||
	    metrics_histogram_new(a->metrics, "dw_capture_webhook_seconds",
				  "Webhook receipt to answer (Kafka commit or staging) latency", NULL, buckets,
				  sizeof(buckets) / sizeof(buckets[0]), &a->m_hook_s, err, errlen) != 0)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	const char *side_arg = NULL;
	const char *maps[APP_TABLES_MAX];
	size_t nmaps = 0;
	int once = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--side") == 0 && i + 1 < argc) {
			side_arg = argv[++i];
		} else if (strncmp(argv[i], "--side=", 7) == 0) {
			side_arg = argv[i] + 7;
		} else if (strcmp(argv[i], "--map") == 0 && i + 1 < argc && nmaps < APP_TABLES_MAX) {
			maps[nmaps++] = argv[++i];
		} else if (strcmp(argv[i], "--once") == 0) {
			once = 1;
		} else {
			fprintf(stderr, "capture: unknown argument '%s'\n\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	int side = side_arg ? event_side_parse(side_arg) : -1;
	if (side < 0) {
		fprintf(stderr, "capture: --side ce|fo is required\n\n");
		usage(stderr);
		return 2;
	}

	log_init("capture", LOG_INFO);
	struct config_common cfg;
	struct app a;
	struct oauth_config ocfg;
	struct oauth *oauth = NULL;
	struct httpd_config hcfg;
	char err[1024];
	int rc = 1;

	memset(&a, 0, sizeof(a));
	memset(&ocfg, 0, sizeof(ocfg));
	memset(&hcfg, 0, sizeof(hcfg));
	memset(&cfg, 0, sizeof(cfg));
	a.stop = &stop_flag;
	if (config_common_load(&cfg, err, sizeof(err)) != 0) {
		log_error("configuration invalid", "reason", err);
		return 1;
	}
	log_init("capture", (enum log_level)cfg.log_level);
	a.cfg = &cfg;
	if (app_settings_load((enum event_side)side, maps, nmaps, &a.set, err, sizeof(err)) != 0 ||
	    oauth_config_load(a.set.side_upper, &ocfg, err, sizeof(err)) != 0) {
		log_error("configuration invalid", "reason", err);
		goto out;
	}
	log_info("capturing tables", "from", a.set.tables_from, "tables", a.set.tables_list);
	if (a.set.nkeys == 0 && !once)
		log_warn("DW_CAPTURE_WEBHOOK_KEY is not set: every webhook post is answered 401");

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (capture_records_new(cfg.pg_dsn, 8, &a.rec, err, sizeof(err)) != 0) {
		log_error("PostgreSQL unavailable", "reason", err);
		goto out;
	}
	if (oauth_new(&ocfg, NULL, &oauth, err, sizeof(err)) != 0 ||
	    source_new(a.set.service_root, oauth, &a.src, err, sizeof(err)) != 0 ||
	    metrics_setup(&a, err, sizeof(err)) != 0) {
		log_error("start-up failed", "reason", err);
		goto out;
	}
	struct publish_opts po = {
		.transactional_id = a.set.transactional_id,
		.client_id = "dw-capture",
		.txn_timeout_ms = (int)a.set.txn_timeout_ms,
	};
	int prc = publish_new(&cfg, &po, &a.pub, err, sizeof(err));
	if (prc != 0) {
		log_error("Kafka producer unavailable", "reason", err);
		rc = prc == PUBLISH_ERR_FATAL ? 3 : 1;
		goto out;
	}
	if (once || a.set.nkeys == 0)
		a.set.delta_grace_ms = 0; /* no webhook can come: change tracking publishes at once */
	if (side == EVENT_SIDE_CE && ce_hold_new(&a.ce_hold) != 0) {
		log_error("start-up failed", "reason", "out of memory");
		goto out;
	}
	if (txn_new(&a, &a.txn, err, sizeof(err)) != 0) {
		log_error("start-up failed", "reason", err);
		goto out;
	}
	if (!once) {
		struct httpd_opts ho;
		memset(&ho, 0, sizeof(ho));
		if (httpd_config_load(&hcfg, err, sizeof(err)) != 0) {
			log_error("configuration invalid", "reason", err);
			goto out;
		}
		ho.addr = hcfg.addr;
		ho.port = hcfg.port;
		ho.metrics = a.metrics;
		ho.max_connections = 256;
		ho.liveness_timeout_ms = 300000; /* a poll round blocked by a Kafka outage is not a dead process */
		const char *path = side == EVENT_SIDE_CE ? "/webhook/ce" : "/webhook/fo";
		if (httpd_new(&ho, &a.httpd, err, sizeof(err)) != 0 ||
		    httpd_route(a.httpd, "POST", path, (size_t)a.set.body_cap,
				side == EVENT_SIDE_CE ? ce_webhook : fo_webhook, &a, err, sizeof(err)) != 0 ||
		    httpd_start(a.httpd, err, sizeof(err)) != 0) {
			log_error("HTTP server failed", "reason", err);
			goto out;
		}
		char port[16];
		snprintf(port, sizeof(port), "%u", httpd_port(a.httpd));
		log_info("listening", "port", port, "path", path, "side", a.set.side_name);
	}

	int polls = side == EVENT_SIDE_CE ? a.set.delta : fo_polls(&a);
	int (*poll_round)(struct app *) = side == EVENT_SIDE_CE ? ce_poll_round : fo_poll_round;
	if (once) {
		rc = polls && poll_round(&a) != 0 ? 1 : 0;
		goto out;
	}
	if (!polls)
		httpd_set_ready(a.httpd, 1, NULL);
	long long since_ok = 0;
	int first = 1;
	while (!stop_flag) {
		httpd_heartbeat(a.httpd);
		if (publish_fatal(a.pub, err, sizeof(err))) {
			log_error("Kafka producer fatal error; stopping", "reason", err);
			httpd_set_alive(a.httpd, 0);
			rc = 3;
			goto out;
		}
		if (polls) {
			long long t0 = time(NULL);
			int ok = poll_round(&a) == 0;
			if (ok) {
				since_ok = t0;
				if (first) {
					httpd_set_ready(a.httpd, 1, NULL);
					first = 0;
				}
			} else if (first) {
				httpd_set_ready(a.httpd, 0, "first change-tracking poll failed; retrying");
			}
			if (since_ok) {
				for (size_t i = 0; i < a.set.ntables; i++) {
					const char *lv[] = { side == EVENT_SIDE_CE ? a.set.ce_tables[i].logical
										   : a.set.fo_tables[i].set };
					metrics_gauge_set(a.m_lag, lv, ok ? 0 : (double)(time(NULL) - since_ok));
				}
			}
		}
		for (long long waited = 0; waited < a.set.poll_ms && !stop_flag; waited += 50) {
			sleep_ms(50);
			if (waited % 1000 == 0)
				httpd_heartbeat(a.httpd);
		}
	}
	log_info("shutting down");
	rc = 0;
out:
	if (a.httpd) {
		httpd_set_ready(a.httpd, 0, "shutting down");
		httpd_stop(a.httpd); /* stop accepting; running handlers finish */
	}
	txn_free(a.txn);     /* staged transactions stay staged */
	ce_hold_free(a.ce_hold); /* held rows: their links were not checkpointed */
	publish_free(a.pub); /* flushes; nothing unconfirmed was checkpointed */
	source_free(a.src);
	oauth_free(oauth);
	oauth_config_free(&ocfg);
	capture_records_free(a.rec);
	httpd_free(a.httpd);
	httpd_config_free(&hcfg);
	metrics_free(a.metrics);
	app_settings_free(&a.set);
	config_common_free(&cfg);
	return rc;
}
