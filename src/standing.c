/*
 * standing.c
 *		Owns whether this node may stand: its replication state, read at
 *		every step, against the cluster record (cluster_record.c has the
 *		rules), and the data directory's memory of having been part of a
 *		replicated cluster.
 *
 * Here only: a standby stands only behind a leader (it never joins an
 * empty queue, and promotes only when a leader it queued behind left), and
 * a queued standby that lost its stream keeps its place for a grace period
 * longer than a lease, so that when the leader crashed -- and every standby
 * lost its stream at once -- the first in line still takes over once the
 * leader's lease expires, and the others still stand behind it while it
 * promotes (their grace starts again when it comes first in line); the
 * first in line itself needs no stream while it takes over.  A recorded
 * synchronous standby stands as long as the record names it, even without
 * a stream or a leader: it has every acknowledged commit, so the cluster
 * need not wait for its old primary.
 * A standby that streams an older timeline than the cluster's reconnects
 * after that grace period.  The synchronous set a standby relies on is the
 * one the leader's term confirms (rely_on_confirmed_set()).
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"

#include "election_internal.h"

/*
 * How long a queued standby that lost its stream keeps its place: longer
 * than the leader's lease could outlive a crash (TTL, plus etcd's expiry
 * check and a raft election's extension).
 */
static uint64
stream_grace_us(Election *e)
{
	int			ttl_s = e->config.lease_ttl_s;

	return (uint64) ttl_s * 1000000 + (uint64) Max(2000, ttl_s * 500) * 1000;
}

/* ---- standing ---- */

/*
 * A standby the record names as synchronous: it has every acknowledged
 * commit, however long ago its stream ended -- the leader takes it out of
 * the record before commits stop waiting for it.
 */
bool
el_recorded_sync_standby(Election *e)
{
	return e->replication.in_recovery && e->record.exists && e->record.readable &&
		e->record.sync.mode != SYNC_MODE_OFF &&
		sync_set_has(&e->record.sync, e->config.node_name);
}

/*
 * ... and may take over without a leader it queued behind: after a crash of
 * the primary, not after a clean stop (a restart of the whole cluster waits
 * for its primary, as without synchronous mode).
 */
bool
el_sync_standby_may_start(Election *e)
{
	return el_recorded_sync_standby(e) && !e->record.stopping;
}

/*
 * Whether the node may stand now, by its replication state and the last
 * read of the election; if not, e->ineligible_reason says why.
 */
bool
el_may_stand(Election *e, uint64 now)
{
	StandingInput input;
	const ReplicationState *rs = &e->replication;

	input.replication = rs;
	input.node_name = e->config.node_name;
	input.candidate = e->config.candidate;
	input.max_lag_bytes = e->config.max_lag_bytes;
	/*
	 * One that yielded stands again at once: the one it yielded to may fail.
	 * A recorded synchronous standby stands as long as the record names it.
	 * The first in line has nobody to stream from: whether it may take over
	 * is for the term and succession.c to say, however long that takes.
	 */
	input.stream_grace = (e->stream_grace_from != 0 &&
						  now < e->stream_grace_from + stream_grace_us(e)) ||
		(e->phase == EP_TAKING_OVER && e->stream_lost_at != 0) ||
		(e->yielded_at != 0 && now < e->yielded_at + stream_grace_us(e)) ||
		el_recorded_sync_standby(e);
	input.replicated_member = e->replicated_member;
	input.timeline_seen = e->timeline_seen;
	input.moved_from = e->moved_from.exists ? &e->moved_from : NULL;
	input.sync_member = el_recorded_sync_standby(e);
	if (!cluster_may_stand(&e->record, &input, e->ineligible_reason))
		return false;
	/* (a recorded synchronous standby may take over an empty queue too) */
	if (rs->in_recovery && !e->leader_known && !el_sync_standby_may_start(e))
	{
		strlcpy(e->ineligible_reason,
				"no leader to stream from: a standby stands only behind a leader",
				LE_ERROR_LEN);
		return false;
	}
	e->ineligible_reason[0] = '\0';
	return true;
}

/*
 * A standby that streams a timeline older than the cluster's streams from a
 * deposed primary (one whose worker froze keeps its walsenders): after a
 * while it reconnects, and primary_conninfo finds the leader.
 */
static void
follow_cluster_timeline(Election *e, uint64 now)
{
	const ReplicationState *rs = &e->replication;

	if (!rs->in_recovery || !rs->streaming || !e->record.exists || !e->record.readable ||
		e->record.system_identifier != rs->system_identifier ||
		rs->received_timeline == 0 || rs->received_timeline >= e->record.timeline)
	{
		e->behind_since = 0;
		return;
	}
	if (e->behind_since == 0)
		e->behind_since = now;
	else if (now - e->behind_since >= stream_grace_us(e) && replication_restart_receiver())
	{
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" streams timeline %u, the cluster is on timeline %u: its WAL receiver reconnects",
						e->config.node_name, rs->received_timeline, e->record.timeline)));
		e->behind_since = 0;
	}
}

/* Two reasons of one kind: the same words, whatever the numbers in them. */
static bool
same_kind(const char *a, const char *b)
{
	for (;;)
	{
		while (isdigit((unsigned char) *a) || *a == '.')
			a++;
		while (isdigit((unsigned char) *b) || *b == '.')
			b++;
		if (*a != *b)
			return false;
		if (*a == '\0')
			return true;
		a++;
		b++;
	}
}

/* Reads replication state and decides standing, logging what changed. */
void
el_assess(Election *e, uint64 now)
{
	replication_read(&e->replication);
	if (!e->membership_read)
	{
		e->replicated_member =
			cluster_membership_known(e->replication.system_identifier,
									 &e->timeline_seen);
		e->membership_read = true;
	}
	follow_cluster_timeline(e, now);

	/*
	 * A queued standby's grace period starts when its stream ends, and again
	 * when another node comes first in line: that one promotes before this
	 * standby can stream from it (after a crash, a frozen first in line
	 * costs a second lease).
	 */
	if (!e->replication.in_recovery || e->create_revision == 0 || e->replication.streaming)
		e->stream_lost_at = e->stream_grace_from = 0;
	else if (e->stream_lost_at == 0)
		e->stream_lost_at = e->stream_grace_from = now;
	if (e->leader_known && e->fencing_token != e->grace_leader_token)
	{
		if (e->stream_grace_from != 0)
			e->stream_grace_from = now;
		e->grace_leader_token = e->fencing_token;
	}
	if (!e->replication.in_recovery || e->replication.streaming)
		e->yielded_at = 0;

	/* first in line, the node stands by definition */
	if (el_holds_first_place(e->phase) || e->phase == EP_RESIGNING)
	{
		e->eligible = true;
		e->ineligible_reason[0] = '\0';
		return;
	}
	e->eligible = el_may_stand(e, now);

	/* starting up is no news */
	if (!e->eligible && !e->replication.crash_recovery &&
		!same_kind(e->ineligible_reason, e->logged_reason))
	{
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" does not stand in the election: %s",
						e->config.node_name, e->ineligible_reason),
				 strstr(e->ineligible_reason, "pg_rewind") != NULL ?
				 errhint("Rejoin it as a standby of the leader with pg_rewind (scripts/rejoin-standby.sh, README section \"Rejoining a deposed primary\").") : 0));
		strlcpy(e->logged_reason, e->ineligible_reason, sizeof(e->logged_reason));
	}
	else if (e->eligible && e->logged_reason[0] != '\0')
	{
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" may stand in the election again",
						e->config.node_name)));
		e->logged_reason[0] = '\0';
	}
}

/* A record of this node's cluster was seen or written: the data directory remembers. */
void
el_note_membership(Election *e, const ClusterRecord *record)
{
	if (!e->membership_read || !record->exists || !record->readable ||
		record->system_identifier != e->replication.system_identifier ||
		(e->replicated_member && record->timeline <= e->timeline_seen))
		return;
	cluster_membership_remember(record->system_identifier,
								Max(record->timeline, e->timeline_seen));
	e->replicated_member = true;
	e->timeline_seen = Max(record->timeline, e->timeline_seen);
}

/*
 * The synchronous set a standby relies on: the record's, when the term says
 * the same.  The leader writes both in one transaction, and its term at
 * every confirmation, so they differ only when someone else wrote the
 * record -- an old copy put back (etcd restored from a snapshot), one made
 * by hand -- or the leader's last write failed half-way.  Then the standby
 * relies on what both allow (sync_set_intersect()): a set that grew admits
 * no newcomer, "off" or another set admits nobody the leader's did not.
 * Only "synchronous_mode":"off", which the leader never writes, overrides
 * it: an operator accepting the loss of what only the old primary had.  A
 * term that says nothing of the set (a claim, an older version) leaves the
 * record as it is.  Reads take the term before the record.
 */
static void
rely_on_confirmed_set(Election *e)
{
	ClusterRecord *r = &e->record;

	if (!r->exists || !r->readable || r->sync_off_by_hand ||
		el_holds_first_place(e->phase) ||
		!e->term.exists || !e->term.readable || !e->term.has_sync)
		return;
	if (!sync_set_equal(&r->sync, &e->term.sync))
		sync_set_intersect(&r->sync, &e->term.sync, &r->sync);
}

/* The record as the last read of the election had it. */
void
el_take_record(Election *e, const EtcdElectionRead *read)
{
	if (read->record_found)
		cluster_record_decode(read->record_value, read->record_len, &e->record);
	else
		memset(&e->record, 0, sizeof(e->record));
	rely_on_confirmed_set(e);
	el_note_membership(e, &e->record);
}
