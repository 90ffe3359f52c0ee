/*
 * etcd_api.h
 *		The etcd v3 calls the election needs, over the JSON gateway: request
 *		bodies on the way out (etcd_api.c), typed and validated results on
 *		the way back (etcd_results.c).
 */
#ifndef LEADER_ELECTION_ETCD_API_H
#define LEADER_ELECTION_ETCD_API_H

#include "etcd_client.h"

/* One key of the election queue. Strings are palloc'd. */
typedef struct EtcdKeyValue
{
	char	   *key;			/* as stored, for comparisons and watches */
	char	   *name;			/* the value, printable (le_printable) */
	int64		create_revision;
	int64		lease;
} EtcdKeyValue;

/* The candidates' keys under a prefix in create-revision order, oldest first. */
typedef struct EtcdCandidates
{
	int64		revision;		/* store revision the answer reflects */
	int			count;
	EtcdKeyValue *keys;
} EtcdCandidates;

typedef enum EtcdWatchEvent
{
	ETCD_WATCH_NOTHING,			/* no complete message yet */
	ETCD_WATCH_CREATED,			/* etcd confirmed the watch */
	ETCD_WATCH_DELETED,			/* the watched key was deleted */
	ETCD_WATCH_PUT,				/* the watched key was written */
	ETCD_WATCH_OTHER,			/* a message without an event */
	ETCD_WATCH_CANCELED,		/* etcd ended the watch (e.g. compaction); err says why */
	ETCD_WATCH_BROKEN			/* error or unreadable message; see err */
} EtcdWatchEvent;

/* All results take err (LE_ERROR_LEN bytes) for a message on failure. */
extern EtcdRequest *etcd_lease_grant(EtcdClient *c, int ttl_s, int timeout_ms, int tag);
extern bool etcd_lease_grant_result(EtcdRequest *req, int64 *lease_id, int *ttl_s, char *err);

extern EtcdRequest *etcd_lease_keepalive(EtcdClient *c, int64 lease_id, int timeout_ms, int tag);
/* *ttl_s = 0 means etcd no longer knows the lease. */
extern bool etcd_lease_keepalive_result(EtcdRequest *req, int *ttl_s, char *err);

extern EtcdRequest *etcd_lease_revoke(EtcdClient *c, int64 lease_id, int timeout_ms, int tag);

/* Creates key with value under lease unless it exists: etcd's campaign txn. */
extern EtcdRequest *etcd_campaign(EtcdClient *c, const char *key, const char *value,
								  int64 lease_id, int timeout_ms, int tag);
extern bool etcd_campaign_result(EtcdRequest *req, int64 *create_revision, char *err);

/* Range read of the keys under prefix + "/" with create revision <= max (0: all). */
extern EtcdRequest *etcd_range_candidates(EtcdClient *c, const char *prefix,
										  int64 max_create_revision, int timeout_ms, int tag);
extern bool etcd_range_candidates_result(EtcdRequest *req, const char *prefix,
										 EtcdCandidates *candidates, char *err);

/*
 * One read of the election at one revision: the candidates (as
 * etcd_range_candidates), and the cluster record, the leadership term and
 * the leader key, if they exist.  Values are palloc'd and NUL-terminated.
 */
typedef struct EtcdElectionRead
{
	/* a plain read: true; a confirmation: whether our key was first */
	bool		confirmed;
	EtcdCandidates queue;
	bool		record_found;
	char	   *record_value;
	size_t		record_len;
	int64		record_mod_revision;
	bool		term_found;
	char	   *term_value;
	size_t		term_len;
	int64		term_mod_revision;
	/* anyone may write the leader key: compared, never trusted */
	bool		leader_found;
	char	   *leader_value;
	size_t		leader_len;
	int64		leader_lease;	/* 0: none */
	/* etcd_read_succession() only: the keys under its extra prefix, as stored */
	int			nextra;
	char	  **extra_keys;
	char	  **extra_values;
	size_t	   *extra_lens;
} EtcdElectionRead;

extern EtcdRequest *etcd_read_election(EtcdClient *c, const char *prefix,
									   int64 max_create_revision, const char *record_key,
									   const char *term_key, const char *leader_key,
									   int timeout_ms, int tag);
extern bool etcd_read_election_result(EtcdRequest *req, const char *prefix,
									  EtcdElectionRead *read, char *err);

/*
 * The same read of the whole election, and at the same revision every key
 * under extra_prefix (the standbys' WAL positions); parsed by
 * etcd_read_election_result() into extra_*.
 */
extern EtcdRequest *etcd_read_succession(EtcdClient *c, const char *prefix,
										 const char *record_key, const char *term_key,
										 const char *leader_key, const char *extra_prefix,
										 int timeout_ms, int tag);

/* Puts key = value attached to lease (0: none). */
extern EtcdRequest *etcd_put(EtcdClient *c, const char *key, const char *value,
							 int64 lease, int timeout_ms, int tag);

/* Deletes key, if it exists. */
extern EtcdRequest *etcd_delete(EtcdClient *c, const char *key, int timeout_ms, int tag);

/* Deletes key if it is attached to lease (a txn; nothing else happens). */
extern EtcdRequest *etcd_delete_if_lease(EtcdClient *c, const char *key, int64 lease,
										 int timeout_ms, int tag);

/*
 * Writes term_key = term_value only while own_key, created at
 * create_revision, is the oldest key under prefix + "/" (and, if
 * term_written_at > 0, while term_key was last written at that revision),
 * and reads the election either way (etcd_read_election_result; confirmed
 * says whether the write happened).
 */
extern EtcdRequest *etcd_confirm_term(EtcdClient *c, const char *prefix, const char *own_key,
									  int64 create_revision, const char *term_key,
									  const char *term_value, int64 term_written_at,
									  const char *record_key, const char *leader_key,
									  int timeout_ms, int tag);

/*
 * Puts key = value, attached to lease (0: none), and key2 = value2 (unless
 * NULL), only while own_key, created at create_revision, is the oldest key
 * under prefix + "/": only the leader writes.
 */
extern EtcdRequest *etcd_put_if_first(EtcdClient *c, const char *prefix, const char *own_key,
									  int64 create_revision, const char *key,
									  const char *value, int64 lease, const char *key2,
									  const char *value2, int timeout_ms, int tag);
/* A txn was answered: *succeeded says whether its compares held. */
extern bool etcd_txn_result(EtcdRequest *req, bool *succeeded, char *err);
extern bool etcd_result_ok(EtcdRequest *req, char *err);

/*
 * Deletes key while its create revision is still create_revision (and, if
 * next_key is not NULL, while next_key is still there with next_revision:
 * the one that takes over is the one that was checked), and in the same
 * transaction puts term_value and record_value, when not NULL, and deletes
 * leader_key if it is attached to lease (a nested txn: a leader key that
 * is not ours does not stop the release).  etcd_txn_result() says whether
 * the release happened.
 */
extern EtcdRequest *etcd_release(EtcdClient *c, const char *key, int64 create_revision,
								 const char *next_key, int64 next_revision,
								 const char *term_key, const char *term_value,
								 const char *record_key, const char *record_value,
								 const char *leader_key, int64 lease,
								 int timeout_ms, int tag);

/*
 * Reads key as it was just before revision and at revision: its create
 * revision then (0: absent), and whether it exists at revision.  A
 * compacted revision is an error.
 */
extern EtcdRequest *etcd_read_key_at(EtcdClient *c, const char *key, int64 revision,
									 int timeout_ms, int tag);
extern bool etcd_read_key_at_result(EtcdRequest *req, int64 *create_revision_before,
									bool *exists_at, char *err);

extern EtcdRequest *etcd_watch_key(EtcdClient *c, const char *key, int64 start_revision,
								   int connect_timeout_ms, int tag);
/* *revision: the revision of the event reported (0 for none). */
extern EtcdWatchEvent etcd_watch_next(EtcdRequest *req, int64 *revision, char *err);

/* The message of an etcd error answer (an error object or string), or NULL. */
extern const char *etcd_answer_error(const cJSON *json);

/* The lease id as etcd's election recipe writes it into keys. */
extern void etcd_lease_hex(int64 lease_id, char *buf, size_t len);

#endif
