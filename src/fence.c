/*
 * fence.c
 *		Owns the write fence: on a node that is not the leader, nothing that
 *		changes data or schema runs, and nothing written while the node led
 *		commits once leadership has lapsed.
 *
 * At the start of every statement (executor start and run, utility) a
 * fenced backend makes its transaction read-only, so that PostgreSQL's own
 * checks refuse every kind of write with SQLSTATE 25006 -- DML, row locks,
 * DDL, COPY FROM, sequences -- while temporary tables keep working; the
 * large-object writes PostgreSQL 15 does not check are refused when the
 * executor or the fast-path protocol is about to call them.  Those errors are rewritten to say why: this node is not the
 * leader, and who is.  Two kinds of statement run unfenced on purpose:
 * DDL of temporary relations, and CREATE/ALTER/DROP EXTENSION leader_election
 * (so that every node can be set up while it follows).
 *
 * At PRE_COMMIT and PRE_PREPARE, a transaction with an xid commits on a
 * fenced node only if every statement in it ran fenced; anything else
 * (a statement that ran while the node led, or a write the hooks never saw,
 * such as a fast-path function call) is refused.  Both checks compare the
 * leadership deadline with the clock; the leader pays one atomic read and
 * one clock read per statement.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "commands/extension.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"

#include "fence.h"
#include "leader_election.h"

#define FENCE_MESSAGE "cannot write on node \"%s\": it is not the leader"

bool		le_fence_writes = true;
bool		le_fence_bypass = false;

static ExecutorStart_hook_type prev_executor_start = NULL;
static ExecutorRun_hook_type prev_executor_run = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;
static object_access_hook_type prev_object_access = NULL;

/* What this transaction's statements saw; reset when it ends. */
static int	statements_fenced = 0;
static bool ran_unfenced = false;
static bool forced_read_only = false;
static bool user_read_only = false;

/*
 * Fenced statements now executing.  Unlike the counters above it survives
 * the commits that VACUUM, ANALYZE or a procedure make inside a statement.
 */
static int	fenced_depth = 0;

/* Depth of CREATE/ALTER EXTENSION leader_election: its script runs freely. */
static int	own_extension_depth = 0;

/* Set while EXPLAIN (no ANALYZE) initialises a plan it will not run. */
static bool explain_only = false;

/*
 * Client backends, walsenders (which run SQL in replication=database mode)
 * and other extensions' workers; not core's workers, not ours.
 */
static bool
fence_applies(void)
{
	if (!le_fence_writes || le_shared == NULL)
		return false;
	if (MyBackendType == B_BG_WORKER)
	{
		if (MyBgworkerEntry == NULL ||
			strcmp(MyBgworkerEntry->bgw_library_name, "postgres") == 0 ||
			strcmp(MyBgworkerEntry->bgw_library_name, "leader_election") == 0)
			return false;
	}
	else if (MyBackendType != B_BACKEND && MyBackendType != B_WAL_SENDER)
		return false;
	/* A server in recovery refuses writes by itself. */
	return !RecoveryInProgress();
}

/*
 * Not the leader, fence on, and no superuser bypass in effect.  A bypass is
 * logged where a statement starts (log_bypass), once per statement.
 */
static bool
fenced_now(bool log_bypass)
{
	if (!fence_applies() || le_is_leader_now())
		return false;
	if (!le_fence_bypass)
		return true;
	if (log_bypass)
		ereport(LOG,
				(errmsg("leader_election: fence bypassed by role \"%s\" on a node that is not the leader",
						GetUserNameFromId(GetUserId(), false)),
				 debug_query_string ? errdetail("Statement: %s", debug_query_string) : 0));
	return false;
}

/*
 * Called at every statement start: fences the transaction (read-only) or,
 * when the node leads, gives the user back their own setting.
 */
static bool
enter_statement(bool log_bypass)
{
	bool		fenced = fenced_now(log_bypass);

	if (fenced)
	{
		if (!forced_read_only)
		{
			user_read_only = XactReadOnly;
			forced_read_only = true;
		}
		XactReadOnly = true;
		statements_fenced++;
	}
	else
	{
		if (forced_read_only)
		{
			XactReadOnly = user_read_only;
			forced_read_only = false;
		}
		ran_unfenced = true;
	}
	return fenced;
}

/* Raises the fence's error: why, the current leader and its token. */
static void
fence_error(const char *reason)
{
	char		node_name[LE_NAME_LEN];
	char		leader_name[LE_NAME_LEN];
	bool		leader_known;
	int64		token;

	LWLockAcquire(&le_shared->lock, LW_SHARED);
	strlcpy(node_name, le_shared->node_name, sizeof(node_name));
	strlcpy(leader_name, le_shared->leader_name, sizeof(leader_name));
	/* Only a follower's view names a leader: ours has lapsed, if we led. */
	leader_known = le_shared->leader_known && le_shared->role == LE_ROLE_FOLLOWER;
	token = le_shared->fencing_token;
	LWLockRelease(&le_shared->lock);

	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg(FENCE_MESSAGE, node_name),
			 leader_known ?
			 errdetail("The leader is \"%s\" (fencing token " INT64_FORMAT "). Refused: %s.",
					   leader_name, token, reason) :
			 errdetail("No leader is known to this node. Refused: %s.", reason),
			 errhint("Send writes to the leader (see leader_status() on any node).")));
}

/* Gives PostgreSQL's read-only errors the reason and the leader's name. */
static void
rethrow_as_fence_error(MemoryContext context)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(context);
	edata = CopyErrorData();
	if (edata->sqlerrcode != ERRCODE_READ_ONLY_SQL_TRANSACTION ||
		(edata->message_id != NULL && strcmp(edata->message_id, FENCE_MESSAGE) == 0))
		PG_RE_THROW();
	FlushErrorState();
	/* The context callbacks still on the stack add the context again. */
	fence_error(edata->message);
}

/* Runs a fenced statement, rewriting the errors the fence caused. */
#define RUN_FENCED(call) \
	do { \
		MemoryContext fence_cxt = CurrentMemoryContext; \
		fenced_depth++; \
		PG_TRY(); \
		{ \
			call; \
		} \
		PG_CATCH(); \
		{ \
			fenced_depth--; \
			rethrow_as_fence_error(fence_cxt); \
		} \
		PG_END_TRY(); \
		fenced_depth--; \
	} while (0)

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
fence_executor_start(QueryDesc *queryDesc, int eflags)
{
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
	{
		/* Nothing will run, but setting up the plan announces its functions. */
		bool		was_explain_only = explain_only;

		explain_only = true;
		PG_TRY();
		{
			call_executor_start(queryDesc, eflags);
		}
		PG_FINALLY();
		{
			explain_only = was_explain_only;
		}
		PG_END_TRY();
	}
	else if (own_extension_depth == 0 && enter_statement(true))
		RUN_FENCED(call_executor_start(queryDesc, eflags));
	else
		call_executor_start(queryDesc, eflags);
}

static void
fence_executor_run(QueryDesc *queryDesc, ScanDirection direction,
				   uint64 count, bool execute_once)
{
	if (own_extension_depth == 0 && enter_statement(false))
		RUN_FENCED(call_executor_run(queryDesc, direction, count, execute_once));
	else
		call_executor_run(queryDesc, direction, count, execute_once);
}

/* CREATE TEMP ... or CREATE ... pg_temp.name */
static bool
names_temp_namespace(RangeVar *rv)
{
	return rv->relpersistence == RELPERSISTENCE_TEMP ||
		(rv->schemaname != NULL && strcmp(rv->schemaname, "pg_temp") == 0);
}

static bool
is_temp_relation(RangeVar *rv)
{
	Oid			relid;

	if (names_temp_namespace(rv))
		return true;
	relid = RangeVarGetRelid(rv, NoLock, true);
	return OidIsValid(relid) && get_rel_persistence(relid) == RELPERSISTENCE_TEMP;
}

/* Names in a DROP, each a temporary relation. */
static bool
all_temp_relations(List *names)
{
	ListCell   *lc;

	foreach(lc, names)
		if (!is_temp_relation(makeRangeVarFromNameList(lfirst(lc))))
			return false;
	return true;
}

/* DDL that creates, changes or drops temporary relations only. */
static bool
is_temp_relation_ddl(Node *stmt)
{
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_CreateStmt:
			return names_temp_namespace(((CreateStmt *) stmt)->relation);
		case T_CreateSeqStmt:
			return names_temp_namespace(((CreateSeqStmt *) stmt)->sequence);
		case T_ViewStmt:
			return names_temp_namespace(((ViewStmt *) stmt)->view);
		case T_CreateTableAsStmt:
			{
				CreateTableAsStmt *ctas = (CreateTableAsStmt *) stmt;

				return ctas->objtype == OBJECT_TABLE &&
					names_temp_namespace(ctas->into->rel);
			}
		case T_IndexStmt:
			return is_temp_relation(((IndexStmt *) stmt)->relation);
		case T_AlterTableStmt:
			return is_temp_relation(((AlterTableStmt *) stmt)->relation);
		case T_AlterSeqStmt:
			return is_temp_relation(((AlterSeqStmt *) stmt)->sequence);
		case T_RenameStmt:
			{
				RangeVar   *relation = ((RenameStmt *) stmt)->relation;

				return relation != NULL && is_temp_relation(relation);
			}
		case T_DropStmt:
			{
				DropStmt   *drop = (DropStmt *) stmt;

				switch (drop->removeType)
				{
					case OBJECT_TABLE:
					case OBJECT_SEQUENCE:
					case OBJECT_VIEW:
					case OBJECT_INDEX:
						return all_temp_relations(drop->objects);
					default:
						return false;
				}
			}
		case T_TruncateStmt:
			foreach(lc, ((TruncateStmt *) stmt)->relations)
				if (!is_temp_relation(lfirst(lc)))
					return false;
			return true;
		default:
			return false;
	}
}

static bool
is_own_extension_ddl(Node *stmt)
{
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_CreateExtensionStmt:
			return strcmp(((CreateExtensionStmt *) stmt)->extname, "leader_election") == 0;
		case T_AlterExtensionStmt:
			return strcmp(((AlterExtensionStmt *) stmt)->extname, "leader_election") == 0;
		case T_DropStmt:
			/* CASCADE would drop the user's objects that depend on it */
			if (((DropStmt *) stmt)->removeType != OBJECT_EXTENSION ||
				((DropStmt *) stmt)->behavior == DROP_CASCADE)
				return false;
			foreach(lc, ((DropStmt *) stmt)->objects)
				if (strcmp(strVal(lfirst(lc)), "leader_election") != 0)
					return false;
			return true;
		default:
			return false;
	}
}

static bool
ends_transaction(Node *stmt)
{
	if (!IsA(stmt, TransactionStmt))
		return false;
	switch (((TransactionStmt *) stmt)->kind)
	{
		case TRANS_STMT_COMMIT:
		case TRANS_STMT_ROLLBACK:
		case TRANS_STMT_PREPARE:
			return true;
		default:
			return false;
	}
}

static void
fence_process_utility(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

#define CALL_NEXT() \
	(prev_process_utility ? \
	 prev_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc) : \
	 standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc))

	/* SET and SHOW write nothing: no bypass to log (RESET of it included) */
	if (own_extension_depth > 0 ||
		!enter_statement(!IsA(stmt, VariableSetStmt) && !IsA(stmt, VariableShowStmt)))
	{
		CALL_NEXT();
		return;
	}

	if (is_own_extension_ddl(stmt))
	{
		own_extension_depth++;
		XactReadOnly = user_read_only;
		PG_TRY();
		{
			CALL_NEXT();
		}
		PG_FINALLY();
		{
			own_extension_depth--;
		}
		PG_END_TRY();
		return;
	}
	if (is_temp_relation_ddl(stmt))
	{
		XactReadOnly = user_read_only;
		CALL_NEXT();
		return;
	}
	/* PostgreSQL allows it in read-only transactions; it still commits writes. */
	if (IsA(stmt, TransactionStmt) &&
		((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED)
		fence_error("COMMIT PREPARED would commit writes made elsewhere");
	/*
	 * BEGIN READ ONLY, SET TRANSACTION ...: the user's own choice, kept.
	 * After COMMIT or ROLLBACK the flag stays the user's: AND CHAIN carries
	 * it into the next transaction, whose first statement is fenced anew.
	 */
	if (IsA(stmt, TransactionStmt) || IsA(stmt, VariableSetStmt))
	{
		XactReadOnly = user_read_only;
		CALL_NEXT();
		user_read_only = XactReadOnly;
		if (!ends_transaction(stmt))
			XactReadOnly = true;
		return;
	}
	RUN_FENCED(CALL_NEXT());
#undef CALL_NEXT
}

/*
 * PostgreSQL 15 lets large-object writes run in read-only transactions.
 * The executor (and the fast-path protocol) announces every function it is
 * about to call; these are refused there.
 */
static bool
is_large_object_write(Oid fn_oid)
{
	switch (fn_oid)
	{
		case F_LO_CREAT:
		case F_LO_CREATE:
		case F_LO_IMPORT_TEXT:
		case F_LO_IMPORT_TEXT_OID:
		case F_LO_FROM_BYTEA:
		case F_LO_PUT:
		case F_LOWRITE:
		case F_LO_TRUNCATE:
		case F_LO_TRUNCATE64:
		case F_LO_UNLINK:
			return true;
		default:
			return false;
	}
}

static void
fence_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					int subId, void *arg)
{
	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);
	if (access == OAT_FUNCTION_EXECUTE && is_large_object_write(objectId) &&
		own_extension_depth == 0 && !explain_only && fenced_now(false))
		fence_error("large objects cannot be written");
}

static void
fence_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			/* At exit, a session drops its temporary objects: let it. */
			if (!proc_exit_inprogress &&
				TransactionIdIsValid(GetTopTransactionIdIfAny()) &&
				(ran_unfenced || (statements_fenced == 0 && fenced_depth == 0)) &&
				fenced_now(false))
				fence_error(event == XACT_EVENT_PRE_COMMIT ?
							"this transaction wrote while the node led (or outside any fenced statement), so it cannot commit" :
							"this transaction wrote while the node led (or outside any fenced statement), so it cannot be prepared");
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			statements_fenced = 0;
			ran_unfenced = false;
			forced_read_only = false;
			own_extension_depth = 0;
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
