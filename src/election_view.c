/*
 * election_view.c
 *		Owns what the election shows in shared memory: the view derived from
 *		the phase, the leadership deadline, and the WAL position that bounds
 *		a leader's commits.
 *
 * The node leads only in "leading" and only while both its lease and its
 * last confirmation of the term are valid (el_leadership_deadline()); a
 * leading primary of a replicated cluster also publishes the WAL position
 * its record holds, which bounds its commits (wal_bound.c).  Role changes
 * are logged here, once each.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"

#include "election_internal.h"
#include "printable.h"

static bool
lease_valid(Election *e, uint64 now)
{
	return e->lease_id != 0 && now < e->lease_valid_until;
}

/* Leadership ends with the lease or with the last confirmation, whichever is first. */
static uint64
leadership_deadline(Election *e)
{
	return Min(e->lease_valid_until, e->confirmed_until);
}

static LeaderRole
current_role(Election *e, uint64 now)
{
	/* an observer follows the leader it read; a node about to join does not yet */
	if (!lease_valid(e, now))
		return (e->phase == EP_OBSERVING && !e->eligible && e->leader_known &&
				e->last_error[0] == '\0') ? LE_ROLE_FOLLOWER : LE_ROLE_DISCONNECTED;
	switch (e->phase)
	{
		case EP_LEADING:
			/* unconfirmed, it does not lead: say so, not "leader" */
			return now < leadership_deadline(e) ? LE_ROLE_LEADER : LE_ROLE_TAKING_OVER;
		case EP_TAKING_OVER:
			return LE_ROLE_TAKING_OVER;
		case EP_PROMOTING:
			return LE_ROLE_PROMOTING;
		case EP_HANDING_OVER:
		case EP_RESIGNING:
		case EP_MOVING:
			return LE_ROLE_RESIGNING;
		default:
			break;
	}
	return (e->create_revision != 0 && e->queue_position > 0) ?
		LE_ROLE_FOLLOWER : LE_ROLE_DISCONNECTED;
}

/* Shared memory gets the view derived from the phase; role changes are logged. */
void
el_publish(Election *e)
{
	uint64		now = le_clock_us();
	LeaderView	view;
	bool		leads;

	memset(&view, 0, sizeof(view));
	view.phase = e->phase;
	view.role = current_role(e, now);
	leads = (view.role == LE_ROLE_LEADER);
	/* shown like the names other candidates wrote into etcd */
	le_printable(e->config.node_name, strlen(e->config.node_name),
				 view.node_name, LE_NAME_LEN);
	view.leader_known = e->leader_known;
	if (e->leader_known)
	{
		strlcpy(view.leader_name, e->leader_name, LE_NAME_LEN);
		view.fencing_token = e->fencing_token;
	}
	view.queue_position = (e->create_revision != 0) ? e->queue_position : -1;
	view.lease_id = e->lease_id;
	view.lease_ttl = e->lease_id != 0 ? e->lease_ttl_s : e->config.lease_ttl_s;
	view.lease_valid_until = e->lease_id != 0 ? e->lease_valid_until : 0;
	if (e->create_revision != 0)
		strlcpy(view.own_key, e->key, LE_KEY_LEN);
	view.own_create_revision = e->create_revision;
	strlcpy(view.endpoint, etcd_client_endpoint(e->client), LE_URL_LEN);
	strlcpy(view.last_error, e->last_error, LE_ERROR_LEN);
	view.in_recovery = e->replication.in_recovery;
	view.timeline = e->replication.timeline;
	view.wal_lag_bytes = e->replication.in_recovery ?
		cluster_standby_lag(&e->record, &e->replication) : -1;
	view.eligible = e->eligible;
	view.streaming = e->replication.in_recovery && e->replication.streaming;
	view.accepts_connections = e->replication.reads_open;
	view.receive_lag_bytes = e->replication.lag_bytes;
	view.received_lsn = e->replication.received;
	view.replayed_lsn = e->replication.replayed;
	strlcpy(view.ineligible_reason, e->ineligible_reason, LE_ERROR_LEN);
	view.published_lsn = e->position_published ? e->published_lsn : 0;
	strlcpy(view.yielded, e->yielded, LE_ERROR_LEN);
	if (e->phase == EP_TAKING_OVER)
		strlcpy(view.succession_wait, e->succession_wait, LE_ERROR_LEN);
	if (e->record.exists && e->record.readable)
	{
		const SyncSet *set = el_holds_first_place(e->phase) && e->sync_confirmed_known ?
			&e->sync_confirmed : &e->record.sync;

		strlcpy(view.sync_mode, sync_mode_name(set->mode), sizeof(view.sync_mode));
		view.sync_count = set->count;
		for (int i = 0; i < set->count; i++)
			le_printable(set->names[i], strlen(set->names[i]), view.sync_names[i],
						 LE_NAME_LEN);
	}

	/* walsenders serve this node's leadership, a handover included */
	if ((leads || e->phase == EP_HANDING_OVER) && lease_valid(e, now))
		le_shared_allow_shipping(leads ? leadership_deadline(e) : e->lease_valid_until);
	le_shared_set_recorded_wal(leads &&
							   cluster_record_names(&e->record, &e->replication,
													e->config.node_name) ?
							   e->record.wal_end : 0);
	el_note_view(e, view.role, e->leader_known ? e->fencing_token : 0, now);
	if (!le_shared_publish(&view, leads ? leadership_deadline(e) : 0,
						   leads ? (uint64) e->create_revision : 0))
		return;
	if (view.role == LE_ROLE_LEADER)
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" is now the leader",
						e->config.node_name),
				 errdetail("Key \"%s\", fencing token " INT64_FORMAT ".",
						   e->key, e->fencing_token)));
	else if (view.role == LE_ROLE_FOLLOWER && view.queue_position < 0)
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" is now a follower outside the queue: %s",
						e->config.node_name, e->ineligible_reason),
				 errdetail("Leader \"%s\", fencing token " INT64_FORMAT ".",
						   e->leader_name, e->fencing_token)));
	else if (view.role == LE_ROLE_FOLLOWER)
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" is now a follower at queue position %d",
						e->config.node_name, view.queue_position),
				 errdetail("Leader \"%s\", fencing token " INT64_FORMAT ".",
						   e->leader_name, e->fencing_token)));
	else if (view.role == LE_ROLE_DISCONNECTED)
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" is now disconnected from the election",
						e->config.node_name)));
}

/* The queue a read showed, for the HTTP endpoint (names and keys printable). */
void
el_show_queue(const EtcdCandidates *queue)
{
	LeaderQueueView *shown = palloc0(sizeof(LeaderQueueView));

	shown->revision = queue->revision;
	shown->total = queue->count;
	shown->count = Min(queue->count, LE_SHOWN_QUEUE);
	for (int i = 0; i < shown->count; i++)
	{
		const EtcdKeyValue *k = &queue->keys[i];

		strlcpy(shown->entries[i].name, k->name, LE_NAME_LEN);
		le_printable(k->key, strlen(k->key), shown->entries[i].key, LE_KEY_LEN);
		shown->entries[i].create_revision = k->create_revision;
		shown->entries[i].lease = k->lease;
	}
	le_shared_publish_queue(shown);
	pfree(shown);
}
