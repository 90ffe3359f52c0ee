/*
 * record_keeping.c
 *		Owns when the leader writes the cluster record: once a standby
 *		streams from it, after a promotion, whenever its WAL moved (at each
 *		refresh, and before commits would have to wait for it), and at once
 *		when the record vanished from a replicated cluster.
 *
 * Every write holds only while the leader's key is first in line.  The WAL
 * position written is the insert position, flushed first, so that a commit
 * waiting for it (wal_bound.c) is covered.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"

#include "election_internal.h"

/*
 * A primary that the record names, or that a standby streams from (with
 * any_walsender, any physical walsender, pg_receivewal's too): a clean stop
 * waits for its standbys, a handover for its successor.
 */
bool
el_replicated(Election *e, bool any_walsender)
{
	WalStreams	streams;

	if (e->replication.in_recovery)
		return false;
	if (cluster_record_names(&e->record, &e->replication, e->config.node_name))
		return true;
	replication_streams(&streams);
	return any_walsender ? streams.count > 0 : replication_has_standby(&streams);
}

/*
 * This node as the cluster's primary, with how far it has flushed WAL,
 * whether it stopped writing and, after a handover, to whom: the record as
 * it would write it (kept in record_sent), encoded for etcd.
 */
char *
el_build_record(Election *e, XLogRecPtr wal_end, bool stopping, const char *successor)
{
	ClusterRecord *mine = &e->record_sent;

	memset(mine, 0, sizeof(*mine));
	mine->exists = true;
	mine->readable = true;
	mine->system_identifier = e->replication.system_identifier;
	mine->timeline = e->replication.timeline;
	strlcpy(mine->node, e->config.node_name, sizeof(mine->node));
	mine->wal_end = wal_end;
	mine->stopping = stopping;
	if (successor != NULL)
		strlcpy(mine->successor, successor, sizeof(mine->successor));
	mine->sync = e->sync_next;
	return cluster_record_encode(mine);
}

/*
 * Writes this node into the cluster record, if it is still first in line;
 * a holder of the term writes the term in the same transaction, with the
 * same synchronous set, which is how standbys know the set is the leader's.
 */
void
el_send_record(Election *e, XLogRecPtr wal_end, bool stopping)
{
	char	   *record = el_build_record(e, wal_end, stopping, NULL);

	e->request = etcd_put_if_first(e->client, e->config.prefix, e->key, e->create_revision,
								   e->record_key, record, 0,
								   e->term_claimed ? e->term_key : NULL,
								   e->term_claimed ? el_confirmed_term(e) : NULL,
								   e->config.request_timeout_ms, REQ_RECORD);
}

/* The WAL written so far, flushed, so that it can be recorded as flushed. */
XLogRecPtr
el_recordable_wal_end(void)
{
	XLogRecPtr	end = replication_wal_end();

	replication_flush_wal(end);
	return end;
}

/* Whether a candidate of this election, other than us, is among the streams. */
bool
el_candidate_streams(Election *e, const EtcdCandidates *queue, const WalStreams *streams)
{
	XLogRecPtr	flushed;

	for (int i = 0; i < queue->count; i++)
		if (strcmp(queue->keys[i].key, e->key) != 0 &&
			replication_standby_flushed(streams, queue->keys[i].name, &flushed))
			return true;
	return false;
}

/*
 * A leading primary records the cluster once a standby streams from it: a
 * candidate of this election (by application_name), or any client that
 * replays WAL (an archiver's pg_receivewal does not: it makes no replicated
 * cluster); and then its flushed WAL whenever that moved: the lag standbys
 * measure.
 */
bool
el_record_due(Election *e, const EtcdCandidates *queue)
{
	WalStreams	streams;

	/* (and once per leadership, and when its synchronous set was rewritten) */
	if (cluster_record_names(&e->record, &e->replication, e->config.node_name))
		return replication_wal_end() != e->record.wal_end || e->record.stopping ||
			e->record.moved || !e->sync_confirmed_known || el_sync_record_due(e);
	/* a stale record, of an older timeline of ours: write it again */
	if (e->record.exists)
		return true;
	/* a replicated cluster's record is written again at once if it vanished */
	if (e->replicated_member || e->replication.timeline > 1 || e->moved_from.exists)
		return true;
	replication_streams(&streams);
	return el_candidate_streams(e, queue, &streams) || replication_has_standby(&streams);
}

/*
 * A leader whose WAL moved half of max_lag_on_failover past the position
 * its record holds records it again, before commits must wait for that
 * (wal_bound.c); a backend that waits wakes the worker for this.  Its
 * synchronous standbys change here too (sync_standbys.c).
 */
void
el_step_leading(Election *e, uint64 now)
{
	XLogRecPtr	end;

	if (e->request != NULL || now < e->retry_at ||
		!cluster_record_names(&e->record, &e->replication, e->config.node_name))
		return;
	/* a change of the synchronous set first: its record write moves the WAL too */
	el_step_sync(e, now);
	end = replication_wal_end();
	if (e->request == NULL && end > e->record.wal_end &&
		end - e->record.wal_end >= (uint64) e->config.max_lag_bytes / 2)
		el_send_record(e, el_recordable_wal_end(), false);
}

/* The leader wrote (or could not write) the cluster record. */
void
el_on_record_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	bool		succeeded;
	ClusterRecord previous;

	if (!etcd_txn_result(req, &succeeded, err))
	{
		el_note_failure(e, err, req);	/* retried at the retry time */
		return;
	}
	if (!succeeded)
	{
		if (el_holds_first_place(e->phase))
			el_leave(e, "its key is no longer first in line", false);
		return;
	}
	/* news only when who leads changed, not when the WAL position moved */
	if (!cluster_record_names(&e->record, &e->replication, e->config.node_name))
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" recorded itself as the cluster's primary on timeline %u",
						e->config.node_name, e->record_sent.timeline),
				 errdetail("Key \"%s\", system identifier " UINT64_FORMAT ".",
						   e->record_key, e->record_sent.system_identifier)));
	previous = e->record;
	e->record = e->record_sent;
	el_sync_confirmed(e, &previous);
	el_note_membership(e, &e->record);
	e->moved_from.exists = false;	/* the move is complete */
	if (e->phase == EP_PROMOTING)
		el_enter(e, EP_LEADING);
}
