/*
 * election.c
 *		Owns one node's candidacy, following etcd's election recipe:
 *
 *		grant lease -> campaign (create <prefix>/<lease hex> if absent)
 *		-> look (range the keys up to our create revision)
 *		-> first in line: lead, and watch our own key
 *		-> otherwise: watch only the key just ahead of us; look again when
 *		   it is deleted.
 *
 * The node leads only while a look confirmed its key is first AND the lease
 * is valid locally: until (send time of the last answered renewal) + TTL -
 * margin, which ends before etcd can expire the lease.  Losing the lease or
 * the key ends leadership at once; the node rejoins at the tail with a new
 * lease.  Every renewal is followed by a look, which keeps followers' view
 * of the queue fresh and notices a key deleted behind their back.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/proc.h"
#include "utils/memutils.h"

#include "election.h"
#include "etcd_api.h"

#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		1000
#define RENEW_RETRY_MS		250

typedef enum RequestTag
{
	REQ_GRANT,
	REQ_RENEW,
	REQ_CAMPAIGN,
	REQ_LOOK,
	REQ_WATCH,
	REQ_RESIGN,
	REQ_DISCARD					/* answer not needed (release on leaving) */
} RequestTag;

struct Election
{
	EtcdClient *client;
	ElectionConfig config;

	/* lease */
	int64		lease_id;		/* 0: none */
	int			lease_ttl_s;
	uint64		lease_valid_until;	/* monotonic us */
	uint64		next_renewal;

	/* place in the queue */
	char		key[LE_KEY_LEN];
	int64		create_revision;	/* 0: not queued */

	/* the queue as the last look saw it */
	bool		leading;
	int			queue_position; /* -1: unknown */
	bool		leader_known;
	char		leader_name[LE_NAME_LEN];
	int64		fencing_token;
	char		watched_key[LE_KEY_LEN];
	bool		look_needed;

	/* requests in flight */
	EtcdRequest *grant;
	EtcdRequest *renew;
	EtcdRequest *campaign;
	EtcdRequest *look;
	EtcdRequest *watch;
	EtcdRequest *resign;

	/* resign requests from backends: the one being served */
	bool		resign_waiting;
	uint32		resign_request;

	/* failures, until a look succeeds again */
	uint64		retry_at;
	int			backoff_ms;
	char		last_error[LE_ERROR_LEN];	/* shown in leader_status() */
	char		logged_error[LE_ERROR_LEN]; /* last one written to the log */
};

static void publish(Election *e);

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

/*
 * A look succeeded: the node knows its place, so etcd works end to end.
 * Partial successes (a grant, a renewal) do not count, or an etcd that
 * fails later in the cycle would be retried and logged without backoff.
 */
static void
healthy(Election *e)
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
 * last_error, and later attempts wait a growing, bounded backoff.
 */
static void
note_failure(Election *e, const char *message, bool try_next_endpoint)
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
	if (try_next_endpoint)
		etcd_client_next_endpoint(e->client);
	e->backoff_ms = Min(Max(e->backoff_ms * 2, BACKOFF_MIN_MS), BACKOFF_MAX_MS);
	e->retry_at = le_monotonic_us() + (uint64) e->backoff_ms * 1000;
}

/* Tells a waiting leader_resign() that its request was served. */
static void
answer_resign(Election *e)
{
	if (!e->resign_waiting)
		return;
	e->resign_waiting = false;
	LWLockAcquire(&le_shared->lock, LW_EXCLUSIVE);
	le_shared->resigns_done = e->resign_request;
	LWLockRelease(&le_shared->lock);
	ConditionVariableBroadcast(&le_shared->changed);
}

/* Stops leading now: shared memory first, before any network traffic. */
static void
step_down(Election *e)
{
	e->leading = false;
	pg_atomic_exchange_u64(&le_shared->valid_until_us, 0);
	publish(e);
}

/*
 * Leaves the queue and forgets the lease (revoking it); the next step
 * grants a new one and campaigns at the tail.  With release, the key is
 * also deleted (compared by create revision), for a clean handover.
 */
static void
leave(Election *e, const char *reason, bool release)
{
	bool		was_leading = e->leading;

	step_down(e);
	drop_request(&e->grant);
	drop_request(&e->renew);
	drop_request(&e->campaign);
	drop_request(&e->look);
	drop_request(&e->resign);
	cancel_watch(e);

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
	e->look_needed = false;
	answer_resign(e);
	publish(e);
}

Election *
election_create(MemoryContext context, EtcdClient *client,
				const ElectionConfig *config)
{
	Election   *e = MemoryContextAllocZero(context, sizeof(Election));

	e->client = client;
	e->config = *config;
	e->queue_position = -1;
	return e;
}

void
election_configure(Election *e, const ElectionConfig *config)
{
	bool		rejoin = strcmp(config->prefix, e->config.prefix) != 0 ||
		strcmp(config->node_name, e->config.node_name) != 0 ||
		config->lease_ttl_s != e->config.lease_ttl_s;

	if (rejoin && (e->lease_id != 0 || e->grant != NULL))
		leave(e, "its settings changed", true);
	e->config = *config;
}

/* ---- starting requests ---- */

void
election_step(Election *e)
{
	uint64		now = le_monotonic_us();

	/* Without an answered renewal, etcd may have expired the lease by now. */
	if (e->lease_id != 0 && now >= e->lease_valid_until)
	{
		note_failure(e, "lease expired locally: no renewal was answered within the TTL", false);
		leave(e, "its lease expired", false);
	}

	if (e->lease_id == 0)
	{
		if (e->grant == NULL && now >= e->retry_at)
			e->grant = etcd_lease_grant(e->client, e->config.lease_ttl_s,
										e->config.request_timeout_ms, REQ_GRANT);
	}
	else
	{
		if (e->renew == NULL && now >= e->next_renewal)
			e->renew = etcd_lease_keepalive(e->client, e->lease_id,
											e->config.request_timeout_ms, REQ_RENEW);
		if (e->resign == NULL && now >= e->retry_at)
		{
			if (e->create_revision == 0 && e->campaign == NULL)
				e->campaign = etcd_campaign(e->client, e->key, e->config.node_name,
											e->lease_id, e->config.request_timeout_ms,
											REQ_CAMPAIGN);
			else if (e->create_revision != 0 && e->look_needed && e->look == NULL)
				e->look = etcd_queue(e->client, e->config.prefix, e->create_revision,
									 e->config.request_timeout_ms, REQ_LOOK);
		}
	}
	publish(e);
}

long
election_next_timeout_ms(Election *e)
{
	uint64		now = le_monotonic_us();
	uint64		next = 0;

	if (e->lease_id != 0)
	{
		next = e->lease_valid_until;
		if (e->renew == NULL)
			next = Min(next, e->next_renewal);
	}
	if (e->retry_at > now)
		next = next ? Min(next, e->retry_at) : e->retry_at;
	if (next == 0)
		return -1;
	return next > now ? (long) ((next - now + 999) / 1000) : 0;
}

/* ---- handling answers ---- */

/*
 * etcd granted or renewed the lease for ttl_s from a request sent at
 * sent_us; etcd's countdown started later, so ours ends first.
 */
static void
lease_answered(Election *e, uint64 sent_us, int ttl_s)
{
	uint64		ttl_us = (uint64) ttl_s * 1000000;

	e->lease_ttl_s = ttl_s;
	e->lease_valid_until = Max(e->lease_valid_until, sent_us + ttl_us - margin_us(ttl_s));
	e->next_renewal = sent_us + ttl_us / 3;
}

static void
granted(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	char		hex[32];
	int64		lease_id;
	int			ttl_s;

	if (!etcd_lease_grant_result(req, &lease_id, &ttl_s, err))
	{
		note_failure(e, err, req->transport_failed);
		return;
	}
	e->lease_id = lease_id;
	lease_answered(e, req->started_us, ttl_s);
	etcd_lease_hex(lease_id, hex, sizeof(hex));
	snprintf(e->key, sizeof(e->key), "%s/%s", e->config.prefix, hex);
	e->create_revision = 0;
}

static void
renewed(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	int			ttl_s;

	if (!etcd_lease_keepalive_result(req, &ttl_s, err))
	{
		/* Keep trying until the lease runs out locally. */
		note_failure(e, err, req->transport_failed);
		e->next_renewal = le_monotonic_us() + RENEW_RETRY_MS * 1000;
		return;
	}
	if (ttl_s <= 0)
	{
		note_failure(e, "etcd no longer knows the lease: it expired", false);
		leave(e, "etcd expired its lease", false);
		return;
	}
	lease_answered(e, req->started_us, ttl_s);
	if (e->create_revision != 0)
		e->look_needed = true;
}

static void
campaigned(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	int64		create_revision;

	if (!etcd_campaign_result(req, &create_revision, err))
	{
		note_failure(e, err, req->transport_failed);
		/* etcd refused the txn itself, e.g. an unknown lease: start over */
		if (!req->transport_failed)
			leave(e, "its campaign was refused", false);
		return;
	}
	e->create_revision = create_revision;
	e->look_needed = true;
}

static void
looked(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	EtcdQueue	queue;
	EtcdKeyValue *own;
	const char *target;

	if (!etcd_queue_result(req, e->config.prefix, &queue, err))
	{
		note_failure(e, err, req->transport_failed);
		return;
	}
	e->look_needed = false;

	/* Our key must still be there with our revision: no phantom leader. */
	own = queue.count > 0 ? &queue.keys[queue.count - 1] : NULL;
	if (own == NULL || strcmp(own->key, e->key) != 0 ||
		own->create_revision != e->create_revision)
	{
		leave(e, "its key was deleted", false);
		return;
	}

	healthy(e);
	e->queue_position = queue.count - 1;
	e->leader_known = true;
	strlcpy(e->leader_name, queue.keys[0].value, sizeof(e->leader_name));
	e->fencing_token = queue.keys[0].create_revision;
	e->leading = (queue.count == 1);
	if (!e->leading)
		pg_atomic_exchange_u64(&le_shared->valid_until_us, 0);

	/* The leader watches its own key; everyone else its predecessor. */
	target = e->leading ? e->key : queue.keys[queue.count - 2].key;
	if (e->watch == NULL || strcmp(target, e->watched_key) != 0)
	{
		cancel_watch(e);
		strlcpy(e->watched_key, target, sizeof(e->watched_key));
		e->watch = etcd_watch_key(e->client, target, queue.revision + 1,
								  e->config.request_timeout_ms, REQ_WATCH);
	}
}

/* Reads whatever the watch stream has delivered. */
static void
watched(Election *e)
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
				if (e->leading)
				{
					leave(e, "its key was deleted", false);
					return;
				}
				cancel_watch(e);
				e->look_needed = true;
				return;
			case ETCD_WATCH_CANCELED:
				/* e.g. compaction: the key may or may not be gone; look */
				cancel_watch(e);
				e->look_needed = true;
				return;
			case ETCD_WATCH_BROKEN:
				note_failure(e, err, e->watch->transport_failed);
				cancel_watch(e);
				e->look_needed = true;
				return;
		}
	}
}

static void
resigned(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];

	/* Should the delete have failed, revoking the lease deletes the key. */
	if (!etcd_result_ok(req, err))
		note_failure(e, err, req->transport_failed);
	leave(e, "it resigned", false);
}

void
election_process(Election *e)
{
	EtcdRequest *req;

	while ((req = etcd_client_next_done(e->client)) != NULL)
	{
		switch ((RequestTag) req->tag)
		{
			case REQ_GRANT:
				e->grant = NULL;
				granted(e, req);
				break;
			case REQ_RENEW:
				e->renew = NULL;
				renewed(e, req);
				break;
			case REQ_CAMPAIGN:
				e->campaign = NULL;
				campaigned(e, req);
				break;
			case REQ_LOOK:
				e->look = NULL;
				looked(e, req);
				break;
			case REQ_WATCH:
				/* drains the remaining messages; the end frees it */
				watched(e);
				Assert(e->watch != req);
				continue;
			case REQ_RESIGN:
				e->resign = NULL;
				resigned(e, req);
				break;
			case REQ_DISCARD:
				break;
		}
		etcd_request_free(req);
	}
	watched(e);
}

void
election_resign(Election *e, uint32 request_id)
{
	e->resign_request = request_id;
	e->resign_waiting = true;
	if (!e->leading || e->resign != NULL)
	{
		if (e->resign == NULL)
			answer_resign(e);
		return;
	}
	step_down(e);
	drop_request(&e->look);
	cancel_watch(e);
	e->resign = etcd_delete_if_created(e->client, e->key, e->create_revision,
									   e->config.request_timeout_ms, REQ_RESIGN);
}

void
election_shutdown(Election *e, const char *reason)
{
	uint64		deadline;

	leave(e, reason, true);
	deadline = le_monotonic_us() + (uint64) e->config.request_timeout_ms * 1000;
	while (!etcd_client_idle(e->client) && le_monotonic_us() < deadline)
	{
		EtcdRequest *req;

		etcd_client_wait(e->client, (long) ((deadline - le_monotonic_us()) / 1000) + 1,
						 PG_WAIT_EXTENSION);
		while ((req = etcd_client_next_done(e->client)) != NULL)
			etcd_request_free(req);
	}
	etcd_client_cancel_all(e->client);
}

/* ---- publishing ---- */

static void
publish(Election *e)
{
	uint64		now = le_monotonic_us();
	bool		leads = e->leading && lease_valid(e, now);
	LeaderRole	role;
	bool		changed;

	if (leads)
		role = LE_ROLE_LEADER;
	else if (lease_valid(e, now) && e->create_revision != 0 && e->queue_position > 0)
		role = LE_ROLE_FOLLOWER;
	else
		role = LE_ROLE_DISCONNECTED;

	if (!leads)
		pg_atomic_exchange_u64(&le_shared->valid_until_us, 0);

	LWLockAcquire(&le_shared->lock, LW_EXCLUSIVE);
	changed = le_shared->role != role;
	if (changed)
	{
		le_shared->role = role;
		le_shared->role_since = GetCurrentTimestamp();
	}
	strlcpy(le_shared->node_name, e->config.node_name, LE_NAME_LEN);
	le_shared->leader_known = e->leader_known;
	strlcpy(le_shared->leader_name, e->leader_known ? e->leader_name : "", LE_NAME_LEN);
	le_shared->fencing_token = e->leader_known ? e->fencing_token : 0;
	le_shared->queue_position = (e->create_revision != 0) ? e->queue_position : -1;
	le_shared->lease_id = e->lease_id;
	le_shared->lease_ttl = e->lease_id != 0 ? e->lease_ttl_s : e->config.lease_ttl_s;
	strlcpy(le_shared->own_key, e->create_revision != 0 ? e->key : "", LE_KEY_LEN);
	le_shared->own_create_revision = e->create_revision;
	strlcpy(le_shared->endpoint, etcd_client_endpoint(e->client), LE_URL_LEN);
	strlcpy(le_shared->last_error, e->last_error, LE_ERROR_LEN);
	LWLockRelease(&le_shared->lock);

	/* Claimed last, after the view it goes with is in place. */
	if (leads)
		pg_atomic_exchange_u64(&le_shared->valid_until_us, e->lease_valid_until);

	if (changed)
	{
		ConditionVariableBroadcast(&le_shared->changed);
		if (role == LE_ROLE_LEADER)
			ereport(LOG,
					(errmsg("leader_election: node \"%s\" is now the leader",
							e->config.node_name),
					 errdetail("Key \"%s\", fencing token " INT64_FORMAT ".",
							   e->key, e->fencing_token)));
		else if (role == LE_ROLE_FOLLOWER)
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
}
