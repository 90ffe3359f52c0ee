/*
 * handover.c
 *		Owns leaving leadership without losing WAL: leader_resign(), and the
 *		clean stop of the worker.
 *
 * A replicated primary that resigns is fenced at once, waits until its
 * commits in flight are done and its successor has flushed all its WAL,
 * and only then releases its key -- in one transaction with the term
 * released and the cluster record naming its final WAL position, that it
 * stopped writing and its successor -- keeping the successor's stream.  A
 * primary that stops cleanly lets its streaming standbys catch up and
 * leaves the same record.  So only a standby with all of it may ever take
 * over.  A primary that stops leading drops its other walsenders, so that
 * its standbys find the new leader.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"

#include "election_internal.h"

/*
 * A primary that stops leading for good lets its standbys go: they follow
 * whichever node reports itself writable.  Not while PostgreSQL shuts down:
 * its walsenders still send the last WAL.  The successor it just handed over
 * to keeps its stream: it is waiting for WAL when it is told to promote, and
 * has all this node wrote until then, so the others can follow it.
 */
void
el_release_standbys(Election *e)
{
	int			dropped;

	if (e->shutting_down || e->replication.in_recovery)
		return;
	dropped = replication_drop_standbys(e->handed_over ? e->successor : NULL);
	e->handed_over = false;
	if (dropped > 0)
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" ended its %d walsender(s): it no longer leads",
						e->config.node_name, dropped)));
}

/*
 * A fenced leader starts handing over: it reads who is next, unless
 * nothing replicates from it, when who is next does not matter.
 */
void
el_begin_handover(Election *e, uint64 now)
{
	e->handover_deadline = now + (uint64) e->config.switchover_timeout_ms * 1000;
	e->successor[0] = '\0';
	e->handover_upto = InvalidXLogRecPtr;
	e->successor_known = !el_replicated(e, true);
	if (!e->successor_known)
		e->request = etcd_range_candidates(e->client, e->config.prefix, 0,
										   e->config.request_timeout_ms, REQ_SUCCESSOR);
}

/*
 * A replicated primary hands over: once no commit is in flight, the WAL
 * written so far is what the successor must have flushed before the key
 * goes, and the key goes only while that successor is still next in line
 * (etcd_delete_before): one that left the queue meanwhile is looked up
 * again.  Past the deadline it gives up, says why, and leads on.
 */
void
el_step_handover(Election *e, uint64 now)
{
	XLogRecPtr	flushed = InvalidXLogRecPtr;
	bool		streams = false;
	char		error[LE_ERROR_LEN];
	WalStreams	now_streaming;

	if (!e->successor_known)
	{
		if (e->request == NULL && now >= e->retry_at)
			e->request = etcd_range_candidates(e->client, e->config.prefix, 0,
											   e->config.request_timeout_ms, REQ_SUCCESSOR);
	}
	else if (e->successor[0] == '\0' || !e->successor_must_catch_up)
	{
		/* nobody is next, or not a standby of ours: once commits ended */
		if (le_commits_in_flight() != 0 && now < e->handover_deadline)
			return;
		el_enter(e, EP_RESIGNING);
		return;
	}
	else
	{
		if (e->handover_upto == InvalidXLogRecPtr && le_commits_in_flight() == 0)
		{
			e->handover_upto = replication_wal_end();
			replication_flush_wal(e->handover_upto);
		}
		replication_streams(&now_streaming);
		streams = replication_standby_flushed(&now_streaming, e->successor, &flushed);
		if (e->handover_upto != InvalidXLogRecPtr &&
			(e->successor_by_name ? streams && flushed >= e->handover_upto :
			 replication_has_standby(&now_streaming) &&
			 replication_standbys_behind(&now_streaming, e->handover_upto) == 0) &&
			e->request == NULL && now >= e->retry_at)
			e->request = el_send_release(e, e->successor_key, e->successor_revision,
									  el_build_record(e, e->handover_upto, true, e->successor),
									  REQ_HANDOVER);

	}
	if (now < e->handover_deadline)
		return;

	if (!e->successor_known)
		snprintf(error, sizeof(error), "could not read the queue from etcd: %s", e->last_error);
	else if (e->handover_upto == InvalidXLogRecPtr)
		snprintf(error, sizeof(error), "commits were still in flight after %d ms",
				 e->config.switchover_timeout_ms);
	else if (!e->successor_by_name)
		snprintf(error, sizeof(error),
				 "no walsender's application_name names a candidate of the election, and the standbys that stream from this node have not all flushed WAL up to %X/%X after %d ms",
				 LSN_FORMAT_ARGS(e->handover_upto), e->config.switchover_timeout_ms);
	else if (!streams)
		snprintf(error, sizeof(error),
				 "the next in line, \"%s\", does not stream from this node (no walsender has application_name \"%s\")",
				 e->successor, e->successor);
	else
		snprintf(error, sizeof(error),
				 "the next in line, \"%s\", has flushed WAL up to %X/%X after %d ms; this primary's WAL ends at %X/%X",
				 e->successor, LSN_FORMAT_ARGS(flushed), e->config.switchover_timeout_ms,
				 LSN_FORMAT_ARGS(e->handover_upto));
	ereport(WARNING,
			(errmsg("leader_election: node \"%s\" could not hand over and leads on", e->config.node_name),
			 errdetail("%s", error)));
	el_drop_request(&e->request);
	el_answer_resign(e, error);
	el_enter(e, EP_LEADING);
}

/* A handing-over leader learnt who is next in line. */
void
el_on_successor_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	EtcdCandidates queue;

	if (e->phase != EP_HANDING_OVER)
		return;
	if (!etcd_range_candidates_result(req, e->config.prefix, &queue, err))
	{
		el_note_failure(e, err, req);	/* el_step_handover() asks again */
		return;
	}
	if (queue.count == 0 || strcmp(queue.keys[0].key, e->key) != 0 ||
		queue.keys[0].create_revision != e->create_revision)
	{
		el_leave(e, "its key was deleted", false);
		return;
	}
	e->successor_known = true;
	e->successor[0] = '\0';
	if (queue.count > 1)
	{
		XLogRecPtr	flushed;
		WalStreams	streams;

		strlcpy(e->successor, queue.keys[1].name, sizeof(e->successor));
		strlcpy(e->successor_key, queue.keys[1].key, sizeof(e->successor_key));
		e->successor_revision = queue.keys[1].create_revision;
		replication_streams(&streams);
		/* in a replicated cluster, or to a standby of ours: it must have all */
		e->successor_must_catch_up =
			cluster_record_names(&e->record, &e->replication, e->config.node_name) ||
			replication_standby_flushed(&streams, e->successor, &flushed) ||
			replication_has_standby(&streams);
		/* without the recipe's application_names, every standby must have all */
		e->successor_by_name = el_candidate_streams(e, &queue, &streams) ||
			!replication_has_standby(&streams);
	}
}

/* The key is gone while the successor was next: it takes over, with its stream. */
void
el_handed_over(Election *e)
{
	char		reason[LE_ERROR_LEN];

	snprintf(reason, sizeof(reason),
			 "it handed over to \"%s\", which had flushed all its WAL up to %X/%X",
			 e->successor, LSN_FORMAT_ARGS(e->handover_upto));
	e->handed_over = true;
	el_leave(e, reason, false);
}

/* The handing-over leader's key is gone, if its successor was still next. */
void
el_on_handover_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	bool		succeeded;

	if (e->phase != EP_HANDING_OVER)
		return;
	if (!etcd_txn_result(req, &succeeded, err))
	{
		el_note_failure(e, err, req);	/* el_step_handover() tries again */
		return;
	}
	if (!succeeded)
	{
		/* the successor left the queue (or our key went): who is next now? */
		e->successor_known = false;
		return;
	}
	el_handed_over(e);
}

void
election_resign(Election *e, uint32 request_id)
{
	e->resign_request = request_id;
	e->resign_waiting = true;
	if (e->phase == EP_LEADING)
		el_enter(e, EP_HANDING_OVER);
	else if (e->phase != EP_RESIGNING && e->phase != EP_HANDING_OVER)
		el_answer_resign(e, NULL);
}

/*
 * A replicated primary that stops (fast or smart shutdown) lets its
 * streaming standbys flush everything it wrote before it gives up its key,
 * so that the one that takes over loses nothing; bounded by
 * switchover_timeout and by its lease (nothing renews it meanwhile).  Its
 * walsenders keep running until PostgreSQL's shutdown checkpoint.
 */
static XLogRecPtr
let_standbys_catch_up(Election *e)
{
	uint64		deadline = Min(le_clock_us() + (uint64) e->config.switchover_timeout_ms * 1000,
							   e->lease_valid_until);
	XLogRecPtr	upto = InvalidXLogRecPtr;

	le_shared_clear_leadership();
	while (le_clock_us() < deadline)
	{
		if (upto == InvalidXLogRecPtr && le_commits_in_flight() == 0)
		{
			upto = replication_wal_end();
			replication_flush_wal(upto);
		}
		if (upto != InvalidXLogRecPtr)
		{
			WalStreams	streams;

			replication_streams(&streams);
			if (replication_standbys_behind(&streams, upto) == 0)
				return upto;
		}
		pg_usleep(AWAIT_POLL_MS * 1000L);
	}
	ereport(LOG,
			(errmsg("leader_election: node \"%s\" stops before its standbys flushed all its WAL",
					e->config.node_name),
			 errdetail("It waited leader_election.switchover_timeout (%d ms) or as long as its lease allowed.",
					   e->config.switchover_timeout_ms)));
	return InvalidXLogRecPtr;
}

/*
 * A stopping primary's last word in the cluster record, written with the
 * release of its key.  If its standbys caught up with everything it wrote
 * (upto), it records that it stopped and where: only a standby that has all
 * of it may take over then, so a clean stop loses nothing.  If they did
 * not, it records how far it flushed, and the usual bound applies, as after
 * a crash.
 */
static char *
final_record(Election *e, XLogRecPtr upto)
{
	if (upto != InvalidXLogRecPtr)
		return el_build_record(e, upto, true, NULL);
	return el_build_record(e, replication_wal_flushed(), false, NULL);
}

void
election_shutdown(Election *e, const char *reason, bool postmaster_alive)
{
	uint64		deadline;
	char	   *record = NULL;

	e->shutting_down = true;
	if (postmaster_alive && e->phase == EP_LEADING && el_replicated(e, false))
		record = final_record(e, let_standbys_catch_up(e));
	el_leave_with(e, reason, true, record);
	el_publish(e);
	/* the release first, then the lease: the successor must see the release */
	deadline = le_clock_us() + (uint64) e->config.request_timeout_ms * 1000;
	while (!etcd_client_idle(e->client) && le_clock_us() < deadline)
	{
		EtcdRequest *req;

		etcd_client_wait(e->client, (long) ((deadline - le_clock_us()) / 1000) + 1,
						 false, PG_WAIT_EXTENSION);
		while ((req = etcd_client_next_done(e->client)) != NULL)
		{
			if (req->tag == REQ_RELEASE && e->revoke_after_release != 0)
			{
				el_revoke_lease(e, e->revoke_after_release);
				e->revoke_after_release = 0;
			}
			etcd_request_free(req);
		}
	}
	etcd_client_cancel_all(e->client);
}
