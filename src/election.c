/*
 * election.c
 *		Owns one node's candidacy, following etcd's election recipe: a lease,
 *		a key <prefix>/<lease hex> created by a campaign txn, a place in the
 *		queue by create revision, and a watch on the key just ahead; and, in
 *		a streaming-replication cluster, what leading means for a standby
 *		(promotion) and for a primary that hands over (its successor's WAL).
 *
 * Phases.  The node is always in one ElectionPhase; enter() is the only
 * place that changes it, checks that the change is legal, and sends the
 * request the new phase waits for.  At most one such request is in flight
 * (e->request); the lease renewal and the watch run beside it.
 *
 *	phase         holds       in flight      on                    -> phase
 *	------------  ----------  -------------  --------------------  ------------
 *	no lease      -           -              retry time reached    observing
 *	observing     -           read           may stand             granting
 *	                                         may not; TTL/3 later  observing
 *	granting      -           lease grant    granted               campaigning
 *	                                         failed                no lease
 *	campaigning   lease       campaign txn   key created or found  looking
 *	                                         etcd unreachable      backing off
 *	                                         txn refused           no lease
 *	looking       lease, key  read           first in line         taking over
 *	                                         others ahead          queued
 *	                                         failed                backing off
 *	queued        lease, key  watch (pred.)  predecessor deleted   looking
 *	                                         watch broke           backing off
 *	                                         a refresh: first      taking over
 *	taking over   lease, key  release check, the last leader       promoting (a
 *	                          then claim     provably stopped:     standby),
 *	                                         term claimed          leading
 *	                                         claim refused         queued, looking
 *	promoting     lease, key  watch (own)    recovery ended and    leading
 *	                                         the record written
 *	leading       lease, key  watch (own)    leader_resign()       handing over
 *	                                         settings name another moving
 *	                                         election (replicated)
 *	handing over  lease, key  watch (own)    successor caught up:  no lease
 *	                                         key released while it
 *	                                         is still next
 *	                                         nobody is next, or    resigning
 *	                                         not a standby of ours
 *	                                         no catch-up in time   leading
 *	resigning     lease, key  key release    answered              no lease
 *	moving        lease, key  key release    answered              no lease
 *	backing off   lease       -              retry time reached    campaigning
 *	                                         (or looking, if the key exists)
 *
 * Every phase that holds a lease also goes to "no lease" (revoking the
 * lease) when the lease lapses locally or in etcd, when a read, a
 * confirmation or the leader's watch finds the key deleted or not first,
 * when the settings change, when a queued node may no longer stand, or
 * when a promotion does not finish in time.
 *
 * The term.  Leading takes a claim of the leadership term in etcd
 * (term_record.c): a node first in line claims it only once the previous
 * holder provably stopped writing -- it released the term with its key, or
 * its validity has lapsed -- and a leader stays valid only as long as its
 * confirmations of the term (one after each renewal) say that its key is
 * still first.  Every release of a key that held the term (resign,
 * handover, clean stop, a settings change) writes it "released" in the
 * same transaction, after leadership was cleared in shared memory and no
 * commit was in flight.
 *
 * Beside the phase:
 * - The renewal: every TTL/3 while a lease is held.  The lease is valid until
 *   (send time of the last answered renewal) + TTL - margin, which ends before
 *   etcd can expire it.  A renewal waits at most what is left of that
 *   validity (and request_timeout); one that is not answered within a
 *   quarter of its timeout is hedged: the same renewal goes to the next
 *   endpoint, without cancelling the first, and the first answer wins.  So a
 *   hung endpoint costs a leader a quarter of its remaining validity, not
 *   the lease.
 * - The watch on the node's own key (promoting, leading, handing over): when
 *   it breaks, it is re-created at the next retry time from the revision it
 *   started at (so no deletion in between is missed), without waiting for a
 *   read to succeed.
 * - The refresh: in queued, promoting and leading, every answered renewal is
 *   followed by another read (e->request) without leaving the phase; the
 *   holder of the term confirms it in the same request.  It keeps
 *   followers' view of the queue, the cluster record and the term fresh and
 *   notices a key deleted behind the node's back; its answer is handled like
 *   the one of "looking".
 * - The term watch: the next in line also watches the term, so that it sees
 *   each confirmation of the leader when it happens, and after a crash takes
 *   over as soon as the leader's lease has expired.
 *
 * Standing.  Every read of the election brings the cluster record with the
 * queue, at one revision; at every step the node reads its replication state
 * from shared memory and decides whether it may stand (cluster_record.c has
 * the rules).  Here only: a standby stands only behind a leader (it never
 * joins an empty queue, and promotes only when a leader it queued behind
 * left), and a queued standby that lost its stream keeps its place for a
 * grace period longer than a lease, so that when the leader crashed -- and
 * every standby lost its stream at once -- the first in line still takes
 * over once the leader's lease expires.
 *
 * Replication.  A standby first in line promotes (after a clean stop of the
 * old primary, once its stream from it has ended), and leads only once
 * recovery has ended and it has recorded itself as the cluster's primary.
 * A leading primary records itself, and then the WAL it has flushed, once a
 * standby of the election streams from it, and at once if the record
 * vanished while its data directory has been part of a replicated cluster.
 * A replicated primary that resigns is fenced at once, waits until its
 * commits in flight are done and its successor has flushed all its WAL,
 * and only then releases its key, keeping its successor's stream; the
 * release records its final WAL position and that it stopped writing, as a
 * clean stop does (after letting its streaming standbys catch up), so that
 * only a standby with all of it may ever take over.  A primary that stops
 * leading drops its walsenders, so that its standbys find the new leader.
 *
 * The node leads only in "leading" and only while both its lease and its
 * last confirmation are valid; the view published to shared memory is
 * derived from the phase in publish().  A leading primary of a replicated
 * cluster also publishes the WAL position its record holds, which bounds
 * its commits (wal_bound.c), and records its WAL again before they would
 * wait.
 *
 * Every finished request is handed to its handler (on_<request>_answer) and
 * freed in election_process(), the watch included.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "utils/memutils.h"

#include "cluster_record.h"
#include "election.h"
#include "etcd_api.h"
#include "printable.h"
#include "replication.h"
#include "term_record.h"

#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		1000
#define RENEW_RETRY_MS		250
/* how often replication state is looked at, and while it is awaited */
#define REPLICATION_POLL_MS	250
#define AWAIT_POLL_MS		10
/* a promotion may take this long at least, whatever the TTL */
#define PROMOTE_MIN_S		5

typedef enum RequestTag
{
	REQ_GRANT,
	REQ_RENEWAL,
	REQ_CAMPAIGN,
	REQ_OBSERVE,				/* read of the whole election, holding nothing */
	REQ_RANGE,					/* read up to our own key: looking, refresh */
	REQ_CLAIM,					/* the term written while our key is first */
	REQ_CONFIRM,				/* the same, by a leader: its refresh */
	REQ_VERIFY,					/* was the term released with its key? */
	REQ_SUCCESSOR,				/* who is next in line, for a handover */
	REQ_HANDOVER,				/* key delete while that one is still next */
	REQ_RECORD,					/* the cluster record, written by the leader */
	REQ_WATCH,
	REQ_TERM_WATCH,				/* the next in line watches the term */
	REQ_DELETE,
	REQ_MOVE,					/* key released, the record saying "moved" */
	REQ_RELEASE,				/* key released on leaving; then the lease goes */
	REQ_DISCARD					/* answer not needed */
} RequestTag;

struct Election
{
	EtcdClient *client;
	ElectionConfig config;
	ElectionPhase phase;
	char		record_key[LE_KEY_LEN];
	char		term_key[LE_KEY_LEN];

	/* the phase's request (grant, campaign, read, delete, record) */
	EtcdRequest *request;
	/* queued, promoting and leading: a read is due after a renewal */
	bool		refresh_due;
	/* observing: when to read the election again */
	uint64		next_read;

	/* lease */
	int64		lease_id;		/* 0: none */
	int			lease_ttl_s;
	uint64		lease_valid_until;	/* le_clock_us() */
	uint64		next_renewal;
	/* renewals in flight: the first one and its hedges on other endpoints */
	EtcdRequest *renewals[LE_MAX_ENDPOINTS];
	int			nrenewals;
	uint64		next_hedge;		/* when to hedge them, if still unanswered */

	/* place in the queue */
	char		key[LE_KEY_LEN];
	int64		create_revision;	/* 0: not queued */
	/* this candidacy queued behind a leader: a standby may take over */
	bool		followed_leader;
	/* a standby streaming an older timeline than the cluster's, since */
	uint64		behind_since;

	/* the election as the last read saw it */
	int			queue_position; /* -1: unknown */
	bool		leader_known;
	char		leader_name[LE_NAME_LEN];
	int64		fencing_token;
	ClusterRecord record;
	ClusterRecord record_sent;	/* the record as this node last wrote it */
	/* the data directory has been part of a cluster with a record */
	bool		replicated_member;
	bool		membership_read;
	/* the record this node left its last election with, moving the cluster */
	ClusterRecord moved_from;

	/* the leadership term as the last read or the term watch saw it */
	TermRecord	term;
	int64		term_seen_revision; /* term.mod_revision seen since ...; -1: none */
	uint64		term_seen_at;	/* ... this le_clock_us() time, first */
	EtcdRequest *term_watch;	/* the next in line: the leader's confirmations */
	bool		term_claimed;	/* our key holds the term */
	bool		term_known;		/* a term was seen in this election */
	uint64		confirmed_until;	/* validity by the last confirmation */
	/* taking over: the release of term revision release_checked was checked */
	int64		release_checked;
	bool		release_verified;
	/* the predecessor's key, and the revision its watch saw it deleted at */
	char		deleted_key[LE_KEY_LEN];
	int64		deleted_revision;
	uint64		takeover_at;	/* when the term's holder can no longer write */
	bool		takeover_logged;
	/* a released key's lease, revoked once the release is answered */
	int64		revoke_after_release;

	/* this node in replication, read at every step, and what follows */
	ReplicationState replication;
	uint64		stream_lost_at; /* a queued standby's stream ended; 0: none */
	bool		eligible;
	char		ineligible_reason[LE_ERROR_LEN];
	char		logged_reason[LE_ERROR_LEN];	/* last one written to the log */

	/* promoting: not before the old primary's stream ended, or then */
	bool		promote_requested;
	uint64		promote_not_before;
	/* recovery must end by then, unless replay still moves on */
	uint64		promote_deadline;
	XLogRecPtr	promote_replayed;
	char		promote_error[LE_ERROR_LEN];

	/* handing over */
	uint64		handover_deadline;
	bool		successor_known;
	char		successor[LE_NAME_LEN]; /* printable; "" when nobody is next */
	char		successor_key[LE_KEY_LEN];
	int64		successor_revision;
	bool		successor_must_catch_up;
	/* standbys' application_names name candidates: wait for the successor's */
	bool		successor_by_name;
	bool		handed_over;	/* the successor keeps its walsender */
	XLogRecPtr	handover_upto;	/* WAL it must have; 0 until commits drained */

	/* queued: the predecessor's key; promoting, leading: our own */
	EtcdRequest *watch;
	char		watched_key[LE_KEY_LEN];
	int64		watch_from;		/* its start revision; 0: a range read must tell */

	/* the resign request being served */
	bool		resign_waiting;
	uint32		resign_request;

	/* leaving for good: standbys keep streaming until PostgreSQL stops */
	bool		shutting_down;

	/* settings not applied yet (a handover or a move finishes first) */
	bool		config_pending;
	ElectionConfig pending_config;
	uint64		move_deadline;	/* moving: commits in flight end by then */

	/* failures, until a range read succeeds again */
	uint64		retry_at;
	int			backoff_ms;
	char		last_error[LE_ERROR_LEN];	/* shown in leader_status() */
	char		logged_error[LE_ERROR_LEN]; /* last one written to the log */
};

static void leave(Election *e, const char *reason, bool release);

const char *
election_phase_name(ElectionPhase phase)
{
	switch (phase)
	{
		case EP_NO_LEASE:
			return "no lease";
		case EP_OBSERVING:
			return "observing";
		case EP_GRANTING:
			return "granting";
		case EP_CAMPAIGNING:
			return "campaigning";
		case EP_LOOKING:
			return "looking";
		case EP_QUEUED:
			return "queued";
		case EP_TAKING_OVER:
			return "taking over";
		case EP_PROMOTING:
			return "promoting";
		case EP_LEADING:
			return "leading";
		case EP_HANDING_OVER:
			return "handing over";
		case EP_RESIGNING:
			return "resigning";
		case EP_MOVING:
			return "moving";
		case EP_BACKING_OFF:
			return "backing off";
	}
	return "unknown";
}

static uint64
margin_us(int ttl_s)
{
	/* absorbs clock-rate differences and scheduling delay */
	return Max((uint64) ttl_s * 100000, 100000);
}

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

static bool
lease_valid(Election *e, uint64 now)
{
	return e->lease_id != 0 && now < e->lease_valid_until;
}

/* Phases in which this node's own key is first in line. */
static bool
holds_first_place(ElectionPhase phase)
{
	return phase == EP_PROMOTING || phase == EP_LEADING || phase == EP_HANDING_OVER ||
		phase == EP_MOVING;
}

static void
drop_request(EtcdRequest **req)
{
	if (*req != NULL)
		etcd_request_free(*req);
	*req = NULL;
}

static void
cancel_watch(Election *e)
{
	drop_request(&e->watch);
	e->watched_key[0] = '\0';
}

static void
cancel_renewals(Election *e)
{
	while (e->nrenewals > 0)
		drop_request(&e->renewals[--e->nrenewals]);
}

/* Leadership ends with the lease or with the last confirmation, whichever is first. */
static uint64
leadership_deadline(Election *e)
{
	return Min(e->lease_valid_until, e->confirmed_until);
}

/* The term was seen at mod_revision (0: absent): since now, unless seen so before. */
static void
note_term_seen(Election *e, int64 mod_revision, uint64 now)
{
	if (mod_revision == e->term_seen_revision)
		return;
	e->term_seen_revision = mod_revision;
	e->term_seen_at = now;
}

/* The term as the last read of the election had it. */
static void
take_term(Election *e, const EtcdElectionRead *read)
{
	if (read->term_found)
		term_record_decode(read->term_value, read->term_len, read->term_mod_revision,
						   e->config.prefix, &e->term);
	else
		memset(&e->term, 0, sizeof(e->term));
	e->term_known |= e->term.exists;
	note_term_seen(e, e->term.mod_revision, le_clock_us());
}

/*
 * The term as this node gives it up, or NULL if it may not say "released":
 * it does not hold the term, or a commit that passed the commit-time check
 * has not ended yet.  Leadership in shared memory is cleared already.
 */
static char *
released_term(Election *e)
{
	if (!e->term_claimed || le_commits_in_flight() != 0)
		return NULL;
	return term_record_encode(e->key, e->create_revision, e->config.node_name,
							  e->lease_ttl_s, true);
}

/* This node's term, as its claim and each confirmation write it. */
static EtcdRequest *
send_confirmation(Election *e, int tag)
{
	return etcd_confirm_term(e->client, e->config.prefix, e->key, e->create_revision,
							 e->term_key,
							 term_record_encode(e->key, e->create_revision,
												e->config.node_name, e->lease_ttl_s, false),
							 e->record_key, e->config.request_timeout_ms, tag);
}

static EtcdRequest *
send_read(Election *e, int64 max_create_revision, int tag)
{
	return etcd_read_election(e->client, e->config.prefix, max_create_revision,
							  e->record_key, e->term_key, e->config.request_timeout_ms, tag);
}

static void
cancel_term_watch(Election *e)
{
	drop_request(&e->term_watch);
}

/*
 * A read succeeded: the node knows its place, so etcd works end to end.
 * Partial successes (a grant, a renewal) do not count, or an etcd that fails
 * later in the cycle would be retried and logged without backoff.
 */
static void
clear_failure(Election *e)
{
	e->backoff_ms = 0;
	e->retry_at = 0;
	if (e->last_error[0] != '\0')
		ereport(LOG,
				(errmsg("leader_election: etcd at %s answers again",
						etcd_client_endpoint(e->client))));
	e->last_error[0] = '\0';
	e->logged_error[0] = '\0';
}

/*
 * Records a failure: logged once per distinct message, shown in
 * last_error, and later attempts wait a growing, bounded backoff.  A request
 * that got no usable answer (req, if any) moves the client to the next
 * endpoint.
 */
static void
note_failure(Election *e, const char *message, EtcdRequest *req)
{
	if (strcmp(message, e->logged_error) != 0)
	{
		ereport(WARNING,
				(errmsg("leader_election: %s", message),
				 errdetail("Node \"%s\" keeps trying; it is not the leader while etcd cannot confirm it.",
						   e->config.node_name)));
		strlcpy(e->logged_error, message, sizeof(e->logged_error));
	}
	strlcpy(e->last_error, message, sizeof(e->last_error));
	if (req != NULL && req->transport_failed)
		etcd_client_endpoint_failed(e->client, req->endpoint);
	e->backoff_ms = Min(Max(e->backoff_ms * 2, BACKOFF_MIN_MS), BACKOFF_MAX_MS);
	e->retry_at = le_clock_us() + (uint64) e->backoff_ms * 1000;
}

/* Tells a waiting leader_resign() that its request was served, or why not. */
static void
answer_resign(Election *e, const char *error)
{
	if (!e->resign_waiting)
		return;
	e->resign_waiting = false;
	le_resign_answered(e->resign_request, error);
}

/* ---- standing ---- */

/*
 * Whether the node may stand now, by its replication state and the last
 * read of the election; if not, e->ineligible_reason says why.
 */
static bool
may_stand(Election *e, uint64 now)
{
	StandingInput input;
	const ReplicationState *rs = &e->replication;

	input.replication = rs;
	input.node_name = e->config.node_name;
	input.candidate = e->config.candidate;
	input.max_lag_bytes = e->config.max_lag_bytes;
	input.stream_grace = e->stream_lost_at != 0 &&
		now < e->stream_lost_at + stream_grace_us(e);
	input.replicated_member = e->replicated_member;
	input.moved_from = e->moved_from.exists ? &e->moved_from : NULL;
	if (!cluster_may_stand(&e->record, &input, e->ineligible_reason))
		return false;
	if (rs->in_recovery && !e->leader_known)
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
static void
assess(Election *e, uint64 now)
{
	replication_read(&e->replication);
	if (!e->membership_read)
	{
		e->replicated_member =
			cluster_membership_known(e->replication.system_identifier);
		e->membership_read = true;
	}
	follow_cluster_timeline(e, now);

	/* a queued standby's grace period starts when its stream ends */
	if (!e->replication.in_recovery || e->create_revision == 0 || e->replication.streaming)
		e->stream_lost_at = 0;
	else if (e->stream_lost_at == 0)
		e->stream_lost_at = now;

	/* first in line, the node stands by definition */
	if (holds_first_place(e->phase) || e->phase == EP_RESIGNING)
	{
		e->eligible = true;
		e->ineligible_reason[0] = '\0';
		return;
	}
	e->eligible = may_stand(e, now);

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
static void
note_membership(Election *e, const ClusterRecord *record)
{
	if (e->replicated_member || !e->membership_read || !record->exists ||
		!record->readable || record->system_identifier != e->replication.system_identifier)
		return;
	cluster_membership_remember(record->system_identifier);
	e->replicated_member = true;
}

/* The record as the last read of the election had it. */
static void
take_record(Election *e, const EtcdElectionRead *read)
{
	if (read->record_found)
		cluster_record_decode(read->record_value, read->record_len, &e->record);
	else
		memset(&e->record, 0, sizeof(e->record));
	note_membership(e, &e->record);
}

/* A primary that the record names, or that any walsender streams from. */
static bool
streams_or_recorded(Election *e)
{
	WalStreams	streams;

	if (e->replication.in_recovery)
		return false;
	if (cluster_record_names(&e->record, &e->replication, e->config.node_name))
		return true;
	replication_streams(&streams);
	return streams.count > 0;
}

/* A primary with standbys, or the one the record names: a clean stop waits. */
static bool
replicated(Election *e)
{
	WalStreams	streams;

	if (e->replication.in_recovery)
		return false;
	if (cluster_record_names(&e->record, &e->replication, e->config.node_name))
		return true;
	replication_streams(&streams);
	return replication_has_standby(&streams);
}

/*
 * This node as the cluster's primary, with how far it has flushed WAL,
 * whether it stopped writing and, after a handover, to whom: the record as
 * it would write it (kept in record_sent), encoded for etcd.
 */
static char *
build_record(Election *e, XLogRecPtr wal_end, bool stopping, const char *successor)
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
	return cluster_record_encode(mine);
}

/* Writes this node into the cluster record, if it is still first in line. */
static void
send_record(Election *e, XLogRecPtr wal_end, bool stopping)
{
	e->request = etcd_put_if_first(e->client, e->config.prefix, e->key, e->create_revision,
								   e->record_key, build_record(e, wal_end, stopping, NULL),
								   e->config.request_timeout_ms, REQ_RECORD);
}

/* The WAL written so far, flushed, so that it can be recorded as flushed. */
static XLogRecPtr
recordable_wal_end(void)
{
	XLogRecPtr	end = replication_wal_end();

	replication_flush_wal(end);
	return end;
}

/* Whether a candidate of this election, other than us, is among the streams. */
static bool
candidate_streams(Election *e, const EtcdCandidates *queue, const WalStreams *streams)
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
static bool
record_due(Election *e, const EtcdCandidates *queue)
{
	WalStreams	streams;

	if (cluster_record_names(&e->record, &e->replication, e->config.node_name))
		return replication_wal_end() != e->record.wal_end || e->record.stopping;
	/* a replicated cluster's record is written again at once if it vanished */
	if (e->replicated_member || e->replication.timeline > 1 || e->moved_from.exists)
		return true;
	replication_streams(&streams);
	return candidate_streams(e, queue, &streams) || replication_has_standby(&streams);
}

/* ---- phases ---- */

#define PHASE_BIT(p)	(1u << (p))
#define ANY_PHASE		(PHASE_BIT(EP_COUNT) - 1)

/* For each phase, the phases it may be entered from: the table above. */
static const uint32 legal_from[EP_COUNT] = {
	[EP_NO_LEASE] = ANY_PHASE,
	[EP_OBSERVING] = PHASE_BIT(EP_NO_LEASE) | PHASE_BIT(EP_OBSERVING),
	[EP_GRANTING] = PHASE_BIT(EP_OBSERVING),
	[EP_CAMPAIGNING] = PHASE_BIT(EP_GRANTING) | PHASE_BIT(EP_BACKING_OFF),
	[EP_LOOKING] = PHASE_BIT(EP_CAMPAIGNING) | PHASE_BIT(EP_QUEUED) |
	PHASE_BIT(EP_TAKING_OVER) | PHASE_BIT(EP_BACKING_OFF),
	/* a refresh may find the queue changed */
	[EP_QUEUED] = PHASE_BIT(EP_LOOKING) | PHASE_BIT(EP_QUEUED) | PHASE_BIT(EP_TAKING_OVER),
	[EP_TAKING_OVER] = PHASE_BIT(EP_LOOKING) | PHASE_BIT(EP_QUEUED),
	[EP_PROMOTING] = PHASE_BIT(EP_TAKING_OVER) | PHASE_BIT(EP_PROMOTING),
	[EP_LEADING] = PHASE_BIT(EP_TAKING_OVER) | PHASE_BIT(EP_LEADING) |
	PHASE_BIT(EP_PROMOTING) | PHASE_BIT(EP_HANDING_OVER),
	[EP_HANDING_OVER] = PHASE_BIT(EP_LEADING),
	[EP_RESIGNING] = PHASE_BIT(EP_HANDING_OVER),
	[EP_MOVING] = PHASE_BIT(EP_LEADING),
	[EP_BACKING_OFF] = PHASE_BIT(EP_CAMPAIGNING) | PHASE_BIT(EP_LOOKING) |
	PHASE_BIT(EP_QUEUED) | PHASE_BIT(EP_TAKING_OVER),
};

/*
 * A primary that stops leading for good lets its standbys go: they follow
 * whichever node reports itself writable.  Not while PostgreSQL shuts down:
 * its walsenders still send the last WAL.  The successor it just handed over
 * to keeps its stream: it is waiting for WAL when it is told to promote, and
 * has all this node wrote until then, so the others can follow it.
 */
static void
release_standbys(Election *e)
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
 * The one place where the phase changes, checked against legal_from.
 * Leaving "leading" clears leadership in shared memory before anything else
 * happens; entering a phase that waits for etcd sends its request.
 */
static void
enter(Election *e, ElectionPhase to)
{
	ElectionPhase from = e->phase;
	uint64		now = le_clock_us();

	/* a bug; the worker exits, and its exit clears leadership */
	if (!(legal_from[to] & PHASE_BIT(from)))
		elog(ERROR, "leader_election: illegal phase change from \"%s\" to \"%s\"",
			 election_phase_name(from), election_phase_name(to));
	if (from == EP_LEADING && to != EP_LEADING)
		le_shared_clear_leadership();
	if ((from == EP_LEADING || from == EP_HANDING_OVER) &&
		to != EP_LEADING && to != EP_HANDING_OVER)
		release_standbys(e);
	if (from != to)
		elog(DEBUG1, "leader_election: phase \"%s\" -> \"%s\"",
			 election_phase_name(from), election_phase_name(to));
	e->phase = to;
	if (to != EP_QUEUED && to != EP_LEADING && to != EP_PROMOTING)
		e->refresh_due = false;
	/* only the next in line watches the term */
	if (to != EP_QUEUED)
		cancel_term_watch(e);

	switch (to)
	{
		case EP_NO_LEASE:
		case EP_QUEUED:
			break;
		case EP_LEADING:
			/* back from a handover that failed: confirm again at once */
			if (from == EP_HANDING_OVER)
				e->refresh_due = true;
			break;
		case EP_OBSERVING:
			drop_request(&e->request);
			e->request = send_read(e, 0, REQ_OBSERVE);
			break;
		case EP_GRANTING:
			e->request = etcd_lease_grant(e->client, e->config.lease_ttl_s,
										  e->config.request_timeout_ms, REQ_GRANT);
			break;
		case EP_CAMPAIGNING:
			e->request = etcd_campaign(e->client, e->key, e->config.node_name,
									   e->lease_id, e->config.request_timeout_ms,
									   REQ_CAMPAIGN);
			break;
		case EP_LOOKING:
			/* a refresh sent before the change may describe the old queue */
			drop_request(&e->request);
			cancel_watch(e);
			e->request = send_read(e, e->create_revision, REQ_RANGE);
			break;
		case EP_TAKING_OVER:
			/* step_takeover() checks a release, then claims the term */
			drop_request(&e->request);
			e->takeover_logged = false;
			break;
		case EP_PROMOTING:
			if (from == EP_PROMOTING)
				break;
			/* a primary that stopped cleanly still sends its last WAL */
			e->promote_requested = false;
			e->promote_not_before = now;
			if (e->record.exists && e->record.stopping &&
				strcmp(e->record.node, e->config.node_name) != 0 &&
				strcmp(e->record.successor, e->config.node_name) != 0)
				e->promote_not_before += (uint64) e->config.lease_ttl_s * 1000000;
			e->promote_deadline = e->promote_not_before +
				(uint64) Max(e->config.lease_ttl_s, PROMOTE_MIN_S) * 1000000;
			e->promote_error[0] = '\0';
			e->promote_replayed = e->replication.replayed;
			break;
		case EP_HANDING_OVER:
			drop_request(&e->request);
			e->handover_deadline = now + (uint64) e->config.switchover_timeout_ms * 1000;
			e->successor[0] = '\0';
			e->handover_upto = InvalidXLogRecPtr;
			/* without replication nobody must catch up: who is next does not matter */
			e->successor_known = !streams_or_recorded(e);
			if (!e->successor_known)
				e->request = etcd_range_candidates(e->client, e->config.prefix, 0,
												   e->config.request_timeout_ms,
												   REQ_SUCCESSOR);
			break;
		case EP_RESIGNING:
			drop_request(&e->request);
			cancel_watch(e);
			e->request = etcd_release(e->client, e->key, e->create_revision, NULL, 0,
									  e->term_key, released_term(e), e->record_key, NULL,
									  e->config.request_timeout_ms, REQ_DELETE);
			break;
		case EP_MOVING:
			/* step_move() releases the key once commits in flight ended */
			drop_request(&e->request);
			e->move_deadline = now + (uint64) e->config.switchover_timeout_ms * 1000;
			break;
		case EP_BACKING_OFF:
			drop_request(&e->request);
			cancel_watch(e);
			break;
	}
}

/* The request a node that holds a lease retries after a backoff. */
static ElectionPhase
retry_phase(Election *e)
{
	return e->create_revision == 0 ? EP_CAMPAIGNING : EP_LOOKING;
}

/*
 * Sends the release of our key: deleted while its create revision is ours
 * (and, with next_key, while that successor is still there), with the term
 * released if this node may say so, and record_value (if not NULL) in the
 * same transaction.
 */
static EtcdRequest *
send_release(Election *e, const char *next_key, int64 next_revision,
			 const char *record_value, int tag)
{
	return etcd_release(e->client, e->key, e->create_revision, next_key, next_revision,
						e->term_key, released_term(e), e->record_key, record_value,
						e->config.request_timeout_ms, tag);
}

static void
revoke_lease(Election *e, int64 lease_id)
{
	etcd_lease_revoke(e->client, lease_id, e->config.request_timeout_ms, REQ_DISCARD);
}

/*
 * Leaves the queue and forgets the lease (revoking it); the next step
 * reads the election again and, if the node may stand, campaigns at the
 * tail with a new lease.  With release, the key is also deleted (compared
 * by create revision), for a clean handover, with record_value written in
 * the same transaction if it is not NULL; the lease is then revoked only
 * once that is answered, so that the release is what the successor sees.
 */
static void
leave_with(Election *e, const char *reason, bool release, const char *record_value)
{
	bool		was_leading = (e->phase == EP_LEADING);

	enter(e, EP_NO_LEASE);
	drop_request(&e->request);
	cancel_renewals(e);
	cancel_watch(e);
	e->watch_from = 0;

	if (release && e->create_revision != 0)
	{
		if (e->revoke_after_release != 0)
			revoke_lease(e, e->revoke_after_release);
		send_release(e, NULL, 0, record_value, REQ_RELEASE);
		e->revoke_after_release = e->lease_id;
	}
	else if (e->lease_id != 0)
		revoke_lease(e, e->lease_id);

	ereport(LOG,
			(errmsg("leader_election: node \"%s\" leaves the election: %s",
					e->config.node_name, reason),
			 was_leading ? errdetail("It led with fencing token " INT64_FORMAT ".",
									 e->fencing_token) : 0));

	e->lease_id = 0;
	e->lease_valid_until = 0;
	e->confirmed_until = 0;
	e->term_claimed = false;
	e->create_revision = 0;
	e->key[0] = '\0';
	e->followed_leader = false;
	e->stream_lost_at = 0;
	e->queue_position = -1;
	e->leader_known = false;
	e->fencing_token = 0;
	answer_resign(e, NULL);
}

static void
leave(Election *e, const char *reason, bool release)
{
	leave_with(e, reason, release, NULL);
}

Election *
election_create(MemoryContext context, EtcdClient *client,
				const ElectionConfig *config)
{
	Election   *e = MemoryContextAllocZero(context, sizeof(Election));

	e->client = client;
	e->config = *config;
	etcd_client_set_endpoints(client, &config->endpoints);
	cluster_record_key(config->prefix, e->record_key, sizeof(e->record_key));
	term_record_key(config->prefix, e->term_key, sizeof(e->term_key));
	e->term_seen_revision = -1;
	e->phase = EP_NO_LEASE;
	e->queue_position = -1;
	return e;
}

/* Two endpoint lists that share an endpoint name one etcd cluster. */
static bool
same_etcd(const EtcdEndpoints *a, const EtcdEndpoints *b)
{
	for (int i = 0; i < a->count; i++)
		for (int j = 0; j < b->count; j++)
			if (strcmp(a->urls[i], b->urls[j]) == 0)
				return true;
	return false;
}

/* Whether new settings name another election than the current ones. */
static bool
other_election(Election *e, const ElectionConfig *config)
{
	return strcmp(config->prefix, e->config.prefix) != 0 ||
		!same_etcd(&config->endpoints, &e->config.endpoints);
}

/* Takes the settings as they are; what was read of another election is forgotten. */
static void
apply_config(Election *e, const ElectionConfig *config)
{
	if (other_election(e, config))
	{
		memset(&e->record, 0, sizeof(e->record));
		memset(&e->term, 0, sizeof(e->term));
		e->term_seen_revision = -1;
		e->term_known = false;
	}
	e->config = *config;
	e->config_pending = false;
	cluster_record_key(config->prefix, e->record_key, sizeof(e->record_key));
	term_record_key(config->prefix, e->term_key, sizeof(e->term_key));
	etcd_client_set_endpoints(e->client, &config->endpoints);
	/* an observer that may now stand reads at once */
	e->next_read = 0;
}

/*
 * Applies pending settings once nothing is under way that must finish
 * first.  A node that must rejoin leaves (releasing its key) first; the
 * leader of a replicated cluster moves it (step_move()).
 */
static void
configure_when_due(Election *e)
{
	const ElectionConfig *config = &e->pending_config;
	bool		rejoin;

	if (!e->config_pending || e->phase == EP_HANDING_OVER || e->phase == EP_RESIGNING ||
		e->phase == EP_MOVING)
		return;
	rejoin = other_election(e, config) ||
		strcmp(config->node_name, e->config.node_name) != 0 ||
		config->lease_ttl_s != e->config.lease_ttl_s;
	if (rejoin && e->phase == EP_LEADING && replicated(e))
	{
		enter(e, EP_MOVING);
		return;
	}
	if (rejoin && e->phase != EP_NO_LEASE)
		leave(e, "its settings changed", true);
	apply_config(e, config);
}

void
election_configure(Election *e, const ElectionConfig *config)
{
	e->pending_config = *config;
	e->config_pending = true;
	configure_when_due(e);
}

/* ---- publishing ---- */

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
static void
publish(Election *e)
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
	strlcpy(view.ineligible_reason, e->ineligible_reason, LE_ERROR_LEN);

	/* walsenders serve this node's leadership, a handover included */
	if ((leads || e->phase == EP_HANDING_OVER) && lease_valid(e, now))
		le_shared_allow_shipping(leads ? leadership_deadline(e) : e->lease_valid_until);
	le_shared_set_recorded_wal(leads &&
							   cluster_record_names(&e->record, &e->replication,
													e->config.node_name) ?
							   e->record.wal_end : 0);
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

/* ---- what is due now ---- */

/*
 * Sends a renewal to the current endpoint.  It may wait at most what is
 * left of the lease's local validity: an answer after that is worthless.
 */
static void
send_renewal(Election *e, uint64 now)
{
	long		left_ms = (long) ((e->lease_valid_until - now) / 1000);
	long		timeout_ms = Max(Min((long) e->config.request_timeout_ms, left_ms), 1);

	e->renewals[e->nrenewals++] =
		etcd_lease_keepalive(e->client, e->lease_id, (int) timeout_ms, REQ_RENEWAL);
	e->next_hedge = now + (uint64) timeout_ms * 1000 / 4;
}

/* Watches target from revision on, unless that watch already runs here. */
static void
watch_key(Election *e, const char *target, int64 revision)
{
	if (e->watch != NULL && strcmp(target, e->watched_key) == 0 &&
		strcmp(e->watch->endpoint, etcd_client_endpoint(e->client)) == 0)
		return;
	cancel_watch(e);
	strlcpy(e->watched_key, target, sizeof(e->watched_key));
	e->watch_from = revision;
	e->watch = etcd_watch_key(e->client, target, revision,
							  e->config.request_timeout_ms, REQ_WATCH);
}

/*
 * First in line: checks that a released term was released with its key,
 * waits until the term's holder can no longer write (term_record.c), then
 * claims the term.  A standby must still stand when it claims.
 */
static void
step_takeover(Election *e, uint64 now)
{
	TakeoverInput input;
	char		why[LE_ERROR_LEN];
	uint64		at;

	if (e->request != NULL || now < e->retry_at)
		return;
	if (e->term.exists && e->term.readable && e->term.released &&
		e->release_checked != e->term.mod_revision &&
		e->term.mod_revision == e->deleted_revision &&
		strcmp(e->term.key, e->deleted_key) == 0)
	{
		/* our watch saw its key deleted at the revision the term was released at */
		e->release_checked = e->term.mod_revision;
		e->release_verified = true;
	}
	else if (e->term.exists && e->term.readable && e->term.released &&
			 e->release_checked != e->term.mod_revision)
	{
		e->request = etcd_read_key_at(e->client, e->term.key, e->term.mod_revision,
									  e->config.request_timeout_ms, REQ_VERIFY);
		return;
	}
	input.term = &e->term;
	input.own_key = e->key;
	input.own_revision = e->create_revision;
	input.term_seen_at = e->term_seen_at;
	input.release_verified = e->release_verified &&
		e->release_checked == e->term.mod_revision;
	input.own_ttl_s = e->config.lease_ttl_s;
	input.term_expected = e->term_known || e->record.exists;
	at = term_takeover_at(&input, why);
	e->takeover_at = at;
	if (now < at)
	{
		if (!e->takeover_logged)
			ereport(LOG,
					(errmsg("leader_election: node \"%s\" is first in line and waits %d ms before it takes over",
							e->config.node_name, (int) ((at - now) / 1000)),
					 errdetail("%s; it takes over once that leader can no longer write.", why)));
		e->takeover_logged = true;
		return;
	}
	if (!e->eligible)
	{
		leave(e, e->ineligible_reason, true);
		return;
	}
	e->request = send_confirmation(e, REQ_CLAIM);
}

/* A promoting standby: leads once recovery has ended and the record says so. */
static void
step_promotion(Election *e, uint64 now)
{
	char		reason[LE_ERROR_LEN];

	/*
	 * After a clean stop, once the old primary's stream has ended: its
	 * walsenders end only when every standby has its shutdown checkpoint, so
	 * the other standbys can follow this node's new timeline.
	 */
	if (!e->promote_requested &&
		(!e->replication.streaming || now >= e->promote_not_before))
	{
		e->promote_requested = true;
		if (replication_request_promotion(e->promote_error))
			ereport(LOG,
					(errmsg("leader_election: node \"%s\" is first in line: promoting this standby",
							e->config.node_name),
					 errdetail("Key \"%s\", fencing token " INT64_FORMAT ".",
							   e->key, e->create_revision)));
		else
			e->promote_deadline = now;	/* gives up below */
	}

	/* a startup process still replaying what it received is not stuck */
	if (now >= e->promote_deadline && e->promote_error[0] == '\0' &&
		e->replication.in_recovery && e->replication.replayed > e->promote_replayed)
	{
		e->promote_replayed = e->replication.replayed;
		e->promote_deadline = now + (uint64) PROMOTE_MIN_S * 1000000;
	}
	if (now >= e->promote_deadline)
	{
		if (e->promote_error[0] != '\0')
			snprintf(reason, sizeof(reason), "it could not promote: %s", e->promote_error);
		else
			snprintf(reason, sizeof(reason),
					 "its promotion did not finish within %d s",
					 Max(e->config.lease_ttl_s, PROMOTE_MIN_S));
		leave(e, reason, true);
		return;
	}
	if (!e->replication.in_recovery && e->request == NULL && now >= e->retry_at)
		send_record(e, recordable_wal_end(), false);
}

/*
 * A leader whose WAL moved half of max_lag_on_failover past the position
 * its record holds records it again, before commits must wait for that
 * (wal_bound.c); a backend that waits wakes the worker for this.
 */
static void
step_leading(Election *e, uint64 now)
{
	XLogRecPtr	end;

	if (e->request != NULL || now < e->retry_at ||
		!cluster_record_names(&e->record, &e->replication, e->config.node_name))
		return;
	end = replication_wal_end();
	if (end > e->record.wal_end &&
		end - e->record.wal_end >= (uint64) e->config.max_lag_bytes / 2)
		send_record(e, recordable_wal_end(), false);
}

/*
 * The leader of a replicated cluster moves it to another election (new
 * prefix, etcd, node name or TTL): fenced since it entered "moving", once
 * no commit is in flight, it releases its key with a record that says the
 * cluster moved, so that nobody stands in this election any more.
 */
static void
step_move(Election *e, uint64 now)
{
	char	   *record;

	if (e->request != NULL || now < e->retry_at)
		return;
	if (le_commits_in_flight() != 0 && now < e->move_deadline)
		return;
	(void) build_record(e, recordable_wal_end(), false, NULL);
	e->record_sent.moved = true;
	record = cluster_record_encode(&e->record_sent);
	e->request = send_release(e, NULL, 0, record, REQ_MOVE);
}

/*
 * The move's release answered: if etcd took it, the record the node left
 * with lets it stand in the new election without a record there
 * (cluster_record.c); if not, it leaves without that, and a replicated
 * cluster's primary without a record does not stand.  Then the new
 * settings apply.
 */
static void
on_move_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	bool		succeeded = false;

	if (e->phase != EP_MOVING)
		return;
	if (!etcd_txn_result(req, &succeeded, err))
		note_failure(e, err, req);
	if (succeeded)
		e->moved_from = e->record_sent;
	else
		memset(&e->moved_from, 0, sizeof(e->moved_from));
	leave(e, succeeded ? "it moves its cluster to another election" :
		  "its settings changed, and it could not record that its cluster moves", false);
	apply_config(e, &e->pending_config);
}

/*
 * A replicated primary hands over: once no commit is in flight, the WAL
 * written so far is what the successor must have flushed before the key
 * goes, and the key goes only while that successor is still next in line
 * (etcd_delete_before): one that left the queue meanwhile is looked up
 * again.  Past the deadline it gives up, says why, and leads on.
 */
static void
step_handover(Election *e, uint64 now)
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
		enter(e, EP_RESIGNING);
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
			e->request = send_release(e, e->successor_key, e->successor_revision,
									  build_record(e, e->handover_upto, true, e->successor),
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
	drop_request(&e->request);
	answer_resign(e, error);
	enter(e, EP_LEADING);
}

void
election_step(Election *e)
{
	uint64		now = le_clock_us();

	/* Without an answered renewal, etcd may have expired the lease by now. */
	if (e->lease_id != 0 && now >= e->lease_valid_until)
	{
		note_failure(e, "lease expired locally: no renewal was answered within the TTL", NULL);
		leave(e, "its lease expired", false);
	}

	assess(e, now);
	if ((e->phase == EP_QUEUED || e->phase == EP_TAKING_OVER) && !e->eligible)
		leave(e, e->ineligible_reason, true);

	if (e->lease_id != 0 && e->nrenewals == 0 && now >= e->next_renewal)
		send_renewal(e, now);
	else if (e->nrenewals > 0 && now >= e->next_hedge &&
			 e->nrenewals < Max(2, etcd_client_endpoint_count(e->client)))
	{
		etcd_client_next_endpoint(e->client);
		send_renewal(e, now);
	}

	configure_when_due(e);
	if (e->phase == EP_TAKING_OVER)
		step_takeover(e, now);
	else if (e->phase == EP_MOVING)
		step_move(e, now);
	else if (e->phase == EP_LEADING)
		step_leading(e, now);
	else if (e->phase == EP_PROMOTING)
		step_promotion(e, now);
	else if (e->phase == EP_HANDING_OVER)
		step_handover(e, now);

	if (now >= e->retry_at)
	{
		switch (e->phase)
		{
			case EP_NO_LEASE:
				enter(e, EP_OBSERVING);
				break;
			case EP_OBSERVING:
				/* again after TTL/3, or at once when the node may now stand */
				if (e->request == NULL && (now >= e->next_read || e->eligible))
					enter(e, EP_OBSERVING);
				break;
			case EP_BACKING_OFF:
				enter(e, retry_phase(e));
				break;
			case EP_PROMOTING:
			case EP_LEADING:
			case EP_HANDING_OVER:
				if (e->watch == NULL && e->watch_from != 0)
					watch_key(e, e->key, e->watch_from);
				if (e->phase == EP_HANDING_OVER)
					break;
				/* FALLTHROUGH */
			case EP_QUEUED:
				/* the holder of the term confirms it; the leader reads the whole queue */
				if (e->refresh_due && e->request == NULL)
					e->request = e->phase == EP_QUEUED ?
						send_read(e, e->create_revision, REQ_RANGE) :
						send_confirmation(e, REQ_CONFIRM);
				break;
			case EP_TAKING_OVER:
			case EP_MOVING:
			case EP_GRANTING:
			case EP_CAMPAIGNING:
			case EP_LOOKING:
			case EP_RESIGNING:
				break;
		}
	}
	publish(e);
}

long
election_next_timeout_ms(Election *e)
{
	uint64		now = le_clock_us();
	/* replication state changes without telling: look at it regularly */
	uint64		next = now + (uint64) (e->phase == EP_PROMOTING ||
									   e->phase == EP_HANDING_OVER ?
									   AWAIT_POLL_MS : REPLICATION_POLL_MS) * 1000;

	if (e->phase == EP_TAKING_OVER && e->takeover_at > now)
		next = Min(next, e->takeover_at);

	if (e->lease_id != 0)
	{
		next = Min(next, e->lease_valid_until);
		next = Min(next, e->nrenewals == 0 ? e->next_renewal : e->next_hedge);
	}
	if (e->retry_at > now)
		next = Min(next, e->retry_at);
	if (e->phase == EP_OBSERVING && e->next_read > now)
		next = Min(next, e->next_read);
	return next > now ? (long) ((next - now + 999) / 1000) : 0;
}

/* ---- answers ---- */

/*
 * etcd granted or renewed the lease for ttl_s from a request sent at
 * sent_us; etcd's countdown started later, so ours ends first.
 */
static void
extend_lease(Election *e, uint64 sent_us, int ttl_s)
{
	uint64		ttl_us = (uint64) ttl_s * 1000000;

	e->lease_ttl_s = ttl_s;
	e->lease_valid_until = Max(e->lease_valid_until, sent_us + ttl_us - margin_us(ttl_s));
	e->next_renewal = sent_us + ttl_us / 3;
}

static void
on_grant_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	char		hex[32];
	int64		lease_id;
	int			ttl_s;

	if (!etcd_lease_grant_result(req, &lease_id, &ttl_s, err))
	{
		note_failure(e, err, req);
		enter(e, EP_NO_LEASE);
		return;
	}
	e->lease_id = lease_id;
	extend_lease(e, req->started_us, ttl_s);
	etcd_lease_hex(lease_id, hex, sizeof(hex));
	snprintf(e->key, sizeof(e->key), "%s/%s", e->config.prefix, hex);
	e->create_revision = 0;
	enter(e, EP_CAMPAIGNING);
}

static void
on_renewal_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	int			ttl_s;

	if (!etcd_lease_keepalive_result(req, &ttl_s, err))
	{
		/* A hedge may still answer; else keep trying until the lease runs out. */
		if (e->nrenewals > 0)
		{
			if (req->transport_failed)
				etcd_client_endpoint_failed(e->client, req->endpoint);
			return;
		}
		note_failure(e, err, req);
		e->next_renewal = le_clock_us() + RENEW_RETRY_MS * 1000;
		return;
	}
	if (ttl_s <= 0)
	{
		note_failure(e, "etcd no longer knows the lease: it expired", NULL);
		leave(e, "etcd expired its lease", false);
		return;
	}
	/* the first answer wins; the endpoint that gave it serves from now on */
	if (e->nrenewals > 0)
		ereport(LOG,
				(errmsg("leader_election: lease renewed through etcd at %s while an earlier renewal had no answer yet",
						req->endpoint)));
	cancel_renewals(e);
	etcd_client_use_endpoint(e->client, req->endpoint);
	extend_lease(e, req->started_us, ttl_s);
	if (e->phase == EP_QUEUED || e->phase == EP_LEADING || e->phase == EP_PROMOTING)
		e->refresh_due = true;
}

static void
on_campaign_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	int64		create_revision;

	if (!etcd_campaign_result(req, &create_revision, err))
	{
		note_failure(e, err, req);
		/* etcd refused the txn itself, e.g. an unknown lease: start over */
		if (req->transport_failed)
			enter(e, EP_BACKING_OFF);
		else
			leave(e, "its campaign was refused", false);
		return;
	}
	e->create_revision = create_revision;
	enter(e, EP_LOOKING);
}

/* The leader as a read of the whole election (or up to our key) shows it. */
static void
take_leader(Election *e, const EtcdCandidates *queue)
{
	e->leader_known = queue->count > 0;
	if (!e->leader_known)
		return;
	strlcpy(e->leader_name, queue->keys[0].name, sizeof(e->leader_name));
	e->fencing_token = queue->keys[0].create_revision;
}

/* Holding nothing, the node read the election: it campaigns if it may stand. */
static void
on_observe_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	EtcdElectionRead read;
	uint64		now = le_clock_us();

	if (e->phase != EP_OBSERVING)
		return;
	if (!etcd_read_election_result(req, e->config.prefix, &read, err))
	{
		note_failure(e, err, req);
		e->leader_known = false;
		return;
	}
	take_leader(e, &read.queue);
	take_record(e, &read);
	take_term(e, &read);
	e->next_read = now + (uint64) e->config.lease_ttl_s * 1000000 / 3;
	e->eligible = may_stand(e, now);
	if (e->eligible)
		enter(e, EP_GRANTING);
	else
		clear_failure(e);		/* this read is all an observer does */
}

/* The next in line watches the term from revision on: the leader's confirmations. */
static void
watch_term(Election *e, int64 revision)
{
	if (e->term_watch != NULL &&
		strcmp(e->term_watch->endpoint, etcd_client_endpoint(e->client)) == 0)
		return;
	cancel_term_watch(e);
	e->term_watch = etcd_watch_key(e->client, e->term_key, revision,
								   e->config.request_timeout_ms, REQ_TERM_WATCH);
}

/*
 * A read of the election answered: in "looking", as a queued node's
 * refresh, or as a claim or confirmation of the term (the same reads, after
 * a write that holds only while our key is first).  The queue decides.
 */
static void
on_range_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	EtcdElectionRead read;
	int			own = -1;
	bool		first;
	bool		confirms = (req->tag == REQ_CLAIM || req->tag == REQ_CONFIRM);
	uint64		now = le_clock_us();

	if (!etcd_read_election_result(req, e->config.prefix, &read, err))
	{
		note_failure(e, err, req);
		if (e->phase == EP_LOOKING)
			enter(e, EP_BACKING_OFF);
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
		leave(e, "its key was deleted", false);
		return;
	}

	clear_failure(e);
	take_record(e, &read);
	take_term(e, &read);
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
								 req->started_us + ttl_us - margin_us(e->lease_ttl_s));
	}

	if (holds_first_place(e->phase))
	{
		if (!read.confirmed)
		{
			leave(e, "its key is no longer first in line", false);
			return;
		}
		/* a record naming another primary means someone took over */
		if (e->phase == EP_LEADING && e->record.exists &&
			!cluster_record_names(&e->record, &e->replication, e->config.node_name))
		{
			leave(e, e->record.readable ? "the cluster record names another primary" :
				  "the cluster record is unreadable", true);
			return;
		}
	}
	else if (e->phase == EP_TAKING_OVER && confirms)
	{
		if (!read.confirmed)
			enter(e, first ? EP_LOOKING : EP_QUEUED);
		else
			enter(e, e->replication.in_recovery ? EP_PROMOTING : EP_LEADING);
	}
	else
	{
		/* a node about to queue or take over must still stand */
		e->eligible = may_stand(e, now);
		if (!e->eligible)
		{
			leave(e, e->ineligible_reason, true);
			return;
		}
		if (first && e->replication.in_recovery && !e->followed_leader)
		{
			leave(e, "a standby takes over only from a leader it queued behind", true);
			return;
		}
		if (!first)
			enter(e, EP_QUEUED);
		else if (e->phase != EP_TAKING_OVER)
			enter(e, EP_TAKING_OVER);
	}
	if (e->phase == EP_NO_LEASE || e->phase == EP_LOOKING)
		return;

	/* The first in line watches its own key; everyone else its predecessor. */
	watch_key(e, first ? e->key : read.queue.keys[own - 1].key, read.queue.revision + 1);
	/* the next in line also sees each confirmation of the one ahead */
	if (e->phase == EP_QUEUED && own == 1)
		watch_term(e, read.queue.revision + 1);
	else
		cancel_term_watch(e);

	if (e->phase == EP_LEADING && e->request == NULL && record_due(e, &read.queue))
		send_record(e, recordable_wal_end(), false);
}

/* Whether the term, released, was released in the transaction that deleted its key. */
static void
on_verify_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	int64		created_before;
	bool		exists_at;

	if (e->phase != EP_TAKING_OVER)
		return;
	if (!etcd_read_key_at_result(req, &created_before, &exists_at, err))
	{
		/* compacted, or a refusal: unverifiable, so the holder is waited out */
		note_failure(e, err, req);
		if (req->transport_failed)
			return;
		created_before = 0;
	}
	e->release_checked = e->term.mod_revision;
	e->release_verified = created_before == e->term.revision && !exists_at;
	if (!e->release_verified)
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" does not take the release of node \"%s\" for granted",
						e->config.node_name, e->term.node),
				 errdetail("The term says released, but not in the transaction that deleted key \"%s\".",
						   e->term.key)));
}

/* The leader wrote (or could not write) the cluster record. */
static void
on_record_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	bool		succeeded;

	if (!etcd_txn_result(req, &succeeded, err))
	{
		note_failure(e, err, req);	/* retried at the retry time */
		return;
	}
	if (!succeeded)
	{
		if (holds_first_place(e->phase))
			leave(e, "its key is no longer first in line", false);
		return;
	}
	/* news only when who leads changed, not when the WAL position moved */
	if (!cluster_record_names(&e->record, &e->replication, e->config.node_name))
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" recorded itself as the cluster's primary on timeline %u",
						e->config.node_name, e->record_sent.timeline),
				 errdetail("Key \"%s\", system identifier " UINT64_FORMAT ".",
						   e->record_key, e->record_sent.system_identifier)));
	e->record = e->record_sent;
	note_membership(e, &e->record);
	e->moved_from.exists = false;	/* the move is complete */
	if (e->phase == EP_PROMOTING)
		enter(e, EP_LEADING);
}

/* A handing-over leader learnt who is next in line. */
static void
on_successor_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	EtcdCandidates queue;

	if (e->phase != EP_HANDING_OVER)
		return;
	if (!etcd_range_candidates_result(req, e->config.prefix, &queue, err))
	{
		note_failure(e, err, req);	/* step_handover() asks again */
		return;
	}
	if (queue.count == 0 || strcmp(queue.keys[0].key, e->key) != 0 ||
		queue.keys[0].create_revision != e->create_revision)
	{
		leave(e, "its key was deleted", false);
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
		e->successor_by_name = candidate_streams(e, &queue, &streams) ||
			!replication_has_standby(&streams);
	}
}

/* The key is gone while the successor was next: it takes over, with its stream. */
static void
handed_over(Election *e)
{
	char		reason[LE_ERROR_LEN];

	snprintf(reason, sizeof(reason),
			 "it handed over to \"%s\", which had flushed all its WAL up to %X/%X",
			 e->successor, LSN_FORMAT_ARGS(e->handover_upto));
	e->handed_over = true;
	leave(e, reason, false);
}

/* The handing-over leader's key is gone, if its successor was still next. */
static void
on_handover_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	bool		succeeded;

	if (e->phase != EP_HANDING_OVER)
		return;
	if (!etcd_txn_result(req, &succeeded, err))
	{
		note_failure(e, err, req);	/* step_handover() tries again */
		return;
	}
	if (!succeeded)
	{
		/* the successor left the queue (or our key went): who is next now? */
		e->successor_known = false;
		return;
	}
	handed_over(e);
}

/* Reads whatever the watch stream has delivered. */
static void
on_watch_messages(Election *e)
{
	char		err[LE_ERROR_LEN];
	int64		revision;

	while (e->watch != NULL)
	{
		switch (etcd_watch_next(e->watch, &revision, err))
		{
			case ETCD_WATCH_NOTHING:
				return;
			case ETCD_WATCH_CREATED:
			case ETCD_WATCH_PUT:
			case ETCD_WATCH_OTHER:
				break;
			case ETCD_WATCH_DELETED:
				/* our own handover's delete may be seen before its answer */
				if (e->phase == EP_HANDING_OVER && e->request != NULL &&
					e->request->tag == REQ_HANDOVER)
					handed_over(e);
				else if (holds_first_place(e->phase))
					leave(e, "its key was deleted", false);
				else
				{
					/* a release in the same transaction needs no other check */
					strlcpy(e->deleted_key, e->watched_key, sizeof(e->deleted_key));
					e->deleted_revision = revision;
					enter(e, EP_LOOKING);
				}
				return;
			case ETCD_WATCH_CANCELED:
				/* e.g. compaction: the key may or may not be gone; read again */
				cancel_watch(e);
				e->watch_from = 0;
				if (holds_first_place(e->phase))
					e->refresh_due = true;
				else
					enter(e, EP_LOOKING);
				return;
			case ETCD_WATCH_BROKEN:
				/* the first in line re-watches from watch_from at the retry time */
				note_failure(e, err, e->watch);
				cancel_watch(e);
				if (!holds_first_place(e->phase))
					enter(e, EP_BACKING_OFF);
				return;
		}
	}
}

/*
 * Reads what the term watch has delivered: each write of the term is seen
 * when it happens, so the moment the holder last confirmed its leadership
 * is known.  A broken watch is simply dropped: the next read starts it
 * again, and until then the term is taken as seen no earlier than a read.
 */
static void
on_term_watch_messages(Election *e)
{
	char		err[LE_ERROR_LEN];
	int64		revision;

	while (e->term_watch != NULL)
	{
		switch (etcd_watch_next(e->term_watch, &revision, err))
		{
			case ETCD_WATCH_NOTHING:
				return;
			case ETCD_WATCH_CREATED:
			case ETCD_WATCH_OTHER:
				break;
			case ETCD_WATCH_PUT:
				note_term_seen(e, revision, le_clock_us());
				break;
			case ETCD_WATCH_DELETED:
				note_term_seen(e, 0, le_clock_us());
				break;
			case ETCD_WATCH_CANCELED:
			case ETCD_WATCH_BROKEN:
				cancel_term_watch(e);
				return;
		}
	}
}

static void
on_delete_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];

	/* Should the delete have failed, revoking the lease deletes the key. */
	if (!etcd_result_ok(req, err))
		note_failure(e, err, req);
	leave(e, "it resigned", false);
}

void
election_process(Election *e)
{
	EtcdRequest *req;

	while ((req = etcd_client_next_done(e->client)) != NULL)
	{
		if (req == e->request)
			e->request = NULL;
		for (int i = 0; i < e->nrenewals; i++)
			if (req == e->renewals[i])
				e->renewals[i] = e->renewals[--e->nrenewals];

		switch ((RequestTag) req->tag)
		{
			case REQ_GRANT:
				on_grant_answer(e, req);
				break;
			case REQ_RENEWAL:
				on_renewal_answer(e, req);
				break;
			case REQ_CAMPAIGN:
				on_campaign_answer(e, req);
				break;
			case REQ_OBSERVE:
				on_observe_answer(e, req);
				break;
			case REQ_RANGE:
			case REQ_CLAIM:
			case REQ_CONFIRM:
				on_range_answer(e, req);
				break;
			case REQ_VERIFY:
				on_verify_answer(e, req);
				break;
			case REQ_SUCCESSOR:
				on_successor_answer(e, req);
				break;
			case REQ_HANDOVER:
				on_handover_answer(e, req);
				break;
			case REQ_RECORD:
				on_record_answer(e, req);
				break;
			case REQ_WATCH:
				/* the stream ended: its last messages, then BROKEN, end it */
				Assert(req == e->watch);
				on_watch_messages(e);
				Assert(e->watch != req);
				continue;		/* cancel_watch() freed it */
			case REQ_TERM_WATCH:
				Assert(req == e->term_watch);
				on_term_watch_messages(e);
				Assert(e->term_watch != req);
				continue;		/* cancel_term_watch() freed it */
			case REQ_DELETE:
				on_delete_answer(e, req);
				break;
			case REQ_MOVE:
				on_move_answer(e, req);
				break;
			case REQ_RELEASE:
				/* the successor saw the release; only now may the lease go */
				if (e->revoke_after_release != 0)
					revoke_lease(e, e->revoke_after_release);
				e->revoke_after_release = 0;
				break;
			case REQ_DISCARD:
				break;
		}
		etcd_request_free(req);
	}
	on_watch_messages(e);
	on_term_watch_messages(e);
}

void
election_resign(Election *e, uint32 request_id)
{
	e->resign_request = request_id;
	e->resign_waiting = true;
	if (e->phase == EP_LEADING)
		enter(e, EP_HANDING_OVER);
	else if (e->phase != EP_RESIGNING && e->phase != EP_HANDING_OVER)
		answer_resign(e, NULL);
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
		return build_record(e, upto, true, NULL);
	return build_record(e, replication_wal_flushed(), false, NULL);
}

void
election_shutdown(Election *e, const char *reason, bool postmaster_alive)
{
	uint64		deadline;
	char	   *record = NULL;

	e->shutting_down = true;
	if (postmaster_alive && e->phase == EP_LEADING && replicated(e))
		record = final_record(e, let_standbys_catch_up(e));
	leave_with(e, reason, true, record);
	publish(e);
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
				revoke_lease(e, e->revoke_after_release);
				e->revoke_after_release = 0;
			}
			etcd_request_free(req);
		}
	}
	etcd_client_cancel_all(e->client);
}
