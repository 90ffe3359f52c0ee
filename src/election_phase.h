/*
 * election_phase.h
 *		The named phases of one node's candidacy.  election.c owns the
 *		transitions (see its header for the table); shared memory and
 *		leader_status() show the current phase by name.
 */
#ifndef LEADER_ELECTION_ELECTION_PHASE_H
#define LEADER_ELECTION_ELECTION_PHASE_H

typedef enum ElectionPhase
{
	EP_NO_LEASE,				/* holds nothing; reads the election at retry time */
	EP_OBSERVING,				/* holds nothing; reads the election, stands when eligible */
	EP_GRANTING,				/* lease grant in flight */
	EP_CAMPAIGNING,				/* holds a lease; campaign txn in flight */
	EP_LOOKING,					/* holds lease and key; range read in flight */
	EP_QUEUED,					/* behind another key; watches its predecessor */
	EP_TAKING_OVER,				/* first in line; waits until the last leader cannot write */
	EP_PROMOTING,				/* first in line, a standby: ends recovery first */
	EP_LEADING,					/* first in line; watches its own key */
	EP_HANDING_OVER,			/* fenced leader; waits for its successor's WAL */
	EP_RESIGNING,				/* gave up leading; key delete in flight */
	EP_MOVING,					/* a replicated leader leaves for another election */
	EP_BACKING_OFF,				/* holds a lease; waits to retry after a failure */
	EP_LAPSED					/* lease lapsed locally; renews until etcd answers */
} ElectionPhase;

#define EP_COUNT (EP_LAPSED + 1)

/* The phase's name as leader_status() shows it, e.g. "no lease". */
extern const char *election_phase_name(ElectionPhase phase);

#endif
