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

#include "etcd_client.h"
#include "leader_election.h"

void
leader_election_worker_main(Datum arg pg_attribute_unused())
{
	MemoryContext worker_context;
	MemoryContext cycle_context;
	EtcdClient *client;
	Election   *election;
	ElectionConfig config;
	EtcdAccess	access;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	le_shared_attach_worker();

	worker_context = AllocSetContextCreate(TopMemoryContext, "leader_election worker",
										   ALLOCSET_DEFAULT_SIZES);
	cycle_context = AllocSetContextCreate(worker_context, "leader_election cycle",
										  ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(worker_context);

	le_current_config(&config);
	client = etcd_client_create(worker_context);
	etcd_access_current(&access);
	etcd_client_set_access(client, &access);
	election = election_create(worker_context, client, &config);

	ereport(LOG,
			(errmsg("leader_election: node \"%s\" joins election \"%s\" through %s",
					config.node_name, config.prefix, le_endpoints)));

	for (;;)
	{
		uint32		resign_request;
		int			fired;

		MemoryContextReset(cycle_context);
		MemoryContextSwitchTo(cycle_context);
		le_shared_loop_turned();

		if (ShutdownRequestPending)
		{
			election_shutdown(election, "its worker received SIGTERM", true);
			break;
		}
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* new TLS files and credentials apply to the next connection */
			etcd_access_current(&access);
			etcd_client_set_access(client, &access);
			le_current_config(&config);
			election_configure(election, &config);
		}
		if (le_resign_requested(&resign_request))
			election_resign(election, resign_request);

		election_step(election);
		fired = etcd_client_wait(client, election_next_timeout_ms(election),
								 true, PG_WAIT_EXTENSION);
		if (fired & WL_LATCH_SET)
			ResetLatch(MyLatch);
		if (fired & WL_POSTMASTER_DEATH)
		{
			/* Orphaned backends must not write while a successor starts. */
			election_shutdown(election, "the postmaster died", false);
			break;
		}
		election_process(election);
	}
	proc_exit(1);
}
