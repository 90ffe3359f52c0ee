/*
 * wal_positions.c
 *		Owns this node's side of "the most advanced standby takes over": a
 *		queued standby publishes its WAL position once its stream ends (and
 *		again if it still moves), and withdraws it when it streams again;
 *		first in line after a crash, it reads every queued standby's
 *		position and takes over, yields its place, or waits
 *		(succession.c has the rule).
 *
 * The position is written beside the phase's request, under this node's
 * lease, so it goes with the candidacy.  After a crash every standby loses
 * its stream at once, a lease TTL before the first in line may take over:
 * by then the positions are there, and the check costs one read.  A
 * position still missing is waited for, at most a quarter of the TTL
 * (succession_wait_us), then the decision is made without it.
 */
#include "postgres.h"

#include "miscadmin.h"

#include "election_internal.h"
#include "succession.h"

/* how long the first in line waits for positions not published yet */
static uint64
succession_wait_us(Election *e)
{
	return (uint64) e->config.lease_ttl_s * 1000000 / 4;
}

/* Phases that hold a key behind someone: a standby there may take over later. */
static bool
queued_standby(Election *e)
{
	return e->replication.in_recovery && e->create_revision != 0 &&
		(e->phase == EP_QUEUED || e->phase == EP_LOOKING || e->phase == EP_TAKING_OVER);
}

static void
own_position(Election *e, WalPosition *p)
{
	memset(p, 0, sizeof(*p));
	p->lease = e->lease_id;
	strlcpy(p->node, e->config.node_name, sizeof(p->node));
	p->timeline = e->replication.received_timeline != 0 ?
		e->replication.received_timeline : e->replication.timeline;
	p->received = e->replication.received;
	p->flushed = e->replication.flushed;
}

/*
 * Publishes the position of a queued standby whose stream ended (again if
 * what it flushed still moved), withdraws it once the node streams again or
 * is no queued standby any more (it promotes).
 */
void
el_step_position(Election *e)
{
	char		key[LE_KEY_LEN];

	if (e->lease_id == 0)
		e->position_published = false;	/* it went with the lease */
	if (e->position_write != NULL || e->lease_id == 0)
		return;
	wal_position_key(e->config.prefix, e->lease_id, key, sizeof(key));
	if (queued_standby(e) && e->stream_lost_at != 0)
	{
		WalPosition mine;

		if (e->position_published && e->position_for == e->stream_lost_at &&
			e->published_lsn == e->replication.flushed)
			return;
		own_position(e, &mine);
		e->position_write = etcd_put(e->client, key, wal_position_encode(&mine),
									 e->lease_id, e->config.request_timeout_ms,
									 REQ_POSITION);
		e->position_for = e->stream_lost_at;
		e->published_lsn = mine.flushed;
		e->position_published = true;
	}
	else if (e->position_published && (e->replication.streaming || !queued_standby(e)))
	{
		e->position_write = etcd_delete(e->client, key, e->config.request_timeout_ms,
										REQ_POSITION);
		e->position_published = false;
		e->published_lsn = InvalidXLogRecPtr;
	}
}

/* A failed write is made again at the next step. */
void
el_on_position_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];

	if (req == e->position_write)
		e->position_write = NULL;
	if (!etcd_result_ok(req, err))
	{
		if (req->transport_failed)
			etcd_client_endpoint_failed(e->client, req->endpoint);
		e->position_published = !e->position_published;
		if (!e->position_published)
			e->published_lsn = InvalidXLogRecPtr;
		e->position_for = 0;
	}
}

/*
 * A standby first in line takes over from a primary that neither stopped
 * cleanly nor handed over only once succession.c says so: true then (and
 * for any other takeover).  Until then it reads the queue and the
 * positions; the answer decides.  With known_record, the record of the last
 * read may say that the primary stopped cleanly; without, only a fresh
 * read of it may.
 */
bool
el_succession_settled(Election *e, uint64 now, bool known_record)
{
	char		prefix[LE_KEY_LEN];

	if (e->succession_settled || !e->replication.in_recovery ||
		(known_record && (!e->record.exists ||
						  (e->record.readable && e->record.stopping))))
		return true;
	if (e->request != NULL || now < e->succession_next_read)
		return false;
	if (e->succession_since == 0)
		e->succession_since = now;
	wal_position_key_prefix(e->config.prefix, prefix, sizeof(prefix));
	e->request = etcd_read_succession(e->client, e->config.prefix, e->record_key,
									  e->term_key, e->leader_key, prefix,
									  e->config.request_timeout_ms, REQ_SUCCESSION);
	return false;
}

/* Two reasons to wait of one kind: the same words up to the first quote. */
static bool
same_wait(const char *a, const char *b)
{
	size_t		n = strcspn(a, "\"");

	return n == strcspn(b, "\"") && strncmp(a, b, n) == 0;
}

void
el_on_succession_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	char		to[LE_NAME_LEN];
	char		why[LE_ERROR_LEN];
	EtcdElectionRead read;
	SuccessionInput input;
	WalPosition mine;
	WalPosition *positions;
	int			npositions = 0;
	uint64		now = le_clock_us();

	if (e->phase != EP_TAKING_OVER)
		return;
	if (!etcd_read_election_result(req, e->config.prefix, &read, err))
	{
		el_note_failure(e, err, req);
		e->succession_next_read = e->retry_at;
		return;
	}
	/* the queue changed under us: read it as any node does */
	if (read.queue.count == 0 || strcmp(read.queue.keys[0].key, e->key) != 0 ||
		read.queue.keys[0].create_revision != e->create_revision)
	{
		el_enter(e, EP_LOOKING);
		return;
	}
	el_take_term(e, &read);
	el_take_record(e, &read);
	/* a clean stop or a handover: every standby that may take over has all */
	if (!e->record.exists || (e->record.readable && e->record.stopping))
	{
		e->succession_settled = true;
		e->succession_wait[0] = '\0';
		return;
	}
	positions = palloc0(sizeof(WalPosition) * Max(read.nextra, 1));
	for (int i = 0; i < read.nextra; i++)
		if (wal_position_decode(e->config.prefix, read.extra_keys[i], read.extra_values[i],
								read.extra_lens[i], &positions[npositions]))
			npositions++;
	own_position(e, &mine);
	input.own = &mine;
	input.queue = &read.queue;
	input.positions = positions;
	input.npositions = npositions;
	input.record = &e->record;
	input.waited_enough = now >= e->succession_since + succession_wait_us(e);

	switch (succession_decide(&input, to, why))
	{
		case SUCCESSION_TAKE:
			e->succession_settled = true;
			e->succession_wait[0] = '\0';
			break;
		case SUCCESSION_YIELD:
			ereport(LOG,
					(errmsg("leader_election: node \"%s\" yields its place to node \"%s\"%s",
							e->config.node_name, to, strchr(why, ':')),
					 errdetail("The primary did not stop cleanly; the node that takes over must have the most WAL%s.",
							   e->record.sync.mode != SYNC_MODE_OFF ?
							   " among the synchronous standbys it recorded" : "")));
			strlcpy(e->yielded, why, sizeof(e->yielded));
			e->yielded_at = now;
			e->succession_wait[0] = '\0';
			el_leave(e, why, true);
			break;
		case SUCCESSION_WAIT:
			if (!same_wait(why, e->succession_wait))
				ereport(LOG,
						(errmsg("leader_election: node \"%s\" is first in line but does not take over yet: %s",
								e->config.node_name, why)));
			strlcpy(e->succession_wait, why, sizeof(e->succession_wait));
			/* positions come soon; an operator's decision does not */
			e->succession_next_read = now + (input.waited_enough ?
											 (uint64) e->config.lease_ttl_s * 1000000 / 3 :
											 (uint64) 100 * 1000);
			break;
	}
}
