/*
 * reconfigure.c
 *		Owns new settings: when they apply, and what a change of election
 *		(prefix, etcd cluster, node name, lease TTL) does.
 *
 * A node that must rejoin leaves, releasing its key, and joins again.  The
 * leader of a replicated cluster moves the cluster instead: fenced, once no
 * commit is in flight, it releases its key with a record that says the
 * cluster moved, so that nobody stands in the old election any more, and
 * carries that record into the new one, where it may stand without a
 * record.  A handover or a move under way finishes before new settings
 * apply.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"

#include "election_internal.h"

/* Two endpoint lists that share an endpoint name one etcd cluster. */
static bool
same_etcd(const EtcdEndpoints *a, const EtcdEndpoints *b)
{
	for (int i = 0; i < a->count; i++)
		for (int j = 0; j < b->count; j++)
			if (strcmp(a->urls[i], b->urls[j]) == 0)
				return true;
	return false;
}

/* Whether new settings name another election than the current ones. */
static bool
other_election(Election *e, const ElectionConfig *config)
{
	return strcmp(config->prefix, e->config.prefix) != 0 ||
		!same_etcd(&config->endpoints, &e->config.endpoints);
}

/* Takes the settings as they are; what was read of another election is forgotten. */
static void
apply_config(Election *e, const ElectionConfig *config)
{
	if (other_election(e, config))
	{
		memset(&e->record, 0, sizeof(e->record));
		memset(&e->term, 0, sizeof(e->term));
		e->term_seen_revision = -1;
	}
	e->config = *config;
	e->config_pending = false;
	cluster_record_key(config->prefix, e->record_key, sizeof(e->record_key));
	term_record_key(config->prefix, e->term_key, sizeof(e->term_key));
	el_leader_key_name(config->prefix, e->leader_key, sizeof(e->leader_key));
	etcd_client_set_endpoints(e->client, &config->endpoints);
	/* an observer that may now stand reads at once */
	e->next_read = 0;
}

/*
 * Applies pending settings once nothing is under way that must finish
 * first.  A node that must rejoin leaves (releasing its key) first; the
 * leader of a replicated cluster moves it (el_step_move()).
 */
void
el_configure_when_due(Election *e)
{
	const ElectionConfig *config = &e->pending_config;
	bool		rejoin;

	if (!e->config_pending || e->phase == EP_HANDING_OVER || e->phase == EP_RESIGNING ||
		e->phase == EP_MOVING)
		return;
	rejoin = other_election(e, config) ||
		strcmp(config->node_name, e->config.node_name) != 0 ||
		config->lease_ttl_s != e->config.lease_ttl_s;
	if (rejoin && e->phase == EP_LEADING && el_replicated(e, false))
	{
		el_enter(e, EP_MOVING);
		return;
	}
	if (rejoin && e->phase != EP_NO_LEASE)
		el_leave(e, "its settings changed", true);
	apply_config(e, config);
}

void
election_configure(Election *e, const ElectionConfig *config)
{
	e->pending_config = *config;
	e->config_pending = true;
	el_configure_when_due(e);
}

/* The move starts fenced: commits in flight may end until the deadline. */
void
el_begin_move(Election *e, uint64 now)
{
	e->move_deadline = now + (uint64) e->config.switchover_timeout_ms * 1000;
}

/*
 * The leader of a replicated cluster moves it to another election (new
 * prefix, etcd, node name or TTL): fenced since it entered "moving", once
 * no commit is in flight, it releases its key with a record that says the
 * cluster moved, so that nobody stands in this election any more.
 */
void
el_step_move(Election *e, uint64 now)
{
	char	   *record;

	if (e->request != NULL || now < e->retry_at)
		return;
	if (le_commits_in_flight() != 0 && now < e->move_deadline)
		return;
	(void) el_build_record(e, el_recordable_wal_end(), false, NULL);
	e->record_sent.moved = true;
	record = cluster_record_encode(&e->record_sent);
	e->request = el_send_release(e, NULL, 0, record, REQ_MOVE);
}

/*
 * The move's release answered: if etcd took it, the record the node left
 * with lets it stand in the new election without a record there
 * (cluster_record.c); if not, it leaves without that, and a replicated
 * cluster's primary without a record does not stand.  Then the new
 * settings apply.
 */
void
el_on_move_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	bool		succeeded = false;

	if (e->phase != EP_MOVING)
		return;
	if (!etcd_txn_result(req, &succeeded, err))
		el_note_failure(e, err, req);
	if (succeeded)
		e->moved_from = e->record_sent;
	else
		memset(&e->moved_from, 0, sizeof(e->moved_from));
	el_leave(e, succeeded ? "it moves its cluster to another election" :
		  "its settings changed, and it could not record that its cluster moves", false);
	apply_config(e, &e->pending_config);
}
