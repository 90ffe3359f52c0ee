/*
 * sync_standbys.c
 *		Owns the leader's synchronous standbys in synchronous mode: which
 *		standbys PostgreSQL waits for (synchronous_standby_names, written by
 *		server_setting.c), which ones the cluster record names (only they
 *		may take over after a crash: succession.c), and the order of steps
 *		that keeps the invariant while the set changes:
 *
 *		every standby the record names has every commit acknowledged to a
 *		client.
 *
 * The setting names exactly the recorded set, plus a standby that is
 * joining it, as 'FIRST n (...)' with n the number of names: a commit waits
 * for all of them.  So:
 * - A standby joins the setting first.  Once the new setting is in force
 *   everywhere -- its walsender took it (its synchronous priority is set), the
 *   checkpointer took it (commits wait for standbys at all: backends check
 *   the checkpointer's flag before they wait, and it may be busy), and a
 *   poll interval has passed since the reload (every walsender reloads at
 *   the same signal, before it handles another reply) -- every later commit
 *   waits for it; it is recorded only once it has flushed the WAL written by
 *   then, which holds every commit acknowledged before.
 * - A standby leaves the record first (it left the queue, its stream ended,
 *   or synchronous_node_count went down), and the setting after: until then
 *   commits still wait for it, so nothing acknowledged misses a recorded one.
 * - With nobody left to wait for, "on" writes an empty setting (commits go on,
 *   and the record names nobody: no standby takes over automatically) and
 *   "strict" writes '*' (commits wait for any standby).
 * - A mode change is recorded first.  Turning synchronous mode off removes the
 *   setting from postgresql.auto.conf once the record says off.
 * - A new leader records an empty set first (the former set does not have its
 *   new timeline), then adds standbys; a primary that leads again on the
 *   timeline its record names keeps the set it recorded, whose setting its
 *   postgresql.auto.conf still holds.
 * - A record write whose answer never came (etcd may have applied it) leaves
 *   its set possibly recorded: its members stay in the setting until a
 *   record without them is confirmed.
 * Everything happens one step at a time, while no other request is in
 * flight, in the leader's step.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "replication/syncrep.h"
#include "utils/guc.h"

#include "election_internal.h"
#include "server_setting.h"

#define SYNC_SETTING "synchronous_standby_names"

/* The set as this leader starts: its own record's, or none yet. */
void
el_sync_begin(Election *e)
{
	const char *current = GetConfigOption(SYNC_SETTING, true, false);

	memset(&e->sync_next, 0, sizeof(e->sync_next));
	e->sync_next.mode = e->config.sync_mode;
	if (cluster_record_names(&e->record, &e->replication, e->config.node_name))
		e->sync_next = e->record.sync;
	e->sync_confirmed_known = false;
	e->sync_adding[0] = '\0';
	e->sync_reset_due = false;
	e->sync_error[0] = '\0';
	strlcpy(e->sync_setting, current != NULL ? current : "", sizeof(e->sync_setting));
}

/* The leader read the queue: the names of the others, in queue order. */
void
el_sync_note_queue(Election *e, const EtcdCandidates *queue)
{
	e->queue_count = 0;
	for (int i = 0; i < queue->count && e->queue_count < LE_MAX_QUEUE; i++)
		if (strcmp(queue->keys[i].key, e->key) != 0)
			strlcpy(e->queue_names[e->queue_count++], queue->keys[i].name, LE_NAME_LEN);
}

static bool
queued(Election *e, const char *name)
{
	for (int i = 0; i < e->queue_count; i++)
		if (strcmp(e->queue_names[i], name) == 0)
			return true;
	return false;
}

/* A standby that may be synchronous: queued, and streaming from us, caught up. */
static bool
good_standby(Election *e, const WalStreams *streams, const char *name)
{
	const WalStream *stream = replication_stream(streams, name);

	return queued(e, name) && stream != NULL && stream->streaming;
}

/* etcd took the record this leader wrote: its set is what holds now. */
void
el_sync_confirmed(Election *e, const ClusterRecord *previous)
{
	e->sync_confirmed = e->record.sync;
	e->sync_confirmed_known = true;
	if (e->record.sync.mode == SYNC_MODE_OFF && previous->sync.mode != SYNC_MODE_OFF)
		e->sync_reset_due = true;
	if (e->sync_adding[0] != '\0' && sync_set_has(&e->record.sync, e->sync_adding))
		e->sync_adding[0] = '\0';
}

/* The record in etcd does not say what this leader wrote last: write it again. */
bool
el_sync_record_due(Election *e)
{
	return e->sync_confirmed_known && !sync_set_equal(&e->record.sync, &e->sync_confirmed);
}

/* synchronous_standby_names for a set (and a standby joining it, or NULL). */
static void
setting_for(const SyncSet *set, const char *joining, char *buf, size_t len)
{
	StringInfoData s;
	int			n = set->count + (joining != NULL ? 1 : 0);

	if (n == 0)
	{
		strlcpy(buf, set->mode == SYNC_MODE_STRICT ? "*" : "", len);
		return;
	}
	initStringInfo(&s);
	appendStringInfo(&s, "FIRST %d (", n);
	for (int i = 0; i < n; i++)
	{
		const char *name = i < set->count ? set->names[i] : joining;

		if (i > 0)
			appendStringInfoString(&s, ", ");
		appendStringInfoChar(&s, '"');
		for (const char *c = name; *c != '\0'; c++)
		{
			if (*c == '"')
				appendStringInfoChar(&s, '"');
			appendStringInfoChar(&s, *c);
		}
		appendStringInfoChar(&s, '"');
	}
	appendStringInfoChar(&s, ')');
	strlcpy(buf, s.data, len);
	pfree(s.data);
}

/* Writes the setting (NULL: removes it); false, shown and retried later, if it failed. */
static bool
write_setting(Election *e, const char *value, uint64 now)
{
	char		err[LE_ERROR_LEN];

	if (!server_setting_write(SYNC_SETTING, value, err))
	{
		if (strcmp(err, e->sync_error) != 0)
			ereport(WARNING,
					(errmsg("leader_election: could not set %s: %s", SYNC_SETTING, err),
					 errdetail("Node \"%s\" tries again every second.", e->config.node_name)));
		strlcpy(e->sync_error, err, sizeof(e->sync_error));
		e->sync_retry_at = now + 1000000;
		return false;
	}
	e->sync_error[0] = '\0';
	e->sync_setting_at = now;
	strlcpy(e->sync_setting, value != NULL ? value : "", sizeof(e->sync_setting));
	ereport(LOG,
			(errmsg("leader_election: node \"%s\" set %s to '%s'",
					e->config.node_name, SYNC_SETTING, value != NULL ? value : ""),
			 value == NULL ? errdetail("Synchronous mode is off: the line is removed from postgresql.auto.conf.") : 0));
	return true;
}

/* Records next as the synchronous set: the record first, for what shrinks. */
static void
record_set(Election *e, const SyncSet *next)
{
	e->sync_next = *next;
	el_send_record(e, el_recordable_wal_end(), false);
}

/* The first queued standby, in queue order, that may join the set. */
static const char *
next_joiner(Election *e, const WalStreams *streams, const SyncSet *set)
{
	for (int i = 0; i < e->queue_count; i++)
		if (!sync_set_has(set, e->queue_names[i]) &&
			good_standby(e, streams, e->queue_names[i]))
			return e->queue_names[i];
	return NULL;
}

/*
 * The leader's step, while it is recorded as the primary and no request is
 * in flight: one change at a time, in the order the header says.
 */
void
el_step_sync(Election *e, uint64 now)
{
	const SyncSet *confirmed = &e->sync_confirmed;
	SyncSet		maybe;
	SyncSet		keep;
	WalStreams	streams;
	char		setting[LE_ERROR_LEN];
	const WalStream *joiner;

	if (!e->sync_confirmed_known || e->request != NULL || now < e->sync_retry_at)
		return;
	/* asynchronous and nothing left to undo: no walsender snapshot each step */
	if (e->config.sync_mode == SYNC_MODE_OFF && confirmed->mode == SYNC_MODE_OFF &&
		e->sync_next.mode == SYNC_MODE_OFF && !e->sync_reset_due)
		return;
	replication_streams(&streams);

	/*
	 * 1. the record: members that stay, in the mode the settings say.  A
	 * write whose answer never came may have been applied: until a set is
	 * confirmed again, its members count as recorded (maybe), so that none
	 * leaves the setting before a record without it is confirmed.
	 */
	maybe = *confirmed;
	maybe.mode = Max(confirmed->mode, e->sync_next.mode);
	for (int i = 0; i < e->sync_next.count && maybe.count < LE_MAX_SYNC; i++)
		if (!sync_set_has(&maybe, e->sync_next.names[i]))
			strlcpy(maybe.names[maybe.count++], e->sync_next.names[i], LE_NAME_LEN);
	memset(&keep, 0, sizeof(keep));
	keep.mode = e->config.sync_mode;
	if (keep.mode != SYNC_MODE_OFF)
		for (int i = 0; i < maybe.count && keep.count < e->config.sync_node_count; i++)
			if (good_standby(e, &streams, maybe.names[i]))
				strlcpy(keep.names[keep.count++], maybe.names[i], LE_NAME_LEN);
	if (!sync_set_equal(&keep, confirmed) || !sync_set_equal(&e->sync_next, confirmed))
	{
		if (e->sync_adding[0] != '\0' && !sync_set_has(&keep, e->sync_adding))
			e->sync_adding[0] = '\0';
		record_set(e, &keep);
		return;
	}

	/* 2. the setting follows the record (and a standby joining it) */
	if (confirmed->mode == SYNC_MODE_OFF)
	{
		if (e->sync_reset_due && write_setting(e, NULL, now))
			e->sync_reset_due = false;
		return;
	}
	if (e->sync_adding[0] != '\0' &&
		(!good_standby(e, &streams, e->sync_adding) ||
		 now >= e->sync_adding_since + (uint64) e->config.switchover_timeout_ms * 1000))
	{
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" does not make node \"%s\" a synchronous standby: %s",
						e->config.node_name, e->sync_adding,
						good_standby(e, &streams, e->sync_adding) ?
						"it did not catch up within switchover_timeout" :
						"it no longer streams from this node or left the queue")));
		e->sync_adding[0] = '\0';
	}
	setting_for(confirmed, e->sync_adding[0] != '\0' ? e->sync_adding : NULL,
				setting, sizeof(setting));
	if (strcmp(setting, e->sync_setting) != 0)
	{
		write_setting(e, setting, now);
		return;
	}

	/* 3. a standby joins: its walsender took the setting, then it catches up */
	if (e->sync_adding[0] == '\0')
	{
		const char *name;

		if (confirmed->count >= e->config.sync_node_count ||
			(name = next_joiner(e, &streams, confirmed)) == NULL)
			return;
		strlcpy(e->sync_adding, name, sizeof(e->sync_adding));
		e->sync_adding_since = now;
		e->sync_catch_up_to = InvalidXLogRecPtr;
		return;					/* the next step writes the setting */
	}
	joiner = replication_stream(&streams, e->sync_adding);
	if (joiner->sync_priority == 0 || !replication_commits_wait_for_standbys() ||
		now < e->sync_setting_at + (uint64) REPLICATION_POLL_MS * 1000)
		return;
	if (e->sync_catch_up_to == InvalidXLogRecPtr)
		e->sync_catch_up_to = el_recordable_wal_end();
	if (joiner->flushed < e->sync_catch_up_to)
		return;
	keep = *confirmed;
	strlcpy(keep.names[keep.count++], e->sync_adding, LE_NAME_LEN);
	ereport(LOG,
			(errmsg("leader_election: node \"%s\" records node \"%s\" as a synchronous standby",
					e->config.node_name, e->sync_adding),
			 errdetail("It has flushed %X/%X, which holds every commit acknowledged before it became synchronous.",
					   LSN_FORMAT_ARGS(joiner->flushed))));
	record_set(e, &keep);
}
