#ifndef DW_DEMO_DSCENARIO_H
#define DW_DEMO_DSCENARIO_H

/*
 * The demo's scripted scenario (docs/demo.md), run against a stack where capture, the apply
 * workers and initial sync have been started (deploy/demo/demo.sh): it waits for initial sync to
 * settle, makes live edits on either side and shows each arriving on the other with its latency,
 * checks that a second initial sync rewrites nothing, and ends with a per-map table (rows on each
 * side, equal?, events applied, dead letters, p50/p99 latency of the live changes).
 *
 * Reads DW_CE_* / DW_FO_* (the two services), DW_MAPS_DIR (default schemas/maps),
 * DW_DEMO_STATE (the folder holding the "workers" file: one "<map> <to> <metrics port>" line per
 * apply worker) and DW_CAPTURE_TABLES (passed on to ctl initial-sync).
 */

struct dscn_opts {
	int colour;      /* ANSI colour (a terminal) */
	int tap;         /* checks also as TAP lines, "ok N - ..." / "not ok N - ..." (make test) */
	const char *ctl; /* path of the ctl program */
};

/* Runs the scenario, printing as it goes. Returns 0 when every step passed and every map ended
 * equal on both sides, 1 otherwise (what failed is printed). */
int dscn_run(const struct dscn_opts *o);

/* Compares every map on both sides now and prints one line per map (rows, keys on one side only,
 * rows that differ, the first difference). Returns 0 when all are equal, 1 otherwise. */
int dscn_compare(const struct dscn_opts *o);

#endif
