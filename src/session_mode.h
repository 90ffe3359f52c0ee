/*
 * session_mode.h
 *		What a session reports to its client as default_transaction_read_only,
 *		so that libpq's target_session_attrs=read-write finds the leader.
 */
#ifndef LEADER_ELECTION_SESSION_MODE_H
#define LEADER_ELECTION_SESSION_MODE_H

/*
 * From _PG_init, while shared_preload_libraries is processed.  node_fenced
 * says whether a new session's node is fenced now (the fence decides; this
 * file only reports it).
 */
extern void le_session_mode_install(bool (*node_fenced) (void));

/*
 * At every statement start: the session reports "on" while its node is
 * fenced, and its configured value otherwise; a change is reported to the
 * client before the next ReadyForQuery.
 */
extern void le_session_follow_node(bool node_fenced);

/*
 * Whether the fence's "on" overrides this session's own read-only default
 * now; if so, *configured is that default (what a transaction starts as,
 * for the fence).
 */
extern bool le_session_overridden(bool *configured);

#endif
