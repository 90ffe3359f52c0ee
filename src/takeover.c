/*
 * takeover.c
 *		Owns this node's side of the leadership term (term_record.c has the
 *		rule): claiming it once the last holder provably stopped writing,
 *		confirming it while leading, releasing it with the key, and the next
 *		in line's watch on it.
 *
 * Leading takes a claim of the term: a node first in line (phase "taking
 * over") claims it only once the previous holder released it in the
 * transaction that deleted its key -- checked by the revision its watch saw
 * the key deleted at, or by a read of the key's history -- or once its
 * validity has lapsed.  A leader stays valid only as long as its
 * confirmations (one after each renewal) say that its key is still first.
 * A release says "released" only after leadership was cleared in shared
 * memory and no commit is in flight.  The next in line watches the term, so
 * it sees each confirmation when it happens and, after a crash, takes over
 * as soon as the leader's lease has expired.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"

#include "election_internal.h"

/*
 * The term was seen at mod_revision (0: absent) now.  A revision seen before
 * keeps the time it was first seen: the holder wrote it before that.  An
 * absent term is seen anew each time: it may have been written and deleted
 * again in between, unseen.
 */
static void
note_term_seen(Election *e, int64 mod_revision, uint64 now)
{
	if (mod_revision == e->term_seen_revision && mod_revision != 0)
		return;
	e->term_seen_revision = mod_revision;
	e->term_seen_at = now;
}

/* The term as the last read of the election had it. */
void
el_take_term(Election *e, const EtcdElectionRead *read)
{
	if (read->term_found)
		term_record_decode(read->term_value, read->term_len, read->term_mod_revision,
						   e->config.prefix, &e->term);
	else
		memset(&e->term, 0, sizeof(e->term));
	if (e->term.readable)
		e->longest_term_ttl_s = Max(e->longest_term_ttl_s, e->term.ttl_s);
	note_term_seen(e, e->term.mod_revision, le_clock_us());
}

/*
 * The term as this node gives it up, or NULL if it may not say "released":
 * it does not hold the term, or a commit that passed the commit-time check
 * has not ended yet.  Leadership in shared memory is cleared already.
 */
char *
el_released_term(Election *e)
{
	if (!e->term_claimed || le_commits_in_flight() != 0)
		return NULL;
	return term_record_encode(e->key, e->create_revision, e->config.node_name,
							  e->lease_ttl_s, true, NULL);
}

/*
 * This node's term as its claim and each confirmation write it (palloc'd):
 * once it holds first place, with the synchronous set it is recording, so
 * that standbys can tell that set from a record written by someone else.
 */
char *
el_confirmed_term(Election *e)
{
	return term_record_encode(e->key, e->create_revision, e->config.node_name,
							  e->lease_ttl_s, false,
							  el_holds_first_place(e->phase) ? &e->sync_next : NULL);
}

/*
 * This node's term, as its claim and each confirmation write it; with
 * released_at > 0, only if the term was last written at that revision.
 */
EtcdRequest *
el_send_confirmation(Election *e, int64 released_at, int tag)
{
	return etcd_confirm_term(e->client, e->config.prefix, e->key, e->create_revision,
							 e->term_key,
							 el_confirmed_term(e),
							 released_at, e->record_key, e->leader_key,
							 e->config.request_timeout_ms, tag);
}

void
el_cancel_term_watch(Election *e)
{
	el_drop_request(&e->term_watch);
}

/*
 * First in line: checks that a released term was released with its key,
 * waits until the term's holder can no longer write (term_record.c), then
 * claims the term.  A standby must still stand when it claims.
 */
void
el_step_takeover(Election *e, uint64 now)
{
	TakeoverInput input;
	char		why[LE_ERROR_LEN];
	uint64		at;

	if (e->request != NULL || now < e->retry_at)
		return;
	if (e->claim_on_release)
	{
		/*
		 * Our watch saw the key ahead deleted: if the term was written in
		 * the same transaction, that was its holder's release, and the claim
		 * holds; if not, its answer is a read like any other.  A standby
		 * first reads who should take over: a worker whose postmaster died
		 * releases without letting its standbys catch up.
		 */
		if (e->eligible && !el_succession_settled(e, now, false))
			return;
		e->claim_on_release = false;
		if (e->eligible)
		{
			el_note_claim(e, true);
			e->request = el_send_confirmation(e, e->deleted_revision, REQ_CLAIM);
		}
		else
			el_enter(e, EP_LOOKING);
		return;
	}
	if (e->term.exists && e->term.readable && e->term.released &&
		e->release_checked != e->term.mod_revision &&
		e->term.mod_revision == e->deleted_revision &&
		strcmp(e->term.key, e->deleted_key) == 0)
	{
		/* our watch saw its key deleted at the revision the term was released at */
		e->release_checked = e->term.mod_revision;
		e->release_verified = true;
	}
	else if (e->term.exists && e->term.readable && e->term.released &&
			 e->release_checked != e->term.mod_revision)
	{
		e->request = etcd_read_key_at(e->client, e->term.key, e->term.mod_revision,
									  e->config.request_timeout_ms, REQ_VERIFY);
		return;
	}
	input.term = &e->term;
	input.own_key = e->key;
	input.own_revision = e->create_revision;
	input.term_seen_at = e->term_seen_at;
	input.release_verified = e->release_verified &&
		e->release_checked == e->term.mod_revision;
	input.own_ttl_s = e->config.lease_ttl_s;
	input.longest_ttl_s = e->longest_term_ttl_s;
	input.own_claim = e->term_claimed;
	at = term_takeover_at(&input, why);
	e->takeover_at = at;
	if (now < at)
	{
		if (!e->takeover_logged)
			ereport(LOG,
					(errmsg("leader_election: node \"%s\" is first in line and waits %d ms before it takes over",
							e->config.node_name, (int) ((at - now) / 1000)),
					 errdetail("%s; it takes over once that leader can no longer write.", why)));
		e->takeover_logged = true;
		return;
	}
	if (!e->eligible)
	{
		el_leave(e, e->ineligible_reason, true);
		return;
	}
	/* after a crash: the standby with the most WAL, in sync mode a synchronous one */
	if (!el_succession_settled(e, now, true))
		return;
	el_note_claim(e, false);
	e->request = el_send_confirmation(e, 0, REQ_CLAIM);
}

/* The next in line watches the term from revision on: the leader's confirmations. */
void
el_watch_term(Election *e, int64 revision)
{
	if (e->term_watch != NULL &&
		strcmp(e->term_watch->endpoint, etcd_client_endpoint(e->client)) == 0)
		return;
	el_cancel_term_watch(e);
	e->term_watch = etcd_watch_key(e->client, e->term_key, revision,
								   e->config.request_timeout_ms, REQ_TERM_WATCH);
}

/* Whether the term, released, was released in the transaction that deleted its key. */
void
el_on_verify_answer(Election *e, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	int64		created_before;
	bool		exists_at;

	if (e->phase != EP_TAKING_OVER)
		return;
	if (!etcd_read_key_at_result(req, &created_before, &exists_at, err))
	{
		/* compacted, or a refusal: unverifiable, so the holder is waited out */
		el_note_failure(e, err, req);
		if (req->transport_failed)
			return;
		created_before = 0;
	}
	e->release_checked = e->term.mod_revision;
	e->release_verified = created_before == e->term.revision && !exists_at;
	if (!e->release_verified)
		ereport(LOG,
				(errmsg("leader_election: node \"%s\" does not take the release of node \"%s\" for granted",
						e->config.node_name, e->term.node),
				 errdetail("The term says released, but not in the transaction that deleted key \"%s\".",
						   e->term.key)));
}

/*
 * Reads what the term watch has delivered: each write of the term is seen
 * when it happens, so the moment the holder last confirmed its leadership
 * is known.  A broken watch is simply dropped: the next read starts it
 * again, and until then the term is taken as seen no earlier than a read.
 */
void
el_on_term_watch_messages(Election *e)
{
	char		err[LE_ERROR_LEN];
	int64		revision;

	while (e->term_watch != NULL)
	{
		switch (etcd_watch_next(e->term_watch, &revision, err))
		{
			case ETCD_WATCH_NOTHING:
				return;
			case ETCD_WATCH_CREATED:
			case ETCD_WATCH_OTHER:
				break;
			case ETCD_WATCH_PUT:
				note_term_seen(e, revision, le_clock_us());
				break;
			case ETCD_WATCH_DELETED:
				note_term_seen(e, 0, le_clock_us());
				break;
			case ETCD_WATCH_CANCELED:
			case ETCD_WATCH_BROKEN:
				el_cancel_term_watch(e);
				return;
		}
	}
}
