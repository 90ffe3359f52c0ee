/*
 * succession.h
 *		Who takes over after the primary crashed: the rule the first in line
 *		applies before it claims leadership, a pure function of the queue,
 *		the standbys' published WAL positions and the cluster record.
 */
#ifndef LEADER_ELECTION_SUCCESSION_H
#define LEADER_ELECTION_SUCCESSION_H

#include "cluster_record.h"
#include "etcd_api.h"
#include "wal_position.h"

typedef enum SuccessionVerdict
{
	SUCCESSION_TAKE,			/* this node takes over */
	SUCCESSION_YIELD,			/* it gives its place up to another */
	SUCCESSION_WAIT				/* it keeps its place and decides later */
} SuccessionVerdict;

typedef struct SuccessionInput
{
	const WalPosition *own;		/* this node, first in line */
	const EtcdCandidates *queue;	/* the whole queue; this node's key first */
	const WalPosition *positions;	/* as published, any order */
	int			npositions;
	const ClusterRecord *record; /* the primary's, which crashed */
	bool		waited_enough;	/* no more waiting for positions not published */
} SuccessionInput;

/*
 * The verdict; with SUCCESSION_YIELD, to (LE_NAME_LEN) names the node to
 * yield to, and why (LE_ERROR_LEN) says why in words for leader_status()
 * and the log, e.g. "yielded to n3: 0/5A1C3F0 > 0/5A10000"; with
 * SUCCESSION_WAIT, why says what it waits for.
 */
extern SuccessionVerdict succession_decide(const SuccessionInput *input, char *to, char *why);

#endif
