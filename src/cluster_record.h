/*
 * cluster_record.h
 *		The replicated cluster's record in etcd, and the rules that decide
 *		from it, and from this node's replication state, whether the node
 *		may stand in the election.
 */
#ifndef LEADER_ELECTION_CLUSTER_RECORD_H
#define LEADER_ELECTION_CLUSTER_RECORD_H

#include "replication.h"
#include "shared_state.h"

/* leader_election.synchronous_mode, as the leader applies and records it */
typedef enum SyncMode
{
	SYNC_MODE_OFF,				/* asynchronous: the most advanced standby takes over */
	SYNC_MODE_ON,				/* synchronous while a standby can be; else no failover */
	SYNC_MODE_STRICT			/* synchronous always: commits wait for a standby */
} SyncMode;

/* A synchronous mode and the standbys it keeps synchronous, in order. */
typedef struct SyncSet
{
	SyncMode	mode;
	int			count;
	char		names[LE_MAX_SYNC][LE_NAME_LEN];
} SyncSet;

/*
 * Who may write as the primary of the cluster that uses this election: its
 * system identifier, the timeline its leader writes on, and that leader's
 * node name; and how far that leader had flushed WAL when it last wrote the
 * record.  Kept at "<prefix>.cluster", beside the queue, not in it.
 */
typedef struct ClusterRecord
{
	bool		exists;
	bool		readable;		/* false: problem says why */
	uint64		system_identifier;
	TimeLineID	timeline;
	char		node[LE_NAME_LEN];	/* as written, for comparisons */
	XLogRecPtr	wal_end;		/* the leader's flushed WAL; 0 if not said */
	bool		stopping;		/* its last word: it stopped writing cleanly */
	bool		moved;			/* ... because it moved to another election */
	char		successor[LE_NAME_LEN]; /* handed over to; "" after a stop */
	/* synchronous mode: the standbys that have every acknowledged commit */
	SyncSet		sync;
	bool		sync_off_by_hand;	/* "synchronous_mode":"off": an operator's word */
	char		problem[LE_ERROR_LEN];
} ClusterRecord;

/* The record's key for an election prefix. */
extern void cluster_record_key(const char *prefix, char *key, size_t len);

/* The record as JSON, for etcd (palloc'd). */
extern char *cluster_record_encode(const ClusterRecord *record);

/* Parses an etcd value of len bytes into *record (exists = true). */
extern void cluster_record_decode(const char *value, size_t len, ClusterRecord *record);

/* Whether the record names this node as the primary it is now. */
extern bool cluster_record_names(const ClusterRecord *record,
								 const ReplicationState *state, const char *node_name);

/*
 * The set as JSON fields of an object ("synchronous_mode", "synchronous";
 * none when off), and back: absent means off; "off" written by hand sets
 * *off_by_hand.  False if the fields are malformed.
 */
typedef struct cJSON cJSON;
extern void sync_set_to_json(const SyncSet *set, cJSON *json);
extern bool sync_set_from_json(const cJSON *json, SyncSet *set, bool *off_by_hand);

/* Whether the set names node; whether two sets say the same. */
extern bool sync_set_has(const SyncSet *set, const char *node);
extern bool sync_set_equal(const SyncSet *a, const SyncSet *b);

/*
 * Who may take over by both sets: the members of both ("off" names
 * everyone), in the stricter mode.
 */
extern void sync_set_intersect(const SyncSet *a, const SyncSet *b, SyncSet *both);

/* "off", "on", "strict" */
extern const char *sync_mode_name(SyncMode mode);

/*
 * A standby's lag: WAL its upstream has sent, or the leader has recorded
 * as flushed, that the standby has not flushed yet.
 */
extern int64 cluster_standby_lag(const ClusterRecord *record, const ReplicationState *state);

/* What decides whether a node may stand, besides the record. */
typedef struct StandingInput
{
	const ReplicationState *replication;
	const char *node_name;
	bool		candidate;		/* leader_election.candidate */
	int64		max_lag_bytes;	/* leader_election.max_lag_on_failover */
	bool		stream_grace;	/* a standby that just lost its stream keeps its place */
	/* this data directory has been part of a cluster with a record */
	bool		replicated_member;
	/* the latest timeline a record of that cluster named (0: none) */
	TimeLineID	timeline_seen;
	/* the record this node wrote when it moved its cluster here, or NULL */
	const ClusterRecord *moved_from;
	/* the record names this standby as synchronous: it has every acknowledged commit */
	bool		sync_member;
} StandingInput;

/*
 * Whether the node may campaign, stay queued or take over now; if not,
 * reason (LE_ERROR_LEN) says why, in words for leader_status().
 */
extern bool cluster_may_stand(const ClusterRecord *record, const StandingInput *input,
							  char *reason);

/*
 * The data directory's memory of having been part of a replicated cluster
 * (a file beside the data, copied by pg_basebackup and pg_rewind): whether
 * it says so for system_identifier, and the latest timeline a record of it
 * named; and saying so.
 */
extern bool cluster_membership_known(uint64 system_identifier, TimeLineID *timeline);
extern void cluster_membership_remember(uint64 system_identifier, TimeLineID timeline);

/* bytes for people, e.g. "1 MB", "1.5 MB", "12 MB" */
extern void cluster_format_size(int64 bytes, char *buf, size_t len);

#endif
