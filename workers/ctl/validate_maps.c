/* `ctl validate-maps [DIR]`: loads every map file as the workers do and reports each. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "map.h"

#define DEFAULT_MAPS_DIR "schemas/maps"

static const char usage[] =
	"usage: ctl validate-maps [DIR]\n"
	"\n"
	"Loads and validates every map file (*.json) in DIR (default: DW_MAPS_DIR, else schemas/maps)\n"
	"with the same rules the apply worker uses at start-up (docs/maps.md), then checks the maps\n"
	"together: names unique, dependencies present and without cycles. Prints one line per map:\n"
	"  ok <name>: <ce entity set> <-> <fo entity set>, <direction>, <n> fields\n"
	"or, on stderr, the error as <file>: <json path>: <reason>.\n"
	"\n"
	"settings: DW_MAPS_DIR\n"
	"exit status: 0 all valid, 1 a map is invalid (or none found), 2 usage error\n";

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.json names in dir, sorted; *n set. NULL with a message on stderr on failure. */
static char **list_maps(const char *dir, size_t *n)
{
	*n = 0;
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "%s: cannot open directory: %s\n", dir, strerror(errno));
		return NULL;
	}
	char **names = calloc(MAP_MAPS_MAX, sizeof(*names));
	int ok = names != NULL;
	for (struct dirent *e; ok && (e = readdir(d)) != NULL;) {
		size_t len = strlen(e->d_name);
		if (len <= 5 || e->d_name[0] == '.' || strcmp(e->d_name + len - 5, ".json") != 0)
			continue;
		if (*n == MAP_MAPS_MAX) {
			fprintf(stderr, "%s: more than %d map files\n", dir, MAP_MAPS_MAX);
			ok = 0;
		} else if (!(names[*n] = strdup(e->d_name))) {
			ok = 0;
		} else {
			(*n)++;
		}
	}
	closedir(d);
	if (!ok) {
		for (size_t i = 0; names && i < *n; i++)
			free(names[i]);
		free(names);
		return NULL;
	}
	qsort(names, *n, sizeof(*names), cmp_str);
	return names;
}

static int run(int argc, char **argv, const struct config_common *cfg)
{
	(void)cfg;
	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		fprintf(stderr, "ctl validate-maps: expected at most one argument, a directory\n%s", usage);
		return 2;
	}
	const char *dir = argc == 2 ? argv[1] : getenv("DW_MAPS_DIR");
	if (!dir || !*dir)
		dir = DEFAULT_MAPS_DIR;

	size_t n = 0;
	char **names = list_maps(dir, &n);
	if (!names)
		return 1;
	if (n == 0) {
		fprintf(stderr, "%s: no map files (*.json)\n", dir);
		free(names);
		return 1;
	}
	struct map **maps = calloc(n, sizeof(*maps));
	size_t nmaps = 0, bad = 0;
	int set_bad = 0;
	int rc = 1;
	if (!maps) {
		fprintf(stderr, "out of memory\n");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		char path[4096], err[1024];
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path)) {
			fprintf(stderr, "%s/%s: path too long\n", dir, names[i]);
			bad++;
			continue;
		}
		struct map *m = NULL;
		if (map_load_file(path, &m, err, sizeof(err)) != 0) {
			fprintf(stderr, "%s\n", err);
			bad++;
			continue;
		}
		printf("ok %s: %s <-> %s, %s, %zu fields\n", m->name, m->ce.entity_set, m->fo.entity_set,
		       map_direction_name(m->direction), m->nfields);
		maps[nmaps++] = m;
	}
	if (bad == 0) {
		struct map_set *set = NULL;
		char err[1024];
		int src = map_set_new(maps, nmaps, &set, err, sizeof(err));
		nmaps = 0; /* owned by the set or freed */
		if (src != 0) {
			fprintf(stderr, "%s\n", err);
			set_bad = 1;
		}
		map_set_free(set);
	}
	if (bad) {
		fprintf(stderr, "%zu of %zu map files invalid\n", bad, n);
	} else if (set_bad) {
		fprintf(stderr, "the %zu maps are each valid but do not fit together\n", n);
	} else {
		printf("%zu maps valid\n", n);
		rc = 0;
	}
out:
	for (size_t i = 0; i < nmaps; i++)
		map_free(maps[i]);
	free(maps);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	fflush(stdout);
	return rc;
}

const struct ctl_command ctl_validate_maps_command = {
	.name = "validate-maps",
	.summary = "check the map files (schemas/maps or DIR)",
	.usage = usage,
	.run = run,
};
