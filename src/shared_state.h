/*
 * shared_state.h
 *		The election state the worker publishes for backends.
 *
 * Plain data only: no pointers, no file descriptors.  The worker is the only
 * writer.  The leadership deadline is an atomic so that leader_is_primary()
 * is a single atomic read plus a clock read.
 */
#ifndef LEADER_ELECTION_SHARED_STATE_H
#define LEADER_ELECTION_SHARED_STATE_H

#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

#define LE_NAME_LEN		256		/* node names (etcd values), truncated */
#define LE_KEY_LEN		320		/* prefix + "/" + 16 hex digits */
#define LE_URL_LEN		256
#define LE_ERROR_LEN	512

typedef enum LeaderRole
{
	LE_ROLE_DISCONNECTED,		/* no lease or no place in the queue */
	LE_ROLE_FOLLOWER,			/* queued behind another candidate */
	LE_ROLE_LEADER				/* first in the queue, lease valid */
} LeaderRole;

typedef struct LeaderShared
{
	/*
	 * Monotonic microseconds (le_monotonic_us) until which this node may act
	 * as leader; 0 when it does not lead.  The worker clears it before any
	 * other sign of stepping down.
	 */
	pg_atomic_uint64 valid_until_us;

	/* Bumped by leader_resign(); the worker answers through resigns_done. */
	pg_atomic_uint32 resign_requests;

	/* Broadcast whenever the role changes or a resign request is served. */
	ConditionVariable changed;

	LWLock		lock;			/* guards everything below */
	int			worker_procno;	/* for SetLatch; -1 while no worker runs */
	uint32		resigns_done;
	LeaderRole	role;
	TimestampTz role_since;
	char		node_name[LE_NAME_LEN];
	bool		leader_known;
	char		leader_name[LE_NAME_LEN];
	int64		fencing_token;	/* create revision of the leader's key */
	int			queue_position; /* -1 when not queued */
	int64		lease_id;		/* 0 when none */
	int			lease_ttl;		/* seconds, as granted by etcd */
	char		own_key[LE_KEY_LEN];
	int64		own_create_revision;
	char		endpoint[LE_URL_LEN];
	char		last_error[LE_ERROR_LEN];	/* empty when healthy */
} LeaderShared;

/* NULL unless the library was preloaded (and shared memory set up). */
extern LeaderShared *le_shared;

extern void le_shmem_request(void);
extern void le_shmem_startup(void);
extern const char *le_role_name(LeaderRole role);

/* CLOCK_MONOTONIC in microseconds: one vDSO call, no system call. */
extern uint64 le_monotonic_us(void);

/* True while this node holds valid leadership: atomic read + clock read. */
static inline bool
le_is_leader_now(void)
{
	uint64		until;

	if (le_shared == NULL)
		return false;
	until = pg_atomic_read_u64(&le_shared->valid_until_us);
	return until != 0 && le_monotonic_us() < until;
}

#endif
