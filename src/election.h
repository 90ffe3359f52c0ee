/*
 * election.h
 *		The election state machine: one node's lease, its key in the queue,
 *		the watch on its predecessor, and what it publishes to backends.
 */
#ifndef LEADER_ELECTION_ELECTION_H
#define LEADER_ELECTION_ELECTION_H

#include "utils/palloc.h"

#include "cluster_record.h"
#include "shared_state.h"

typedef struct EtcdClient EtcdClient;

typedef struct ElectionConfig
{
	char		prefix[LE_KEY_LEN];
	char		node_name[LE_NAME_LEN];
	int			lease_ttl_s;
	int			request_timeout_ms;
	bool		candidate;
	int64		max_lag_bytes;
	int			switchover_timeout_ms;
	SyncMode	sync_mode;
	int			sync_node_count;
	EtcdEndpoints endpoints;
} ElectionConfig;

typedef struct Election Election;

extern Election *election_create(MemoryContext context, EtcdClient *client,
								 const ElectionConfig *config);

/*
 * New settings (the endpoints included: the election hands them to the
 * client when it may).  A change of prefix, of node name, of lease TTL or
 * of etcd cluster (an endpoint list that shares no endpoint with the old
 * one) makes the node leave and rejoin.  The leader of a replicated cluster
 * moves the cluster instead: it records in the old election that the
 * cluster moved, so that nobody takes over there, and may then stand in the
 * new one without a record.  A handover under way finishes first.
 */
extern void election_configure(Election *e, const ElectionConfig *config);

/*
 * Starts whatever is due now (a renewal, or the current phase's request
 * after a backoff) and publishes the node's view to shared memory.
 */
extern void election_step(Election *e);

/*
 * Handles every finished request and every watch message since the last
 * call, moving between phases; the election_step() that follows publishes.
 */
extern void election_process(Election *e);

/* Milliseconds until election_step() has something to do, or -1. */
extern long election_next_timeout_ms(Election *e);

/*
 * A backend asked to resign (request_id from le_resign_requested()).  A
 * leader stops leading at once.  A replicated primary then waits, at most
 * switchover_timeout, until the next in line has flushed all its WAL; if it
 * does not, the request is answered with the reason and the node leads on.
 * Then it deletes its key (compared by create revision), revokes its lease
 * and rejoins at the tail with a new one; the request is answered once the
 * delete is answered.  A node that does not lead answers at once.
 */
extern void election_resign(Election *e, uint32 request_id);

/*
 * Leaves the election for good: stops claiming leadership in shared memory
 * first, lets a replicated primary's standbys catch up (if the postmaster
 * is alive, bounded by switchover_timeout), then deletes the key and
 * revokes the lease, waiting at most the request timeout for etcd to
 * confirm.  Never waits on the latch or on postmaster death, so it works
 * for an orphaned worker too.
 */
extern void election_shutdown(Election *e, const char *reason, bool postmaster_alive);

#endif
