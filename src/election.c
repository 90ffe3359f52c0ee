/*
 * election.c
 *		Owns one node's candidacy, following etcd's election recipe: a lease,
 *		a key <prefix>/<lease hex> created by a campaign txn, a place in the
 *		queue by create revision, and a watch on the key just ahead.
 *
 * Phases.  The node is always in one ElectionPhase; enter() is the only
 * place that changes it, checks that the change is legal, and sends the
 * request the new phase waits for.  At most one such request is in flight
 * (e->request); the lease renewal and the watch run beside it.
 *
 *	phase        holds       in flight      on                    -> phase
 *	-----------  ----------  -------------  --------------------  -----------
 *	no lease     -           -              retry time reached    granting
 *	granting     -           lease grant    granted               campaigning
 *	                                        failed                no lease
 *	campaigning  lease       campaign txn   key created or found  looking
 *	                                        etcd unreachable      backing off
 *	                                        txn refused           no lease
 *	looking      lease, key  range read     first in line         leading
 *	                                        others ahead          queued
 *	                                        failed                backing off
 *	queued       lease, key  watch (pred.)  predecessor deleted   looking
 *	                                        watch broke           backing off
 *	                                        a refresh: first      leading
 *	leading      lease, key  watch (own)    leader_resign()       resigning
 *	                                        a refresh: not first  queued
 *	resigning    lease, key  key delete     answered              no lease
 *	backing off  lease       -              retry time reached    campaigning
 *	                                        (or looking, if the key exists)
 *
 * Every phase that holds a lease also goes to "no lease" (revoking the
 * lease) when the lease lapses locally or in etcd, when a range read or the
 * leader's watch finds the key deleted, or when the settings change.
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
 * - The leader's watch on its own key: when it breaks, it is re-created at
 *   the next retry time from the revision it started at (so no deletion in
 *   between is missed), without waiting for a range read to succeed.
 * - The refresh: in queued and leading, every answered renewal is followed by
 *   another range read (e->request) without leaving the phase.  It keeps
 *   followers' view of the queue fresh and notices a key deleted behind the
 *   node's back; its answer is handled like the one of "looking".
 *
 * The node leads only in "leading" and only while the lease is valid; the
 * view published to shared memory is derived from the phase in publish().
 * Every finished request is handed to its handler (on_<request>_answer) and
 * freed in election_process(), the watch included.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "utils/memutils.h"

#include "election.h"
#include "etcd_api.h"
#include "printable.h"

#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		1000
#define RENEW_RETRY_MS		250

typedef enum RequestTag
{
	REQ_GRANT,
	REQ_RENEWAL,
	REQ_CAMPAIGN,
	REQ_RANGE,
	REQ_WATCH,
	REQ_DELETE,
	REQ_DISCARD					/* answer not needed (release on leaving) */
} RequestTag;

struct Election
{
	EtcdClient *client;
	ElectionConfig config;
	ElectionPhase phase;

	/* the phase's request (grant, campaign, range read, delete) */
	EtcdRequest *request;
	/* queued and leading: a range read is due after a renewal */
	bool		refresh_due;

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

	/* the queue as the last range read saw it */
	int			queue_position; /* -1: unknown */
	bool		leader_known;
	char		leader_name[LE_NAME_LEN];
	int64		fencing_token;

	/* queued: the predecessor's key; leading: our own */
	EtcdRequest *watch;
	char		watched_key[LE_KEY_LEN];
	int64		watch_from;		/* its start revision; 0: a range read must tell */

	/* the resign request being served */
	bool		resign_waiting;
	uint32		resign_request;

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
		case EP_GRANTING:
			return "granting";
		case EP_CAMPAIGNING:
			return "campaigning";
		case EP_LOOKING:
			return "looking";
		case EP_QUEUED:
			return "queued";
		case EP_LEADING:
			return "leading";
		case EP_RESIGNING:
			return "resigning";
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

static bool
lease_valid(Election *e, uint64 now)
{
	return e->lease_id != 0 && now < e->lease_valid_until;
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

/*
 * A range read succeeded: the node knows its place, so etcd works end to
 * end.  Partial successes (a grant, a renewal) do not count, or an etcd that
 * fails later in the cycle would be retried and logged without backoff.
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

/* Tells a waiting leader_resign() that its request was served. */
static void
answer_resign(Election *e)
{
	if (!e->resign_waiting)
		return;
	e->resign_waiting = false;
	le_resign_answered(e->resign_request);
}

/* ---- phases ---- */

#define PHASE_BIT(p)	(1u << (p))
#define ANY_PHASE		(PHASE_BIT(EP_COUNT) - 1)

/* For each phase, the phases it may be entered from: the table above. */
static const uint32 legal_from[EP_COUNT] = {
	[EP_NO_LEASE] = ANY_PHASE,
	[EP_GRANTING] = PHASE_BIT(EP_NO_LEASE),
	[EP_CAMPAIGNING] = PHASE_BIT(EP_GRANTING) | PHASE_BIT(EP_BACKING_OFF),
	[EP_LOOKING] = PHASE_BIT(EP_CAMPAIGNING) | PHASE_BIT(EP_QUEUED) |
	PHASE_BIT(EP_BACKING_OFF),
	/* a refresh may find the queue changed, so these also follow each other */
	[EP_QUEUED] = PHASE_BIT(EP_LOOKING) | PHASE_BIT(EP_QUEUED) | PHASE_BIT(EP_LEADING),
	[EP_LEADING] = PHASE_BIT(EP_LOOKING) | PHASE_BIT(EP_QUEUED) | PHASE_BIT(EP_LEADING),
	[EP_RESIGNING] = PHASE_BIT(EP_LEADING),
	[EP_BACKING_OFF] = PHASE_BIT(EP_CAMPAIGNING) | PHASE_BIT(EP_LOOKING) |
	PHASE_BIT(EP_QUEUED),
};

/*
 * The one place where the phase changes, checked against legal_from.
 * Leaving "leading" clears leadership in shared memory before anything else
 * happens; entering a phase that waits for etcd sends its request.
 */
static void
enter(Election *e, ElectionPhase to)
{
	ElectionPhase from = e->phase;

	/* a bug; the worker exits, and its exit clears leadership */
	if (!(legal_from[to] & PHASE_BIT(from)))
		elog(ERROR, "leader_election: illegal phase change from \"%s\" to \"%s\"",
			 election_phase_name(from), election_phase_name(to));
	if (from == EP_LEADING && to != EP_LEADING)
		le_shared_clear_leadership();
	if (from != to)
		elog(DEBUG1, "leader_election: phase \"%s\" -> \"%s\"",
			 election_phase_name(from), election_phase_name(to));
	e->phase = to;
	if (to != EP_QUEUED && to != EP_LEADING)
		e->refresh_due = false;

	switch (to)
	{
		case EP_NO_LEASE:
		case EP_QUEUED:
		case EP_LEADING:
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
			e->request = etcd_range_candidates(e->client, e->config.prefix,
											   e->create_revision,
											   e->config.request_timeout_ms, REQ_RANGE);
			break;
		case EP_RESIGNING:
			drop_request(&e->request);
			cancel_watch(e);
			e->request = etcd_delete_if_created(e->client, e->key, e->create_revision,
												e->config.request_timeout_ms, REQ_DELETE);
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
 * Leaves the queue and forgets the lease (revoking it); the next step
 * grants a new one and campaigns at the tail.  With release, the key is
 * also deleted (compared by create revision), for a clean handover.
 */
static void
leave(Election *e, const char *reason, bool release)
{
	bool		was_leading = (e->phase == EP_LEADING);

	enter(e, EP_NO_LEASE);
	drop_request(&e->request);
	cancel_renewals(e);
	cancel_watch(e);
	e->watch_from = 0;

	if (release && e->create_revision != 0)
		etcd_delete_if_created(e->client, e->key, e->create_revision,
							   e->config.request_timeout_ms, REQ_DISCARD);
	if (e->lease_id != 0)
		etcd_lease_revoke(e->client, e->lease_id,
						  e->config.request_timeout_ms, REQ_DISCARD);

	ereport(LOG,
			(errmsg("leader_election: node \"%s\" leaves the election: %s",
					e->config.node_name, reason),
			 was_leading ? errdetail("It led with fencing token " INT64_FORMAT ".",
									 e->fencing_token) : 0));

	e->lease_id = 0;
	e->lease_valid_until = 0;
	e->create_revision = 0;
	e->key[0] = '\0';
	e->queue_position = -1;
	e->leader_known = false;
	e->fencing_token = 0;
	answer_resign(e);
}

Election *
election_create(MemoryContext context, EtcdClient *client,
				const ElectionConfig *config)
{
	Election   *e = MemoryContextAllocZero(context, sizeof(Election));

	e->client = client;
	e->config = *config;
	e->phase = EP_NO_LEASE;
	e->queue_position = -1;
	return e;
}

void
election_configure(Election *e, const ElectionConfig *config)
{
	bool		rejoin = strcmp(config->prefix, e->config.prefix) != 0 ||
		strcmp(config->node_name, e->config.node_name) != 0 ||
		config->lease_ttl_s != e->config.lease_ttl_s;

	if (rejoin && e->phase != EP_NO_LEASE)
		leave(e, "its settings changed", true);
	e->config = *config;
}

/* ---- publishing ---- */

/* Shared memory gets the view derived from the phase; role changes are logged. */
static void
publish(Election *e)
{
	uint64		now = le_clock_us();
	bool		leads = (e->phase == EP_LEADING && lease_valid(e, now));
	LeaderView	view;

	memset(&view, 0, sizeof(view));
	view.phase = e->phase;
	if (leads)
		view.role = LE_ROLE_LEADER;
	else if (lease_valid(e, now) && e->create_revision != 0 && e->queue_position > 0)
		view.role = LE_ROLE_FOLLOWER;
	else
		view.role = LE_ROLE_DISCONNECTED;
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

	if (!le_shared_publish(&view, leads ? e->lease_valid_until : 0,
						   leads ? (uint64) e->create_revision : 0))
		return;
	if (view.role == LE_ROLE_LEADER)
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" is now the leader",
						e->config.node_name),
				 errdetail("Key \"%s\", fencing token " INT64_FORMAT ".",
						   e->key, e->fencing_token)));
	else if (view.role == LE_ROLE_FOLLOWER)
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" is now a follower at queue position %d",
						e->config.node_name, e->queue_position),
				 errdetail("Leader \"%s\", fencing token " INT64_FORMAT ".",
						   e->leader_name, e->fencing_token)));
	else
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

	if (e->lease_id != 0 && e->nrenewals == 0 && now >= e->next_renewal)
		send_renewal(e, now);
	else if (e->nrenewals > 0 && now >= e->next_hedge &&
			 e->nrenewals < Max(2, etcd_client_endpoint_count(e->client)))
	{
		etcd_client_next_endpoint(e->client);
		send_renewal(e, now);
	}

	if (now >= e->retry_at)
	{
		switch (e->phase)
		{
			case EP_NO_LEASE:
				enter(e, EP_GRANTING);
				break;
			case EP_BACKING_OFF:
				enter(e, retry_phase(e));
				break;
			case EP_LEADING:
				if (e->watch == NULL && e->watch_from != 0)
					watch_key(e, e->key, e->watch_from);
				/* FALLTHROUGH */
			case EP_QUEUED:
				if (e->refresh_due && e->request == NULL)
					e->request = etcd_range_candidates(e->client, e->config.prefix,
													   e->create_revision,
													   e->config.request_timeout_ms,
													   REQ_RANGE);
				break;
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
	uint64		next = 0;

	if (e->lease_id != 0)
	{
		next = e->lease_valid_until;
		next = Min(next, e->nrenewals == 0 ? e->next_renewal : e->next_hedge);
	}
	if (e->retry_at > now)
		next = next ? Min(next, e->retry_at) : e->retry_at;
	if (next == 0)
		return -1;
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
	if (e->phase == EP_QUEUED || e->phase == EP_LEADING)
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

/* A range read answered, in "looking" or as a refresh: the queue decides. */
static void
on_range_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	EtcdCandidates queue;
	EtcdKeyValue *own;
	bool		first;

	if (!etcd_range_candidates_result(req, e->config.prefix, &queue, err))
	{
		note_failure(e, err, req);
		if (e->phase == EP_LOOKING)
			enter(e, EP_BACKING_OFF);
		return;
	}
	e->refresh_due = false;

	/* Our key must still be there with our revision: no phantom leader. */
	own = queue.count > 0 ? &queue.keys[queue.count - 1] : NULL;
	if (own == NULL || strcmp(own->key, e->key) != 0 ||
		own->create_revision != e->create_revision)
	{
		leave(e, "its key was deleted", false);
		return;
	}

	clear_failure(e);
	first = (queue.count == 1);
	e->queue_position = queue.count - 1;
	e->leader_known = true;
	strlcpy(e->leader_name, queue.keys[0].name, sizeof(e->leader_name));
	e->fencing_token = queue.keys[0].create_revision;
	enter(e, first ? EP_LEADING : EP_QUEUED);

	/* The leader watches its own key; everyone else its predecessor. */
	watch_key(e, first ? e->key : queue.keys[queue.count - 2].key,
			  queue.revision + 1);
}

/* Reads whatever the watch stream has delivered. */
static void
on_watch_messages(Election *e)
{
	char		err[LE_ERROR_LEN];

	while (e->watch != NULL)
	{
		switch (etcd_watch_next(e->watch, err))
		{
			case ETCD_WATCH_NOTHING:
				return;
			case ETCD_WATCH_CREATED:
			case ETCD_WATCH_OTHER:
				break;
			case ETCD_WATCH_DELETED:
				if (e->phase == EP_LEADING)
					leave(e, "its key was deleted", false);
				else
					enter(e, EP_LOOKING);
				return;
			case ETCD_WATCH_CANCELED:
				/* e.g. compaction: the key may or may not be gone; read again */
				cancel_watch(e);
				e->watch_from = 0;
				if (e->phase == EP_LEADING)
					e->refresh_due = true;
				else
					enter(e, EP_LOOKING);
				return;
			case ETCD_WATCH_BROKEN:
				/* the leader re-watches from watch_from at the retry time */
				note_failure(e, err, e->watch);
				cancel_watch(e);
				if (e->phase != EP_LEADING)
					enter(e, EP_BACKING_OFF);
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
			case REQ_RANGE:
				on_range_answer(e, req);
				break;
			case REQ_WATCH:
				/* the stream ended: its last messages, then BROKEN, end it */
				Assert(req == e->watch);
				on_watch_messages(e);
				Assert(e->watch != req);
				continue;		/* cancel_watch() freed it */
			case REQ_DELETE:
				on_delete_answer(e, req);
				break;
			case REQ_DISCARD:
				break;
		}
		etcd_request_free(req);
	}
	on_watch_messages(e);
}

void
election_resign(Election *e, uint32 request_id)
{
	e->resign_request = request_id;
	e->resign_waiting = true;
	if (e->phase == EP_LEADING)
		enter(e, EP_RESIGNING);
	else if (e->phase != EP_RESIGNING)
		answer_resign(e);
}

void
election_shutdown(Election *e, const char *reason)
{
	uint64		deadline;

	leave(e, reason, true);
	publish(e);
	deadline = le_clock_us() + (uint64) e->config.request_timeout_ms * 1000;
	while (!etcd_client_idle(e->client) && le_clock_us() < deadline)
	{
		EtcdRequest *req;

		etcd_client_wait(e->client, (long) ((deadline - le_clock_us()) / 1000) + 1,
						 false, PG_WAIT_EXTENSION);
		while ((req = etcd_client_next_done(e->client)) != NULL)
			etcd_request_free(req);
	}
	etcd_client_cancel_all(e->client);
}
