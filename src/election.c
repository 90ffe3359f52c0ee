/*
 * election.c
 *		Owns one node's candidacy, following etcd's election recipe: a key
 *		<prefix>/<lease hex> created by a campaign txn, a place in the queue
 *		by create revision, and a watch on the key just ahead; the phases and
 *		their one transition function, el_enter().  The other files of the
 *		state machine (election_internal.h) own what a phase does: the lease
 *		(lease.c), what a read of the election decides (reading.c), standing
 *		(standing.c), taking over (takeover.c), the cluster record
 *		(record_keeping.c), the leader key (leader_key.c), promotion
 *		(promotion.c), handover and shutdown (handover.c), new settings
 *		(reconfigure.c), and the view in shared memory (election_view.c).
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
 *	                          positions      provably stopped:     standby),
 *	                          after a crash, term claimed          leading
 *	                          then claim     claim refused         queued, looking
 *	                                         another should take   no lease
 *	                                         over (succession.c)
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
 *	lapsed        lease?,     -              etcd renews the lease looking (key) or
 *	              key?                                             campaigning
 *	                                         etcd lost the lease   no lease
 *
 * A lease that lapses locally (no renewal answered within its validity:
 * etcd lost quorum, or every member hangs) sends campaigning, looking,
 * queued, taking over, leading and backing off to "lapsed": fenced, the
 * node keeps the lease and its key and renews until etcd answers.  etcd
 * does not expire leases while it has no raft leader and extends them when
 * it elects one, so it usually still holds both: the node takes its place
 * back -- a leader as a new term, so nothing written before the lapse
 * commits after it -- instead of leaving a key that blocks the queue until
 * it expires.  The other phases leave, as below.
 *
 * Every phase that holds a lease also goes to "no lease" (revoking the
 * lease) when etcd no longer knows the lease, when a read, a
 * confirmation or the leader's watch finds the key deleted or not first,
 * when the settings change, when a queued node may no longer stand, or
 * when a promotion does not finish in time.
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
 * Every finished request is handed to its handler (on_<request>_answer) and
 * freed in election_process(), the watches included.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "utils/memutils.h"

#include "election_internal.h"
#include "printable.h"


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
		case EP_LAPSED:
			return "lapsed";
	}
	return "unknown";
}

uint64
el_margin_us(int ttl_s)
{
	/* absorbs clock-rate differences and scheduling delay */
	return Max((uint64) ttl_s * 100000, 100000);
}


/* Phases in which this node's own key is first in line. */
bool
el_holds_first_place(ElectionPhase phase)
{
	return phase == EP_PROMOTING || phase == EP_LEADING || phase == EP_HANDING_OVER ||
		phase == EP_MOVING;
}

void
el_drop_request(EtcdRequest **req)
{
	if (*req != NULL)
		etcd_request_free(*req);
	*req = NULL;
}

static void
cancel_watch(Election *e)
{
	el_drop_request(&e->watch);
	e->watched_key[0] = '\0';
}

void
el_cancel_renewals(Election *e)
{
	while (e->nrenewals > 0)
		el_drop_request(&e->renewals[--e->nrenewals]);
}


static EtcdRequest *
send_read(Election *e, int64 max_create_revision, int tag)
{
	return etcd_read_election(e->client, e->config.prefix, max_create_revision, e->record_key,
							  e->term_key, e->leader_key, e->config.request_timeout_ms, tag);
}

/*
 * A read succeeded: the node knows its place, so etcd works end to end.
 * Partial successes (a grant, a renewal) do not count, or an etcd that fails
 * later in the cycle would be retried and logged without backoff.
 */
void
el_clear_failure(Election *e)
{
	e->retry_at = 0;
	/* a watch that keeps breaking is not cured by the read before it */
	if (e->watch_failing)
		return;
	e->backoff_ms = 0;
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
void
el_note_failure(Election *e, const char *message, EtcdRequest *req)
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
void
el_answer_resign(Election *e, const char *error)
{
	if (!e->resign_waiting)
		return;
	e->resign_waiting = false;
	le_resign_answered(e->resign_request, error);
}

/* ---- phases ---- */

#define PHASE_BIT(p)	(1u << (p))
#define ANY_PHASE		(PHASE_BIT(EP_COUNT) - 1)

/* For each phase, the phases it may be entered from: the table above. */
static const uint32 legal_from[EP_COUNT] = {
	[EP_NO_LEASE] = ANY_PHASE,
	[EP_OBSERVING] = PHASE_BIT(EP_NO_LEASE) | PHASE_BIT(EP_OBSERVING),
	[EP_GRANTING] = PHASE_BIT(EP_OBSERVING),
	[EP_CAMPAIGNING] = PHASE_BIT(EP_GRANTING) | PHASE_BIT(EP_BACKING_OFF) |
	PHASE_BIT(EP_LAPSED),
	[EP_LOOKING] = PHASE_BIT(EP_CAMPAIGNING) | PHASE_BIT(EP_QUEUED) |
	PHASE_BIT(EP_TAKING_OVER) | PHASE_BIT(EP_BACKING_OFF) | PHASE_BIT(EP_LAPSED),
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
	[EP_LAPSED] = PHASE_BIT(EP_CAMPAIGNING) | PHASE_BIT(EP_LOOKING) |
	PHASE_BIT(EP_QUEUED) | PHASE_BIT(EP_TAKING_OVER) | PHASE_BIT(EP_LEADING) |
	PHASE_BIT(EP_BACKING_OFF),
};

/*
 * The one place where the phase changes, checked against legal_from.
 * Leaving "leading" clears leadership in shared memory before anything else
 * happens; entering a phase that waits for etcd sends its request.
 */
void
el_enter(Election *e, ElectionPhase to)
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
		el_release_standbys(e);
	if (from != to)
		elog(DEBUG1, "leader_election: phase \"%s\" -> \"%s\"",
			 election_phase_name(from), election_phase_name(to));
	el_note_phase_change(e, from, to, now);
	e->phase = to;
	if (to != EP_QUEUED && to != EP_LEADING && to != EP_PROMOTING)
		e->refresh_due = false;
	/* only the next in line watches the term */
	if (to != EP_QUEUED)
		el_cancel_term_watch(e);

	switch (to)
	{
		case EP_NO_LEASE:
		case EP_QUEUED:
			break;
		case EP_LEADING:
			/* back from a handover that failed: confirm again at once */
			if (from == EP_HANDING_OVER)
				e->refresh_due = true;
			if (from == EP_TAKING_OVER)
				el_sync_begin(e);
			e->yielded[0] = '\0';
			break;
		case EP_OBSERVING:
			el_drop_request(&e->request);
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
			el_drop_request(&e->request);
			cancel_watch(e);
			e->request = send_read(e, e->create_revision, REQ_RANGE);
			break;
		case EP_TAKING_OVER:
			/* el_step_takeover() checks a release and who should, then claims */
			el_drop_request(&e->request);
			e->takeover_logged = false;
			e->succession_settled = false;
			e->succession_since = 0;
			e->succession_next_read = 0;
			break;
		case EP_PROMOTING:
			if (from != EP_PROMOTING)
			{
				el_begin_promotion(e, now);
				el_sync_begin(e);
			}
			break;
		case EP_HANDING_OVER:
			el_drop_request(&e->request);
			el_begin_handover(e, now);
			break;
		case EP_RESIGNING:
			el_drop_request(&e->request);
			cancel_watch(e);
			e->request = el_send_release(e, NULL, 0, NULL, REQ_DELETE);
			break;
		case EP_MOVING:
			el_drop_request(&e->request);
			el_begin_move(e, now);
			break;
		case EP_BACKING_OFF:
			el_drop_request(&e->request);
			cancel_watch(e);
			break;
		case EP_LAPSED:
			/* leadership was cleared above: one that comes back is a new term */
			el_drop_request(&e->request);
			cancel_watch(e);
			e->watch_from = 0;
			ereport(LOG,
					(errmsg("leader_election: node \"%s\" lost etcd: its lease lapsed locally",
							e->config.node_name),
					 errdetail("It is not the leader; it renews its lease until etcd answers, and takes its place in the queue back if etcd still holds it.")));
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
 * released if this node may say so, record_value (if not NULL) and the
 * leader key deleted (if on our lease) in the same transaction.
 */
EtcdRequest *
el_send_release(Election *e, const char *next_key, int64 next_revision,
		const char *record_value, int tag)
{
	return etcd_release(e->client, e->key, e->create_revision, next_key, next_revision,
						e->term_key, el_released_term(e), e->record_key, record_value,
						e->leader_key, e->lease_id, e->config.request_timeout_ms, tag);
}

void
el_revoke_lease(Election *e, int64 lease_id)
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
void
el_leave_with(Election *e, const char *reason, bool release, const char *record_value)
{
	bool		was_leading = (e->phase == EP_LEADING);

	el_enter(e, EP_NO_LEASE);
	el_drop_request(&e->request);
	el_cancel_renewals(e);
	cancel_watch(e);
	e->watch_from = 0;

	if (release && e->create_revision != 0)
	{
		if (e->revoke_after_release != 0)
			el_revoke_lease(e, e->revoke_after_release);
		el_send_release(e, NULL, 0, record_value, REQ_RELEASE);
		e->revoke_after_release = e->lease_id;
	}
	else if (e->lease_id != 0)
		el_revoke_lease(e, e->lease_id);

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
	e->watch_failing = false;
	e->stream_lost_at = e->stream_grace_from = 0;
	e->queue_position = -1;
	e->leader_known = false;
	e->fencing_token = 0;
	el_answer_resign(e, NULL);
}

void
el_leave(Election *e, const char *reason, bool release)
{
	el_leave_with(e, reason, release, NULL);
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
	el_leader_key_name(config->prefix, e->leader_key, sizeof(e->leader_key));
	e->term_seen_revision = -1;
	e->phase = EP_NO_LEASE;
	e->queue_position = -1;
	return e;
}

/* Watches target from revision on, unless that watch already runs here. */
void
el_watch_key(Election *e, const char *target, int64 revision)
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

void
election_step(Election *e)
{
	uint64		now = le_clock_us();

	/* Without an answered renewal, etcd may have expired the lease by now. */
	if (e->lease_id != 0 && now >= e->lease_valid_until && e->phase != EP_LAPSED)
	{
		el_note_failure(e, "lease expired locally: no renewal was answered within the TTL", NULL);
		if (legal_from[EP_LAPSED] & PHASE_BIT(e->phase))
			el_enter(e, EP_LAPSED);
		else
			el_leave(e, "its lease expired", false);
	}

	el_assess(e, now);
	if ((e->phase == EP_QUEUED || e->phase == EP_TAKING_OVER) && !e->eligible)
		el_leave(e, e->ineligible_reason, true);
	el_step_position(e);
	el_step_leader_key(e, now);

	if (e->lease_id != 0 && e->nrenewals == 0 && now >= e->next_renewal)
		el_send_renewal(e, now);
	else if (e->nrenewals > 0 && now >= e->next_hedge &&
			 e->nrenewals < Max(2, etcd_client_endpoint_count(e->client)))
	{
		etcd_client_next_endpoint(e->client);
		el_send_renewal(e, now);
	}

	el_configure_when_due(e);
	if (e->phase == EP_TAKING_OVER)
		el_step_takeover(e, now);
	else if (e->phase == EP_MOVING)
		el_step_move(e, now);
	else if (e->phase == EP_LEADING)
		el_step_leading(e, now);
	else if (e->phase == EP_PROMOTING)
		el_step_promotion(e, now);
	else if (e->phase == EP_HANDING_OVER)
		el_step_handover(e, now);

	if (now >= e->retry_at)
	{
		switch (e->phase)
		{
			case EP_NO_LEASE:
				el_enter(e, EP_OBSERVING);
				break;
			case EP_OBSERVING:
				/* again after TTL/3, or at once when the node may now stand */
				if (e->request == NULL && (now >= e->next_read || e->eligible))
					el_enter(e, EP_OBSERVING);
				break;
			case EP_BACKING_OFF:
				el_enter(e, retry_phase(e));
				break;
			case EP_PROMOTING:
			case EP_LEADING:
			case EP_HANDING_OVER:
				if (e->watch == NULL && e->watch_from != 0)
					el_watch_key(e, e->key, e->watch_from);
				if (e->phase == EP_HANDING_OVER)
					break;
				/* FALLTHROUGH */
			case EP_QUEUED:
				/* the holder of the term confirms it; the leader reads the whole queue */
				if (e->refresh_due && e->request == NULL)
					e->request = e->phase == EP_QUEUED ?
						send_read(e, e->create_revision, REQ_RANGE) :
						el_send_confirmation(e, 0, REQ_CONFIRM);
				break;
			case EP_TAKING_OVER:
			case EP_MOVING:
			case EP_LAPSED:
			case EP_GRANTING:
			case EP_CAMPAIGNING:
			case EP_LOOKING:
			case EP_RESIGNING:
				break;
		}
	}
	el_publish(e);
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
	if (e->phase == EP_TAKING_OVER && e->succession_next_read > now)
		next = Min(next, e->succession_next_read);

	if (e->lease_id != 0)
	{
		/* a lapsed lease is past its validity: only its renewals are due */
		if (e->phase != EP_LAPSED)
			next = Min(next, e->lease_valid_until);
		next = Min(next, e->nrenewals == 0 ? e->next_renewal : e->next_hedge);
	}
	if (e->retry_at > now)
		next = Min(next, e->retry_at);
	if (e->phase == EP_OBSERVING && e->next_read > now)
		next = Min(next, e->next_read);
	return next > now ? (long) ((next - now + 999) / 1000) : 0;
}

static void
on_campaign_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	int64		create_revision;

	if (!etcd_campaign_result(req, &create_revision, err))
	{
		el_note_failure(e, err, req);
		/* etcd refused the txn itself, e.g. an unknown lease: start over */
		if (req->transport_failed)
			el_enter(e, EP_BACKING_OFF);
		else
			el_leave(e, "its campaign was refused", false);
		return;
	}
	e->create_revision = create_revision;
	el_enter(e, EP_LOOKING);
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
				e->watch_failing = false;
				break;
			case ETCD_WATCH_DELETED:
				/* our own handover's delete may be seen before its answer */
				if (e->phase == EP_HANDING_OVER && e->request != NULL &&
					e->request->tag == REQ_HANDOVER)
					el_handed_over(e);
				else if (e->phase == EP_MOVING)
				{
					/* only the move's answer says whether its record was written */
					cancel_watch(e);
					return;
				}
				else if (el_holds_first_place(e->phase))
					el_leave(e, "its key was deleted", false);
				else
				{
					/* a release in the same transaction needs no other check */
					strlcpy(e->deleted_key, e->watched_key, sizeof(e->deleted_key));
					e->deleted_revision = revision;
					e->claim_on_release = (e->phase == EP_QUEUED && e->queue_position == 1);
					el_enter(e, e->claim_on_release ? EP_TAKING_OVER : EP_LOOKING);
				}
				return;
			case ETCD_WATCH_CANCELED:
				/* e.g. compaction: the key may or may not be gone; read again */
				ereport(LOG,
						(errmsg("leader_election: %s", err),
						 errdetail("Node \"%s\" reads the election again and watches from there.",
								   e->config.node_name)));
				cancel_watch(e);
				e->watch_from = 0;
				if (el_holds_first_place(e->phase))
					e->refresh_due = true;
				else
					el_enter(e, EP_LOOKING);
				return;
			case ETCD_WATCH_BROKEN:
				/* the first in line re-watches from watch_from at the retry time */
				e->watch_failing = true;
				el_note_failure(e, err, e->watch);
				cancel_watch(e);
				if (!el_holds_first_place(e->phase))
					el_enter(e, EP_BACKING_OFF);
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
		el_note_failure(e, err, req);
	el_leave(e, "it resigned", false);
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
				el_on_grant_answer(e, req);
				break;
			case REQ_RENEWAL:
				el_on_renewal_answer(e, req);
				break;
			case REQ_CAMPAIGN:
				on_campaign_answer(e, req);
				break;
			case REQ_OBSERVE:
				el_on_observe_answer(e, req);
				break;
			case REQ_RANGE:
			case REQ_CLAIM:
			case REQ_CONFIRM:
				el_on_range_answer(e, req);
				break;
			case REQ_VERIFY:
				el_on_verify_answer(e, req);
				break;
			case REQ_SUCCESSOR:
				el_on_successor_answer(e, req);
				break;
			case REQ_HANDOVER:
				el_on_handover_answer(e, req);
				break;
			case REQ_RECORD:
				el_on_record_answer(e, req);
				break;
			case REQ_WATCH:
				/* the stream ended: its last messages, then BROKEN, end it */
				Assert(req == e->watch);
				on_watch_messages(e);
				Assert(e->watch != req);
				continue;		/* cancel_watch() freed it */
			case REQ_TERM_WATCH:
				Assert(req == e->term_watch);
				el_on_term_watch_messages(e);
				Assert(e->term_watch != req);
				continue;		/* el_cancel_term_watch() freed it */
			case REQ_DELETE:
				on_delete_answer(e, req);
				break;
			case REQ_MOVE:
				el_on_move_answer(e, req);
				break;
			case REQ_POSITION:
				el_on_position_answer(e, req);
				break;
			case REQ_SUCCESSION:
				el_on_succession_answer(e, req);
				break;
			case REQ_LEADER_KEY:
				el_on_leader_key_answer(e, req);
				break;
			case REQ_RELEASE:
				/* the successor saw the release; only now may the lease go */
				if (e->revoke_after_release != 0)
					el_revoke_lease(e, e->revoke_after_release);
				e->revoke_after_release = 0;
				break;
			case REQ_DISCARD:
				break;
		}
		etcd_request_free(req);
	}
	on_watch_messages(e);
	el_on_term_watch_messages(e);
}
