/*
 * replication.h
 *		This node's place in physical streaming replication, as PostgreSQL's
 *		shared memory shows it, and the two things the worker does to it:
 *		promote a standby, and drop a former primary's standbys.
 */
#ifndef LEADER_ELECTION_REPLICATION_H
#define LEADER_ELECTION_REPLICATION_H

#include "access/xlogdefs.h"

typedef struct ReplicationState
{
	bool		in_recovery;
	bool		crash_recovery; /* in recovery, but not as a standby: starting up */
	bool		reads_open;		/* a primary, or a hot standby that takes connections */
	uint64		system_identifier;
	/* replayed timeline on a standby, the one WAL is written on by a primary */
	TimeLineID	timeline;
	/* standbys: the WAL receiver */
	bool		streaming;
	TimeLineID	received_timeline;	/* 0 until something was received */
	XLogRecPtr	received;		/* WAL received (written) here */
	XLogRecPtr	flushed;		/* WAL received and flushed here */
	XLogRecPtr	replayed;		/* WAL replayed here */
	int64		lag_bytes;		/* sent by the upstream, not yet flushed here */
} ReplicationState;

/* Reads the state now: spinlocks and atomics only, no I/O. */
extern void replication_read(ReplicationState *state);

/* Primary: the end of the WAL inserted so far (what a successor must flush). */
extern XLogRecPtr replication_wal_end(void);

/* Primary: the end of the WAL flushed so far (what standbys can have). */
extern XLogRecPtr replication_wal_flushed(void);

/* Primary: flushes WAL up to upto, so that walsenders can send it. */
extern void replication_flush_wal(XLogRecPtr upto);

/*
 * One physical walsender that streams from this primary: its client's
 * application_name, what the client has flushed, and whether it replays WAL
 * (a standby does; pg_receivewal and pg_basebackup report no replay).
 */
typedef struct WalStream
{
	char	   *name;
	XLogRecPtr	flushed;
	bool		replays;
	bool		streaming;		/* caught up once: not in catch-up any more */
	int			sync_priority;	/* as its walsender last read synchronous_standby_names */
} WalStream;

typedef struct WalStreams
{
	int			count;
	WalStream  *streams;		/* palloc'd */
} WalStreams;

/* Primary: the physical walsenders that stream now, from one status snapshot. */
extern void replication_streams(WalStreams *streams);

/* Whether a standby (a client that replays WAL) is among them. */
extern bool replication_has_standby(const WalStreams *streams);

/*
 * The WAL position flushed by the client that connected with
 * application_name, or false if none of them did.
 */
extern bool replication_standby_flushed(const WalStreams *streams,
										const char *application_name,
										XLogRecPtr *flushed);

/* The stream of the client that connected with application_name, or NULL. */
extern const WalStream *replication_stream(const WalStreams *streams,
										   const char *application_name);

/*
 * Primary: whether commits wait for synchronous standbys now -- the
 * checkpointer's view of synchronous_standby_names, which backends check
 * before they wait; it lags a reload until the checkpointer has taken it.
 */
extern bool replication_commits_wait_for_standbys(void);

/* How many standbys (clients that replay) have flushed less than upto. */
extern int	replication_standbys_behind(const WalStreams *streams, XLogRecPtr upto);

/*
 * Primary: ends every physical walsender but keep's (an application_name,
 * or NULL), so that standbys look for the new leader; returns how many were
 * signalled.
 */
extern int	replication_drop_standbys(const char *keep);

/*
 * Standby: ends the WAL receiver, so that the startup process starts a new
 * one, which connects through primary_conninfo anew.  False if none runs.
 */
extern bool replication_restart_receiver(void);

/*
 * Standby: asks the startup process to end recovery, as pg_promote() does
 * (the promote signal file, then SIGUSR1 to the postmaster).  False, with
 * err (LE_ERROR_LEN) set, if the request could not be made.
 */
extern bool replication_request_promotion(char *err);

#endif
