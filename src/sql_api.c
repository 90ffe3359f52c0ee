/*
 * sql_api.c
 *		The SQL functions.  All but leader_candidates() read shared memory
 *		only; leader_candidates() asks etcd, waiting on the latch so that a
 *		cancel or statement_timeout interrupts it.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "etcd_api.h"
#include "leader_election.h"
#include "printable.h"

PG_FUNCTION_INFO_V1(leader_is_primary);
PG_FUNCTION_INFO_V1(leader_wait);
PG_FUNCTION_INFO_V1(leader_status);
PG_FUNCTION_INFO_V1(leader_candidates);
PG_FUNCTION_INFO_V1(leader_resign);

/* A key as etcd stores it, shown printable (the view's strings already are). */
static Datum
printable_key(const char *s)
{
	char		shown[LE_KEY_LEN * 4];

	le_printable(s, strlen(s), shown, sizeof(shown));
	return CStringGetTextDatum(shown);
}

Datum
leader_is_primary(PG_FUNCTION_ARGS)
{
	le_require_preload();
	PG_RETURN_BOOL(le_is_leader_now());
}

Datum
leader_wait(PG_FUNCTION_ARGS)
{
	int64		timeout_ms = PG_ARGISNULL(0) ? -1 : PG_GETARG_INT32(0);
	TimestampTz deadline = 0;
	bool		leads;

	le_require_preload();
	if (!PG_ARGISNULL(0) && timeout_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout_ms must not be negative"),
				 errhint("Pass NULL to wait without a limit, or 0 to check without waiting.")));

	leads = le_is_leader_now();
	if (leads || timeout_ms == 0)
		PG_RETURN_BOOL(leads);
	if (timeout_ms > 0)
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	ConditionVariablePrepareToSleep(&le_shared->changed);
	while (!(leads = le_is_leader_now()))
	{
		long		sleep_ms = -1;

		if (timeout_ms > 0)
		{
			sleep_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
			if (sleep_ms <= 0)
				break;
		}
		ConditionVariableTimedSleep(&le_shared->changed, sleep_ms, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	PG_RETURN_BOOL(leads);
}

/* Columns of leader_status(), in the order the install script declares them. */
enum
{
	STATUS_ROLE,
	STATUS_NODE_NAME,
	STATUS_LEADER_NAME,
	STATUS_QUEUE_POSITION,
	STATUS_LEASE_ID,
	STATUS_LEASE_TTL,
	STATUS_FENCING_TOKEN,
	STATUS_VALID_UNTIL,
	STATUS_ENDPOINT,
	STATUS_LAST_ERROR,
	STATUS_ROLE_SINCE,
	STATUS_PHASE,
	STATUS_IN_RECOVERY,
	STATUS_TIMELINE,
	STATUS_WAL_LAG_BYTES,
	STATUS_ELIGIBLE,
	STATUS_INELIGIBLE_REASON,
	STATUS_PUBLISHED_LSN,
	STATUS_YIELDED,
	STATUS_SUCCESSION,
	STATUS_SYNCHRONOUS_MODE,
	STATUS_SYNCHRONOUS_STANDBY,
	STATUS_SYNCHRONOUS_STANDBYS,
	STATUS_AUTOMATIC_FAILOVER,
	STATUS_COLUMNS
};

static void
set_column(Datum *values, bool *nulls, int column, Datum value)
{
	values[column] = value;
	nulls[column] = false;
}

Datum
leader_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[STATUS_COLUMNS];
	bool		nulls[STATUS_COLUMNS];
	LeaderView	view;
	TimestampTz role_since;
	uint64		valid_until;
	uint64		now;
	LeaderRole	role;

	le_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != STATUS_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("leader_status() of the installed extension has %d columns, the library expects %d",
						tupdesc->natts, STATUS_COLUMNS),
				 errhint("Update the extension's SQL objects: ALTER EXTENSION leader_election UPDATE.")));

	le_shared_snapshot(&view, &valid_until, &role_since);
	now = le_clock_us();

	role = le_shown_role(&view, valid_until, now);

	memset(nulls, true, sizeof(nulls));
	set_column(values, nulls, STATUS_ROLE, CStringGetTextDatum(le_role_name(role)));
	if (view.node_name[0] != '\0')
		set_column(values, nulls, STATUS_NODE_NAME, CStringGetTextDatum(view.node_name));
	if (view.leader_known && role != LE_ROLE_DISCONNECTED)
	{
		set_column(values, nulls, STATUS_LEADER_NAME, CStringGetTextDatum(view.leader_name));
		set_column(values, nulls, STATUS_FENCING_TOKEN, Int64GetDatum(view.fencing_token));
	}
	if (view.queue_position >= 0 && role != LE_ROLE_DISCONNECTED)
		set_column(values, nulls, STATUS_QUEUE_POSITION, Int32GetDatum(view.queue_position));
	if (view.lease_id != 0)
		set_column(values, nulls, STATUS_LEASE_ID, Int64GetDatum(view.lease_id));
	set_column(values, nulls, STATUS_LEASE_TTL, Int32GetDatum(view.lease_ttl));
	if (role == LE_ROLE_LEADER)
		set_column(values, nulls, STATUS_VALID_UNTIL,
				   TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																   (valid_until - now) / 1000)));
	if (view.endpoint[0] != '\0')
		set_column(values, nulls, STATUS_ENDPOINT, CStringGetTextDatum(view.endpoint));
	if (view.last_error[0] != '\0')
		set_column(values, nulls, STATUS_LAST_ERROR, CStringGetTextDatum(view.last_error));
	set_column(values, nulls, STATUS_ROLE_SINCE, TimestampTzGetDatum(role_since));
	set_column(values, nulls, STATUS_PHASE, CStringGetTextDatum(election_phase_name(view.phase)));
	if (view.timeline != 0)
	{
		set_column(values, nulls, STATUS_IN_RECOVERY, BoolGetDatum(view.in_recovery));
		set_column(values, nulls, STATUS_TIMELINE, Int32GetDatum((int32) view.timeline));
		set_column(values, nulls, STATUS_ELIGIBLE, BoolGetDatum(view.eligible));
	}
	if (view.wal_lag_bytes >= 0)
		set_column(values, nulls, STATUS_WAL_LAG_BYTES, Int64GetDatum(view.wal_lag_bytes));
	if (view.ineligible_reason[0] != '\0')
		set_column(values, nulls, STATUS_INELIGIBLE_REASON,
				   CStringGetTextDatum(view.ineligible_reason));

	if (view.published_lsn != 0)
		set_column(values, nulls, STATUS_PUBLISHED_LSN, LSNGetDatum(view.published_lsn));
	if (view.yielded[0] != '\0')
		set_column(values, nulls, STATUS_YIELDED, CStringGetTextDatum(view.yielded));
	if (view.succession_wait[0] != '\0')
		set_column(values, nulls, STATUS_SUCCESSION, CStringGetTextDatum(view.succession_wait));
	if (view.sync_mode[0] != '\0')
	{
		Datum		names[LE_MAX_SYNC];

		for (int i = 0; i < view.sync_count; i++)
			names[i] = CStringGetTextDatum(view.sync_names[i]);
		set_column(values, nulls, STATUS_SYNCHRONOUS_MODE, CStringGetTextDatum(view.sync_mode));
		set_column(values, nulls, STATUS_SYNCHRONOUS_STANDBY, BoolGetDatum(le_view_sync_member(&view)));
		set_column(values, nulls, STATUS_SYNCHRONOUS_STANDBYS,
				   PointerGetDatum(construct_array(names, view.sync_count, TEXTOID,
												   -1, false, TYPALIGN_INT)));
		/* in synchronous mode only a recorded standby takes over after a crash */
		set_column(values, nulls, STATUS_AUTOMATIC_FAILOVER,
				   BoolGetDatum(strcmp(view.sync_mode, "off") == 0 || view.sync_count > 0));
	}

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* Runs one range read of the candidates to completion on the current endpoint. */
static bool
read_candidates(EtcdClient *client, EtcdCandidates *candidates, char *err)
{
	EtcdRequest *req = etcd_range_candidates(client, le_prefix, 0, le_request_timeout, 0);
	bool		ok;

	while (!req->done)
	{
		int			fired = etcd_client_wait(client, -1, true, PG_WAIT_EXTENSION);

		if (fired & WL_POSTMASTER_DEATH)
			ereport(FATAL,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("terminating connection due to unexpected postmaster exit")));
		if (fired & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	ok = etcd_range_candidates_result(req, le_prefix, candidates, err);
	if (!ok && req->transport_failed)
		etcd_client_endpoint_failed(client, req->endpoint);
	etcd_request_free(req);
	return ok;
}

Datum
leader_candidates(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EtcdClient *volatile client = NULL;
	EtcdCandidates queue;
	EtcdAccess	access;
	char		err[LE_ERROR_LEN];
	LeaderView	view;
	uint64		valid_until;
	TimestampTz role_since;
	volatile bool ok = false;
	int			i;

	le_require_preload();
	InitMaterializedSRF(fcinfo, 0);

	le_shared_snapshot(&view, &valid_until, &role_since);

	PG_TRY();
	{
		client = etcd_client_create(CurrentMemoryContext);
		etcd_access_current(&access);
		etcd_client_set_access(client, &access);
		etcd_client_set_endpoints(client, le_endpoint_list);
		for (int attempt = 0; !ok && attempt < etcd_client_endpoint_count(client); attempt++)
			ok = read_candidates(client, &queue, err);
	}
	PG_FINALLY();
	{
		if (client != NULL)
			etcd_client_destroy(client);
	}
	PG_END_TRY();

	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read the election queue from etcd"),
				 errdetail("%s", err),
				 errhint("Check leader_election.endpoints, the TLS and user settings, and that etcd is running.")));

	for (i = 0; i < queue.count; i++)
	{
		EtcdKeyValue *k = &queue.keys[i];
		Datum		values[6];
		bool		nulls[6] = {0};

		values[0] = Int32GetDatum(i);
		values[1] = CStringGetTextDatum(k->name);
		values[2] = printable_key(k->key);
		values[3] = Int64GetDatum(k->create_revision);
		values[4] = Int64GetDatum(k->lease);
		values[5] = BoolGetDatum(view.own_create_revision != 0 &&
								 k->create_revision == view.own_create_revision &&
								 strcmp(k->key, view.own_key) == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

Datum
leader_resign(PG_FUNCTION_ARGS)
{
	char		error[LE_ERROR_LEN];

	le_require_preload();
	if (!le_is_leader_now())
		PG_RETURN_BOOL(false);
	if (!le_resign_request_and_wait(error))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not hand over leadership: this node leads on"),
				 errdetail("%s", error),
				 errhint("Check the next standby's replication, or raise leader_election.switchover_timeout.")));
	PG_RETURN_BOOL(true);
}
