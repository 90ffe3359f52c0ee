/*
 * node_snapshot.h
 *		Everything the HTTP endpoint knows of its node, copied from the
 *		extension's shared memory in one go (http_endpoint.c takes it): the
 *		election worker's view (replication as it last read it, at most a
 *		quarter second ago) and queue, the leadership deadline, and the
 *		counters.  Nothing of PostgreSQL's own shared memory: its spinlocks
 *		are waited for by the election worker too.  The answers (http_routes.c), the
 *		JSON documents (status_document.c) and the metrics (metrics_text.c)
 *		are pure functions of it: none of them reads shared memory, etcd or
 *		a database.
 */
#ifndef LEADER_ELECTION_NODE_SNAPSHOT_H
#define LEADER_ELECTION_NODE_SNAPSHOT_H

#include "counters.h"
#include "shared_state.h"

typedef struct NodeSnapshot
{
	/* read again for each answer: leadership, liveness, the clocks */
	uint64		now_us;			/* le_clock_us() of the answer */
	TimestampTz taken_at;		/* ... and by the wall clock */
	uint64		valid_until_us; /* leadership deadline; 0: not leading */
	bool		worker_running;
	uint64		loop_turned_at; /* le_clock_us(); 0: never */
	/* copied before each round of requests */
	char		prefix[LE_KEY_LEN]; /* leader_election.prefix, printable */
	LeaderView	view;
	TimestampTz role_since;
	LeaderQueueView queue;
	LeCounterValues counters;
} NodeSnapshot;

/* The role the snapshot shows (a frozen leader's lapsed validity counts). */
static inline LeaderRole
node_role(const NodeSnapshot *s)
{
	return le_shown_role(&s->view, s->valid_until_us, s->now_us);
}

/* This node leads and takes writes: valid leadership on a primary. */
static inline bool
node_leads(const NodeSnapshot *s)
{
	return node_role(s) == LE_ROLE_LEADER && !s->view.in_recovery;
}

/* How long since the election worker's loop last turned (µs); max if never. */
static inline uint64
node_loop_age_us(const NodeSnapshot *s)
{
	if (s->loop_turned_at == 0 || s->loop_turned_at > s->now_us)
		return s->loop_turned_at == 0 ? PG_UINT64_MAX : 0;
	return s->now_us - s->loop_turned_at;
}

/*
 * The worker's loop turns at least every quarter second; one that has not
 * turned for a lease TTL is frozen (a leader frozen that long has lost its
 * leadership already).
 */
static inline bool
node_worker_live(const NodeSnapshot *s)
{
	int			ttl_s = Max(s->view.lease_ttl, 1);

	return s->worker_running && node_loop_age_us(s) < (uint64) ttl_s * 1000000;
}

/*
 * A standby whose WAL receiver streams, open for reads, not leading -- as
 * a live election worker last saw it (a frozen one's view is stale).
 */
static inline bool
node_streams(const NodeSnapshot *s)
{
	return node_worker_live(s) && s->view.accepts_connections && s->view.in_recovery &&
		s->view.streaming && !node_leads(s);
}

#endif
