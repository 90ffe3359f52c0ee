/*
 * cluster_record.c
 *		Owns the cluster record (what it says, its key, its JSON form) and
 *		the rules of standing: who may campaign, stay queued and take over.
 *
 * Why a record.  A primary that was deposed -- it crashed and a standby
 * took over, or it handed over -- is still a primary when it comes back,
 * on a timeline that forked from the new leader's.  Letting it lead again
 * would bring back what the cluster moved past.  So the leader of a
 * replicated cluster writes down who it is (system identifier, timeline,
 * node name), in a transaction that holds only while its key is first in
 * line, before it accepts writes after a promotion, and as soon as a
 * standby streams from it otherwise.  Independent primaries never write it,
 * so elections without replication work as they always did.
 *
 * In synchronous mode the record also names the standbys that have every
 * commit acknowledged to a client (sync_standbys.c keeps that true), and
 * only they may take over after a crash (succession.c).
 *
 * The leader also writes how far it had flushed WAL (wal_end), again at
 * every refresh while that moves: a standby whose stream stalled -- the
 * network drops its packets, TCP has not noticed -- still believes it has
 * all that its upstream sent, but the record shows it what it misses.
 *
 * The rules, pure functions of the record and this node's state:
 * - a node whose system identifier is not the record's belongs to another
 *   cluster and never stands;
 * - a primary stands only if there is no record, or the record names it on
 *   the timeline it writes on;
 * - a standby stands only while it streams (or just lost its stream: the
 *   grace period the election keeps), on the record's timeline or later,
 *   with no more than max_lag_on_failover of the WAL its upstream has sent,
 *   or the leader recorded as flushed, still unflushed -- none at all when
 *   the leader recorded that it stopped cleanly, for it waited until its
 *   streaming standbys had everything; a recorded synchronous standby has
 *   every acknowledged commit, so its lag does not count;
 * - leader_election.candidate = off stands for nothing.
 * An unreadable record is a reason not to stand: when unsure, no leader.
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"

#include "cluster_record.h"
#include "json_values.h"
#include "printable.h"

#define RECORD_SUFFIX ".cluster"

void
cluster_record_key(const char *prefix, char *key, size_t len)
{
	/* '.' sorts before '/': outside the candidates' range <prefix>/ */
	snprintf(key, len, "%s%s", prefix, RECORD_SUFFIX);
}

char *
cluster_record_encode(const ClusterRecord *record)
{
	cJSON	   *json = le_json_object("the cluster record");
	char		sysid[32];

	snprintf(sysid, sizeof(sysid), UINT64_FORMAT, record->system_identifier);
	cJSON_AddStringToObject(json, "system_identifier", sysid);
	cJSON_AddNumberToObject(json, "timeline", record->timeline);
	cJSON_AddStringToObject(json, "node", record->node);
	le_json_add_lsn(json, "wal_end", record->wal_end);
	if (record->stopping)
		cJSON_AddTrueToObject(json, "stopping");
	if (record->moved)
		cJSON_AddTrueToObject(json, "moved");
	if (record->successor[0] != '\0')
		cJSON_AddStringToObject(json, "successor", record->successor);
	sync_set_to_json(&record->sync, json);
	return le_json_text(json, "the cluster record");
}

static void
unreadable(ClusterRecord *record, const char *what, cJSON *json)
{
	record->readable = false;
	strlcpy(record->problem, what, sizeof(record->problem));
	cJSON_Delete(json);
}

const char *
sync_mode_name(SyncMode mode)
{
	switch (mode)
	{
		case SYNC_MODE_OFF:
			return "off";
		case SYNC_MODE_ON:
			return "on";
		case SYNC_MODE_STRICT:
			return "strict";
	}
	return "off";
}

void
sync_set_to_json(const SyncSet *set, cJSON *json)
{
	cJSON	   *names;

	if (set->mode == SYNC_MODE_OFF)
		return;
	names = cJSON_AddArrayToObject(json, "synchronous");
	cJSON_AddStringToObject(json, "synchronous_mode", sync_mode_name(set->mode));
	for (int i = 0; i < set->count; i++)
		cJSON_AddItemToArray(names, cJSON_CreateString(set->names[i]));
}

/* The synchronous mode and set of record; absent: off.  False if they are malformed. */
static bool
decode_sync_set(const cJSON *json, ClusterRecord *record)
{
	return sync_set_from_json(json, &record->sync, &record->sync_off_by_hand);
}

bool
sync_set_from_json(const cJSON *json, SyncSet *set, bool *off_by_hand)
{
	const cJSON *mode = cJSON_GetObjectItemCaseSensitive(json, "synchronous_mode");
	const cJSON *names = cJSON_GetObjectItemCaseSensitive(json, "synchronous");
	const cJSON *name;

	set->mode = SYNC_MODE_OFF;
	set->count = 0;
	*off_by_hand = false;
	if (mode == NULL && names == NULL)
		return true;
	/* the leader never writes "off": an operator's decision to accept a loss */
	if (cJSON_IsString(mode) && strcmp(mode->valuestring, "off") == 0 &&
		(names == NULL || (cJSON_IsArray(names) && cJSON_GetArraySize(names) == 0)))
	{
		*off_by_hand = true;
		return true;
	}
	if (!cJSON_IsString(mode) || !cJSON_IsArray(names) ||
		cJSON_GetArraySize(names) > LE_MAX_SYNC)
		return false;
	if (strcmp(mode->valuestring, "on") == 0)
		set->mode = SYNC_MODE_ON;
	else if (strcmp(mode->valuestring, "strict") == 0)
		set->mode = SYNC_MODE_STRICT;
	else
		return false;
	cJSON_ArrayForEach(name, names)
	{
		if (!cJSON_IsString(name) || name->valuestring[0] == '\0' ||
			strlen(name->valuestring) >= LE_NAME_LEN)
			return false;
		strlcpy(set->names[set->count++], name->valuestring, LE_NAME_LEN);
	}
	return true;
}

bool
sync_set_has(const SyncSet *set, const char *node)
{
	for (int i = 0; i < set->count; i++)
		if (strcmp(set->names[i], node) == 0)
			return true;
	return false;
}

void
sync_set_intersect(const SyncSet *a, const SyncSet *b, SyncSet *both)
{
	SyncSet		result;

	if (a->mode == SYNC_MODE_OFF || b->mode == SYNC_MODE_OFF)
	{
		*both = a->mode == SYNC_MODE_OFF ? *b : *a;
		return;
	}
	memset(&result, 0, sizeof(result));
	result.mode = Max(a->mode, b->mode);
	for (int i = 0; i < a->count; i++)
		if (sync_set_has(b, a->names[i]))
			strlcpy(result.names[result.count++], a->names[i], LE_NAME_LEN);
	*both = result;
}

bool
sync_set_equal(const SyncSet *a, const SyncSet *b)
{
	if (a->mode != b->mode || a->count != b->count)
		return false;
	for (int i = 0; i < a->count; i++)
		if (strcmp(a->names[i], b->names[i]) != 0)
			return false;
	return true;
}

void
cluster_record_decode(const char *value, size_t len, ClusterRecord *record)
{
	cJSON	   *json = cJSON_ParseWithLength(value, len);
	const cJSON *sysid;
	const cJSON *timeline;
	const cJSON *node;
	const cJSON *wal_end;
	const cJSON *stopping;
	const cJSON *successor;
	const cJSON *moved;
	char	   *end;

	memset(record, 0, sizeof(*record));
	record->exists = true;
	if (!cJSON_IsObject(json))
		return unreadable(record, "it is not a JSON object", json);

	sysid = cJSON_GetObjectItemCaseSensitive(json, "system_identifier");
	timeline = cJSON_GetObjectItemCaseSensitive(json, "timeline");
	node = cJSON_GetObjectItemCaseSensitive(json, "node");
	if (!cJSON_IsString(sysid) || !isdigit((unsigned char) sysid->valuestring[0]))
		return unreadable(record, "system_identifier is not a decimal string", json);
	errno = 0;
	record->system_identifier = strtou64(sysid->valuestring, &end, 10);
	if (errno != 0 || *end != '\0')
		return unreadable(record, "system_identifier is not a decimal string", json);
	if (!cJSON_IsNumber(timeline) || timeline->valuedouble < 1 ||
		timeline->valuedouble > PG_UINT32_MAX ||
		timeline->valuedouble != (double) (TimeLineID) timeline->valuedouble)
		return unreadable(record, "timeline is not a timeline ID", json);
	record->timeline = (TimeLineID) timeline->valuedouble;
	if (!cJSON_IsString(node) || strlen(node->valuestring) >= LE_NAME_LEN)
		return unreadable(record, "node is not a node name", json);
	strlcpy(record->node, node->valuestring, sizeof(record->node));
	/* absent in a record of an older version: nothing said */
	wal_end = cJSON_GetObjectItemCaseSensitive(json, "wal_end");
	if (wal_end != NULL &&
		!le_json_lsn(wal_end, &record->wal_end))
		return unreadable(record, "wal_end is not a WAL position", json);
	stopping = cJSON_GetObjectItemCaseSensitive(json, "stopping");
	if (stopping != NULL && !cJSON_IsBool(stopping))
		return unreadable(record, "stopping is not a boolean", json);
	record->stopping = cJSON_IsTrue(stopping);
	successor = cJSON_GetObjectItemCaseSensitive(json, "successor");
	if (successor != NULL &&
		(!cJSON_IsString(successor) || strlen(successor->valuestring) >= LE_NAME_LEN))
		return unreadable(record, "successor is not a node name", json);
	if (successor != NULL)
		strlcpy(record->successor, successor->valuestring, sizeof(record->successor));
	moved = cJSON_GetObjectItemCaseSensitive(json, "moved");
	if (moved != NULL && !cJSON_IsBool(moved))
		return unreadable(record, "moved is not a boolean", json);
	record->moved = cJSON_IsTrue(moved);
	if (!decode_sync_set(json, record))
		return unreadable(record, "synchronous_mode or synchronous is not what the leader writes", json);
	record->readable = true;
	cJSON_Delete(json);
}

bool
cluster_record_names(const ClusterRecord *record, const ReplicationState *state,
					 const char *node_name)
{
	return record->exists && record->readable && !state->in_recovery &&
		record->system_identifier == state->system_identifier &&
		record->timeline == state->timeline &&
		strcmp(record->node, node_name) == 0;
}

int64
cluster_standby_lag(const ClusterRecord *record, const ReplicationState *state)
{
	int64		lag = state->lag_bytes;

	if (record->exists && record->readable && record->wal_end > state->flushed)
		lag = Max(lag, (int64) (record->wal_end - state->flushed));
	return lag;
}

/*
 * The data directory remembers that it has been part of a replicated
 * cluster, and the latest timeline a record of it named, so that a node
 * never takes a missing record for a new cluster, nor an older record for
 * the current one -- even after a restart.  One line, "<system identifier>
 * <timeline>".  Written from the worker only, in the data directory (its
 * cwd).
 */
#define MEMBERSHIP_FILE "leader_election.replicated"

bool
cluster_membership_known(uint64 system_identifier, TimeLineID *timeline)
{
	FILE	   *file = AllocateFile(MEMBERSHIP_FILE, "r");
	char		line[64];
	char	   *end;
	bool		known = false;

	*timeline = 0;
	if (file == NULL)
		return false;
	if (fgets(line, sizeof(line), file) != NULL &&
		strtou64(line, &end, 10) == system_identifier)
	{
		known = true;
		*timeline = (TimeLineID) Min(strtou64(end, NULL, 10), PG_UINT32_MAX);
	}
	FreeFile(file);
	return known;
}

void
cluster_membership_remember(uint64 system_identifier, TimeLineID timeline)
{
	FILE	   *file = AllocateFile(MEMBERSHIP_FILE ".tmp", "w");
	bool		written = false;

	if (file != NULL)
	{
		written = fprintf(file, UINT64_FORMAT " %u\n", system_identifier, timeline) > 0 &&
			pg_fsync(fileno(file)) == 0;
		written = FreeFile(file) == 0 && written;
	}
	if (!written || durable_rename(MEMBERSHIP_FILE ".tmp", MEMBERSHIP_FILE, WARNING) != 0)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("leader_election: could not write \"%s/%s\": %m",
						DataDir, MEMBERSHIP_FILE),
				 errdetail("After a restart, this node may not know that it belonged to a replicated cluster.")));
}

void
cluster_format_size(int64 bytes, char *buf, size_t len)
{
	static const char *const units[] = {"kB", "MB", "GB", "TB"};
	double		value = (double) bytes;
	int			unit = -1;

	/* the largest unit it reaches; whole numbers stay whole ("1 MB") */
	while (unit < (int) lengthof(units) - 1 && value >= 1024)
	{
		value /= 1024;
		unit++;
	}
	if (unit < 0)
		snprintf(buf, len, INT64_FORMAT " bytes", bytes);
	else if (value == (double) (int64) value || value >= 10)
		snprintf(buf, len, "%.0f %s", value, units[unit]);
	else
		snprintf(buf, len, "%.1f %s", value, units[unit]);
}

/*
 * Whether this primary moved its cluster into this election: there is no
 * record yet, or the one it wrote when it left the other election (same
 * key and etcd: a change of node name).
 */
static bool
moved_here(const ClusterRecord *record, const ReplicationState *rs,
		   const ClusterRecord *moved_from)
{
	if (moved_from == NULL || moved_from->system_identifier != rs->system_identifier ||
		moved_from->timeline != rs->timeline)
		return false;
	if (!record->exists)
		return true;
	/* the cluster left this election once, and comes back as far or further */
	return record->readable && record->moved &&
		record->system_identifier == moved_from->system_identifier &&
		record->timeline <= moved_from->timeline;
}

bool
cluster_may_stand(const ClusterRecord *record, const StandingInput *input, char *reason)
{
	const ReplicationState *rs = input->replication;
	char		owner[LE_NAME_LEN];

	if (!input->candidate)
	{
		strlcpy(reason, "candidate = off", LE_ERROR_LEN);
		return false;
	}
	if (record->exists && !record->readable)
	{
		snprintf(reason, LE_ERROR_LEN,
				 "the cluster record in etcd is unreadable (%s): write it again naming the primary that leads",
				 record->problem);
		return false;
	}
	if (record->exists && record->system_identifier != rs->system_identifier)
	{
		snprintf(reason, LE_ERROR_LEN,
				 "system identifier " UINT64_FORMAT " is not the cluster's " UINT64_FORMAT ": another cluster uses this election prefix",
				 rs->system_identifier, record->system_identifier);
		return false;
	}
	/* (a cluster moving back into an election it left carries a newer record) */
	if (record->exists && record->timeline < input->timeline_seen &&
		(rs->in_recovery || !moved_here(record, rs, input->moved_from)))
	{
		snprintf(reason, LE_ERROR_LEN,
				 "the cluster record names timeline %u, older than timeline %u this node saw the cluster on: the record is stale, write it again naming the primary that leads",
				 record->timeline, input->timeline_seen);
		return false;
	}

	if (record->exists)
		le_printable(record->node, strlen(record->node), owner, sizeof(owner));
	if (!rs->in_recovery)
	{
		if (cluster_record_names(record, rs, input->node_name) ||
			moved_here(record, rs, input->moved_from))
			return true;
		if (!record->exists)
		{
			/* a new cluster has no record; one that had it lost it */
			if (!input->replicated_member && rs->timeline == 1)
				return true;
			snprintf(reason, LE_ERROR_LEN,
					 "the cluster record is missing, and this primary (timeline %u) has been part of a replicated cluster: only the cluster's leader writes the record again",
					 rs->timeline);
			return false;
		}
		if (record->moved)
			snprintf(reason, LE_ERROR_LEN,
					 "primary \"%s\" moved the cluster to another election: follow it there",
					 owner);
		else if (rs->timeline < record->timeline)
			snprintf(reason, LE_ERROR_LEN,
					 "timeline %u is behind the cluster's timeline %u: rejoin with pg_rewind",
					 rs->timeline, record->timeline);
		else if (rs->timeline > record->timeline)
			snprintf(reason, LE_ERROR_LEN,
					 "timeline %u forked from the cluster's timeline %u, which node \"%s\" leads: rejoin with pg_rewind",
					 rs->timeline, record->timeline, owner);
		else
			snprintf(reason, LE_ERROR_LEN,
					 "timeline %u of this cluster belongs to node \"%s\": rejoin with pg_rewind",
					 rs->timeline, owner);
		return false;
	}

	if (rs->crash_recovery)
	{
		strlcpy(reason, "starting up: crash recovery is not finished", LE_ERROR_LEN);
		return false;
	}
	if (record->exists && record->moved)
	{
		snprintf(reason, LE_ERROR_LEN,
				 "primary \"%s\" moved the cluster to another election: follow it there",
				 owner);
		return false;
	}
	/* without the record, the lag it shows (after a stop: all WAL) is unknown */
	if (!record->exists && input->replicated_member)
	{
		strlcpy(reason, "the cluster record is missing, and this standby belongs to a replicated cluster: only the cluster's leader writes the record again",
				LE_ERROR_LEN);
		return false;
	}
	if (!rs->streaming && !input->stream_grace)
	{
		strlcpy(reason, "not streaming from the leader", LE_ERROR_LEN);
		return false;
	}
	if (record->exists && rs->received_timeline != 0 &&
		rs->received_timeline < record->timeline)
	{
		snprintf(reason, LE_ERROR_LEN,
				 "streaming timeline %u is behind the cluster's timeline %u",
				 rs->received_timeline, record->timeline);
		return false;
	}
	/* a primary that stopped cleanly waited for its standbys: all or nothing */
	if (record->exists && record->stopping && cluster_standby_lag(record, rs) > 0)
	{
		char		lag[32];

		cluster_format_size(cluster_standby_lag(record, rs), lag, sizeof(lag));
		snprintf(reason, LE_ERROR_LEN,
				 "lag %s behind the WAL of primary \"%s\", which stopped cleanly: only a standby with all of it takes over",
				 lag, owner);
		return false;
	}
	/* WAL a synchronous standby lacks holds no acknowledged commit */
	if (cluster_standby_lag(record, rs) > input->max_lag_bytes && !input->sync_member)
	{
		char		lag[32];
		char		max[32];

		cluster_format_size(cluster_standby_lag(record, rs), lag, sizeof(lag));
		cluster_format_size(input->max_lag_bytes, max, sizeof(max));
		snprintf(reason, LE_ERROR_LEN, "lag %s > max_lag_on_failover %s", lag, max);
		return false;
	}
	return true;
}
