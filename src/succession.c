/*
 * succession.c
 *		Owns the rule of who takes over after a crash of the primary.
 *
 * The first in line, about to take over from a primary that neither
 * stopped cleanly nor handed over, compares what the queued standbys
 * published (wal_position.c) and yields to the one with the most WAL, so
 * that the new primary has every row any standby had and every other
 * standby can follow its timeline without pg_rewind.  Ties keep queue
 * order.  A queued standby that has not published yet is waited for, but
 * only until the election says it waited enough: a standby that does not
 * see its stream end (a partition) must not hold the cluster up.
 *
 * In synchronous mode (the record says "on" or "strict") only the members of
 * the synchronous set that the primary recorded may take over: each of them
 * has every commit acknowledged to a client.  A first in line outside the
 * set yields to a queued member, or to the old primary if it is queued
 * again (it has every commit); with neither, nobody takes over and an
 * operator decides.
 */
#include "postgres.h"

#include "succession.h"

static bool
synchronous(const ClusterRecord *record)
{
	return record->exists && record->readable && record->sync.mode != SYNC_MODE_OFF;
}

/* Whether node may take over after the crash of the record's primary. */
static bool
may_take_over(const ClusterRecord *record, const char *node)
{
	return !synchronous(record) || sync_set_has(&record->sync, node);
}

/* The position queue entry k published, or NULL. */
static const WalPosition *
published(const SuccessionInput *in, const EtcdKeyValue *k)
{
	for (int i = 0; i < in->npositions; i++)
	{
		const WalPosition *p = &in->positions[i];

		/* a timeline past the record's is no standby of that primary */
		if (p->lease == k->lease && strcmp(p->node, k->name) == 0 &&
			(!in->record->exists || !in->record->readable ||
			 p->timeline <= in->record->timeline))
			return p;
	}
	return NULL;
}

static void
format_position(const WalPosition *p, const WalPosition *other, char *buf, size_t len)
{
	if (p->timeline != other->timeline)
		snprintf(buf, len, "%X/%X on timeline %u", LSN_FORMAT_ARGS(p->flushed), p->timeline);
	else
		snprintf(buf, len, "%X/%X", LSN_FORMAT_ARGS(p->flushed));
}

/* This node is no member of the recorded set; to is. */
static SuccessionVerdict
yield_to_member(const ClusterRecord *record, const char *to, char *why)
{
	snprintf(why, LE_ERROR_LEN,
			 "yielded to %s: it is in the synchronous set primary \"%s\" recorded, this node is not",
			 to, record->node);
	return SUCCESSION_YIELD;
}

SuccessionVerdict
succession_decide(const SuccessionInput *in, char *to, char *why)
{
	const ClusterRecord *record = in->record;
	const WalPosition *best = may_take_over(record, in->own->node) ? in->own : NULL;
	const EtcdKeyValue *best_key = NULL;
	const EtcdKeyValue *waiting_for = NULL;
	const EtcdKeyValue *old_primary = NULL;
	const EtcdKeyValue *member = NULL;

	for (int i = 1; i < in->queue->count; i++)
	{
		const EtcdKeyValue *k = &in->queue->keys[i];
		const WalPosition *p = published(in, k);

		if (synchronous(record) && record->exists && strcmp(k->name, record->node) == 0 &&
			p == NULL && old_primary == NULL)
			old_primary = k;
		if (!may_take_over(record, k->name))
			continue;
		if (member == NULL)
			member = k;
		if (p == NULL)
		{
			if (waiting_for == NULL)
				waiting_for = k;
			continue;
		}
		if (best == NULL || wal_position_compare(p, best) > 0)
		{
			best = p;
			best_key = k;
		}
	}

	if (waiting_for != NULL && !in->waited_enough)
	{
		snprintf(why, LE_ERROR_LEN,
				 "waits for the WAL position of node \"%s\", next in line", waiting_for->name);
		return SUCCESSION_WAIT;
	}
	if (best == in->own)
		return SUCCESSION_TAKE;
	if (best != NULL)
	{
		char		theirs[64];
		char		mine[64];

		strlcpy(to, best_key->name, LE_NAME_LEN);
		format_position(best, in->own, theirs, sizeof(theirs));
		format_position(in->own, best, mine, sizeof(mine));
		if (!may_take_over(record, in->own->node))
			return yield_to_member(record, to, why);
		snprintf(why, LE_ERROR_LEN, "yielded to %s: %s > %s", to, theirs, mine);
		return SUCCESSION_YIELD;
	}

	/* synchronous mode, and no member of the set published a position */
	if (member != NULL)
	{
		strlcpy(to, member->name, LE_NAME_LEN);
		return yield_to_member(record, to, why);
	}
	if (old_primary != NULL)
	{
		strlcpy(to, old_primary->name, LE_NAME_LEN);
		snprintf(why, LE_ERROR_LEN,
				 "yielded to %s: the primary is back, and it has every commit", to);
		return SUCCESSION_YIELD;
	}
	if (record->sync.count == 0)
		snprintf(why, LE_ERROR_LEN,
				 "primary \"%s\" recorded no synchronous standby: no standby takes over automatically, an operator decides",
				 record->node);
	else
		snprintf(why, LE_ERROR_LEN,
				 "not in the synchronous set primary \"%s\" recorded, and no member of it is queued: no standby takes over automatically, an operator decides",
				 record->node);
	return SUCCESSION_WAIT;
}
