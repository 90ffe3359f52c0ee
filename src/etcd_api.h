/*
 * etcd_api.h
 *		The etcd v3 calls the election needs, over the JSON gateway: request
 *		bodies on the way out, typed and validated results on the way back.
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
	ETCD_WATCH_OTHER,			/* an event that changes nothing here */
	ETCD_WATCH_CANCELED,		/* etcd ended the watch (e.g. compaction) */
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
 * etcd_range_candidates) and the value of record_key, if it exists.
 */
typedef struct EtcdElectionRead
{
	EtcdCandidates queue;
	bool		record_found;
	char	   *record_value;	/* palloc'd, record_len bytes (NUL-terminated) */
	size_t		record_len;
} EtcdElectionRead;

extern EtcdRequest *etcd_read_election(EtcdClient *c, const char *prefix,
									   int64 max_create_revision, const char *record_key,
									   int timeout_ms, int tag);
extern bool etcd_read_election_result(EtcdRequest *req, const char *prefix,
									  EtcdElectionRead *read, char *err);

/*
 * Puts key = value only while own_key, created at create_revision, is the
 * oldest key under prefix + "/": only the leader writes.
 */
extern EtcdRequest *etcd_put_if_first(EtcdClient *c, const char *prefix, const char *own_key,
									  int64 create_revision, const char *key,
									  const char *value, int timeout_ms, int tag);
/* A txn was answered: *succeeded says whether its compares held. */
extern bool etcd_txn_result(EtcdRequest *req, bool *succeeded, char *err);

/* Deletes key only if its create revision is still create_revision. */
extern EtcdRequest *etcd_delete_if_created(EtcdClient *c, const char *key,
										   int64 create_revision, int timeout_ms, int tag);
extern bool etcd_result_ok(EtcdRequest *req, char *err);

/*
 * Deletes key (created at create_revision) only while next_key is still
 * there with next_revision: the one that takes over is the one that was
 * checked.  etcd_txn_result() says whether it happened.
 */
extern EtcdRequest *etcd_delete_before(EtcdClient *c, const char *key, int64 create_revision,
									   const char *next_key, int64 next_revision,
									   int timeout_ms, int tag);

extern EtcdRequest *etcd_watch_key(EtcdClient *c, const char *key, int64 start_revision,
								   int connect_timeout_ms, int tag);
extern EtcdWatchEvent etcd_watch_next(EtcdRequest *req, char *err);

/* The lease id as etcd's election recipe writes it into keys. */
extern void etcd_lease_hex(int64 lease_id, char *buf, size_t len);

#endif
