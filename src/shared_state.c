/*
 * shared_state.c
 *		Owns the shared-memory segment of leader_election: its size, its
 *		initialisation, and the monotonic clock both sides compare against.
 */
#include "postgres.h"

#include <time.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

#include "shared_state.h"

LeaderShared *le_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
le_shmem_request_hook(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(LeaderShared)));
}

static void
le_shmem_startup_hook(void)
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
		pg_atomic_init_u32(&le_shared->resign_requests, 0);
		ConditionVariableInit(&le_shared->changed);
		LWLockInitialize(&le_shared->lock, LWLockNewTrancheId());
		le_shared->worker_procno = -1;
		le_shared->role = LE_ROLE_DISCONNECTED;
		le_shared->role_since = GetCurrentTimestamp();
		le_shared->queue_position = -1;
	}
	LWLockRelease(AddinShmemInitLock);
	LWLockRegisterTranche(le_shared->lock.tranche, "leader_election");
}

/* Called from _PG_init while shared_preload_libraries is processed. */
void
le_shmem_request(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = le_shmem_request_hook;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = le_shmem_startup_hook;
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
		case LE_ROLE_DISCONNECTED:
			break;
	}
	return "disconnected";
}

uint64
le_monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
