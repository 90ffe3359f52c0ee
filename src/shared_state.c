/*
 * shared_state.c
 *		Owns the shared-memory segment of leader_election: its size and
 *		initialisation, every write to it, the resign handshake, and the
 *		clock both sides compare the leadership deadline against.
 *
 * The locking and ordering rules are stated once, in shared_state.h.
 */
#include "postgres.h"

#include <time.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "shared_state.h"

LeaderShared *le_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
le_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(LeaderShared)));
}

/* The view of a node that is not in the election. */
static void
reset_view(LeaderView *view)
{
	memset(view, 0, sizeof(LeaderView));
	view->phase = EP_NO_LEASE;
	view->role = LE_ROLE_DISCONNECTED;
	view->queue_position = -1;
	view->wal_lag_bytes = -1;
}

static void
le_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	le_shared = ShmemInitStruct("leader_election", sizeof(LeaderShared), &found);
	if (!found)
	{
		memset(le_shared, 0, sizeof(LeaderShared));
		pg_atomic_init_u64(&le_shared->valid_until_us, 0);
		pg_atomic_init_u64(&le_shared->term, 0);
		pg_atomic_init_u64(&le_shared->term_since, 0);
		pg_atomic_init_u64(&le_shared->ship_until, 0);
		pg_atomic_init_u32(&le_shared->resign_requests, 0);
		pg_atomic_init_u32(&le_shared->commits_in_flight, 0);
		pg_atomic_init_u64(&le_shared->recorded_wal_end, 0);
		pg_atomic_init_u64(&le_shared->loop_turned_at, 0);
		pg_atomic_init_u32(&le_shared->view_changes, 0);
		ConditionVariableInit(&le_shared->changed);
		LWLockInitialize(&le_shared->lock, LWLockNewTrancheId());
		le_shared->worker_procno = -1;
		le_shared->role_since = GetCurrentTimestamp();
		reset_view(&le_shared->view);
	}
	LWLockRelease(AddinShmemInitLock);
	LWLockRegisterTranche(le_shared->lock.tranche, "leader_election");
}

void
le_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = le_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = le_shmem_startup;
}

uint64
le_clock_us(void)
{
	struct timespec ts;

#ifdef CLOCK_BOOTTIME
	clock_gettime(CLOCK_BOOTTIME, &ts);
#else
	clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
	return (uint64) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *
le_role_name(LeaderRole role)
{
	switch (role)
	{
		case LE_ROLE_LEADER:
			return "leader";
		case LE_ROLE_FOLLOWER:
			return "follower";
		case LE_ROLE_TAKING_OVER:
			return "taking over";
		case LE_ROLE_PROMOTING:
			return "promoting";
		case LE_ROLE_RESIGNING:
			return "resigning";
		case LE_ROLE_DISCONNECTED:
			break;
	}
	return "disconnected";
}

/* ---- the worker's side ---- */

/*
 * The view's change count (see "readers that never wait" in
 * shared_state.h): odd while the worker writes the view, the queue or
 * role_since.  Called under the LWLock, which orders the writers.
 */
static void
begin_view_write(void)
{
	pg_atomic_fetch_add_u32(&le_shared->view_changes, 1);	/* a full barrier */
}

static void
end_view_write(void)
{
	pg_write_barrier();
	pg_atomic_fetch_add_u32(&le_shared->view_changes, 1);
}

/* Whatever happens to the worker, shared memory must not say "leader". */
static void
detach_worker(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	le_shared_clear_leadership();
	pg_atomic_write_u64(&le_shared->recorded_wal_end, 0);
	LWLockAcquire(&le_shared->lock, LW_EXCLUSIVE);
	le_shared->worker_procno = -1;
	begin_view_write();
	if (le_shared->view.role != LE_ROLE_DISCONNECTED)
		le_shared->role_since = GetCurrentTimestamp();
	reset_view(&le_shared->view);
	memset(&le_shared->queue, 0, sizeof(LeaderQueueView));
	end_view_write();
	pg_atomic_write_u64(&le_shared->loop_turned_at, 0);
	/* nobody is left to serve them */
	le_shared->resigns_done = pg_atomic_read_u32(&le_shared->resign_requests);
	le_shared->resign_error[0] = '\0';
	LWLockRelease(&le_shared->lock);
	ConditionVariableBroadcast(&le_shared->changed);
}

/* The last resign request this worker has seen (worker process only). */
static uint32 resigns_seen;

void
le_shared_attach_worker(void)
{
	LWLockAcquire(&le_shared->lock, LW_EXCLUSIVE);
	le_shared->worker_procno = MyProc->pgprocno;
	/* requests from before this worker's time are void */
	resigns_seen = pg_atomic_read_u32(&le_shared->resign_requests);
	le_shared->resigns_done = resigns_seen;
	LWLockRelease(&le_shared->lock);
	le_shared_loop_turned();
	ConditionVariableBroadcast(&le_shared->changed);
	on_shmem_exit(detach_worker, 0);
}

void
le_shared_clear_leadership(void)
{
	pg_atomic_exchange_u64(&le_shared->valid_until_us, 0);
}

void
le_shared_set_recorded_wal(uint64 wal_end)
{
	if (pg_atomic_exchange_u64(&le_shared->recorded_wal_end, wal_end) != wal_end)
		ConditionVariableBroadcast(&le_shared->changed);
}

void
le_shared_allow_shipping(uint64 until_us)
{
	if (until_us > pg_atomic_read_u64(&le_shared->ship_until))
		pg_atomic_write_u64(&le_shared->ship_until, until_us);
}

bool
le_shared_publish(const LeaderView *view, uint64 valid_until_us, uint64 term)
{
	bool		changed;

	uint64		previous_until = pg_atomic_read_u64(&le_shared->valid_until_us);

	/*
	 * A new term is written only while no validity claims the old one.  A
	 * validity claimed after a time without one -- cleared, or run out by
	 * the clock (confirmations refused, a lapsed lease) -- begins a new
	 * term even with the same token: backends saw no leader in between.
	 */
	if (valid_until_us == 0 || pg_atomic_read_u64(&le_shared->term) != term ||
		previous_until == 0 || le_clock_us() >= previous_until)
	{
		le_shared_clear_leadership();
		if (valid_until_us != 0)
		{
			pg_atomic_exchange_u64(&le_shared->term_since, (uint64) GetCurrentTimestamp());
			pg_atomic_exchange_u64(&le_shared->term, term);
		}
	}

	LWLockAcquire(&le_shared->lock, LW_EXCLUSIVE);
	changed = le_shared->view.role != view->role;
	begin_view_write();
	if (changed)
		le_shared->role_since = GetCurrentTimestamp();
	le_shared->view = *view;
	end_view_write();
	LWLockRelease(&le_shared->lock);

	if (valid_until_us != 0)
		pg_atomic_exchange_u64(&le_shared->valid_until_us, valid_until_us);
	if (changed)
		ConditionVariableBroadcast(&le_shared->changed);
	return changed;
}

void
le_shared_publish_queue(const LeaderQueueView *queue)
{
	LWLockAcquire(&le_shared->lock, LW_EXCLUSIVE);
	begin_view_write();
	le_shared->queue = *queue;
	end_view_write();
	LWLockRelease(&le_shared->lock);
}

void
le_shared_loop_turned(void)
{
	pg_atomic_write_u64(&le_shared->loop_turned_at, le_clock_us());
}

void
le_wake_worker(void)
{
	int			worker_procno;

	LWLockAcquire(&le_shared->lock, LW_SHARED);
	worker_procno = le_shared->worker_procno;
	LWLockRelease(&le_shared->lock);
	if (worker_procno >= 0)
		SetLatch(&ProcGlobal->allProcs[worker_procno].procLatch);
}

/* ---- commits in flight ---- */

void
le_commit_begin(void)
{
	pg_atomic_fetch_add_u32(&le_shared->commits_in_flight, 1);
}

void
le_commit_end(void)
{
	pg_atomic_fetch_sub_u32(&le_shared->commits_in_flight, 1);
}

uint32
le_commits_in_flight(void)
{
	/* the worker cleared leadership with a full barrier just before */
	return pg_atomic_read_u32(&le_shared->commits_in_flight);
}

/* ---- backends' side ---- */

void
le_shared_snapshot(LeaderView *view, uint64 *valid_until_us, TimestampTz *role_since)
{
	LWLockAcquire(&le_shared->lock, LW_SHARED);
	*view = le_shared->view;
	*role_since = le_shared->role_since;
	LWLockRelease(&le_shared->lock);
	*valid_until_us = pg_atomic_read_u64(&le_shared->valid_until_us);
}

bool
le_shared_read_without_lock(LeaderView *view, TimestampTz *role_since,
							LeaderQueueView *queue)
{
	for (int attempt = 0; attempt < 1000; attempt++)
	{
		uint32		before = pg_atomic_read_u32(&le_shared->view_changes);

		if ((before & 1) == 0)
		{
			pg_read_barrier();
			*view = le_shared->view;
			*role_since = le_shared->role_since;
			*queue = le_shared->queue;
			pg_read_barrier();
			if (pg_atomic_read_u32(&le_shared->view_changes) == before)
				return true;
		}
		pg_spin_delay();
	}
	return false;
}

uint64
le_shared_loop_turned_at(void)
{
	return pg_atomic_read_u64(&le_shared->loop_turned_at);
}

/*
 * The resign handshake
 *
 * A backend asks with a ticket: it bumps resign_requests (an atomic, so any
 * number of backends may ask at once) and keeps the new value as its
 * request id, then sets the worker's latch.  The worker notices at its next
 * wakeup that resign_requests moved past the last value it saw, serves the
 * request (stops leading, deletes its key, revokes its lease), and then
 * stores the id it served in resigns_done and broadcasts the condition
 * variable.  One serving answers every request up to that id, because they
 * all asked for the same thing.  A backend is done when resigns_done has
 * reached its id (compared as a wrapping 32-bit difference) or when no worker
 * runs: a worker that exits answers everything (detach_worker), and a new
 * worker voids requests from before its time (le_shared_attach_worker).
 * A worker that could not hand over (its successor did not catch up) leaves
 * the reason in resign_error with its answer; every backend it answers
 * reports it.
 */

bool
le_resign_request_and_wait(char *error)
{
	uint32		request = pg_atomic_add_fetch_u32(&le_shared->resign_requests, 1);

	le_wake_worker();

	ConditionVariablePrepareToSleep(&le_shared->changed);
	for (;;)
	{
		bool		served;

		LWLockAcquire(&le_shared->lock, LW_SHARED);
		served = (int32) (le_shared->resigns_done - request) >= 0 ||
			le_shared->worker_procno < 0;
		if (served)
			strlcpy(error, le_shared->resign_error, LE_ERROR_LEN);
		LWLockRelease(&le_shared->lock);
		if (served)
			break;
		ConditionVariableTimedSleep(&le_shared->changed, 1000, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	return error[0] == '\0';
}

bool
le_resign_requested(uint32 *request_id)
{
	uint32		requests = pg_atomic_read_u32(&le_shared->resign_requests);

	if (requests == resigns_seen)
		return false;
	resigns_seen = requests;
	*request_id = requests;
	return true;
}

void
le_resign_answered(uint32 request_id, const char *error)
{
	LWLockAcquire(&le_shared->lock, LW_EXCLUSIVE);
	le_shared->resigns_done = request_id;
	strlcpy(le_shared->resign_error, error ? error : "", LE_ERROR_LEN);
	LWLockRelease(&le_shared->lock);
	ConditionVariableBroadcast(&le_shared->changed);
}
