#ifndef DW_HARNESS_H
#define DW_HARNESS_H

/*
 * Helpers for the cmocka suites. Integration suites read the stack's settings from the
 * environment that tests/run.sh exports (DW_KAFKA_BROKERS, DW_PG_DSN, DW_BUILD, DW_STATE_DIR).
 * Include <cmocka.h> (with its prerequisites) before this header.
 */

/* The variable's value; fails the current test with a clear message when it is unset. */
const char *harness_env(const char *name);

/* A name unique to this process and call ("<prefix>-<pid>-<ms>-<n>"); caller frees. */
char *harness_unique(const char *prefix);

/* Milliseconds from a monotonic clock. */
long long harness_now_ms(void);

/* Path of a built program (DW_BUILD/bin/<name>), in a static buffer. */
const char *harness_bin(const char *name);

#endif
