/*
 * wal_position.h
 *		A queued standby's WAL position as it publishes it in etcd once its
 *		stream from the primary ended: what the first in line compares
 *		before it takes over (succession.c).
 */
#ifndef LEADER_ELECTION_WAL_POSITION_H
#define LEADER_ELECTION_WAL_POSITION_H

#include "access/xlogdefs.h"

#include "shared_state.h"

/*
 * Kept at "<prefix>.wal.<lease hex>", under the standby's own lease: it goes
 * with the candidacy.  Outside "<prefix>/", so etcdctl elect and other
 * observers of the queue never take it for a candidate.
 */
typedef struct WalPosition
{
	int64		lease;			/* from the key: whose candidacy */
	char		node[LE_NAME_LEN];	/* printable */
	TimeLineID	timeline;		/* the timeline it received last */
	XLogRecPtr	received;		/* written by its WAL receiver */
	XLogRecPtr	flushed;		/* ... and flushed: what it would keep */
} WalPosition;

/* The key of the position of lease under prefix, and the prefix of them all. */
extern void wal_position_key(const char *prefix, int64 lease, char *key, size_t len);
extern void wal_position_key_prefix(const char *prefix, char *key, size_t len);

/* The value as JSON, for etcd (palloc'd). */
extern char *wal_position_encode(const WalPosition *position);

/*
 * Parses key and value (len bytes) into *position; false if either is not
 * what this extension writes (another client's key, a hostile value).
 */
extern bool wal_position_decode(const char *prefix, const char *key, const char *value,
								size_t len, WalPosition *position);

/* <0, 0, >0 as a has less, as much, more WAL than b: (timeline, flushed). */
extern int	wal_position_compare(const WalPosition *a, const WalPosition *b);

#endif
