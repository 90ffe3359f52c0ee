/*
 * lease.c
 *		Owns the lease: its grant, and its renewal every TTL/3, hedged on the
 *		next endpoint when an answer is slow.
 *
 * The lease is valid until (send time of the last answered renewal) + TTL
 * - margin, which ends before etcd can expire it.  A renewal waits at most
 * what is left of that validity (and request_timeout); one not answered
 * within a quarter of its timeout is sent again to the next endpoint,
 * without cancelling the first, and the first answer wins.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"

#include "election_internal.h"

/* ---- what is due now ---- */

/*
 * Sends a renewal to the current endpoint.  It may wait at most what is
 * left of the lease's local validity: an answer after that is worthless.
 */
void
el_send_renewal(Election *e, uint64 now)
{
	/* lapsed, it waits for etcd to answer at all */
	long		left_ms = e->phase == EP_LAPSED ? e->config.request_timeout_ms :
		(long) ((e->lease_valid_until - now) / 1000);
	long		timeout_ms = Max(Min((long) e->config.request_timeout_ms, left_ms), 1);

	e->renewals[e->nrenewals++] =
		etcd_lease_keepalive(e->client, e->lease_id, (int) timeout_ms, REQ_RENEWAL);
	e->next_hedge = now + (uint64) timeout_ms * 1000 / 4;
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
	e->lease_valid_until = Max(e->lease_valid_until, sent_us + ttl_us - el_margin_us(ttl_s));
	e->next_renewal = sent_us + ttl_us / 3;
}

void
el_on_grant_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	char		hex[32];
	int64		lease_id;
	int			ttl_s;

	if (!etcd_lease_grant_result(req, &lease_id, &ttl_s, err))
	{
		el_note_failure(e, err, req);
		el_enter(e, EP_NO_LEASE);
		return;
	}
	e->lease_id = lease_id;
	extend_lease(e, req->started_us, ttl_s);
	etcd_lease_hex(lease_id, hex, sizeof(hex));
	snprintf(e->key, sizeof(e->key), "%s/%s", e->config.prefix, hex);
	e->create_revision = 0;
	el_enter(e, EP_CAMPAIGNING);
}

void
el_on_renewal_answer(Election *e, EtcdRequest *req)
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
		el_note_failure(e, err, req);
		e->next_renewal = le_clock_us() + RENEW_RETRY_MS * 1000;
		return;
	}
	if (ttl_s <= 0)
	{
		el_note_failure(e, "etcd no longer knows the lease: it expired", NULL);
		el_leave(e, "etcd expired its lease", false);
		return;
	}
	/* the first answer wins; the endpoint that gave it serves from now on */
	if (e->nrenewals > 0)
		ereport(LOG,
				(errmsg("leader_election: lease renewed through etcd at %s while an earlier renewal had no answer yet",
						req->endpoint)));
	el_cancel_renewals(e);
	etcd_client_use_endpoint(e->client, req->endpoint);
	extend_lease(e, req->started_us, ttl_s);
	if (e->phase == EP_LAPSED)
	{
		/* etcd kept the lease, and so the key: its place in the queue is ours */
		ereport(LOG,
				(errmsg("leader_election: etcd at %s still holds the lease of node \"%s\": it takes its place in the queue back",
						req->endpoint, e->config.node_name)));
		el_enter(e, e->create_revision != 0 ? EP_LOOKING : EP_CAMPAIGNING);
		return;
	}
	if (e->phase == EP_QUEUED || e->phase == EP_LEADING || e->phase == EP_PROMOTING)
		e->refresh_due = true;
}
