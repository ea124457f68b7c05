/* Pruning the idempotency keys of one map and target (DESIGN section 6). */
#include "apply.h"

#include <stdio.h>

#include "applystate.h"
#include "log.h"

enum { PRUNE_CHUNK = 5000, PRUNE_CHUNKS_PER_CALL = 20 };

void apply_prune(struct apply *a)
{
	long long now = apply_now_ms();
	if (now < a->next_prune_ms)
		return;
	a->next_prune_ms = now + a->prune_interval_ms;
	long total = 0, got = PRUNE_CHUNK;
	char err[512];
	for (int i = 0; i < PRUNE_CHUNKS_PER_CALL && got == PRUNE_CHUNK && !*a->stop; i++) {
		if (applystate_prune_applied(a->state, a->applied_retention_ms, PRUNE_CHUNK, &got, err, sizeof(err)) != 0) {
			log_warn("idempotency keys not pruned; tried again later", "map", a->map->name, "to", a->to_name,
				 "error", err);
			return;
		}
		total += got;
	}
	if (got == PRUNE_CHUNK)
		a->next_prune_ms = now; /* more are due: go on at the next round of the loop */
	if (total > 0) {
		char n[24];
		snprintf(n, sizeof(n), "%ld", total);
		log_info("idempotency keys pruned", "map", a->map->name, "to", a->to_name, "rows", n);
	}
}
