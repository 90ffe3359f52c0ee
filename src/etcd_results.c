/*
 * etcd_results.c
 *		Owns the reading of etcd's answers over the v3 JSON gateway: each
 *		*_result function of etcd_api.h and the watch stream.  Keys and
 *		values travel base64-encoded and 64-bit integers as strings; zero
 *		values are omitted by etcd, so a missing number means 0.  Anything
 *		malformed is an error, never a guess, and every error message is
 *		printable, whatever etcd sent.
 */
#include "postgres.h"

#include "common/base64.h"
#include "utils/builtins.h"

#include "etcd_api.h"
#include "printable.h"

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
 * A single-key range answer (a RangeResponse object): the key's value,
 * revisions and lease if it exists.  False if the answer is not one.
 */
static bool
parse_single_key(const cJSON *range, bool *found, char **value, size_t *len,
				 int64 *create_revision, int64 *mod_revision, int64 *lease)
{
	const cJSON *kvs = cJSON_GetObjectItemCaseSensitive(range, "kvs");
	const cJSON *kv;

	*found = false;
	*value = NULL;
	*len = 0;
	*create_revision = 0;
	*mod_revision = 0;
	*lease = 0;
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
		get_int64(kv, "mod_revision", mod_revision) && *mod_revision >= *create_revision &&
		get_int64(kv, "lease", lease);
}

/* The keys and values of a range answer, as stored; false if one is not base64. */
static bool
parse_extra(const cJSON *range, EtcdElectionRead *read)
{
	const cJSON *kvs = cJSON_GetObjectItemCaseSensitive(range, "kvs");
	const cJSON *kv;
	int			count = cJSON_GetArraySize(kvs);
	size_t		key_len;

	if (kvs != NULL && !cJSON_IsArray(kvs))
		return false;
	read->extra_keys = palloc0(sizeof(char *) * Max(count, 1));
	read->extra_values = palloc0(sizeof(char *) * Max(count, 1));
	read->extra_lens = palloc0(sizeof(size_t) * Max(count, 1));
	cJSON_ArrayForEach(kv, kvs)
	{
		int			i = read->nextra;

		read->extra_keys[i] = get_base64(kv, "key", &key_len);
		read->extra_values[i] = get_base64(kv, "value", &read->extra_lens[i]);
		if (read->extra_keys[i] == NULL || read->extra_values[i] == NULL ||
			strlen(read->extra_keys[i]) != key_len)
			return false;
		read->nextra++;
	}
	return true;
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
	const cJSON *ranges[5];
	int			nranges;
	int64		revision;
	int64		unused;
	int64		mod_revision;

	if (json == NULL)
		return false;
	if (!header_revision(json, &revision))
		return malformed(json, req, "txn without a valid header revision", err);
	/* a plain read always succeeds; a confirmation only while our key is first */
	read->confirmed = get_bool(json, "succeeded");
	nranges = range_answers(json, ranges, 5);
	if (nranges != 4 && nranges != 5)
		return malformed(json, req, "read of the election without its four answers", err);
	read->nextra = 0;
	if (nranges == 5 && !parse_extra(ranges[4], read))
		return malformed(json, req, "range of WAL positions with keys or values that are not base64", err);
	if (!parse_candidates(ranges[0], revision, prefix, req, &read->queue, err))
	{
		cJSON_Delete(json);
		return false;
	}
	if (!parse_single_key(ranges[1], &read->record_found, &read->record_value,
						  &read->record_len, &unused, &read->record_mod_revision, &unused) ||
		read->record_mod_revision > revision)
		return malformed(json, req, "read of the cluster record without a valid range answer", err);
	if (!parse_single_key(ranges[2], &read->term_found, &read->term_value,
						  &read->term_len, &unused, &read->term_mod_revision, &unused) ||
		read->term_mod_revision > revision)
		return malformed(json, req, "read of the leadership term without a valid range answer", err);
	if (!parse_single_key(ranges[3], &read->leader_found, &read->leader_value,
						  &read->leader_len, &unused, &mod_revision, &read->leader_lease) ||
		mod_revision > revision)
		return malformed(json, req, "read of the leader key without a valid range answer", err);
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
	int64		lease;

	if (json == NULL)
		return false;
	if (range_answers(json, ranges, 2) != 2)
		return malformed(json, req, "read of a key's history without its two answers", err);
	if (!parse_single_key(ranges[0], &found, &value, &len, &create_revision, &mod_revision,
						  &lease))
		return malformed(json, req, "read of a key's history without a valid range answer", err);
	*create_revision_before = found ? create_revision : 0;
	if (!parse_single_key(ranges[1], exists_at, &value, &len, &create_revision, &mod_revision,
						  &lease))
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
