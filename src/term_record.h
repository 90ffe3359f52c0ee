/*
 * term_record.h
 *		The leadership term in etcd: which key holds leadership now, or
 *		released it, and the rule that decides when a node first in line may
 *		take over from it.
 */
#ifndef LEADER_ELECTION_TERM_RECORD_H
#define LEADER_ELECTION_TERM_RECORD_H

#include "cluster_record.h"
#include "shared_state.h"

/*
 * "<prefix>.term": written by the node that leads (or promotes), only while
 * its key is first in line: when it claims leadership, at every refresh
 * while it holds it (each write confirms that its key is still first, and
 * only a confirmed node stays valid), and, when it gives leadership up of
 * its own accord, as "released" in the same transaction that deletes its key.
 */
typedef struct TermRecord
{
	bool		exists;
	bool		readable;		/* false: problem says why */
	int64		mod_revision;	/* etcd's revision of its last write; 0: absent */
	char		key[LE_KEY_LEN];	/* the holder's election key */
	int64		revision;		/* that key's create revision: the fencing token */
	char		node[LE_NAME_LEN];	/* printable */
	int			ttl_s;			/* the holder's lease TTL */
	bool		released;
	/* the leader's synchronous set as it last confirmed it (has_sync) */
	bool		has_sync;
	SyncSet		sync;
	char		problem[LE_ERROR_LEN];
} TermRecord;

/* The record's key for an election prefix. */
extern void term_record_key(const char *prefix, char *key, size_t len);

/* The record as JSON, for etcd (palloc'd); sync may be NULL. */
extern char *term_record_encode(const char *key, int64 revision, const char *node,
								int ttl_s, bool released, const SyncSet *sync);

/* Parses an etcd value; keys outside prefix + "/" make it unreadable. */
extern void term_record_decode(const char *value, size_t len, int64 mod_revision,
							   const char *prefix, TermRecord *term);

/* Whether the term is held (or was released) by key, created at revision. */
extern bool term_record_names(const TermRecord *term, const char *key, int64 revision);

/* What decides when a node first in line may take over. */
typedef struct TakeoverInput
{
	const TermRecord *term;
	const char *own_key;
	int64		own_revision;
	/* le_clock_us() when this node first saw the term at term->mod_revision */
	uint64		term_seen_at;
	/* the release was written in the transaction that deleted term->key */
	bool		release_verified;
	/* this node claimed the term with own_key (a term naming it otherwise is forged) */
	bool		own_claim;
	/* the longest TTL a holder ever wrote into a term this node read */
	int			longest_ttl_s;
	int			own_ttl_s;
} TakeoverInput;

/*
 * The le_clock_us() time from which the previous holder of the term can no
 * longer write, so that this node may claim it: 0 when that is provable
 * already (the term is this node's, or a verified release); else the last
 * moment the holder may have confirmed its key plus the longest validity it
 * may have had.  why (LE_ERROR_LEN) says what is waited for.
 */
extern uint64 term_takeover_at(const TakeoverInput *input, char *why);

#endif
