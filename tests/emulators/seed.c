#include "seed.h"

#include <stdio.h>
#include <string.h>

void seed_options_init(struct seed_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->per_table = 10;
	opt->seed = 1;
	opt->side = SEED_SIDE_BOTH;
}

int seed_parse_side(const char *text, enum seed_side *out)
{
	if (text == NULL)
		return -1;
	if (strcmp(text, "ce") == 0)
		*out = SEED_SIDE_CE;
	else if (strcmp(text, "fo") == 0)
		*out = SEED_SIDE_FO;
	else if (strcmp(text, "both") == 0)
		*out = SEED_SIDE_BOTH;
	else
		return -1;
	return 0;
}

int seed_generate(const struct seed_options *opt, seed_emit_fn emit, void *ctx, char *errbuf, size_t errlen)
{
	(void)opt;
	(void)emit;
	(void)ctx;
	snprintf(errbuf, errlen, "seed: generator not built yet");
	return -1;
}
