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

/*
 * In a forked child: execs program `bin` with args (NULL-terminated, without argv[0]), behind the
 * words of environment variable wrapper_env when it is set (e.g. DW_TEST_APPLY_WRAPPER="valgrind
 * --leak-check=full --error-exitcode=1": `make valgrind`). Returns only when exec fails.
 */
void harness_exec(const char *wrapper_env, const char *bin, const char *const *args);

#endif
