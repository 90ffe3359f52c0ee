/*
 * election.h
 *		The election state machine: one node's lease, its key in the queue,
 *		the watch on its predecessor, and what it publishes to backends.
 */
#ifndef LEADER_ELECTION_ELECTION_H
#define LEADER_ELECTION_ELECTION_H

#include "etcd_client.h"

typedef struct ElectionConfig
{
	char		prefix[LE_KEY_LEN];
	char		node_name[LE_NAME_LEN];
	int			lease_ttl_s;
	int			request_timeout_ms;
} ElectionConfig;

typedef struct Election Election;

extern Election *election_create(MemoryContext context, EtcdClient *client,
								 const ElectionConfig *config);

/* New settings; leaves and rejoins if the election itself changed. */
extern void election_configure(Election *e, const ElectionConfig *config);

/* Starts whatever is due (grant, renewal, campaign, look) and publishes. */
extern void election_step(Election *e);

/*
 * Handles finished requests and watch messages after a wait; the
 * election_step() that follows publishes the result.
 */
extern void election_process(Election *e);

/* Milliseconds until election_step() has something to do, or -1. */
extern long election_next_timeout_ms(Election *e);

/*
 * A backend asked to resign: stop leading, delete the key (compared by
 * create revision), revoke the lease and rejoin at the tail with a new one.
 * request_id is answered in shared memory once the key is deleted.
 */
extern void election_resign(Election *e, uint32 request_id);

/*
 * Leaves the election for good: stops claiming leadership in shared memory
 * first, then deletes the key and revokes the lease, waiting at most the
 * request timeout for etcd to confirm.
 */
extern void election_shutdown(Election *e, const char *reason);

#endif
