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
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "etcd_api.h"
#include "leader_election.h"

PG_FUNCTION_INFO_V1(leader_is_primary);
PG_FUNCTION_INFO_V1(leader_wait);
PG_FUNCTION_INFO_V1(leader_status);
PG_FUNCTION_INFO_V1(leader_candidates);
PG_FUNCTION_INFO_V1(leader_resign);

/* etcd values are arbitrary bytes: show what is not valid text as '?'. */
static text *
text_from_etcd(const char *s)
{
	char	   *copy = pstrdup(s);
	int			len = strlen(copy);

	if (!pg_verifymbstr(copy, len, true))
	{
		char	   *p;

		for (p = copy; *p; p++)
			if (IS_HIGHBIT_SET(*p))
				*p = '?';
	}
	return cstring_to_text(copy);
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

Datum
leader_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[11];
	bool		nulls[11] = {0};
	LeaderShared snap;
	uint64		valid_until;
	uint64		now;
	LeaderRole	role;

	le_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	LWLockAcquire(&le_shared->lock, LW_SHARED);
	memcpy(&snap, le_shared, sizeof(snap));
	LWLockRelease(&le_shared->lock);
	valid_until = pg_atomic_read_u64(&le_shared->valid_until_us);
	now = le_monotonic_us();

	/* A leader whose validity lapsed (frozen worker) is not one. */
	role = snap.role;
	if (role == LE_ROLE_LEADER && !(valid_until != 0 && now < valid_until))
		role = LE_ROLE_DISCONNECTED;

	values[0] = CStringGetTextDatum(le_role_name(role));
	if (snap.node_name[0] != '\0')
		values[1] = PointerGetDatum(text_from_etcd(snap.node_name));
	else
		nulls[1] = true;
	if (snap.leader_known && role != LE_ROLE_DISCONNECTED)
	{
		values[2] = PointerGetDatum(text_from_etcd(snap.leader_name));
		values[6] = Int64GetDatum(snap.fencing_token);
	}
	else
		nulls[2] = nulls[6] = true;
	if (snap.queue_position >= 0 && role != LE_ROLE_DISCONNECTED)
		values[3] = Int32GetDatum(snap.queue_position);
	else
		nulls[3] = true;
	if (snap.lease_id != 0)
		values[4] = Int64GetDatum(snap.lease_id);
	else
		nulls[4] = true;
	values[5] = Int32GetDatum(snap.lease_ttl);
	if (role == LE_ROLE_LEADER)
		values[7] = TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																	(valid_until - now) / 1000));
	else
		nulls[7] = true;
	if (snap.endpoint[0] != '\0')
		values[8] = CStringGetTextDatum(snap.endpoint);
	else
		nulls[8] = true;
	if (snap.last_error[0] != '\0')
		values[9] = PointerGetDatum(text_from_etcd(snap.last_error));
	else
		nulls[9] = true;
	values[10] = TimestampTzGetDatum(snap.role_since);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* Runs one queue read to completion on the current endpoint. */
static bool
read_queue(EtcdClient *client, EtcdQueue *queue, char *err)
{
	EtcdRequest *req = etcd_queue(client, le_prefix, 0, le_request_timeout, 0);
	bool		ok;

	while (!req->done)
	{
		int			fired = etcd_client_wait(client, -1, PG_WAIT_EXTENSION);

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
	ok = etcd_queue_result(req, le_prefix, queue, err);
	if (!ok && req->transport_failed)
		etcd_client_next_endpoint(client);
	etcd_request_free(req);
	return ok;
}

Datum
leader_candidates(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EtcdClient *volatile client = NULL;
	EtcdQueue	queue;
	char		err[LE_ERROR_LEN];
	char		own_key[LE_KEY_LEN];
	int64		own_revision;
	volatile bool ok = false;
	int			i;

	le_require_preload();
	InitMaterializedSRF(fcinfo, 0);

	LWLockAcquire(&le_shared->lock, LW_SHARED);
	strlcpy(own_key, le_shared->own_key, sizeof(own_key));
	own_revision = le_shared->own_create_revision;
	LWLockRelease(&le_shared->lock);

	PG_TRY();
	{
		client = etcd_client_create(CurrentMemoryContext);
		etcd_client_set_endpoints(client, le_endpoints);
		for (int attempt = 0; !ok && attempt < etcd_client_endpoint_count(client); attempt++)
			ok = read_queue(client, &queue, err);
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
				 errhint("Check leader_election.endpoints and that etcd is running.")));

	for (i = 0; i < queue.count; i++)
	{
		EtcdKeyValue *k = &queue.keys[i];
		Datum		values[6];
		bool		nulls[6] = {0};

		values[0] = Int32GetDatum(i);
		values[1] = PointerGetDatum(text_from_etcd(k->value));
		values[2] = PointerGetDatum(text_from_etcd(k->key));
		values[3] = Int64GetDatum(k->create_revision);
		values[4] = Int64GetDatum(k->lease);
		values[5] = BoolGetDatum(own_revision != 0 &&
								 k->create_revision == own_revision &&
								 strcmp(k->key, own_key) == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

Datum
leader_resign(PG_FUNCTION_ARGS)
{
	uint32		request;
	int			worker_procno;

	le_require_preload();
	if (!le_is_leader_now())
		PG_RETURN_BOOL(false);

	request = pg_atomic_add_fetch_u32(&le_shared->resign_requests, 1);
	LWLockAcquire(&le_shared->lock, LW_SHARED);
	worker_procno = le_shared->worker_procno;
	LWLockRelease(&le_shared->lock);
	if (worker_procno >= 0)
		SetLatch(&ProcGlobal->allProcs[worker_procno].procLatch);

	/* Wait until the worker released the key (or is gone). */
	ConditionVariablePrepareToSleep(&le_shared->changed);
	for (;;)
	{
		bool		served;

		LWLockAcquire(&le_shared->lock, LW_SHARED);
		served = (int32) (le_shared->resigns_done - request) >= 0 ||
			le_shared->worker_procno < 0;
		LWLockRelease(&le_shared->lock);
		if (served)
			break;
		ConditionVariableTimedSleep(&le_shared->changed, 1000, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	PG_RETURN_BOOL(true);
}
