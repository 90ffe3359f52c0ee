/*
 * reading.c
 *		Owns what a node makes of a read of the election (election.c sends
 *		it): holding nothing, whether to stand; holding a key, its place in
 *		the queue, the leader it shows, the cluster record and the term it
 *		takes in, whether it still stands, and which phase follows -- queued,
 *		taking over, leading on -- with the watch that phase needs.
 *
 * The rule it keeps: a node acts only on a read that shows its own key,
 * with its own create revision; a leader also needs etcd to have taken
 * its confirmation, which holds only while that key is first.
 */
#include "postgres.h"

#include "election_internal.h"

/* The leader (and the queue) as a read of the whole election, or up to our key, shows it. */
static void
take_leader(Election *e, const EtcdCandidates *queue)
{
	el_show_queue(queue);
	e->leader_known = queue->count > 0;
	if (!e->leader_known)
		return;
	strlcpy(e->leader_name, queue->keys[0].name, sizeof(e->leader_name));
	e->fencing_token = queue->keys[0].create_revision;
}

/* Holding nothing, the node read the election: it campaigns if it may stand. */
void
el_on_observe_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	EtcdElectionRead read;
	uint64		now = le_clock_us();

	if (e->phase != EP_OBSERVING)
		return;
	if (!etcd_read_election_result(req, e->config.prefix, &read, err))
	{
		el_note_failure(e, err, req);
		e->leader_known = false;
		return;
	}
	take_leader(e, &read.queue);
	el_take_term(e, &read);
	el_take_record(e, &read);
	e->next_read = now + (uint64) e->config.lease_ttl_s * 1000000 / 3;
	e->eligible = el_may_stand(e, now);
	if (e->eligible)
		el_enter(e, EP_GRANTING);
	else
		el_clear_failure(e);		/* this read is all an observer does */
}

/*
 * A read of the election answered: in "looking", as a queued node's
 * refresh, or as a claim or confirmation of the term (the same reads, after
 * a write that holds only while our key is first).  The queue decides.
 */
void
el_on_range_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	EtcdElectionRead read;
	int			own = -1;
	bool		first;
	bool		confirms = (req->tag == REQ_CLAIM || req->tag == REQ_CONFIRM);
	uint64		now = le_clock_us();

	if (!etcd_read_election_result(req, e->config.prefix, &read, err))
	{
		el_note_failure(e, err, req);
		/* a claim decides on a fresh read of the term: read again */
		if (e->phase == EP_LOOKING || e->phase == EP_TAKING_OVER)
			el_enter(e, EP_BACKING_OFF);
		return;
	}
	e->refresh_due = false;

	/* Our key must still be there with our revision: no phantom leader. */
	for (int i = 0; i < read.queue.count; i++)
		if (strcmp(read.queue.keys[i].key, e->key) == 0 &&
			read.queue.keys[i].create_revision == e->create_revision)
			own = i;
	if (own < 0)
	{
		el_leave(e, "its key was deleted", false);
		return;
	}

	el_clear_failure(e);
	el_take_term(e, &read);
	el_take_record(e, &read);
	first = (own == 0);
	e->queue_position = own;
	take_leader(e, &read.queue);
	if (!first)
		e->followed_leader = true;

	/* etcd took the write only while our key was first: valid from its sending */
	if (confirms && read.confirmed)
	{
		uint64		ttl_us = (uint64) e->lease_ttl_s * 1000000;

		e->term_claimed = true;
		e->confirmed_until = Max(e->confirmed_until,
								 req->started_us + ttl_us - el_margin_us(e->lease_ttl_s));
	}

	if (el_holds_first_place(e->phase))
	{
		if (!read.confirmed)
		{
			el_leave(e, "its key is no longer first in line", false);
			return;
		}
		/*
		 * A record naming another primary means someone took over -- unless
		 * it names an older timeline of this cluster than the one this node
		 * writes on: a stale record (an old backup put back), which the
		 * leader writes again below.
		 */
		if (e->phase == EP_LEADING && e->record.exists &&
			!cluster_record_names(&e->record, &e->replication, e->config.node_name) &&
			!(e->record.readable &&
			  e->record.system_identifier == e->replication.system_identifier &&
			  e->record.timeline < e->replication.timeline))
		{
			el_leave(e, e->record.readable ? "the cluster record names another primary" :
				  "the cluster record is unreadable", true);
			return;
		}
	}
	else if (e->phase == EP_TAKING_OVER && confirms && read.confirmed)
	{
		/* claimed: it still stands by what it read with the claim? */
		e->eligible = el_may_stand(e, now);
		if (!e->eligible)
		{
			el_leave(e, e->ineligible_reason, true);
			return;
		}
		el_enter(e, e->replication.in_recovery ? EP_PROMOTING : EP_LEADING);
	}
	else
	{
		/* a node about to queue or take over must still stand */
		e->eligible = el_may_stand(e, now);
		if (!e->eligible)
		{
			el_leave(e, e->ineligible_reason, true);
			return;
		}
		if (first && e->replication.in_recovery && !e->followed_leader &&
			!el_sync_standby_may_start(e))
		{
			el_leave(e, "a standby takes over only from a leader it queued behind", true);
			return;
		}
		if (!first)
			el_enter(e, EP_QUEUED);
		else if (e->phase != EP_TAKING_OVER)
			el_enter(e, EP_TAKING_OVER);
	}
	if (e->phase == EP_NO_LEASE || e->phase == EP_LOOKING)
		return;

	/* The first in line watches its own key; everyone else its predecessor. */
	el_watch_key(e, first ? e->key : read.queue.keys[own - 1].key, read.queue.revision + 1);
	/* the next in line also sees each confirmation of the one ahead */
	if (e->phase == EP_QUEUED && own == 1)
		el_watch_term(e, read.queue.revision + 1);
	else
		el_cancel_term_watch(e);

	if (e->phase == EP_LEADING)
	{
		el_sync_note_queue(e, &read.queue);
		el_note_leader_key(e, &read, req->started_us);
	}
	if (e->phase == EP_LEADING && e->request == NULL && el_record_due(e, &read.queue))
		el_send_record(e, el_recordable_wal_end(), false);
}
