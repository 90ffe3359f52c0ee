/*
 * etcd_api.c
 *		Owns the etcd v3 JSON gateway protocol: paths, request bodies and the
 *		parsing of answers.  Keys and values travel base64-encoded and 64-bit
 *		integers as strings; zero values are omitted by etcd, so a missing
 *		number means 0.  Anything malformed is an error, never a guess.
 */
#include "postgres.h"

#include "common/base64.h"
#include "utils/builtins.h"

#include "etcd_api.h"
#include "printable.h"

#define ETCD_PATH_GRANT		"/v3/lease/grant"
#define ETCD_PATH_KEEPALIVE	"/v3/lease/keepalive"
#define ETCD_PATH_REVOKE	"/v3/lease/revoke"
#define ETCD_PATH_TXN		"/v3/kv/txn"
#define ETCD_PATH_RANGE		"/v3/kv/range"
#define ETCD_PATH_WATCH		"/v3/watch"

/*
 * Every message built here may quote etcd (its error text), so it is made
 * printable before anyone logs or shows it.
 */
static void set_error(char *err, const char *fmt,...) pg_attribute_printf(2, 3);

static void
set_error(char *err, const char *fmt,...)
{
	char		raw[LE_ERROR_LEN];
	va_list		args;

	va_start(args, fmt);
	vsnprintf(raw, sizeof(raw), fmt, args);
	va_end(args);
	le_printable(raw, strlen(raw), err, LE_ERROR_LEN);
}

/* ---- building requests ---- */

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

/* The three reads of the election, in the order the result parser expects. */
static void
add_election_reads(cJSON *ops, const char *prefix, int64 max_create_revision,
				   const char *record_key, const char *term_key)
{
	add_op(ops, "request_range", candidates_range(prefix, max_create_revision));
	add_op(ops, "request_range", key_range(record_key, 0));
	add_op(ops, "request_range", key_range(term_key, 0));
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

static void
add_put(cJSON *ops, const char *key, const char *value)
{
	cJSON	   *put = new_object();

	add_base64(put, "key", key, strlen(key));
	add_base64(put, "value", value, strlen(value));
	add_op(ops, "request_put", put);
}

EtcdRequest *
etcd_read_election(EtcdClient *c, const char *prefix, int64 max_create_revision,
				   const char *record_key, const char *term_key, int timeout_ms, int tag)
{
	cJSON	   *body = new_object();

	/* a txn without compares: the reads at one revision */
	add_election_reads(cJSON_AddArrayToObject(body, "success"), prefix,
					   max_create_revision, record_key, term_key);
	return post_and_free(c, ETCD_PATH_TXN, body, timeout_ms, timeout_ms, tag);
}

EtcdRequest *
etcd_confirm_term(EtcdClient *c, const char *prefix, const char *own_key,
				  int64 create_revision, const char *term_key, const char *term_value,
				  int64 term_written_at, const char *record_key, int timeout_ms, int tag)
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
	add_put(success, term_key, term_value);
	add_election_reads(success, prefix, 0, record_key, term_key);
	/* and if our key is not first, what is there instead */
	add_election_reads(cJSON_AddArrayToObject(body, "failure"), prefix, 0,
					   record_key, term_key);
	return post_and_free(c, ETCD_PATH_TXN, body, timeout_ms, timeout_ms, tag);
}

EtcdRequest *
etcd_put_if_first(EtcdClient *c, const char *prefix, const char *own_key,
				  int64 create_revision, const char *key, const char *value,
				  int timeout_ms, int tag)
{
	cJSON	   *body = new_object();

	add_first_in_line_compares(body, prefix, own_key, create_revision);
	add_put(cJSON_AddArrayToObject(body, "success"), key, value);
	return post_and_free(c, ETCD_PATH_TXN, body, timeout_ms, timeout_ms, tag);
}

EtcdRequest *
etcd_release(EtcdClient *c, const char *key, int64 create_revision,
			 const char *next_key, int64 next_revision,
			 const char *term_key, const char *term_value,
			 const char *record_key, const char *record_value,
			 int timeout_ms, int tag)
{
	cJSON	   *body = new_object();
	cJSON	   *success = cJSON_AddArrayToObject(body, "success");
	cJSON	   *del = new_object();

	add_create_revision_compare(body, key, create_revision);
	if (next_key != NULL)
		add_create_revision_compare(body, next_key, next_revision);
	if (term_value != NULL)
		add_put(success, term_key, term_value);
	if (record_value != NULL)
		add_put(success, record_key, record_value);
	add_base64(del, "key", key, strlen(key));
	add_op(success, "request_delete_range", del);
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

/* ---- reading answers ---- */

static const char *
get_string(const cJSON *obj, const char *field)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, field);

	return cJSON_IsString(item) ? item->valuestring : NULL;
}

static bool
get_bool(const cJSON *obj, const char *field)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, field));
}

/* etcd omits zero values; a present one must be a decimal integer. */
static bool
get_int64(const cJSON *obj, const char *field, int64 *out)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, field);

	*out = 0;
	if (item == NULL || cJSON_IsNull(item))
		return true;
	if (cJSON_IsString(item))
	{
		char	   *end;

		errno = 0;
		*out = strtoi64(item->valuestring, &end, 10);
		return errno == 0 && end != item->valuestring && *end == '\0';
	}
	if (cJSON_IsNumber(item))
	{
		double		d = item->valuedouble;

		/* exact integers only; converted after the check, not before it */
		if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0))
			return false;
		*out = (int64) d;
		return (double) *out == d;
	}
	return false;
}

/*
 * A base64 field as a palloc'd, NUL-terminated string ("" when omitted) of
 * *len bytes (it may contain NULs); NULL if invalid.
 */
static char *
get_base64(const cJSON *obj, const char *field, size_t *len)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, field);
	int			declen;
	char	   *decoded;
	int			n;

	*len = 0;
	if (item == NULL)
		return pstrdup("");
	if (!cJSON_IsString(item))
		return NULL;
	declen = pg_b64_dec_len((int) strlen(item->valuestring));
	decoded = palloc(declen + 1);
	n = pg_b64_decode(item->valuestring, (int) strlen(item->valuestring),
					  decoded, declen);
	if (n < 0)
	{
		pfree(decoded);
		return NULL;
	}
	decoded[n] = '\0';
	*len = n;
	return decoded;
}

/*
 * text (len bytes) as one JSON value with nothing after it but whitespace,
 * or NULL: an answer with more (a second object, a proxy's page appended)
 * is not one etcd sent.  The caller owns the result (cJSON_Delete).
 */
static cJSON *
parse_whole(const char *text, size_t len)
{
	const char *end = NULL;
	cJSON	   *json = cJSON_ParseWithLengthOpts(text, len, &end, false);

	if (json == NULL)
		return NULL;
	while (end < text + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
		end++;
	if (end != text + len)
	{
		cJSON_Delete(json);
		return NULL;
	}
	return json;
}

const char *
etcd_answer_error(const cJSON *json)
{
	const cJSON *error = cJSON_GetObjectItemCaseSensitive(json, "error");
	const char *message = get_string(json, "message");

	if (cJSON_IsObject(error))
		message = get_string(error, "message");
	else if (cJSON_IsString(error) && error->valuestring[0] != '\0')
		message = message ? message : error->valuestring;
	else
		return NULL;
	return (message != NULL && message[0] != '\0') ? message : "(no message)";
}

/*
 * Whether TLS failed: a certificate, a key or the handshake.  A server
 * that refuses our certificate sends an alert that curl reports as a
 * failed receive, with OpenSSL's words.
 */
static bool
is_tls_failure(EtcdRequest *req)
{
	if (strstr(req->curl_error, "SSL") != NULL)
		return true;
	switch (req->curl_result)
	{
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CIPHER:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_ISSUER_ERROR:
		case CURLE_SSL_CRL_BADFILE:
		case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		case CURLE_SSL_INVALIDCERTSTATUS:
			return true;
		default:
			return false;
	}
}

/*
 * The answer of a finished unary call as a JSON object, or NULL with err set.
 * The caller owns the result (cJSON_Delete).
 */
static cJSON *
answer_json(EtcdRequest *req, char *err)
{
	cJSON	   *json = NULL;
	const char *message;

	/* the client never got to send it (authentication failed) */
	if (req->failure[0] != '\0')
	{
		set_error(err, "%s", req->failure);
		return NULL;
	}
	if (req->overflow)
	{
		set_error(err, "answer from etcd at %s exceeds %d bytes",
				  req->endpoint, ETCD_MAX_ANSWER);
		return NULL;
	}
	if (req->curl_result != CURLE_OK)
	{
		/* with a status, etcd was reached: its answer broke off */
		if (req->http_status != 0)
			set_error(err, "answer from etcd at %s broke off: %s", req->endpoint,
					  req->curl_error[0] ? req->curl_error :
					  curl_easy_strerror(req->curl_result));
		else
			set_error(err, "%s etcd at %s: %s%s",
					  is_tls_failure(req) ? "TLS failed with" : "could not reach",
					  req->endpoint,
					  req->curl_error[0] ? req->curl_error :
					  curl_easy_strerror(req->curl_result),
					  strstr(req->curl_error, "private key") != NULL ?
					  " (is it the key of leader_election.cert_file?)" : "");
		return NULL;
	}
	if (req->answer != NULL)
		json = parse_whole(req->answer, req->answer_len);
	if (req->http_status != 200)
	{
		char	   *text = NULL;

		message = json ? etcd_answer_error(json) : NULL;
		/* a plain-text refusal (etcd's gateway has some): its first line */
		if (message == NULL && json == NULL && req->answer_len > 0)
		{
			text = pnstrdup(req->answer, Min(strcspn(req->answer, "\r\n"), 200));
			message = text[0] != '\0' ? text : NULL;
		}
		set_error(err, "etcd at %s answered HTTP %ld: %s", req->endpoint,
				  req->http_status, message ? message : "(no message)");
		cJSON_Delete(json);
		if (text)
			pfree(text);
		return NULL;
	}
	if (!cJSON_IsObject(json))
	{
		set_error(err, "etcd at %s sent an answer that is not a JSON object",
				  req->endpoint);
		cJSON_Delete(json);
		return NULL;
	}
	if ((message = etcd_answer_error(json)) != NULL)
	{
		set_error(err, "etcd at %s answered with an error: %s",
				  req->endpoint, message);
		cJSON_Delete(json);
		return NULL;
	}
	return json;
}

static bool
malformed(cJSON *json, EtcdRequest *req, const char *what, char *err)
{
	set_error(err, "etcd at %s sent a malformed answer: %s", req->endpoint, what);
	cJSON_Delete(json);
	return false;
}

bool
etcd_result_ok(EtcdRequest *req, char *err)
{
	cJSON	   *json = answer_json(req, err);

	cJSON_Delete(json);
	return json != NULL;
}

bool
etcd_lease_grant_result(EtcdRequest *req, int64 *lease_id, int *ttl_s, char *err)
{
	cJSON	   *json = answer_json(req, err);
	int64		ttl;

	if (json == NULL)
		return false;
	if (!get_int64(json, "ID", lease_id) || *lease_id <= 0)
		return malformed(json, req, "lease grant without a valid ID", err);
	if (!get_int64(json, "TTL", &ttl) || ttl <= 0 || ttl > PG_INT32_MAX)
		return malformed(json, req, "lease grant without a valid TTL", err);
	*ttl_s = (int) ttl;
	cJSON_Delete(json);
	return true;
}

bool
etcd_lease_keepalive_result(EtcdRequest *req, int *ttl_s, char *err)
{
	cJSON	   *json = answer_json(req, err);
	const cJSON *result;
	int64		ttl;

	if (json == NULL)
		return false;
	result = cJSON_GetObjectItemCaseSensitive(json, "result");
	if (!cJSON_IsObject(result))
		return malformed(json, req, "keepalive without a result", err);
	if (!get_int64(result, "TTL", &ttl) || ttl < 0 || ttl > PG_INT32_MAX)
		return malformed(json, req, "keepalive with an invalid TTL", err);
	*ttl_s = (int) ttl;
	cJSON_Delete(json);
	return true;
}

bool
etcd_campaign_result(EtcdRequest *req, int64 *create_revision, char *err)
{
	cJSON	   *json = answer_json(req, err);

	if (json == NULL)
		return false;
	if (get_bool(json, "succeeded"))
	{
		/* The put is the txn's only write: its revision is the creation. */
		const cJSON *header = cJSON_GetObjectItemCaseSensitive(json, "header");

		if (!get_int64(header, "revision", create_revision) || *create_revision <= 0)
			return malformed(json, req, "txn without a valid header revision", err);
	}
	else
	{
		/* The key existed already: keep its place in the queue. */
		const cJSON *responses = cJSON_GetObjectItemCaseSensitive(json, "responses");
		const cJSON *range = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(responses, 0),
															  "response_range");
		const cJSON *kv = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(range, "kvs"), 0);

		if (!cJSON_IsObject(kv) ||
			!get_int64(kv, "create_revision", create_revision) || *create_revision <= 0)
			return malformed(json, req, "failed txn without the existing key", err);
	}
	cJSON_Delete(json);
	return true;
}

/*
 * The candidates of a range answer (a RangeResponse object) at revision;
 * false with err set if anything in it is not what the read asked for.
 */
static bool
parse_candidates(const cJSON *range, int64 revision, const char *prefix,
				 EtcdRequest *req, EtcdCandidates *candidates, char *err)
{
	const cJSON *kvs = cJSON_GetObjectItemCaseSensitive(range, "kvs");
	const cJSON *kv;
	size_t		prefix_len = strlen(prefix);
	int			i = 0;
	char	   *value;
	size_t		key_len;
	size_t		value_len;

	candidates->revision = revision;
	if (kvs != NULL && !cJSON_IsArray(kvs))
		return malformed(NULL, req, "range with kvs that are not an array", err);
	candidates->count = cJSON_GetArraySize(kvs);
	candidates->keys = palloc0(sizeof(EtcdKeyValue) * Max(candidates->count, 1));
	cJSON_ArrayForEach(kv, kvs)
	{
		EtcdKeyValue *k = &candidates->keys[i];

		k->key = get_base64(kv, "key", &key_len);
		value = get_base64(kv, "value", &value_len);
		if (k->key == NULL || value == NULL)
			return malformed(NULL, req, "key or value is not base64", err);
		if (strlen(k->key) != key_len)
			return malformed(NULL, req, "key with a NUL byte", err);
		k->name = palloc(LE_NAME_LEN);
		le_printable(value, value_len, k->name, LE_NAME_LEN);
		if (strncmp(k->key, prefix, prefix_len) != 0 || k->key[prefix_len] != '/')
			return malformed(NULL, req, "key outside the election prefix", err);
		if (!get_int64(kv, "create_revision", &k->create_revision) ||
			k->create_revision <= 0 || k->create_revision > revision ||
			!get_int64(kv, "lease", &k->lease))
			return malformed(NULL, req, "key with an invalid revision or lease", err);
		if (i > 0 && k->create_revision <= candidates->keys[i - 1].create_revision)
			return malformed(NULL, req, "keys not in create-revision order", err);
		i++;
	}
	return true;
}

/* The store revision in an answer's header, which every answer must have. */
static bool
header_revision(const cJSON *json, int64 *revision)
{
	return get_int64(cJSON_GetObjectItemCaseSensitive(json, "header"), "revision",
					 revision) && *revision > 0;
}

bool
etcd_range_candidates_result(EtcdRequest *req, const char *prefix,
							 EtcdCandidates *candidates, char *err)
{
	cJSON	   *json = answer_json(req, err);
	int64		revision;
	bool		ok;

	if (json == NULL)
		return false;
	if (!header_revision(json, &revision))
		return malformed(json, req, "range without a valid header revision", err);
	ok = parse_candidates(json, revision, prefix, req, candidates, err);
	cJSON_Delete(json);
	return ok;
}

/*
 * A single-key range answer (a RangeResponse object): the key's value and
 * revisions if it exists.  False if the answer is not one.
 */
static bool
parse_single_key(const cJSON *range, bool *found, char **value, size_t *len,
				 int64 *create_revision, int64 *mod_revision)
{
	const cJSON *kvs = cJSON_GetObjectItemCaseSensitive(range, "kvs");
	const cJSON *kv;

	*found = false;
	*value = NULL;
	*len = 0;
	*create_revision = 0;
	*mod_revision = 0;
	if (!cJSON_IsObject(range) || (kvs != NULL && !cJSON_IsArray(kvs)) ||
		cJSON_GetArraySize(kvs) > 1)
		return false;
	if (cJSON_GetArraySize(kvs) == 0)
		return true;
	kv = cJSON_GetArrayItem(kvs, 0);
	*found = true;
	*value = get_base64(kv, "value", len);
	return *value != NULL &&
		get_int64(kv, "create_revision", create_revision) && *create_revision > 0 &&
		get_int64(kv, "mod_revision", mod_revision) && *mod_revision >= *create_revision;
}

/* The range answers of a txn, in order, skipping the answers of its writes. */
static int
range_answers(const cJSON *json, const cJSON **ranges, int max)
{
	const cJSON *response;
	int			n = 0;

	cJSON_ArrayForEach(response, cJSON_GetObjectItemCaseSensitive(json, "responses"))
	{
		const cJSON *range = cJSON_GetObjectItemCaseSensitive(response, "response_range");

		if (range == NULL)
			continue;
		if (n == max)
			return max + 1;
		ranges[n++] = range;
	}
	return n;
}

bool
etcd_read_election_result(EtcdRequest *req, const char *prefix,
						  EtcdElectionRead *read, char *err)
{
	cJSON	   *json = answer_json(req, err);
	const cJSON *ranges[3];
	int64		revision;
	int64		unused;

	if (json == NULL)
		return false;
	if (!header_revision(json, &revision))
		return malformed(json, req, "txn without a valid header revision", err);
	/* a plain read always succeeds; a confirmation only while our key is first */
	read->confirmed = get_bool(json, "succeeded");
	if (range_answers(json, ranges, 3) != 3)
		return malformed(json, req, "read of the election without its three answers", err);
	if (!parse_candidates(ranges[0], revision, prefix, req, &read->queue, err))
	{
		cJSON_Delete(json);
		return false;
	}
	if (!parse_single_key(ranges[1], &read->record_found, &read->record_value,
						  &read->record_len, &unused, &unused))
		return malformed(json, req, "read of the cluster record without a valid range answer", err);
	if (!parse_single_key(ranges[2], &read->term_found, &read->term_value,
						  &read->term_len, &unused, &read->term_mod_revision) ||
		read->term_mod_revision > revision)
		return malformed(json, req, "read of the leadership term without a valid range answer", err);
	cJSON_Delete(json);
	return true;
}

bool
etcd_read_key_at_result(EtcdRequest *req, int64 *create_revision_before, bool *exists_at,
						char *err)
{
	cJSON	   *json = answer_json(req, err);
	const cJSON *ranges[2];
	bool		found;
	char	   *value;
	size_t		len;
	int64		create_revision;
	int64		mod_revision;

	if (json == NULL)
		return false;
	if (range_answers(json, ranges, 2) != 2)
		return malformed(json, req, "read of a key's history without its two answers", err);
	if (!parse_single_key(ranges[0], &found, &value, &len, &create_revision, &mod_revision))
		return malformed(json, req, "read of a key's history without a valid range answer", err);
	*create_revision_before = found ? create_revision : 0;
	if (!parse_single_key(ranges[1], exists_at, &value, &len, &create_revision, &mod_revision))
		return malformed(json, req, "read of a key's history without a valid range answer", err);
	cJSON_Delete(json);
	return true;
}

bool
etcd_txn_result(EtcdRequest *req, bool *succeeded, char *err)
{
	cJSON	   *json = answer_json(req, err);
	int64		revision;

	if (json == NULL)
		return false;
	if (!header_revision(json, &revision))
		return malformed(json, req, "txn without a valid header revision", err);
	*succeeded = get_bool(json, "succeeded");
	cJSON_Delete(json);
	return true;
}

EtcdWatchEvent
etcd_watch_next(EtcdRequest *req, int64 *revision, char *err)
{
	char	   *line;
	cJSON	   *json;
	const cJSON *result;
	const cJSON *event;
	const char *message;
	EtcdWatchEvent what = ETCD_WATCH_OTHER;
	size_t		consumed = req->answer_consumed;

	*revision = 0;
	/* etcd refused the watch as a whole: the answer is one error object */
	if (req->http_status != 200 && (req->done || req->http_status != 0))
	{
		cJSON_Delete(answer_json(req, err));
		return ETCD_WATCH_BROKEN;
	}
	line = etcd_request_next_line(req);
	if (line == NULL)
	{
		if (!req->done)
			return ETCD_WATCH_NOTHING;
		if (req->curl_result == CURLE_OK)
			set_error(err, "etcd at %s ended the watch", req->endpoint);
		else
			cJSON_Delete(answer_json(req, err));
		return ETCD_WATCH_BROKEN;
	}
	/*
	 * etcd_request_next_line() took the line and its newline; its copy of a
	 * line with a NUL byte ended there, short of the newline.
	 */
	if (req->answer_consumed > consumed &&
		strlen(line) != req->answer_consumed - consumed - 1)
		json = NULL;
	else
		json = parse_whole(line, strlen(line));
	pfree(line);
	if (!cJSON_IsObject(json))
	{
		set_error(err, "etcd at %s sent a watch message that is not JSON", req->endpoint);
		cJSON_Delete(json);
		return ETCD_WATCH_BROKEN;
	}
	if ((message = etcd_answer_error(json)) != NULL)
	{
		set_error(err, "etcd at %s ended the watch with an error: %s",
				  req->endpoint, message);
		cJSON_Delete(json);
		return ETCD_WATCH_BROKEN;
	}
	result = cJSON_GetObjectItemCaseSensitive(json, "result");
	if (!cJSON_IsObject(result))
	{
		set_error(err, "etcd at %s sent a watch message without a result", req->endpoint);
		cJSON_Delete(json);
		return ETCD_WATCH_BROKEN;
	}
	if (get_bool(result, "canceled"))
	{
		int64		compacted;

		what = ETCD_WATCH_CANCELED;
		if (get_int64(result, "compact_revision", &compacted) && compacted > 0)
			set_error(err, "etcd at %s compacted its history up to revision " INT64_FORMAT ", past the revision a watch started from",
					  req->endpoint, compacted);
		else
			set_error(err, "etcd at %s canceled a watch: %s", req->endpoint,
					  get_string(result, "cancel_reason") ? get_string(result, "cancel_reason") :
					  "(no reason given)");
	}
	else if (get_bool(result, "created"))
		what = ETCD_WATCH_CREATED;
	cJSON_ArrayForEach(event, cJSON_GetObjectItemCaseSensitive(result, "events"))
	{
		const char *type = get_string(event, "type");
		int64		event_revision;

		if (what == ETCD_WATCH_CANCELED || what == ETCD_WATCH_DELETED)
			break;
		/* etcd omits the type of a PUT, its zero value */
		what = (type != NULL && strcmp(type, "DELETE") == 0) ?
			ETCD_WATCH_DELETED : ETCD_WATCH_PUT;
		if (!get_int64(cJSON_GetObjectItemCaseSensitive(event, "kv"), "mod_revision",
					   &event_revision) || event_revision <= 0)
		{
			set_error(err, "etcd at %s sent a watch event without a valid revision",
					  req->endpoint);
			cJSON_Delete(json);
			return ETCD_WATCH_BROKEN;
		}
		*revision = event_revision;
	}
	cJSON_Delete(json);
	return what;
}
