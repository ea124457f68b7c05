#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *harness_env(const char *name)
{
	const char *v = getenv(name);
	if (!v || !*v)
		fail_msg("%s is not set: run this suite through tests/run.sh (make test)", name);
	return v;
}

char *harness_unique(const char *prefix)
{
	static unsigned counter;
	char buf[256];
	snprintf(buf, sizeof(buf), "%s-%d-%lld-%u", prefix, (int)getpid(), harness_now_ms(), counter++);
	char *s = strdup(buf);
	assert_non_null(s);
	return s;
}

long long harness_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *harness_bin(const char *name)
{
	static char path[1024];
	const char *build = getenv("DW_BUILD");
	snprintf(path, sizeof(path), "%s/bin/%s", build && *build ? build : "build/release", name);
	return path;
}

void harness_exec(const char *wrapper_env, const char *bin, const char *const *args)
{
	const char *wrap = wrapper_env ? getenv(wrapper_env) : NULL;
	char *words = wrap && *wrap ? strdup(wrap) : NULL;
	const char *argv[64];
	size_t n = 0;
	char *save = NULL;
	for (char *w = words ? strtok_r(words, " \t", &save) : NULL; w && n < 32; w = strtok_r(NULL, " \t", &save))
		argv[n++] = w;
	argv[n++] = bin;
	for (size_t i = 0; args[i] && n < sizeof(argv) / sizeof(argv[0]) - 1; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	execvp(argv[0], (char *const *)argv);
	free(words);
}
