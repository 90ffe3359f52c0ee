/*
 * election_internal.h
 *		The Election struct and the functions the files of the election
 *		state machine share.  Not for other files: they use election.h.
 *
 * Rules kept by every file here: the phase changes only in el_enter()
 * (election.c, which holds the transition table); shared memory is written
 * only through el_publish() and shared_state.c; no function waits, except
 * at shutdown (handover.c).
 */
#ifndef LEADER_ELECTION_ELECTION_INTERNAL_H
#define LEADER_ELECTION_ELECTION_INTERNAL_H

#include "access/xlogdefs.h"

#include "cluster_record.h"
#include "election.h"
#include "etcd_api.h"
#include "replication.h"
#include "term_record.h"

#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		1000
#define RENEW_RETRY_MS		250
/* how often replication state is looked at, and while it is awaited */
#define REPLICATION_POLL_MS	250
#define AWAIT_POLL_MS		10
/* a promotion may take this long at least, whatever the TTL */
#define PROMOTE_MIN_S		5
/* the leader's copy of the queue's names, for its synchronous set */
#define LE_MAX_QUEUE		32

/* Whom a node that became first in line took over from (for the metrics). */
typedef enum TakeoverKind
{
	TAKEOVER_FIRST,				/* nobody: a new election, or its own term */
	TAKEOVER_AFTER_RELEASE,		/* a leader that let go: a handover */
	TAKEOVER_AFTER_FAILURE		/* a leader whose lease ran out: a failover */
} TakeoverKind;

typedef enum RequestTag
{
	REQ_GRANT,
	REQ_RENEWAL,
	REQ_CAMPAIGN,
	REQ_OBSERVE,				/* read of the whole election, holding nothing */
	REQ_RANGE,					/* read up to our own key: looking, refresh */
	REQ_CLAIM,					/* the term written while our key is first */
	REQ_CONFIRM,				/* the same, by a leader: its refresh */
	REQ_VERIFY,					/* was the term released with its key? */
	REQ_SUCCESSOR,				/* who is next in line, for a handover */
	REQ_HANDOVER,				/* key delete while that one is still next */
	REQ_RECORD,					/* the cluster record, written by the leader */
	REQ_WATCH,
	REQ_TERM_WATCH,				/* the next in line watches the term */
	REQ_DELETE,
	REQ_MOVE,					/* key released, the record saying "moved" */
	REQ_RELEASE,				/* key released on leaving; then the lease goes */
	REQ_POSITION,				/* our WAL position published or withdrawn */
	REQ_SUCCESSION,				/* the queue and the positions, before a takeover */
	REQ_LEADER_KEY,				/* <prefix>.leader written while our key is first */
	REQ_DISCARD					/* answer not needed */
} RequestTag;

struct Election
{
	EtcdClient *client;
	ElectionConfig config;
	ElectionPhase phase;
	char		record_key[LE_KEY_LEN];
	char		term_key[LE_KEY_LEN];
	char		leader_key[LE_KEY_LEN];

	/* the phase's request (grant, campaign, read, delete, record) */
	EtcdRequest *request;
	/* queued, promoting and leading: a read is due after a renewal */
	bool		refresh_due;
	/* observing: when to read the election again */
	uint64		next_read;

	/* lease */
	int64		lease_id;		/* 0: none */
	int			lease_ttl_s;
	uint64		lease_valid_until;	/* le_clock_us() */
	uint64		next_renewal;
	/* renewals in flight: the first one and its hedges on other endpoints */
	EtcdRequest *renewals[LE_MAX_ENDPOINTS];
	int			nrenewals;
	uint64		next_hedge;		/* when to hedge them, if still unanswered */

	/* place in the queue */
	char		key[LE_KEY_LEN];
	int64		create_revision;	/* 0: not queued */
	/* this candidacy queued behind a leader: a standby may take over */
	bool		followed_leader;
	/* a watch broke and none has been confirmed since: reads do not clear it */
	bool		watch_failing;
	/* a standby streaming an older timeline than the cluster's, since */
	uint64		behind_since;

	/* the election as the last read saw it */
	int			queue_position; /* -1: unknown */
	bool		leader_known;
	char		leader_name[LE_NAME_LEN];
	int64		fencing_token;
	ClusterRecord record;
	ClusterRecord record_sent;	/* the record as this node last wrote it */
	/* the data directory has been part of a cluster with a record */
	bool		replicated_member;
	TimeLineID	timeline_seen;	/* the latest timeline a record named */
	bool		membership_read;
	/* the record this node left its last election with, moving the cluster */
	ClusterRecord moved_from;

	/* the leadership term as the last read or the term watch saw it */
	TermRecord	term;
	int64		term_seen_revision; /* term.mod_revision seen since ...; -1: none */
	uint64		term_seen_at;	/* ... this le_clock_us() time, first */
	EtcdRequest *term_watch;	/* the next in line: the leader's confirmations */
	bool		term_claimed;	/* our key holds the term */
	int			longest_term_ttl_s; /* the longest TTL a term read said */
	uint64		confirmed_until;	/* validity by the last confirmation */
	/* taking over: the release of term revision release_checked was checked */
	int64		release_checked;
	bool		release_verified;
	/* the predecessor's key, and the revision its watch saw it deleted at */
	char		deleted_key[LE_KEY_LEN];
	int64		deleted_revision;
	/* the next in line claims at once if the key ahead went with a release */
	bool		claim_on_release;
	uint64		takeover_at;	/* when the term's holder can no longer write */
	bool		takeover_logged;
	/* a released key's lease, revoked once the release is answered */
	int64		revoke_after_release;

	/* this node in replication, read at every step, and what follows */
	ReplicationState replication;
	uint64		stream_lost_at; /* a queued standby's stream ended; 0: none */
	uint64		stream_grace_from;	/* ... its grace runs from then; 0: none */
	int64		grace_leader_token; /* the first in line when it last began */
	bool		eligible;
	char		ineligible_reason[LE_ERROR_LEN];
	char		logged_reason[LE_ERROR_LEN];	/* last one written to the log */

	/* the leader key (leader_key.c), written beside the phase's request */
	EtcdRequest *leader_key_write;
	bool		leader_key_right;	/* names us, on our lease, as far as we know */
	uint64		leader_key_written_at;	/* le_clock_us() of the last write's answer */

	/* our WAL position in etcd (wal_positions.c), beside the phase's request */
	EtcdRequest *position_write;
	bool		position_published;
	uint64		position_for;	/* the stream_lost_at it describes */
	XLogRecPtr	published_lsn;	/* 0: none */
	/* taking over after a crash: who should (succession.c) */
	bool		succession_settled;
	uint64		succession_since;	/* first read of the positions; 0: none yet */
	uint64		succession_next_read;
	char		succession_wait[LE_ERROR_LEN];	/* why it waits; "" */
	char		yielded[LE_ERROR_LEN];	/* why it last gave its place up; "" */
	uint64		yielded_at;		/* ... and when: it stands again in its grace */

	/* the leader's synchronous standbys (sync_standbys.c) */
	SyncSet		sync_next;		/* what the record it writes says */
	SyncSet		sync_confirmed; /* what etcd took from it last */
	bool		sync_confirmed_known;
	char		sync_setting[LE_ERROR_LEN]; /* synchronous_standby_names written */
	bool		sync_reset_due; /* synchronous mode went off: drop the setting */
	char		sync_adding[LE_NAME_LEN];	/* joins: setting first, then record */
	uint64		sync_adding_since;
	uint64		sync_setting_at;	/* when the setting was written */
	XLogRecPtr	sync_catch_up_to;	/* it must flush this before it is recorded */
	uint64		sync_retry_at;	/* after a failure to write the setting */
	char		sync_error[LE_ERROR_LEN];
	int			queue_count;	/* the queue's names, from the leader's last read */
	char		queue_names[LE_MAX_QUEUE][LE_NAME_LEN];

	/* promoting: not before the old primary's stream ended, or then */
	bool		promote_requested;
	uint64		promote_not_before;
	/* recovery must end by then, unless replay still moves on */
	uint64		promote_deadline;
	XLogRecPtr	promote_replayed;
	char		promote_error[LE_ERROR_LEN];

	/* handing over */
	uint64		handover_deadline;
	bool		successor_known;
	char		successor[LE_NAME_LEN]; /* printable; "" when nobody is next */
	char		successor_key[LE_KEY_LEN];
	int64		successor_revision;
	bool		successor_must_catch_up;
	/* standbys' application_names name candidates: wait for the successor's */
	bool		successor_by_name;
	bool		handed_over;	/* the successor keeps its walsender */
	XLogRecPtr	handover_upto;	/* WAL it must have; 0 until commits drained */

	/* queued: the predecessor's key; promoting, leading: our own */
	EtcdRequest *watch;
	char		watched_key[LE_KEY_LEN];
	int64		watch_from;		/* its start revision; 0: a range read must tell */

	/* the resign request being served */
	bool		resign_waiting;
	uint32		resign_request;

	/* leaving for good: standbys keep streaming until PostgreSQL stops */
	bool		shutting_down;

	/* settings not applied yet (a handover or a move finishes first) */
	bool		config_pending;
	ElectionConfig pending_config;
	uint64		move_deadline;	/* moving: commits in flight end by then */

	/* what the metrics count (election_events.c) */
	uint64		first_in_line_at;	/* entered "taking over"; 0: counted */
	TakeoverKind takeover_kind; /* ... and from whom it took over */
	uint64		handover_began_at;	/* entered "handing over"; 0: none */
	int64		counted_token;	/* the leader's token last counted */
	bool		counted_leading;

	/* failures, until a range read succeeds again */
	uint64		retry_at;
	int			backoff_ms;
	char		last_error[LE_ERROR_LEN];	/* shown in leader_status() */
	char		logged_error[LE_ERROR_LEN]; /* last one written to the log */
};


/* election.c: phases, requests, failures, leaving */
extern uint64 el_margin_us(int ttl_s);
extern bool el_holds_first_place(ElectionPhase phase);
extern void el_drop_request(EtcdRequest **req);
extern void el_cancel_renewals(Election *e);
extern void el_note_failure(Election *e, const char *message, EtcdRequest *req);
extern void el_answer_resign(Election *e, const char *error);
extern void el_enter(Election *e, ElectionPhase to);
extern EtcdRequest *el_send_release(Election *e, const char *next_key, int64 next_revision,
									const char *record_value, int tag);
extern void el_revoke_lease(Election *e, int64 lease_id);
extern void el_leave_with(Election *e, const char *reason, bool release,
						  const char *record_value);
extern void el_leave(Election *e, const char *reason, bool release);
extern void el_clear_failure(Election *e);
extern void el_watch_key(Election *e, const char *target, int64 revision);

/* reading.c: what a read of the election decides */
extern void el_on_observe_answer(Election *e, EtcdRequest *req);
extern void el_on_range_answer(Election *e, EtcdRequest *req);

/* election_view.c: what shared memory shows */
extern void el_publish(Election *e);
extern void el_show_queue(const EtcdCandidates *queue);

/* election_events.c: what the metrics count */
extern void el_note_phase_change(Election *e, ElectionPhase from, ElectionPhase to,
								 uint64 now);
extern void el_note_claim(Election *e, bool on_release);
extern void el_note_view(Election *e, LeaderRole role, int64 leader_token, uint64 now);

/* lease.c: the lease and its renewals */
extern void el_send_renewal(Election *e, uint64 now);
extern void el_on_grant_answer(Election *e, EtcdRequest *req);
extern void el_on_renewal_answer(Election *e, EtcdRequest *req);

/* standing.c: whether this node may stand */
extern bool el_recorded_sync_standby(Election *e);
extern bool el_sync_standby_may_start(Election *e);
extern bool el_may_stand(Election *e, uint64 now);
extern void el_assess(Election *e, uint64 now);
extern void el_note_membership(Election *e, const ClusterRecord *record);
extern void el_take_record(Election *e, const EtcdElectionRead *read);

/* takeover.c: the leadership term */
extern void el_take_term(Election *e, const EtcdElectionRead *read);
extern char *el_released_term(Election *e);
extern char *el_confirmed_term(Election *e);
extern EtcdRequest *el_send_confirmation(Election *e, int64 released_at, int tag);
extern void el_cancel_term_watch(Election *e);
extern void el_step_takeover(Election *e, uint64 now);
extern void el_watch_term(Election *e, int64 revision);
extern void el_on_verify_answer(Election *e, EtcdRequest *req);
extern void el_on_term_watch_messages(Election *e);

/* record_keeping.c: the leader and the cluster record */
extern bool el_replicated(Election *e, bool any_walsender);
extern char *el_build_record(Election *e, XLogRecPtr wal_end, bool stopping,
							 const char *successor);
extern void el_send_record(Election *e, XLogRecPtr wal_end, bool stopping);
extern XLogRecPtr el_recordable_wal_end(void);
extern bool el_candidate_streams(Election *e, const EtcdCandidates *queue,
								 const WalStreams *streams);
extern bool el_record_due(Election *e, const EtcdCandidates *queue);
extern void el_step_leading(Election *e, uint64 now);
extern void el_on_record_answer(Election *e, EtcdRequest *req);

/* leader_key.c: <prefix>.leader, the one key that names the leader */
extern void el_leader_key_name(const char *prefix, char *key, size_t len);
extern void el_note_leader_key(Election *e, const EtcdElectionRead *read, uint64 sent_us);
extern void el_step_leader_key(Election *e, uint64 now);
extern void el_on_leader_key_answer(Election *e, EtcdRequest *req);

/* wal_positions.c: the standbys' WAL positions, and who takes over */
extern void el_step_position(Election *e);
extern void el_on_position_answer(Election *e, EtcdRequest *req);
extern bool el_succession_settled(Election *e, uint64 now, bool known_record);
extern void el_on_succession_answer(Election *e, EtcdRequest *req);

/* sync_standbys.c: the leader's synchronous standbys */
extern void el_sync_begin(Election *e);
extern void el_sync_note_queue(Election *e, const EtcdCandidates *queue);
extern bool el_sync_record_due(Election *e);
extern void el_sync_confirmed(Election *e, const ClusterRecord *previous);
extern void el_step_sync(Election *e, uint64 now);

/* promotion.c: a standby becoming the primary */
extern void el_begin_promotion(Election *e, uint64 now);
extern void el_step_promotion(Election *e, uint64 now);

/* handover.c: leaving leadership with its WAL */
extern void el_release_standbys(Election *e);
extern void el_begin_handover(Election *e, uint64 now);
extern void el_step_handover(Election *e, uint64 now);
extern void el_on_successor_answer(Election *e, EtcdRequest *req);
extern void el_handed_over(Election *e);
extern void el_on_handover_answer(Election *e, EtcdRequest *req);

/* reconfigure.c: new settings, moving a cluster */
extern void el_configure_when_due(Election *e);
extern void el_begin_move(Election *e, uint64 now);
extern void el_step_move(Election *e, uint64 now);
extern void el_on_move_answer(Election *e, EtcdRequest *req);

#endif
