/*
 * election_events.c
 *		Owns what the election counts for its metrics (counters.h): from the
 *		phase changes el_enter() makes, and from the view el_publish()
 *		shows, which leaderships, promotions, failovers and handovers
 *		happened, and how long the last of each took.
 *
 * It only observes: nothing here decides a phase or sends a request.
 * Durations are measured on this node's clock: a takeover from becoming
 * first in line to leading (after a crash the leader's lease ran out
 * before that), a handover from entering "handing over" (the node stopped
 * taking writes) to its key released.
 */
#include "postgres.h"

#include "counters.h"
#include "election_internal.h"

/* A phase change el_enter() is making. */
void
el_note_phase_change(Election *e, ElectionPhase from, ElectionPhase to, uint64 now)
{
	if (to == EP_TAKING_OVER && from != EP_TAKING_OVER)
	{
		e->first_in_line_at = now;
		e->takeover_kind = TAKEOVER_FIRST;
	}
	if (from == EP_PROMOTING && to == EP_LEADING)
		le_count(LE_COUNT_PROMOTIONS);

	if (to == EP_HANDING_OVER)
		e->handover_began_at = now;
	if (from == EP_HANDING_OVER && to == EP_LEADING)
		le_count(LE_COUNT_HANDOVER_FAILURES);
	if (to == EP_NO_LEASE && e->handover_began_at != 0 &&
		(from == EP_RESIGNING || (from == EP_HANDING_OVER && e->handed_over)))
	{
		le_count(LE_COUNT_HANDOVERS);
		le_set_duration(LE_LAST_RESIGN, now - e->handover_began_at);
	}
	if (to != EP_HANDING_OVER && to != EP_RESIGNING)
		e->handover_began_at = 0;
}

/*
 * The node first in line claims the term, after the release the watch saw
 * (on_release), or after what the term it read says: from whom does it take
 * over?  Decided before the claim, whose answer shows the term as its own.
 */
void
el_note_claim(Election *e, bool on_release)
{
	if (on_release)
		e->takeover_kind = TAKEOVER_AFTER_RELEASE;
	else if (!e->term.exists || !e->term.readable ||
			 term_record_names(&e->term, e->key, e->create_revision))
		e->takeover_kind = TAKEOVER_FIRST;
	else if (e->term.released && e->release_verified)
		e->takeover_kind = TAKEOVER_AFTER_RELEASE;
	else
		e->takeover_kind = TAKEOVER_AFTER_FAILURE;
}

/*
 * The view el_publish() shows: role is this node's, leader_token the
 * fencing token of the leader it knows (0: none).
 */
void
el_note_view(Election *e, LeaderRole role, int64 leader_token, uint64 now)
{
	if (leader_token != 0 && leader_token != e->counted_token)
	{
		if (e->counted_token != 0)
			le_count(LE_COUNT_LEADER_CHANGES);
		e->counted_token = leader_token;
	}

	if (role == LE_ROLE_LEADER && !e->counted_leading)
	{
		le_count(LE_COUNT_LEADERSHIPS);
		if (e->first_in_line_at != 0 && e->takeover_kind == TAKEOVER_AFTER_FAILURE)
		{
			le_count(LE_COUNT_FAILOVERS);
			le_set_duration(LE_LAST_FAILOVER, now - e->first_in_line_at);
		}
		else if (e->first_in_line_at != 0 && e->takeover_kind == TAKEOVER_AFTER_RELEASE)
			le_set_duration(LE_LAST_HANDOVER, now - e->first_in_line_at);
		e->first_in_line_at = 0;
	}
	e->counted_leading = (role == LE_ROLE_LEADER);
}
