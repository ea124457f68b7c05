/* dw-demo: the demo's driver (docs/demo.md). main() only dispatches:
 *   dw-demo plan      shell assignments for deploy/demo/demo.sh (tables, topics, workers)
 *   dw-demo hooks CE_WEBHOOK_URL FO_WEBHOOK_URL   register webhooks / data events on the emulators
 *   dw-demo scenario  the scripted scenario and the per-map table
 *   dw-demo compare   every map compared on both sides, one line each */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "dsetup.h"
#include "dplan.h"
#include "dscenario.h"
#include "log.h"

int main(int argc, char **argv)
{
	log_init("dw-demo", LOG_WARN);
	if (argc == 2 && strcmp(argv[1], "plan") == 0)
		return dsetup_plan_main();
	if (argc == 4 && strcmp(argv[1], "hooks") == 0)
		return dsetup_hooks_main(argv[2], argv[3]);
	if (argc == 2 && strcmp(argv[1], "scenario") == 0) {
		const char *ctl = getenv("DW_DEMO_CTL");
		const char *headless = getenv("DW_DEMO_HEADLESS");
		int tap = headless && strcmp(headless, "1") == 0;
		struct dscn_opts o = { .colour = !tap && isatty(STDOUT_FILENO) && !getenv("NO_COLOR"), .tap = tap,
				       .ctl = ctl && *ctl ? ctl : "build/release/bin/ctl" };
		return dscn_run(&o);
	}
	if (argc == 2 && strcmp(argv[1], "compare") == 0) {
		struct dscn_opts o = { 0 };
		return dscn_compare(&o);
	}
	fprintf(stderr, "usage: dw-demo plan | hooks CE_WEBHOOK_URL FO_WEBHOOK_URL | scenario | compare\n");
	return 2;
}
