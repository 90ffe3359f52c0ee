/*
 * counters.c
 *		Owns the counters' shared-memory segment (counters.h states its
 *		rules): atomics only, added to by any process, read by the HTTP
 *		worker.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "counters.h"

typedef struct LeCounters
{
	pg_atomic_uint64 counts[LE_COUNTERS];
	pg_atomic_uint64 etcd_requests[ETCD_CALL_KINDS];
	pg_atomic_uint64 etcd_errors[ETCD_CALL_KINDS];
	pg_atomic_uint64 duration_us[LE_DURATIONS];
} LeCounters;

static LeCounters *counters = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
counters_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(LeCounters)));
}

static void
init_all(pg_atomic_uint64 *values, int n)
{
	for (int i = 0; i < n; i++)
		pg_atomic_init_u64(&values[i], 0);
}

static void
counters_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	counters = ShmemInitStruct("leader_election counters", sizeof(LeCounters), &found);
	if (!found)
	{
		init_all(counters->counts, LE_COUNTERS);
		init_all(counters->etcd_requests, ETCD_CALL_KINDS);
		init_all(counters->etcd_errors, ETCD_CALL_KINDS);
		init_all(counters->duration_us, LE_DURATIONS);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
le_counters_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = counters_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = counters_shmem_startup;
}

void
le_count(LeCounter counter)
{
	if (counters != NULL)
		pg_atomic_fetch_add_u64(&counters->counts[counter], 1);
}

/* The gateway path of each call, as etcd_api.c sends them. */
static const char *const call_paths[ETCD_CALL_KINDS] = {
	[ETCD_CALL_RANGE] = "/v3/kv/range",
	[ETCD_CALL_TXN] = "/v3/kv/txn",
	[ETCD_CALL_PUT] = "/v3/kv/put",
	[ETCD_CALL_DELETE] = "/v3/kv/deleterange",
	[ETCD_CALL_LEASE_GRANT] = "/v3/lease/grant",
	[ETCD_CALL_LEASE_KEEPALIVE] = "/v3/lease/keepalive",
	[ETCD_CALL_LEASE_REVOKE] = "/v3/lease/revoke",
	[ETCD_CALL_WATCH] = "/v3/watch",
	[ETCD_CALL_AUTHENTICATE] = "/v3/auth/authenticate",
	[ETCD_CALL_OTHER] = "",
};

static const char *const call_names[ETCD_CALL_KINDS] = {
	[ETCD_CALL_RANGE] = "range",
	[ETCD_CALL_TXN] = "txn",
	[ETCD_CALL_PUT] = "put",
	[ETCD_CALL_DELETE] = "delete",
	[ETCD_CALL_LEASE_GRANT] = "lease_grant",
	[ETCD_CALL_LEASE_KEEPALIVE] = "lease_keepalive",
	[ETCD_CALL_LEASE_REVOKE] = "lease_revoke",
	[ETCD_CALL_WATCH] = "watch",
	[ETCD_CALL_AUTHENTICATE] = "authenticate",
	[ETCD_CALL_OTHER] = "other",
};

const char *
etcd_call_kind_name(EtcdCallKind kind)
{
	return call_names[kind];
}

void
le_count_etcd_call(const char *path, bool failed)
{
	EtcdCallKind kind = ETCD_CALL_OTHER;

	if (counters == NULL)
		return;
	for (int i = 0; i < ETCD_CALL_OTHER; i++)
		if (strcmp(path, call_paths[i]) == 0)
			kind = (EtcdCallKind) i;
	pg_atomic_fetch_add_u64(&counters->etcd_requests[kind], 1);
	if (failed)
		pg_atomic_fetch_add_u64(&counters->etcd_errors[kind], 1);
}

void
le_set_duration(LeDuration which, uint64 us)
{
	if (counters != NULL)
		pg_atomic_write_u64(&counters->duration_us[which], Max(us, 1));
}

static void
read_all(pg_atomic_uint64 *from, uint64 *to, int n)
{
	for (int i = 0; i < n; i++)
		to[i] = counters != NULL ? pg_atomic_read_u64(&from[i]) : 0;
}

void
le_counters_read(LeCounterValues *values)
{
	if (counters == NULL)
	{
		memset(values, 0, sizeof(*values));
		return;
	}
	read_all(counters->counts, values->counts, LE_COUNTERS);
	read_all(counters->etcd_requests, values->etcd_requests, ETCD_CALL_KINDS);
	read_all(counters->etcd_errors, values->etcd_errors, ETCD_CALL_KINDS);
	read_all(counters->duration_us, values->duration_us, LE_DURATIONS);
}
