#ifndef DW_DEMO_DSETUP_H
#define DW_DEMO_DSETUP_H

/*
 * The demo's set-up commands, each reading DW_MAPS_DIR (default schemas/maps) and the emulator
 * schemas in DW_DEMO_EMU_SCHEMAS (default tests/emulators/schemas). Both print what failed on
 * stderr and return a process exit status (0 done, 1 failed).
 */

/* Prints the plan (dplan_print) for the maps. */
int dsetup_plan_main(void);

/* Registers, on each emulator, a webhook (CE: WebhookKey auth, ?code=) or data-event endpoint (FO:
 * header auth, x-dw-webhook-key) for Create/Update/Delete of every captured entity, pointing at
 * ce_url / fo_url, with the key in DW_DEMO_HOOK_KEY. Earlier registrations are removed first. */
int dsetup_hooks_main(const char *ce_url, const char *fo_url);

#endif
