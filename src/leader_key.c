/*
 * leader_key.c
 *		Owns "<prefix>.leader": one key that names the leader, for tools that
 *		follow one key (vip-manager's trigger-key, confd, `etcdctl watch`)
 *		without knowing the election recipe.  It lies beside the queue, not
 *		under "<prefix>/", as the term and the cluster record do.
 *
 * The rules:
 * - Its value is the node name, exactly, and it is attached to the leader's
 *   lease: a crash or a revoked lease takes it away with the election key.
 * - Only a node in phase "leading" writes it (a promoted standby once it
 *   leads, not while it promotes), in a txn that holds only while its own
 *   key is first in line: a deposed or frozen node's write fails.
 * - It is written when the node starts leading, and again only when a read
 *   of the election while it leads (each confirmation, every TTL/3) shows
 *   it missing, naming anyone else, or not on this node's lease: every put
 *   is an event for every watcher.
 * - It goes when leadership ends: a release deletes it in the same txn if
 *   it is still on this node's lease (etcd_release); every other way out
 *   revokes the lease or lets it expire, which deletes it.  A leader whose
 *   lease lapses locally keeps the lease while it renews, and etcd may
 *   still hold it (answers that come too late), so it also deletes the key
 *   then, if still on its lease.  While it hands over,
 *   stops cleanly or moves, fenced, the key still names it: nobody else
 *   leads, and it leads on if a handover fails.
 * - Whatever another client wrote there is compared with this node's name
 *   and lease, and used for nothing else.
 */
#include "postgres.h"

#include "printable.h"

#include "election_internal.h"

#define LEADER_SUFFIX ".leader"

void
el_leader_key_name(const char *prefix, char *key, size_t len)
{
	/* not "<prefix>/...": no candidate's key */
	snprintf(key, len, "%s%s", prefix, LEADER_SUFFIX);
}

/*
 * A confirmed read of the election, sent at sent_us, while this node leads:
 * whether the key still names it on its lease.  A read sent before our last
 * write was answered may not show that write, and is not taken.
 */
void
el_note_leader_key(Election *e, const EtcdElectionRead *read, uint64 sent_us)
{
	const char *name = e->config.node_name;
	bool		names_us;
	char		shown[LE_NAME_LEN];

	if (e->phase != EP_LEADING || sent_us < e->leader_key_written_at)
		return;
	names_us = read->leader_found && read->leader_len == strlen(name) &&
		memcmp(read->leader_value, name, read->leader_len) == 0;
	if (names_us && read->leader_lease == e->lease_id)
	{
		e->leader_key_right = true;
		return;
	}
	/* someone changed what this node wrote: say so, and write it again */
	if (e->leader_key_right)
	{
		le_printable(read->leader_found ? read->leader_value : "", read->leader_len,
					 shown, sizeof(shown));
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" writes \"%s\" again: it %s",
						name, e->leader_key,
						!read->leader_found ? "was deleted" :
						!names_us ? "named someone else" :
						"was not attached to this node's lease"),
				 read->leader_found && !names_us ?
				 errdetail("It named \"%s\".", shown) : 0));
	}
	e->leader_key_right = false;
}

/*
 * A leader writes the key unless it is known to be right; a node that does
 * not hold first place forgets it, and one whose lease lapsed deletes it if
 * it may still be there on its lease (a delete of its own: nobody waits).
 */
void
el_step_leader_key(Election *e, uint64 now)
{
	if (e->phase == EP_LEADING)
	{
		if (e->leader_key_right || e->leader_key_write != NULL || now < e->retry_at)
			return;
		e->leader_key_write = etcd_put_if_first(e->client, e->config.prefix, e->key,
												e->create_revision, e->leader_key,
												e->config.node_name, e->lease_id,
												NULL, NULL, e->config.request_timeout_ms,
												REQ_LEADER_KEY);
		return;
	}
	if (el_holds_first_place(e->phase))
		return;
	if (e->phase == EP_LAPSED && e->lease_id != 0 &&
		(e->leader_key_right || e->leader_key_write != NULL))
		etcd_delete_if_lease(e->client, e->leader_key, e->lease_id,
							 e->config.request_timeout_ms, REQ_DISCARD);
	el_drop_request(&e->leader_key_write);
	e->leader_key_right = false;
}

/* The leader's write of the key answered. */
void
el_on_leader_key_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	bool		succeeded;

	if (req != e->leader_key_write)
		return;
	e->leader_key_write = NULL;
	if (!etcd_txn_result(req, &succeeded, err))
	{
		el_note_failure(e, err, req);	/* written again at the retry time */
		return;
	}
	/* the same compares as every leader's write: its key is not first */
	if (!succeeded)
	{
		if (el_holds_first_place(e->phase))
			el_leave(e, "its key is no longer first in line", false);
		return;
	}
	if (e->phase != EP_LEADING)
		return;
	e->leader_key_right = true;
	e->leader_key_written_at = le_clock_us();
	elog(DEBUG1, "leader_election: node \"%s\" named itself in \"%s\"",
		 e->config.node_name, e->leader_key);
}
