/*
 * fence.h
 *		The write fence: hooks that refuse writes on a node that does not lead.
 */
#ifndef LEADER_ELECTION_FENCE_H
#define LEADER_ELECTION_FENCE_H

extern bool le_fence_writes;
extern bool le_fence_bypass;

/*
 * Whether this process is one the fence acts on (fence_writes on, a client
 * backend, walsender or another extension's worker, not in recovery).
 */
extern bool le_fence_applies(void);

/* Whether the fence applies here and the node does not lead: writes are refused. */
extern bool le_fence_node_fenced(void);

/* From _PG_init, while shared_preload_libraries is processed. */
extern void le_fence_install(void);

#endif
