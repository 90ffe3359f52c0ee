/*
 * wal_bound.c
 *		Owns the rule that a leader of a replicated cluster acknowledges no
 *		commit whose WAL lies more than max_lag_on_failover beyond the
 *		position the cluster record in etcd holds.
 *
 * Why.  A standby takes over after a crash if it is within
 * max_lag_on_failover of the WAL position the leader recorded.  Commits go
 * on until the leader's validity ends, but only the worker records the
 * position: with the worker frozen, a primary could acknowledge any amount
 * of WAL that no standby has and no record shows, and a standby far behind
 * it would still stand.  So the loss bound is enforced where commits are
 * acknowledged: a commit-time check that waits for the worker to record.
 *
 * How.  At the commit-time check (PRE_COMMIT, PRE_PREPARE) of a transaction
 * with an xid on the leader, the WAL insert position is compared with the
 * recorded position (shared_state.h: recorded_wal_end, 0 while no record
 * names this node, and then nothing is bounded).  Beyond the bound the
 * backend wakes the worker -- which flushes and records the WAL written so
 * far whenever it has moved half the bound, and at once when woken -- and
 * sleeps on the shared condition variable until the record catches up, or
 * until the node no longer leads in the transaction's term (a frozen worker
 * renews nothing, so that comes within the lease TTL): then the commit is
 * refused.  What one commit adds after the check (its commit record, WAL
 * that other transactions insert meanwhile) is not bounded here.
 */
#include "postgres.h"

#include "access/xlog.h"
#include "pgstat.h"
#include "storage/condition_variable.h"

#include "leader_election.h"
#include "shared_state.h"
#include "wal_bound.h"

/* How long one sleep lasts at most: a missed broadcast costs no more. */
#define RECHECK_MS	100

static bool
within_bound(void)
{
	uint64		recorded = le_recorded_wal_end();

	return recorded == 0 ||
		GetXLogInsertRecPtr() <= recorded + (uint64) le_max_lag_on_failover * 1024;
}

void
le_await_recorded_wal(uint64 term)
{
	if (within_bound())
		return;
	ConditionVariablePrepareToSleep(&le_shared->changed);
	for (;;)
	{
		/* first: a worker that stops leading also lifts the bound */
		if (le_leader_term_now(NULL) != term)
		{
			ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
					 errmsg("cannot commit: the node stopped leading while its WAL was more than leader_election.max_lag_on_failover ahead of the position recorded in etcd"),
					 errdetail("A standby that takes over may lack up to max_lag_on_failover of what the cluster record shows; this commit would have gone further."),
					 errhint("Retry the transaction on the leader.")));
		}
		if (within_bound())
			break;
		le_wake_worker();
		(void) ConditionVariableTimedSleep(&le_shared->changed, RECHECK_MS, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
}
