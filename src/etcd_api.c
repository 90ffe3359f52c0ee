/*
 * etcd_api.c
 *		Owns the requests of the etcd v3 JSON gateway protocol: paths and
 *		request bodies.  Keys and values travel base64-encoded and 64-bit
 *		integers as strings.  etcd_results.c reads what etcd answers.
 */
#include "postgres.h"

#include "common/base64.h"

#include "etcd_api.h"

#define ETCD_PATH_GRANT		"/v3/lease/grant"
#define ETCD_PATH_KEEPALIVE	"/v3/lease/keepalive"
#define ETCD_PATH_REVOKE	"/v3/lease/revoke"
#define ETCD_PATH_TXN		"/v3/kv/txn"
#define ETCD_PATH_RANGE		"/v3/kv/range"
#define ETCD_PATH_PUT		"/v3/kv/put"
#define ETCD_PATH_DELETE	"/v3/kv/deleterange"
#define ETCD_PATH_WATCH		"/v3/watch"

static void
add_base64(cJSON *obj, const char *field, const char *data, size_t len)
{
	int			enclen = pg_b64_enc_len((int) len);
	char	   *encoded = palloc(enclen + 1);
	int			n = pg_b64_encode(data, (int) len, encoded, enclen);

	if (n < 0)
		elog(ERROR, "could not base64-encode %zu bytes", len);
	encoded[n] = '\0';
	cJSON_AddStringToObject(obj, field, encoded);
	pfree(encoded);
}

static void
add_int64(cJSON *obj, const char *field, int64 value)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), INT64_FORMAT, value);
	cJSON_AddStringToObject(obj, field, buf);
}

static cJSON *
new_object(void)
{
	cJSON	   *obj = cJSON_CreateObject();

	if (obj == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building an etcd request")));
	return obj;
}

/* Sends body and frees it: etcd_post() keeps its own serialised copy. */
static EtcdRequest *
post_and_free(EtcdClient *c, const char *path, cJSON *body, int timeout_ms,
			  int connect_timeout_ms, int tag)
{
	EtcdRequest *req = etcd_post(c, path, body, timeout_ms, connect_timeout_ms, tag);

	cJSON_Delete(body);
	return req;
}

/* Adds a compare of key's create revision to a txn, as etcd's election recipe does. */
static void
add_create_revision_compare(cJSON *txn, const char *key, int64 create_revision)
{
	cJSON	   *compares = cJSON_GetObjectItemCaseSensitive(txn, "compare");
	cJSON	   *cmp = new_object();

	if (compares == NULL)
		compares = cJSON_AddArrayToObject(txn, "compare");
	add_base64(cmp, "key", key, strlen(key));
	cJSON_AddStringToObject(cmp, "target", "CREATE");
	cJSON_AddStringToObject(cmp, "result", "EQUAL");
	add_int64(cmp, "create_revision", create_revision);
	cJSON_AddItemToArray(compares, cmp);
}

/* The lease calls take one integer field. */
static EtcdRequest *
post_integer(EtcdClient *c, const char *path, const char *field, int64 value,
			 int timeout_ms, int tag)
{
	cJSON	   *body = new_object();

	add_int64(body, field, value);
	return post_and_free(c, path, body, timeout_ms, timeout_ms, tag);
}

EtcdRequest *
etcd_lease_grant(EtcdClient *c, int ttl_s, int timeout_ms, int tag)
{
	return post_integer(c, ETCD_PATH_GRANT, "TTL", ttl_s, timeout_ms, tag);
}

EtcdRequest *
etcd_lease_keepalive(EtcdClient *c, int64 lease_id, int timeout_ms, int tag)
{
	return post_integer(c, ETCD_PATH_KEEPALIVE, "ID", lease_id, timeout_ms, tag);
}

EtcdRequest *
etcd_lease_revoke(EtcdClient *c, int64 lease_id, int timeout_ms, int tag)
{
	return post_integer(c, ETCD_PATH_REVOKE, "ID", lease_id, timeout_ms, tag);
}

EtcdRequest *
etcd_campaign(EtcdClient *c, const char *key, const char *value,
			  int64 lease_id, int timeout_ms, int tag)
{
	cJSON	   *body = new_object();
	cJSON	   *put = new_object();
	cJSON	   *put_op = new_object();
	cJSON	   *get = new_object();
	cJSON	   *get_op = new_object();

	add_base64(put, "key", key, strlen(key));
	add_base64(put, "value", value, strlen(value));
	add_int64(put, "lease", lease_id);
	cJSON_AddItemToObject(put_op, "request_put", put);
	add_base64(get, "key", key, strlen(key));
	cJSON_AddItemToObject(get_op, "request_range", get);

	add_create_revision_compare(body, key, 0);
	cJSON_AddItemToArray(cJSON_AddArrayToObject(body, "success"), put_op);
	cJSON_AddItemToArray(cJSON_AddArrayToObject(body, "failure"), get_op);
	return post_and_free(c, ETCD_PATH_TXN, body, timeout_ms, timeout_ms, tag);
}

/* The range read of the candidates' keys, oldest first (a RangeRequest). */
static cJSON *
candidates_range(const char *prefix, int64 max_create_revision)
{
	cJSON	   *range = new_object();
	char	   *from = psprintf("%s/", prefix);
	char	   *to = psprintf("%s0", prefix);	/* '0' follows '/' */

	add_base64(range, "key", from, strlen(from));
	add_base64(range, "range_end", to, strlen(to));
	cJSON_AddStringToObject(range, "sort_order", "ASCEND");
	cJSON_AddStringToObject(range, "sort_target", "CREATE");
	if (max_create_revision > 0)
		add_int64(range, "max_create_revision", max_create_revision);
	pfree(from);
	pfree(to);
	return range;
}

EtcdRequest *
etcd_range_candidates(EtcdClient *c, const char *prefix, int64 max_create_revision,
					  int timeout_ms, int tag)
{
	return post_and_free(c, ETCD_PATH_RANGE, candidates_range(prefix, max_create_revision),
						 timeout_ms, timeout_ms, tag);
}

/* A range request for one key, at the current revision or at revision (> 0). */
static cJSON *
key_range(const char *key, int64 revision)
{
	cJSON	   *range = new_object();

	add_base64(range, "key", key, strlen(key));
	if (revision > 0)
		add_int64(range, "revision", revision);
	return range;
}

static void
add_op(cJSON *ops, const char *kind, cJSON *request)
{
	cJSON	   *op = new_object();

	cJSON_AddItemToObject(op, kind, request);
	cJSON_AddItemToArray(ops, op);
}

/* The four reads of the election, in the order the result parser expects. */
static void
add_election_reads(cJSON *ops, const char *prefix, int64 max_create_revision,
				   const char *record_key, const char *term_key, const char *leader_key)
{
	add_op(ops, "request_range", candidates_range(prefix, max_create_revision));
	add_op(ops, "request_range", key_range(record_key, 0));
	add_op(ops, "request_range", key_range(term_key, 0));
	add_op(ops, "request_range", key_range(leader_key, 0));
}

/* Compares that hold while own_key, created at create_revision, is first in line. */
static void
add_first_in_line_compares(cJSON *txn, const char *prefix, const char *own_key,
						   int64 create_revision)
{
	cJSON	   *first = new_object();
	char	   *from = psprintf("%s/", prefix);
	char	   *to = psprintf("%s0", prefix);

	/* every candidate's key is at least as young as ours: ours leads */
	add_base64(first, "key", from, strlen(from));
	add_base64(first, "range_end", to, strlen(to));
	cJSON_AddStringToObject(first, "target", "CREATE");
	cJSON_AddStringToObject(first, "result", "GREATER");
	add_int64(first, "create_revision", create_revision - 1);
	add_create_revision_compare(txn, own_key, create_revision);
	cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(txn, "compare"), first);
	pfree(from);
	pfree(to);
}

/* A put, attached to lease unless it is 0. */
static void
add_put(cJSON *ops, const char *key, const char *value, int64 lease)
{
	cJSON	   *put = new_object();

	add_base64(put, "key", key, strlen(key));
	add_base64(put, "value", value, strlen(value));
	if (lease != 0)
		add_int64(put, "lease", lease);
	add_op(ops, "request_put", put);
}

EtcdRequest *
etcd_read_election(EtcdClient *c, const char *prefix, int64 max_create_revision,
				   const char *record_key, const char *term_key, const char *leader_key,
				   int timeout_ms, int tag)
{
	cJSON	   *body = new_object();

	/* a txn without compares: the reads at one revision */
	add_election_reads(cJSON_AddArrayToObject(body, "success"), prefix,
					   max_create_revision, record_key, term_key, leader_key);
	return post_and_free(c, ETCD_PATH_TXN, body, timeout_ms, timeout_ms, tag);
}

EtcdRequest *
etcd_read_succession(EtcdClient *c, const char *prefix, const char *record_key,
					 const char *term_key, const char *leader_key, const char *extra_prefix,
					 int timeout_ms, int tag)
{
	cJSON	   *body = new_object();
	cJSON	   *success = cJSON_AddArrayToObject(body, "success");
	cJSON	   *extra = new_object();
	char	   *end = pstrdup(extra_prefix);
	size_t		len = strlen(end);

	/* the range end of a prefix: its last byte plus one (a '.' or a '/' here) */
	Assert(len > 0 && (unsigned char) end[len - 1] < 0xff);
	end[len - 1]++;
	add_election_reads(success, prefix, 0, record_key, term_key, leader_key);
	add_base64(extra, "key", extra_prefix, len);
	add_base64(extra, "range_end", end, len);
	add_op(success, "request_range", extra);
	pfree(end);
	return post_and_free(c, ETCD_PATH_TXN, body, timeout_ms, timeout_ms, tag);
}

EtcdRequest *
etcd_put(EtcdClient *c, const char *key, const char *value, int64 lease, int timeout_ms,
		 int tag)
{
	cJSON	   *put = new_object();

	add_base64(put, "key", key, strlen(key));
	add_base64(put, "value", value, strlen(value));
	if (lease != 0)
		add_int64(put, "lease", lease);
	return post_and_free(c, ETCD_PATH_PUT, put, timeout_ms, timeout_ms, tag);
}

EtcdRequest *
etcd_delete(EtcdClient *c, const char *key, int timeout_ms, int tag)
{
	cJSON	   *del = new_object();

	add_base64(del, "key", key, strlen(key));
	return post_and_free(c, ETCD_PATH_DELETE, del, timeout_ms, timeout_ms, tag);
}

EtcdRequest *
etcd_confirm_term(EtcdClient *c, const char *prefix, const char *own_key,
				  int64 create_revision, const char *term_key, const char *term_value,
				  int64 term_written_at, const char *record_key, const char *leader_key,
				  int timeout_ms, int tag)
{
	cJSON	   *body = new_object();
	cJSON	   *success = cJSON_AddArrayToObject(body, "success");

	add_first_in_line_compares(body, prefix, own_key, create_revision);
	if (term_written_at > 0)
	{
		cJSON	   *cmp = new_object();

		add_base64(cmp, "key", term_key, strlen(term_key));
		cJSON_AddStringToObject(cmp, "target", "MOD");
		cJSON_AddStringToObject(cmp, "result", "EQUAL");
		add_int64(cmp, "mod_revision", term_written_at);
		cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(body, "compare"), cmp);
	}
	add_put(success, term_key, term_value, 0);
	add_election_reads(success, prefix, 0, record_key, term_key, leader_key);
	/* and if our key is not first, what is there instead */
	add_election_reads(cJSON_AddArrayToObject(body, "failure"), prefix, 0,
					   record_key, term_key, leader_key);
	return post_and_free(c, ETCD_PATH_TXN, body, timeout_ms, timeout_ms, tag);
}

EtcdRequest *
etcd_put_if_first(EtcdClient *c, const char *prefix, const char *own_key,
				  int64 create_revision, const char *key, const char *value, int64 lease,
				  const char *key2, const char *value2, int timeout_ms, int tag)
{
	cJSON	   *body = new_object();
	cJSON	   *success;

	add_first_in_line_compares(body, prefix, own_key, create_revision);
	success = cJSON_AddArrayToObject(body, "success");
	add_put(success, key, value, lease);
	if (key2 != NULL)
		add_put(success, key2, value2, 0);
	return post_and_free(c, ETCD_PATH_TXN, body, timeout_ms, timeout_ms, tag);
}

/* A txn (a TxnRequest) that deletes key if it is attached to lease. */
static cJSON *
delete_if_lease(const char *key, int64 lease)
{
	cJSON	   *txn = new_object();
	cJSON	   *cmp = new_object();
	cJSON	   *del = new_object();

	add_base64(cmp, "key", key, strlen(key));
	cJSON_AddStringToObject(cmp, "target", "LEASE");
	cJSON_AddStringToObject(cmp, "result", "EQUAL");
	add_int64(cmp, "lease", lease);
	cJSON_AddItemToArray(cJSON_AddArrayToObject(txn, "compare"), cmp);
	add_base64(del, "key", key, strlen(key));
	add_op(cJSON_AddArrayToObject(txn, "success"), "request_delete_range", del);
	return txn;
}

EtcdRequest *
etcd_delete_if_lease(EtcdClient *c, const char *key, int64 lease, int timeout_ms, int tag)
{
	return post_and_free(c, ETCD_PATH_TXN, delete_if_lease(key, lease), timeout_ms,
						 timeout_ms, tag);
}

EtcdRequest *
etcd_release(EtcdClient *c, const char *key, int64 create_revision,
			 const char *next_key, int64 next_revision,
			 const char *term_key, const char *term_value,
			 const char *record_key, const char *record_value,
			 const char *leader_key, int64 lease,
			 int timeout_ms, int tag)
{
	cJSON	   *body = new_object();
	cJSON	   *success = cJSON_AddArrayToObject(body, "success");
	cJSON	   *del = new_object();

	add_create_revision_compare(body, key, create_revision);
	if (next_key != NULL)
		add_create_revision_compare(body, next_key, next_revision);
	if (term_value != NULL)
		add_put(success, term_key, term_value, 0);
	if (record_value != NULL)
		add_put(success, record_key, record_value, 0);
	add_base64(del, "key", key, strlen(key));
	add_op(success, "request_delete_range", del);
	/* nested: a leader key that is not ours must not fail the release */
	if (leader_key != NULL && lease != 0)
		add_op(success, "request_txn", delete_if_lease(leader_key, lease));
	return post_and_free(c, ETCD_PATH_TXN, body, timeout_ms, timeout_ms, tag);
}

EtcdRequest *
etcd_read_key_at(EtcdClient *c, const char *key, int64 revision, int timeout_ms, int tag)
{
	cJSON	   *body = new_object();
	cJSON	   *success = cJSON_AddArrayToObject(body, "success");

	/* a txn without compares: both reads in one answer */
	add_op(success, "request_range", key_range(key, revision - 1));
	add_op(success, "request_range", key_range(key, revision));
	return post_and_free(c, ETCD_PATH_TXN, body, timeout_ms, timeout_ms, tag);
}

EtcdRequest *
etcd_watch_key(EtcdClient *c, const char *key, int64 start_revision,
			   int connect_timeout_ms, int tag)
{
	cJSON	   *body = new_object();
	cJSON	   *create = new_object();

	add_base64(create, "key", key, strlen(key));
	add_int64(create, "start_revision", start_revision);
	cJSON_AddItemToObject(body, "create_request", create);
	return post_and_free(c, ETCD_PATH_WATCH, body, 0, connect_timeout_ms, tag);
}

void
etcd_lease_hex(int64 lease_id, char *buf, size_t len)
{
	snprintf(buf, len, "%llx", (unsigned long long) lease_id);
}
