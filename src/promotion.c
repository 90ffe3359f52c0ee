/*
 * promotion.c
 *		Owns a standby's way to leading: first in line and holding the term,
 *		it promotes (after a clean stop of the old primary, once its stream
 *		from it has ended), and leads only once recovery has ended and it
 *		has recorded itself as the cluster's primary; a promotion that does
 *		not finish in time gives its place up.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"

#include "election_internal.h"

/*
 * A standby first in line starts promoting: at once, or, after a clean
 * stop of the old primary (which still sends its last WAL), once its stream
 * from it has ended; a successor it handed over to does not wait.
 */
void
el_begin_promotion(Election *e, uint64 now)
{
	e->promote_requested = false;
	e->promote_not_before = now;
	if (e->record.exists && e->record.stopping &&
		strcmp(e->record.node, e->config.node_name) != 0 &&
		strcmp(e->record.successor, e->config.node_name) != 0)
		e->promote_not_before += (uint64) e->config.lease_ttl_s * 1000000;
	e->promote_deadline = e->promote_not_before +
		(uint64) Max(e->config.lease_ttl_s, PROMOTE_MIN_S) * 1000000;
	e->promote_error[0] = '\0';
	e->promote_replayed = e->replication.replayed;
}

/* A promoting standby: leads once recovery has ended and the record says so. */
void
el_step_promotion(Election *e, uint64 now)
{
	char		reason[LE_ERROR_LEN];

	/*
	 * After a clean stop, once the old primary's stream has ended: its
	 * walsenders end only when every standby has its shutdown checkpoint, so
	 * the other standbys can follow this node's new timeline.
	 */
	if (!e->promote_requested &&
		(!e->replication.streaming || now >= e->promote_not_before))
	{
		e->promote_requested = true;
		if (replication_request_promotion(e->promote_error))
			ereport(LOG,
					(errmsg("leader_election: node \"%s\" is first in line: promoting this standby",
							e->config.node_name),
					 errdetail("Key \"%s\", fencing token " INT64_FORMAT ".",
							   e->key, e->create_revision)));
		else
			e->promote_deadline = now;	/* gives up below */
	}

	/* a startup process still replaying what it received is not stuck */
	if (now >= e->promote_deadline && e->promote_error[0] == '\0' &&
		e->replication.in_recovery && e->replication.replayed > e->promote_replayed)
	{
		e->promote_replayed = e->replication.replayed;
		e->promote_deadline = now + (uint64) PROMOTE_MIN_S * 1000000;
	}
	if (now >= e->promote_deadline)
	{
		if (e->promote_error[0] != '\0')
			snprintf(reason, sizeof(reason), "it could not promote: %s", e->promote_error);
		else
			snprintf(reason, sizeof(reason),
					 "its promotion did not finish within %d s",
					 Max(e->config.lease_ttl_s, PROMOTE_MIN_S));
		el_leave(e, reason, true);
		return;
	}
	if (!e->replication.in_recovery && e->request == NULL && now >= e->retry_at)
		el_send_record(e, el_recordable_wal_end(), false);
}
