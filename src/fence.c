/*
 * fence.c
 *		Owns the write fence: on a node that is not the leader, nothing that
 *		changes what clients see (data, schema, sequences, large objects,
 *		slots, configuration) runs, and nothing written while the node led
 *		commits once that leadership has lapsed.
 *
 * Statements.  At the start of every statement (executor start and run,
 * utility) a fenced backend makes its transaction read-only, so that
 * PostgreSQL's own checks refuse every kind of write with SQLSTATE 25006 --
 * DML, row locks, DDL, COPY FROM, sequences -- while temporary tables keep
 * working.  Those errors are rewritten to say why: this node is not the
 * leader, and who is.  Statements PostgreSQL allows read-only yet that
 * persist (ALTER SYSTEM, CLUSTER, ...) are refused outright.  Two kinds run
 * unfenced on purpose: DDL of temporary relations (without CASCADE), and
 * the script of CREATE/ALTER/DROP EXTENSION leader_election (so that every
 * node can be set up while it follows).  What a statement or a function is,
 * statement_kinds.c decides.
 *
 * Function calls.  Where the executor, the planner or the fast path
 * announces a function call (OAT_FUNCTION_EXECUTE), a fenced transaction is
 * made read-only too, so a transaction that no statement hook saw start (one
 * a procedure begins after COMMIT, a chained one, a fast-path call) cannot
 * change a permanent sequence either; built-ins whose writes read-only
 * transactions let through are refused there.
 *
 * Leadership terms.  A term is one leadership of this node, named by its
 * fencing token.  A transaction records the term its statements run in
 * until it first writes (gets an xid); at PRE_COMMIT and PRE_PREPARE it
 * commits only if the node still leads in that term.  On a node that does
 * not lead, a transaction with an xid commits only if each statement in it
 * ran fenced (temporary tables) or under a superuser's bypass; anything else
 * (a statement that ran while the node led, or a write the hooks never saw)
 * is refused.  PREPARE TRANSACTION is the vote, so it is checked like
 * COMMIT; COMMIT PREPARED then works on the leader, whatever its term (the
 * vote was checked), and is refused elsewhere; ROLLBACK PREPARED always works.
 *
 * Transactions older than the leadership.  A transaction that began before
 * the node's current term began (its snapshot may predate the leadership:
 * PostgreSQL takes a REPEATABLE READ snapshot before any hook sees the
 * statement), that imported a snapshot, or that ran a statement fenced after
 * taking its snapshot, stays fenced even once the node leads: PostgreSQL
 * decided at that snapshot that it was read-only (SERIALIZABLE skips
 * conflict tracking for it), so letting it write would break isolation.
 *
 * The loss bound.  On the leader of a replicated cluster, the commit-time
 * check also waits while the WAL is further ahead of the position recorded
 * in etcd than max_lag_on_failover (wal_bound.c).
 *
 * Commits in flight.  A handover must know when the last commit the old
 * leadership allowed has written its record: every transaction with an xid
 * is counted in shared memory from just before its commit-time check until
 * it has committed or aborted (see shared_state.h for the ordering).
 *
 * Every check compares the leadership deadline with the clock; the leader
 * pays two atomic reads and one clock read per statement and call site.
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_largeobject.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "counters.h"
#include "fence.h"
#include "leader_election.h"
#include "session_mode.h"
#include "statement_kinds.h"
#include "wal_bound.h"

#define FENCE_MESSAGE "cannot write on node \"%s\": it is not the leader"
#define STALE_MESSAGE "cannot write in this transaction on node \"%s\": it began before the node became the leader"

bool		le_fence_writes = true;
bool		le_fence_bypass = false;

static ExecutorStart_hook_type prev_executor_start = NULL;
static ExecutorRun_hook_type prev_executor_run = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;
static object_access_hook_type prev_object_access = NULL;

/*
 * The fence's state in this backend.  The first nine fields describe the
 * current transaction: enter_statement() and the commit callback set them,
 * and they are reset when it ends.  The last three describe statements
 * now executing and are kept across the commits that VACUUM, ANALYZE or a
 * procedure make inside one statement; each hook that raises one lowers it
 * again, on error too.
 */
static struct
{
	/* a statement or function call of this transaction was seen */
	bool		seen;
	/* statements of this transaction that ran fenced */
	int			statements_fenced;
	/* a statement ran unfenced because the node led */
	bool		ran_as_leader;
	/* a statement ran unfenced by a superuser's bypass (or with the fence off) */
	bool		ran_bypassed;
	/* the fence made XactReadOnly true; user_read_only holds the user's value */
	bool		forced_read_only;
	bool		user_read_only;
	/*
	 * the term its statements ran in as leader, until it got an xid: the
	 * fencing token, and when that leadership began (a leadership that
	 * lapses and comes back keeps its token)
	 */
	uint64		write_term;
	TimestampTz write_term_since;
	/* SET TRANSACTION SNAPSHOT: its snapshot may be older than the term */
	bool		imported_snapshot;
	/* counted in commits_in_flight from its commit-time check to its end */
	bool		commit_counted;

	/* fenced statements now executing (their hooks' PG_TRY blocks) */
	int			fenced_depth;
	/* nesting of CREATE/ALTER/DROP EXTENSION leader_election: its script runs unfenced */
	int			own_extension_depth;
	/* EXPLAIN without ANALYZE is initialising a plan it will not run */
	bool		explain_only;
}			fence;

/*
 * Client backends, walsenders (which run SQL in replication=database mode),
 * their parallel workers and other extensions' workers; not core's other
 * workers, not ours.
 */
bool
le_fence_applies(void)
{
	if (!le_fence_writes || le_shared == NULL)
		return false;
	if (MyBackendType == B_BG_WORKER)
	{
		/* a parallel worker runs functions of a fenced session, too */
		if (MyBgworkerEntry == NULL ||
			(strcmp(MyBgworkerEntry->bgw_library_name, "postgres") == 0 &&
			 !IsParallelWorker()) ||
			strcmp(MyBgworkerEntry->bgw_library_name, "leader_election") == 0)
			return false;
	}
	else if (MyBackendType != B_BACKEND && MyBackendType != B_WAL_SENDER)
		return false;
	/* A server in recovery refuses writes by itself. */
	return !RecoveryInProgress();
}

bool
le_fence_node_fenced(void)
{
	return le_fence_applies() && !le_is_leader_now();
}

/*
 * Not the leader, fence on, and no bypass in effect: a bypass counts only
 * while the current user is a superuser, whoever set it (a role or database
 * setting, GRANT SET, a function's SET clause).  It is logged where a
 * statement starts (log_bypass), once per statement.  *term is the term the
 * node leads in, 0 if it does not (or the fence is off); *since, if asked
 * for, when that term began.
 */
static bool
fenced_now(bool log_bypass, uint64 *term, TimestampTz *since)
{
	*term = 0;
	if (!le_fence_applies())
		return false;
	*term = le_leader_term_now(since);
	if (*term != 0)
		return false;
	if (!le_fence_bypass || !superuser())
		return true;
	if (log_bypass)
		ereport(LOG,
				(errmsg("leader_election: fence bypassed by role \"%s\" on a node that is not the leader",
						GetUserNameFromId(GetUserId(), false)),
				 debug_query_string ? errdetail("Statement: %s", debug_query_string) : 0));
	return false;
}

/*
 * Whether the transaction began before since.  Client sessions (and their
 * parallel workers) time every transaction by its first statement; another
 * extension's worker need not set a statement time at all, so for it only
 * the other signs of an old transaction count.
 */
static bool
began_before(TimestampTz since)
{
	if (MyBackendType == B_BG_WORKER && !IsParallelWorker())
		return false;
	return GetCurrentTransactionStartTimestamp() < since;
}

/*
 * Whether this transaction must not write now: the node does not lead, or
 * it leads but the transaction is older than its leadership: it began before
 * the current term did (its snapshot may have been taken before any hook of
 * ours saw it), it imported a snapshot, or a statement of it ran fenced
 * after its snapshot was taken.
 */
static bool
transaction_fenced(bool log_bypass, uint64 *term, TimestampTz *since)
{
	*since = 0;
	if (fenced_now(log_bypass, term, since))
		return true;
	if (*term == 0)
		return false;			/* bypass, or the fence is off */
	return (began_before(*since) ||
			fence.imported_snapshot ||
			(fence.forced_read_only && FirstSnapshotSet));
}

/* The transaction ended: its fields of the fence's state start afresh. */
static void
forget_transaction(void)
{
	fence.seen = false;
	fence.statements_fenced = 0;
	fence.ran_as_leader = false;
	fence.ran_bypassed = false;
	fence.forced_read_only = false;
	fence.write_term = 0;
	fence.write_term_since = 0;
	fence.imported_snapshot = false;
}

/* Makes the transaction read-only, keeping the user's own setting aside. */
static void
force_read_only(void)
{
	if (!fence.forced_read_only)
	{
		fence.user_read_only = XactReadOnly;
		fence.forced_read_only = true;
	}
	XactReadOnly = true;
}

/*
 * The first statement or call of a transaction: it started with its
 * session's default, which session_mode.c may have overridden to report
 * the node's state; what the fence keeps as the user's choice is the
 * session's own default.
 */
static void
see_transaction(void)
{
	bool		configured;

	if (fence.seen)
		return;
	fence.seen = true;
	/* a chained transaction's READ ONLY stays: only the override is undone */
	if (le_session_overridden(&configured))
		XactReadOnly = configured;
}

/*
 * Called at every statement start: fences the transaction (read-only) or,
 * when it may write, gives the user back their own setting and records the
 * term it writes in.
 */
static bool
enter_statement(bool log_bypass)
{
	uint64		term;
	TimestampTz since;
	bool		fenced;

	see_transaction();
	fenced = transaction_fenced(log_bypass, &term, &since);
	le_session_follow_node(le_fence_applies() && term == 0);
	if (fenced)
	{
		force_read_only();
		fence.statements_fenced++;
	}
	else
	{
		if (fence.forced_read_only)
		{
			XactReadOnly = fence.user_read_only;
			fence.forced_read_only = false;
		}
		if (term == 0)
			fence.ran_bypassed = true;
		else
		{
			fence.ran_as_leader = true;
			if (!TransactionIdIsValid(GetTopTransactionIdIfAny()))
			{
				fence.write_term = term;
				fence.write_term_since = since;
			}
		}
	}
	return fenced;
}

/*
 * Raises the fence's error: why, and the current leader and its token; or,
 * on a node that leads now, that the transaction began before it did.
 */
static void
fence_error(const char *reason)
{
	LeaderView	view;
	uint64		valid_until;
	TimestampTz role_since;

	le_count(LE_COUNT_FENCE_REFUSALS);
	le_shared_snapshot(&view, &valid_until, &role_since);
	if (le_leader_term_now(NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg(STALE_MESSAGE, view.node_name),
				 errdetail("It took its snapshot while the node was not the leader, so it stays read-only. Refused: %s.",
						   reason),
				 errhint("Retry the transaction.")));
	/* Only a follower's view names a leader: ours has lapsed, if we led. */
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg(FENCE_MESSAGE, view.node_name),
			 view.leader_known && view.role == LE_ROLE_FOLLOWER ?
			 errdetail("The leader is \"%s\" (fencing token " INT64_FORMAT "). Refused: %s.",
					   view.leader_name, view.fencing_token, reason) :
			 errdetail("No leader is known to this node. Refused: %s.", reason),
			 errhint("Send writes to the leader (see leader_status() on any node).")));
}

/*
 * From a fenced statement's PG_CATCH: gives PostgreSQL's read-only errors
 * the reason and the leader's name; rethrows every other error as it is.
 */
static void
rethrow_as_fence_error(MemoryContext context)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(context);
	edata = CopyErrorData();
	if (edata->sqlerrcode != ERRCODE_READ_ONLY_SQL_TRANSACTION ||
		(edata->message_id != NULL &&
		 (strcmp(edata->message_id, FENCE_MESSAGE) == 0 ||
		  strcmp(edata->message_id, STALE_MESSAGE) == 0)))
		PG_RE_THROW();
	FlushErrorState();
	/* The context callbacks still on the stack add the context again. */
	fence_error(edata->message);
}

static void
call_executor_start(QueryDesc *queryDesc, int eflags)
{
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
call_executor_run(QueryDesc *queryDesc, ScanDirection direction,
				  uint64 count, bool execute_once)
{
	if (prev_executor_run)
		prev_executor_run(queryDesc, direction, count, execute_once);
	else
		standard_ExecutorRun(queryDesc, direction, count, execute_once);
}

static void
call_process_utility(PlannedStmt *pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment *queryEnv,
					 DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

static void
fence_executor_start(QueryDesc *queryDesc, int eflags)
{
	MemoryContext context = CurrentMemoryContext;
	bool		was_explain_only = fence.explain_only;

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
	{
		/* Nothing will run, but setting up the plan announces its functions. */
		fence.explain_only = true;
		PG_TRY();
		{
			call_executor_start(queryDesc, eflags);
		}
		PG_FINALLY();
		{
			fence.explain_only = was_explain_only;
		}
		PG_END_TRY();
		return;
	}
	if (!enter_statement(true))
	{
		call_executor_start(queryDesc, eflags);
		return;
	}
	fence.fenced_depth++;
	PG_TRY();
	{
		call_executor_start(queryDesc, eflags);
	}
	PG_CATCH();
	{
		fence.fenced_depth--;
		rethrow_as_fence_error(context);
	}
	PG_END_TRY();
	fence.fenced_depth--;
}

static void
fence_executor_run(QueryDesc *queryDesc, ScanDirection direction,
				   uint64 count, bool execute_once)
{
	MemoryContext context = CurrentMemoryContext;

	if (!enter_statement(false))
	{
		call_executor_run(queryDesc, direction, count, execute_once);
		return;
	}
	fence.fenced_depth++;
	PG_TRY();
	{
		call_executor_run(queryDesc, direction, count, execute_once);
	}
	PG_CATCH();
	{
		fence.fenced_depth--;
		rethrow_as_fence_error(context);
	}
	PG_END_TRY();
	fence.fenced_depth--;
}

/* Runs a fenced utility statement, rewriting the errors the fence caused. */
static void
run_fenced_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	MemoryContext memory_context = CurrentMemoryContext;

	fence.fenced_depth++;
	PG_TRY();
	{
		call_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		fence.fenced_depth--;
		rethrow_as_fence_error(memory_context);
	}
	PG_END_TRY();
	fence.fenced_depth--;
}

static void
fence_process_utility(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	const char *refusal;

	/*
	 * In an aborted transaction block only its end (or ROLLBACK TO) runs,
	 * and it writes nothing; its end fires no transaction callback, so it
	 * must leave no state behind for the next transaction.
	 */
	if (IsAbortedTransactionBlockState())
	{
		call_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
		return;
	}

	/* The extension's own script, inside its CREATE/ALTER EXTENSION. */
	if (fence.own_extension_depth > 0 && is_extension_script_statement(stmt))
	{
		if (fence.forced_read_only)
			XactReadOnly = fence.user_read_only;
		call_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
		return;
	}

	if (imports_snapshot(stmt))
		fence.imported_snapshot = true;
	/* SET and SHOW write nothing: no bypass to log (RESET of it included) */
	if (!enter_statement(!IsA(stmt, VariableSetStmt) && !IsA(stmt, VariableShowStmt)))
	{
		call_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
		return;
	}

	if (is_own_extension_ddl(stmt))
	{
		fence.own_extension_depth++;
		XactReadOnly = fence.user_read_only;
		PG_TRY();
		{
			call_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
		}
		PG_FINALLY();
		{
			fence.own_extension_depth--;
		}
		PG_END_TRY();
		return;
	}
	if ((refusal = persisting_read_only_statement(stmt)) != NULL)
		fence_error(refusal);
	if (is_commit_prepared(stmt))
		fence_error("COMMIT PREPARED would commit writes made elsewhere");
	/*
	 * BEGIN READ ONLY, SET TRANSACTION ...: the user's own choice, kept.
	 * After COMMIT or ROLLBACK the flag stays the user's: AND CHAIN carries
	 * it into the next transaction, whose first statement is fenced anew.
	 */
	if (IsA(stmt, TransactionStmt) || IsA(stmt, VariableSetStmt))
	{
		XactReadOnly = fence.user_read_only;
		call_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
		fence.user_read_only = XactReadOnly;
		if (!ends_transaction(stmt))
			XactReadOnly = true;
		return;
	}
	/* Temporary relations may change; what their DDL evaluates stays fenced. */
	if (is_temp_relation_ddl(stmt))
		XactReadOnly = fence.user_read_only;
	run_fenced_utility(pstmt, queryString, readOnlyTree, context,
					   params, queryEnv, dest, qc);
}

/*
 * Every function called in a fenced transaction runs read-only, however it
 * was reached: from the executor, from a PL/pgSQL assignment after a COMMIT
 * inside a procedure, from the planner folding a constant, from an
 * expression that DDL of a temporary table evaluates, or from the fast-path
 * protocol.  The executor and the fast path announce every function they are
 * about to call; so the transaction is made read-only there, and PostgreSQL's
 * own checks refuse a permanent sequence's nextval/setval at the moment it
 * happens.  Functions whose writes read-only transactions let through
 * (large objects, replication slots and origins, ...) are refused outright,
 * and so are sequence functions called outside any statement the hooks saw
 * (the fast path, the planner), where no error could be given the fence's
 * words.
 */
static void
fence_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					int subId, void *arg)
{
	uint64		term;
	TimestampTz since;

	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);
	/* C code that creates or drops large objects directly (contrib lo) */
	if ((access == OAT_POST_CREATE || access == OAT_DROP) &&
		classId == LargeObjectRelationId && transaction_fenced(false, &term, &since))
		fence_error("large objects cannot be created or dropped");
	if (access != OAT_FUNCTION_EXECUTE || fence.explain_only)
		return;
	see_transaction();
	if (!transaction_fenced(false, &term, &since))
		return;

	switch (function_effect(objectId))
	{
		case FUNCTION_EFFECT_PERSISTS:
			fence_error(psprintf("%s() writes state that a read-only transaction lets through",
								 get_func_name(objectId)));
			break;
		case FUNCTION_EFFECT_SEQUENCE:
			if (fence.fenced_depth == 0)
				fence_error(psprintf("%s() would change a sequence outside any statement",
									 get_func_name(objectId)));
			break;
		case FUNCTION_EFFECT_OTHER:
			break;
	}
	force_read_only();
}

/*
 * The commit-time check: a transaction that wrote commits (or is prepared)
 * only in the term it wrote in, or, on a node that does not lead, only if
 * each of its statements ran fenced or under a superuser's bypass.
 */
static void
check_commit(bool prepare)
{
	uint64		term;
	TimestampTz since = 0;
	bool		fenced;

	/* At exit, a session drops its temporary objects: let it. */
	if (proc_exit_inprogress || !TransactionIdIsValid(GetTopTransactionIdIfAny()))
		return;
	fenced = fenced_now(false, &term, &since);
	if (!fenced && term == 0)
		return;					/* the fence is off, or bypassed */

	if (fenced)
	{
		if (fence.ran_as_leader)
			fence_error(prepare ?
						"this transaction wrote while the node led, so it cannot be prepared" :
						"this transaction wrote while the node led, so it cannot commit");
		/* it would keep its locks and its xid until the leader's turn */
		if (prepare)
			fence_error("a prepared transaction would outlive the statements the fence saw");
		/* bypassed writes were a superuser's choice at the time */
		if (!fence.ran_bypassed && fence.statements_fenced == 0 && fence.fenced_depth == 0)
			fence_error(prepare ?
						"this transaction wrote outside any statement the fence saw, so it cannot be prepared" :
						"this transaction wrote outside any statement the fence saw, so it cannot commit");
	}
	/* a leadership that lapsed and came back is a new term with the same token */
	else if (fence.ran_as_leader &&
			 (fence.write_term != term || fence.write_term_since != since))
	{
		LeaderView	view;
		uint64		valid_until;
		TimestampTz role_since;

		le_count(LE_COUNT_FENCE_REFUSALS);
		le_shared_snapshot(&view, &valid_until, &role_since);
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 prepare ?
				 errmsg("cannot prepare the transaction on node \"%s\": it wrote in an earlier leadership term",
						view.node_name) :
				 errmsg("cannot commit on node \"%s\": the transaction wrote in an earlier leadership term",
						view.node_name),
				 fence.write_term == term ?
				 errdetail("It wrote while the node led with fencing token " UINT64_FORMAT "; the node's leadership lapsed since and began again, with the same token, after the transaction started.",
						   term) :
				 errdetail("It wrote while the node led with fencing token " UINT64_FORMAT "; the node lost leadership since and now leads with fencing token " UINT64_FORMAT ".",
						   fence.write_term, term),
				 errhint("Retry the transaction.")));
	}
	/* the leader acknowledges no more than the record lets a standby lose */
	if (!fenced)
		le_await_recorded_wal(term);
}

/* Counted before the check reads the deadline: see shared_state.h. */
static void
count_commit(void)
{
	if (fence.commit_counted || !le_fence_applies() ||
		!TransactionIdIsValid(GetTopTransactionIdIfAny()))
		return;
	fence.commit_counted = true;
	le_commit_begin();
}

static void
fence_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			count_commit();
			check_commit(false);
			break;
		case XACT_EVENT_PRE_PREPARE:
			count_commit();
			check_commit(true);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			if (fence.commit_counted)
				le_commit_end();
			fence.commit_counted = false;
			forget_transaction();
			break;
		default:
			break;
	}
}

void
le_fence_install(void)
{
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = fence_executor_start;
	prev_executor_run = ExecutorRun_hook;
	ExecutorRun_hook = fence_executor_run;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = fence_process_utility;
	prev_object_access = object_access_hook;
	object_access_hook = fence_object_access;
	RegisterXactCallback(fence_xact_callback, NULL);
}
