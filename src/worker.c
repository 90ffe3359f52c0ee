/*
 * worker.c
 *		The background worker: one loop whose only wait is etcd_client_wait()
 *		(latch, postmaster death and curl's sockets in one WaitEventSet), so
 *		SIGTERM, SIGHUP and resign requests are seen while etcd is silent.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "leader_election.h"

/* Whatever happens to the worker, shared memory must not say "leader". */
static void
detach_worker(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	pg_atomic_exchange_u64(&le_shared->valid_until_us, 0);
	LWLockAcquire(&le_shared->lock, LW_EXCLUSIVE);
	le_shared->worker_procno = -1;
	le_shared->role = LE_ROLE_DISCONNECTED;
	le_shared->role_since = GetCurrentTimestamp();
	le_shared->queue_position = -1;
	le_shared->leader_known = false;
	le_shared->resigns_done = pg_atomic_read_u32(&le_shared->resign_requests);
	LWLockRelease(&le_shared->lock);
	ConditionVariableBroadcast(&le_shared->changed);
}

static void
attach_worker(void)
{
	LWLockAcquire(&le_shared->lock, LW_EXCLUSIVE);
	le_shared->worker_procno = MyProc->pgprocno;
	/* requests from before this worker's time are void */
	le_shared->resigns_done = pg_atomic_read_u32(&le_shared->resign_requests);
	LWLockRelease(&le_shared->lock);
	ConditionVariableBroadcast(&le_shared->changed);
	on_shmem_exit(detach_worker, 0);
}

void
leader_election_worker_main(Datum arg pg_attribute_unused())
{
	MemoryContext worker_context;
	MemoryContext cycle_context;
	EtcdClient *client;
	Election   *election;
	ElectionConfig config;
	uint32		resigns_seen;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	attach_worker();
	resigns_seen = pg_atomic_read_u32(&le_shared->resign_requests);

	worker_context = AllocSetContextCreate(TopMemoryContext, "leader_election worker",
										   ALLOCSET_DEFAULT_SIZES);
	cycle_context = AllocSetContextCreate(worker_context, "leader_election cycle",
										  ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(worker_context);

	le_current_config(&config);
	client = etcd_client_create(worker_context);
	etcd_client_set_endpoints(client, le_endpoints);
	election = election_create(worker_context, client, &config);

	ereport(LOG,
			(errmsg("leader_election: node \"%s\" joins election \"%s\" through %s",
					config.node_name, config.prefix, le_endpoints)));

	for (;;)
	{
		uint32		resigns;
		int			fired;

		MemoryContextReset(cycle_context);
		MemoryContextSwitchTo(cycle_context);

		if (ShutdownRequestPending)
		{
			election_shutdown(election, "its worker received SIGTERM");
			break;
		}
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			le_current_config(&config);
			etcd_client_set_endpoints(client, le_endpoints);
			election_configure(election, &config);
		}
		resigns = pg_atomic_read_u32(&le_shared->resign_requests);
		if (resigns != resigns_seen)
		{
			resigns_seen = resigns;
			election_resign(election, resigns);
		}

		election_step(election);
		fired = etcd_client_wait(client, election_next_timeout_ms(election),
								 PG_WAIT_EXTENSION);
		if (fired & WL_LATCH_SET)
			ResetLatch(MyLatch);
		if (fired & WL_POSTMASTER_DEATH)
		{
			/* Orphaned backends must not write while a successor starts. */
			election_shutdown(election, "the postmaster died");
			break;
		}
		election_process(election);
	}
	proc_exit(1);
}
