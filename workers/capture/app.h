#ifndef DW_CAPTURE_APP_H
#define DW_CAPTURE_APP_H

#include <signal.h>
#include <stddef.h>

#include "capture_ce.h"
#include "capture_fo.h"
#include "config.h"
#include "event.h"

/* The capture program's wiring: settings (app_settings_*), the modules built from them, and the
 * metric families. Built by main(), passed by pointer to the side loops and webhook handlers. */

#define APP_TABLES_MAX 64
#define APP_KEYS_MAX 8

struct app_settings {
	enum event_side side;
	const char *side_name;  /* "ce" / "fo" */
	const char *side_upper; /* "CE" / "FO" (env names) */
	char *env;              /* DW_ENV */
	char *url;              /* DW_<SIDE>_URL */
	char *service_root;     /* <url>/api/data/v9.2/ or <url>/data/ */
	char *own_user;         /* DW_<SIDE>_OWN_USER_ID or NULL */
	struct capture_ce_table ce_tables[APP_TABLES_MAX];
	struct capture_fo_table fo_tables[APP_TABLES_MAX];
	size_t ntables;
	long long poll_ms;
	int delta;              /* CE: poll change tracking */
	long long delta_grace_ms; /* CE: recent rows wait this long for their webhooks (0: never) */
	char *keys[APP_KEYS_MAX]; /* webhook keys (secrets) */
	size_t nkeys;
	char *key_header;       /* header carrying the key */
	long long body_cap;
	long long settle_ms;
	long long txn_timeout_ms;
	char *transactional_id;
	char tables_from[320];  /* "DW_CAPTURE_TABLES" or "maps in <dir>" (startup log) */
	char tables_list[4096]; /* the tables, DW_CAPTURE_TABLES syntax (startup log; may be cut) */
};

/* Loads every capture setting for `side` from the environment (docs/capture.md). The tables come
 * from DW_CAPTURE_TABLES when it is set (override), else from the maps: maps[0..nmaps) (names in
 * DW_MAPS_DIR, default schemas/maps) or, when nmaps is 0, every map there, keeping those whose
 * direction carries changes from this side. Returns 0, or -1 with errbuf naming the variable or map;
 * *s is then cleared. */
int app_settings_load(enum event_side side, const char *const *maps, size_t nmaps, struct app_settings *s,
		      char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees what app_settings_load allocated; NULL-safe. */
void app_settings_free(struct app_settings *s);

struct publish;
struct publish_unit;
struct capture_records;
struct source;
struct txn;
struct ce_hold;
struct metrics;
struct metrics_family;
struct httpd;

struct app {
	const struct config_common *cfg;
	struct app_settings set;
	struct publish *pub;
	struct capture_records *rec;
	struct source *src;
	struct txn *txn;
	struct ce_hold *ce_hold; /* CE change tracking state between rounds */
	struct metrics *metrics;
	struct httpd *httpd;
	struct metrics_family *m_events;   /* counter {table,op} */
	struct metrics_family *m_failures; /* counter {table} */
	struct metrics_family *m_lag;      /* gauge {table} */
	struct metrics_family *m_hooks;    /* counter {outcome} */
	struct metrics_family *m_hook_s;   /* histogram */
	volatile sig_atomic_t *stop;       /* set by the signal handler */
};

/*
 * Publishes n events (borrowed) as one unit and, once committed, records the CE create/update
 * events in the capture record table (alive[i] non-zero: clear a tombstone; may be NULL) and
 * counts them in the metrics. Returns 0, or a PUBLISH_ERR_* code with errbuf (delivery failures
 * counted).
 */
int app_publish(struct app *a, struct event *evs, size_t n, const int *alive, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* As app_publish, with the events added to u (borrowed), which may already hold other messages
 * (they go out in the same Kafka transaction). */
int app_publish_unit(struct app *a, struct publish_unit *u, struct event *evs, size_t n, const int *alive,
		     char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Records published CE create/update events (see app_publish); used by the transaction flusher. */
int app_confirm(struct app *a, const struct event *evs, size_t n, const int *alive, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Completes a delete skeleton: assigns the version and the full key from the record table, then
 * computes the id. The skeleton's source.version, when above 0, is the lowest version the delete
 * may get (a webhook pre-image's version + 1); completing an event twice gives the same result.
 * record_id: CE GUID or FO canonical key. Returns 0 or -1 with errbuf. */
int app_complete_delete(struct app *a, struct event *ev, const char *record_id, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Non-zero when key (from a webhook) matches one of the configured keys (constant time). */
int app_key_ok(const struct app *a, const char *key);

#endif
