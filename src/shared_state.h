/*
 * shared_state.h
 *		The election state the worker publishes for backends, and the only
 *		operations that change it.
 *
 * shared_state.c is the only file that writes LeaderShared.  It holds plain
 * data only: no pointers, no file descriptors.
 *
 * Locking and ordering rules:
 *
 * - Leadership is decided by valid_until_us alone (le_is_leader_now()): an
 *   atomic holding the clock time until which this node may act as leader,
 *   0 when it does not lead.  Backends compare it with the clock themselves,
 *   so a frozen worker cannot keep its node leading.
 * - The leadership term (term, the fencing token of this node's current
 *   leadership, and term_since, when it began) changes only while
 *   valid_until_us is 0: term_since, then term, are written before the
 *   validity that claims them, so a backend that reads valid_until_us, then
 *   term, then term_since (le_leader_term_now()) never pairs a validity with
 *   an older term, nor a term with an older start.  A validity claimed
 *   after a time without one (0, or run out by the clock) begins a new term
 *   even with the same fencing token: the fence compares both.
 * - ship_until is how long walsenders may ship WAL as this node's leadership
 *   (wal_shipping.c): the worker moves it forward while it leads or hands
 *   over, and never back; it lapses by itself.
 * - Leadership is cleared first and claimed last.  A worker that stops
 *   leading zeroes valid_until_us before any other sign of it (a role change
 *   in the view, a key delete or a lease revoke sent to etcd); a worker that
 *   starts leading writes the view (leader, fencing token) first and sets
 *   valid_until_us after it, so a backend that sees leadership also sees the
 *   view that goes with it.
 * - Everything else (the view, the queue shown, the worker's procno,
 *   resigns_done and resign_error) is read and written under the LWLock.  resign_requests is
 *   an atomic counter that backends bump; see "The resign handshake" in
 *   shared_state.c.
 * - commits_in_flight counts the leader's transactions between their
 *   commit-time check and the end of their commit.  A backend bumps it
 *   before it reads the leadership deadline, and the worker clears the
 *   deadline before it reads the count (both full barriers): so once the
 *   worker has cleared leadership and seen the count at zero, no commit that
 *   passed the check is still to write its commit record.
 * - loop_turned_at is when the worker's loop last turned (an atomic, so
 *   that a frozen worker shows as one: the HTTP endpoint's /liveness), 0
 *   while no worker runs.
 * - Readers that never wait (the HTTP endpoint): the worker also bumps
 *   view_changes before and after it writes the view, the queue or
 *   role_since (odd while it writes), as PostgreSQL's backend status does
 *   with st_changecount; such a reader copies them without the LWLock and
 *   keeps the copy only if view_changes was even and the same before and
 *   after.  So a reader stopped in the middle of its copy (SIGSTOP, swapped
 *   out) holds nothing the worker waits for.
 * - recorded_wal_end is the WAL position the cluster record in etcd holds
 *   for this node while it leads a replicated cluster (0: no bound); the
 *   worker moves it when etcd confirms a write of the record, and backends
 *   that wait for it (wal_bound.c) wake the worker with le_wake_worker().
 * - The condition variable is broadcast whenever the role changes, a resign
 *   request is answered, or recorded_wal_end moves.
 */
#ifndef LEADER_ELECTION_SHARED_STATE_H
#define LEADER_ELECTION_SHARED_STATE_H

#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "election_phase.h"
#include "endpoints.h"

#define LE_NAME_LEN		256		/* node names (etcd values), truncated */
#define LE_KEY_LEN		320		/* prefix + "/" + 16 hex digits */
#define LE_ERROR_LEN	512
#define LE_MAX_SYNC		8		/* synchronous standbys a record names, at most */

typedef enum LeaderRole
{
	LE_ROLE_DISCONNECTED,		/* no lease or no place in the queue */
	LE_ROLE_FOLLOWER,			/* knows the leader; queued behind it, or observing */
	LE_ROLE_TAKING_OVER,		/* first in the queue, waits until the last leader cannot write */
	LE_ROLE_PROMOTING,			/* first in the queue, a standby becoming primary */
	LE_ROLE_RESIGNING,			/* first in the queue, handing over */
	LE_ROLE_LEADER				/* first in the queue, lease valid, writable */
} LeaderRole;

#define LE_SHOWN_QUEUE	32		/* queue entries shown at most */

/*
 * The queue as the worker last read it (a follower reads up to its own
 * key), for the HTTP endpoint's /cluster.  Strings are printable.
 */
typedef struct LeaderQueueView
{
	int64		revision;		/* etcd's revision of the read; 0: none yet */
	int			count;			/* entries shown */
	int			total;			/* entries read (more than shown: cut) */
	struct
	{
		char		name[LE_NAME_LEN];
		char		key[LE_KEY_LEN];
		int64		create_revision;
		int64		lease;
	}			entries[LE_SHOWN_QUEUE];
} LeaderQueueView;

/*
 * The worker's view of the election, as leader_status() shows it.  Names and
 * last_error are printable ASCII (le_printable): they may come from any etcd
 * client.  own_key is kept as stored in etcd, for comparisons.
 */
typedef struct LeaderView
{
	ElectionPhase phase;
	LeaderRole	role;
	char		node_name[LE_NAME_LEN];
	bool		leader_known;
	char		leader_name[LE_NAME_LEN];
	int64		fencing_token;	/* create revision of the leader's key */
	int			queue_position; /* -1 when not queued */
	int64		lease_id;		/* 0 when none */
	int			lease_ttl;		/* seconds, as granted by etcd */
	uint64		lease_valid_until;	/* le_clock_us(); 0 when none */
	char		own_key[LE_KEY_LEN];
	int64		own_create_revision;
	char		endpoint[LE_URL_LEN];
	char		last_error[LE_ERROR_LEN];	/* empty when healthy */
	/* this node in streaming replication, and whether it may stand */
	bool		in_recovery;
	uint32		timeline;
	int64		wal_lag_bytes;	/* standbys; -1 on a primary */
	bool		eligible;
	char		ineligible_reason[LE_ERROR_LEN];	/* empty when eligible */
	/* replication as the worker last read it, for the HTTP endpoint */
	bool		streaming;		/* a standby whose WAL receiver is connected */
	bool		accepts_connections;	/* a primary, or a hot standby open for reads */
	int64		receive_lag_bytes;	/* WAL its upstream sent that it has not flushed */
	uint64		received_lsn;
	uint64		replayed_lsn;
	/* after a crash: the WAL position published, and who takes over */
	uint64		published_lsn;	/* 0: none */
	char		yielded[LE_ERROR_LEN];	/* why it gave its place up last */
	char		succession_wait[LE_ERROR_LEN];	/* first in line: why it waits */
	/* synchronous mode, as the cluster record says */
	char		sync_mode[8];	/* "off", "on", "strict"; "" without a record */
	int			sync_count;
	char		sync_names[LE_MAX_SYNC][LE_NAME_LEN];	/* printable */
} LeaderView;

typedef struct LeaderShared
{
	pg_atomic_uint64 valid_until_us;	/* le_clock_us() deadline; 0: not leader */
	pg_atomic_uint64 term;		/* fencing token of the leadership it ends */
	pg_atomic_uint64 term_since;	/* TimestampTz at which that term began */
	pg_atomic_uint64 ship_until;	/* le_clock_us() deadline for walsenders */
	pg_atomic_uint32 resign_requests;	/* bumped by leader_resign() */
	pg_atomic_uint32 commits_in_flight; /* leader's commits past their check */
	pg_atomic_uint64 recorded_wal_end;	/* WAL position in etcd's record; 0: none */
	pg_atomic_uint64 loop_turned_at;	/* le_clock_us() of the worker's last loop turn; 0: none runs */
	pg_atomic_uint32 view_changes;	/* odd while the view is written */
	ConditionVariable changed;

	LWLock		lock;			/* guards everything below */
	int			worker_procno;	/* for SetLatch; -1 while no worker runs */
	uint32		resigns_done;	/* last resign request the worker answered */
	char		resign_error[LE_ERROR_LEN]; /* why it failed; empty: it did not */
	TimestampTz role_since;
	LeaderView	view;
	LeaderQueueView queue;
} LeaderShared;

/* The role's name, as leader_status() and the HTTP endpoint show it. */
extern const char *le_role_name(LeaderRole role);

/*
 * The role a snapshot shows: a leader whose validity ran out (its worker
 * froze) is not one, whatever the view still says.
 */
static inline LeaderRole
le_shown_role(const LeaderView *view, uint64 valid_until_us, uint64 now_us)
{
	if (view->role == LE_ROLE_LEADER && !(valid_until_us != 0 && now_us < valid_until_us))
		return LE_ROLE_DISCONNECTED;
	return view->role;
}

/* Whether the synchronous set the view shows names this node. */
static inline bool
le_view_sync_member(const LeaderView *view)
{
	for (int i = 0; i < view->sync_count; i++)
		if (strcmp(view->sync_names[i], view->node_name) == 0)
			return true;
	return false;
}

/* NULL unless the library was preloaded (and shared memory set up). */
extern LeaderShared *le_shared;

/* From _PG_init: installs the shmem request and startup hooks. */
extern void le_shmem_install_hooks(void);

/*
 * Microseconds of a clock that keeps counting while the machine is
 * suspended (CLOCK_BOOTTIME), so a lease never outlives a suspend locally.
 * One vDSO call, no system call.
 */
extern uint64 le_clock_us(void);

/* True while this node holds valid leadership: atomic read + clock read. */
static inline bool
le_is_leader_now(void)
{
	uint64		until;

	if (le_shared == NULL)
		return false;
	until = pg_atomic_read_u64(&le_shared->valid_until_us);
	return until != 0 && le_clock_us() < until;
}

/*
 * The term this node leads in now (the create revision of its key), or 0
 * if it does not lead: what a transaction records when it writes, and
 * compares at commit.  *since, if asked for, is when the term began (by
 * the wall clock, as transaction start times are).
 */
static inline uint64
le_leader_term_now(TimestampTz *since)
{
	uint64		until;
	uint64		term;

	if (le_shared == NULL)
		return 0;
	until = pg_atomic_read_u64(&le_shared->valid_until_us);
	if (until == 0 || le_clock_us() >= until)
		return 0;
	pg_read_barrier();
	term = pg_atomic_read_u64(&le_shared->term);
	if (since != NULL)
	{
		pg_read_barrier();
		*since = (TimestampTz) pg_atomic_read_u64(&le_shared->term_since);
	}
	return term;
}

/* Whether walsenders may still ship WAL as this node's leadership. */
static inline bool
le_may_ship_wal(void)
{
	uint64		until = pg_atomic_read_u64(&le_shared->ship_until);

	return until != 0 && le_clock_us() < until;
}

/* ---- the worker's side: the only writers ---- */

/* The worker starts: it can be woken, and resets everything when it exits. */
extern void le_shared_attach_worker(void);

/* Ends leadership now, before anything else says so. */
extern void le_shared_clear_leadership(void);

/* The cluster record in etcd holds this WAL position for the leader (0: none). */
extern void le_shared_set_recorded_wal(uint64 wal_end);

/* Walsenders may ship WAL as this node's leadership until then (later only). */
extern void le_shared_allow_shipping(uint64 until_us);

/*
 * Publishes the view; valid_until_us is the leadership deadline, or 0, and
 * term the fencing token of that leadership.  Returns true if the role
 * changed (the caller logs it).
 */
extern bool le_shared_publish(const LeaderView *view, uint64 valid_until_us,
							  uint64 term);

/* The queue as the last read showed it (for /cluster). */
extern void le_shared_publish_queue(const LeaderQueueView *queue);

/* The worker's loop turned (once per turn). */
extern void le_shared_loop_turned(void);

/* ---- backends' side: readers ---- */

/* A consistent copy of the view, with leadership as of now. */
extern void le_shared_snapshot(LeaderView *view, uint64 *valid_until_us,
							   TimestampTz *role_since);

/*
 * A consistent copy of the view, role_since and the queue without taking
 * the LWLock; false if the worker was writing them at every try (then the
 * copies may be torn: keep an earlier one).
 */
extern bool le_shared_read_without_lock(LeaderView *view, TimestampTz *role_since,
										LeaderQueueView *queue);

/* When the election worker's loop last turned; 0 while no worker runs. */
extern uint64 le_shared_loop_turned_at(void);

/* The WAL position the cluster record holds for this leader, or 0. */
static inline uint64
le_recorded_wal_end(void)
{
	return pg_atomic_read_u64(&le_shared->recorded_wal_end);
}

/* Backend: asks the worker to look at its work now. */
extern void le_wake_worker(void);

/* ---- commits in flight (backends count, the worker waits) ---- */

/* A transaction with an xid is about to be checked and commit. */
extern void le_commit_begin(void);
/* ... and its commit (or abort) is over. */
extern void le_commit_end(void);
extern uint32 le_commits_in_flight(void);

/* ---- the resign handshake (both sides; see shared_state.c) ---- */

/*
 * Backend: asks the worker to resign and waits until it has.  False if the
 * worker could not hand over; error (LE_ERROR_LEN) says why.
 */
extern bool le_resign_request_and_wait(char *error);

/* Worker: a request not seen before, if any (its id in *request_id). */
extern bool le_resign_requested(uint32 *request_id);

/*
 * Worker: request_id (and every earlier one) has been served; error is
 * NULL, or why the node could not hand over and leads on.
 */
extern void le_resign_answered(uint32 request_id, const char *error);

#endif
