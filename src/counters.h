/*
 * counters.h
 *		What this node counts for its metrics: events of the election, the
 *		fence's refusals, etcd requests by kind, and the durations of the
 *		last failover and handovers.
 *
 * counters.c owns the counters' shared-memory segment and is the only file
 * that writes it.  Every value is an atomic: any process adds to a counter
 * (the worker, backends for fence refusals, leader_candidates() for its etcd
 * requests) without a lock, and readers (the HTTP worker) read each value
 * on its own -- a scrape is not a consistent cut, as in any exporter.
 * Counters only grow while the server runs; they start at zero when it
 * starts (also after a crash restart), which Prometheus sees as a reset.
 */
#ifndef LEADER_ELECTION_COUNTERS_H
#define LEADER_ELECTION_COUNTERS_H

#include "c.h"

typedef enum LeCounter
{
	LE_COUNT_LEADER_CHANGES,	/* the leader this node knows changed */
	LE_COUNT_LEADERSHIPS,		/* this node began to lead */
	LE_COUNT_PROMOTIONS,		/* this node promoted itself from standby */
	LE_COUNT_HANDOVERS,			/* this node handed leadership over */
	LE_COUNT_HANDOVER_FAILURES, /* ... or tried, and leads on */
	LE_COUNT_FAILOVERS,			/* it took over from a leader that did not let go */
	LE_COUNT_FENCE_REFUSALS,	/* writes refused by the fence */
	LE_COUNTERS
} LeCounter;

/* The etcd gateway calls, by the RPC they are. */
typedef enum EtcdCallKind
{
	ETCD_CALL_RANGE,
	ETCD_CALL_TXN,
	ETCD_CALL_PUT,
	ETCD_CALL_DELETE,
	ETCD_CALL_LEASE_GRANT,
	ETCD_CALL_LEASE_KEEPALIVE,
	ETCD_CALL_LEASE_REVOKE,
	ETCD_CALL_WATCH,
	ETCD_CALL_AUTHENTICATE,
	ETCD_CALL_OTHER,
	ETCD_CALL_KINDS
} EtcdCallKind;

/* Durations, the last of each kind. */
typedef enum LeDuration
{
	LE_LAST_FAILOVER,			/* first in line -> leading, after a leader that did not let go */
	LE_LAST_HANDOVER,			/* first in line -> leading, after a leader that let go */
	LE_LAST_RESIGN,				/* handing over -> key released (the node that let go) */
	LE_DURATIONS
} LeDuration;

/* What a reader sees. */
typedef struct LeCounterValues
{
	uint64		counts[LE_COUNTERS];
	uint64		etcd_requests[ETCD_CALL_KINDS];
	uint64		etcd_errors[ETCD_CALL_KINDS];
	uint64		duration_us[LE_DURATIONS];	/* 0: none yet */
} LeCounterValues;

/* From _PG_init: the counters' shared memory. */
extern void le_counters_install_hooks(void);

/* Adds one; a no-op without shared memory (library not preloaded). */
extern void le_count(LeCounter counter);
extern void le_count_etcd_call(const char *path, bool failed);
extern void le_set_duration(LeDuration which, uint64 us);

/* Reads every value (zeros without shared memory). */
extern void le_counters_read(LeCounterValues *values);

extern const char *etcd_call_kind_name(EtcdCallKind kind);

#endif
