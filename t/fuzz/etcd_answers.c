/*
 * etcd_answers.c
 *		libFuzzer target for the parsing of every answer etcd gives the
 *		extension: the *_result functions and etcd_watch_next() of
 *		src/etcd_results.c, the authenticate answer (src/etcd_auth.c), and
 *		the decoding of the values those answers carry (the leadership
 *		term, the cluster record), and the leader's comparison of the
 *		leader key with its own name and lease.
 *
 * One input is a selector byte and an answer body.  The selector's low
 * nibble chooses the parser (enum below), its high nibble how the transfer
 * ended (the outcomes table: HTTP 200 for 0, an error status, or a failure
 * of curl).  The body goes through etcd_client.c's own write callback, so
 * it is stored exactly as curl would leave it (malloc'd, NUL-terminated, at
 * most ETCD_MAX_ANSWER bytes); a watch answer is fed in chunks, with every
 * complete message read out in between, as the worker does.
 *
 * A parser must never crash, leak, read outside its answer, raise an
 * ereport(ERROR) (the shim aborts on one), nor say less than it should: a
 * failure always leaves a non-empty, printable message, and a success only
 * values that the election may trust (checked below; any breach aborts).
 *
 * The seed corpus (t/fuzz/corpus) holds real etcd 3.4 answers, captured by
 * t/fuzz/capture-corpus.sh.  Built and run by `make fuzz` (see Makefile).
 */

/*
 * The whole of src/etcd_client.c: its write callback is static.  Nothing
 * else of it runs here (its curl and wait functions meet the shim's stubs).
 */
#include "../../src/etcd_client.c"

#include "cluster_record.h"
#include "etcd_api.h"
#include "etcd_auth.h"
#include "term_record.h"
#include "wal_position.h"

#define FUZZ_PREFIX "/leader_election/tap"
#define FUZZ_ENDPOINT "http://127.0.0.1:2379"

/* frees everything palloc'd since the last call (a memory context reset) */
extern void fuzz_shim_reset(void);

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef enum Parser
{
	P_GRANT,
	P_KEEPALIVE,
	P_CAMPAIGN,
	P_RANGE,
	P_READ_ELECTION,
	P_READ_KEY_AT,
	P_TXN,
	P_RESULT_OK,
	P_WATCH,					/* the stream as one chunk */
	P_WATCH_BYTE,				/* one byte at a time */
	P_WATCH_SMALL,				/* 7 bytes at a time */
	P_WATCH_LARGE,				/* 512 bytes at a time */
	P_TERM_VALUE,				/* a term's value as read from etcd */
	P_RECORD_VALUE,				/* a cluster record's value */
	P_READ_ELECTION_2,			/* a spare selector: the richest parser */
	P_AUTH						/* an authenticate answer; a refused token */
} Parser;

/* How the transfer ended: curl's result, the HTTP status, an overflow. */
typedef struct Outcome
{
	long		http_status;
	CURLcode	curl_result;
	bool		overflow;
} Outcome;

static const Outcome outcomes[16] = {
	{200, CURLE_OK, false},
	{400, CURLE_OK, false},
	{401, CURLE_OK, false},
	{403, CURLE_OK, false},
	{404, CURLE_OK, false},
	{412, CURLE_OK, false},
	{429, CURLE_OK, false},
	{500, CURLE_OK, false},
	{503, CURLE_OK, false},
	{504, CURLE_OK, false},
	{307, CURLE_OK, false},		/* a redirect: never followed */
	{0, CURLE_COULDNT_CONNECT, false},
	{200, CURLE_RECV_ERROR, false}, /* cut off mid-answer */
	{0, CURLE_OPERATION_TIMEDOUT, false},
	{200, CURLE_WRITE_ERROR, true}, /* refused by the write callback */
	{204, CURLE_OK, false},
};

static const size_t watch_chunk[4] = {0, 1, 7, 512};	/* 0: all at once */

/* FUZZ_VERBOSE=1: say what each parser made of its input (to check seeds) */
static int	verbose = -1;

static void
say(const char *what, bool ok, const char *err)
{
	if (verbose < 0)
		verbose = getenv("FUZZ_VERBOSE") != NULL;
	if (verbose)
		fprintf(stderr, "  %s: %s%s\n", what, ok ? "ok" : "failed: ", ok ? "" : err);
}

static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "etcd_answers: %s%s%s\n", what, detail ? ": " : "",
			detail ? detail : "");
	abort();
}

/* A string shown to people: non-empty when it must be, printable ASCII, bounded. */
static void
check_printable(const char *s, size_t bufsize, bool nonempty, const char *what)
{
	size_t		len = strnlen(s, bufsize);

	if (len == bufsize)
		fail(what, "not NUL-terminated within its buffer");
	if (nonempty && len == 0)
		fail(what, "empty");
	for (size_t i = 0; i < len; i++)
		if ((unsigned char) s[i] < 0x20 || (unsigned char) s[i] > 0x7e)
			fail(what, "has a byte outside printable ASCII");
}

/* A failed parse must say why (err starts out as garbage to catch a silent one). */
static void
check_failure(const char *err)
{
	check_printable(err, LE_ERROR_LEN, true, "error message");
}

static void
check_candidates(const EtcdCandidates *c, int64 revision)
{
	size_t		prefix_len = strlen(FUZZ_PREFIX);

	if (c->revision != revision || c->revision <= 0 || c->count < 0)
		fail("candidates", "bad revision or count");
	for (int i = 0; i < c->count; i++)
	{
		const EtcdKeyValue *k = &c->keys[i];

		if (k->key == NULL || k->name == NULL)
			fail("candidates", "a key without its key or name");
		if (strncmp(k->key, FUZZ_PREFIX, prefix_len) != 0 || k->key[prefix_len] != '/')
			fail("candidates", "a key outside the prefix");
		check_printable(k->name, LE_NAME_LEN, false, "candidate name");
		if (k->create_revision <= 0 || k->create_revision > c->revision)
			fail("candidates", "a create revision out of range");
		if (i > 0 && k->create_revision <= c->keys[i - 1].create_revision)
			fail("candidates", "not in create-revision order");
	}
}

/* A standby's published WAL position, as the first in line decodes it. */
static void
decode_position(const char *key, const char *value, size_t len)
{
	WalPosition position;

	if (key == NULL || value == NULL)
		fail("read", "a WAL position without its key or value");
	if (wal_position_decode(FUZZ_PREFIX, key, value, len, &position))
	{
		check_printable(position.node, LE_NAME_LEN, false, "position node");
		if (position.lease <= 0 || position.timeline < 1)
			fail("position", "decoded with a bad lease or timeline");
	}
}

/*
 * The leader key, as the leader compares it (leader_key.c): anyone may have
 * written it, so its value must be exactly len bytes, NUL-terminated.
 */
static void
compare_leader_key(const EtcdElectionRead *read)
{
	static const char name[] = "node1";

	if (!read->leader_found)
	{
		if (read->leader_value != NULL || read->leader_len != 0 || read->leader_lease != 0)
			fail("read", "a leader key not found, with a value or a lease");
		return;
	}
	if (read->leader_value == NULL)
		fail("read", "a leader key without a value");
	if (read->leader_value[read->leader_len] != '\0')
		fail("read", "a leader key value not NUL-terminated at its length");
	say("leader key names node1",
		read->leader_len == strlen(name) &&
		memcmp(read->leader_value, name, read->leader_len) == 0, "no");
}

/* What the election does with the values of a read: decode them. */
static void
decode_values(const EtcdElectionRead *read)
{
	compare_leader_key(read);
	if (read->record_found)
	{
		ClusterRecord record;

		if (read->record_value == NULL)
			fail("read", "a record without a value");
		cluster_record_decode(read->record_value, read->record_len, &record);
		say("cluster record", record.readable, record.problem);
		if (!record.readable)
			check_printable(record.problem, LE_ERROR_LEN, true, "record problem");
	}
	for (int i = 0; i < read->nextra; i++)
		decode_position(read->extra_keys[i], read->extra_values[i], read->extra_lens[i]);
	if (read->term_found)
	{
		TermRecord	term;

		if (read->term_value == NULL)
			fail("read", "a term without a value");
		term_record_decode(read->term_value, read->term_len, read->term_mod_revision,
						   FUZZ_PREFIX, &term);
		say("term", term.readable, term.problem);
		if (!term.readable)
			check_printable(term.problem, LE_ERROR_LEN, true, "term problem");
		else
		{
			check_printable(term.node, LE_NAME_LEN, false, "term node");
			if (term.revision <= 0 || term.revision > read->term_mod_revision ||
				term.ttl_s < 1)
				fail("term", "readable with a bad revision or TTL");
		}
	}
}

/*
 * Whether an answer is one JSON value and whitespace, by cJSON's own check
 * (looser than the parsers': it takes any control byte for whitespace).
 */
static bool
one_json_value(const EtcdRequest *req)
{
	cJSON	   *json;
	bool		one;

	if (req->answer == NULL)
		return false;
	/* the write callback leaves a NUL after the answer: part of the check */
	json = cJSON_ParseWithLengthOpts(req->answer, req->answer_len + 1, NULL, true);
	one = (json != NULL);
	cJSON_Delete(json);
	return one;
}

static void
parse_unary(Parser parser, EtcdRequest *req)
{
	char		err[LE_ERROR_LEN];
	bool		ok = false;

	memset(err, 0x01, sizeof(err));
	switch (parser)
	{
		case P_GRANT:
			{
				int64		lease_id = -1;
				int			ttl = -1;

				ok = etcd_lease_grant_result(req, &lease_id, &ttl, err);
				if (ok && (lease_id <= 0 || ttl <= 0))
					fail("lease grant", "accepted a lease ID or TTL that is not positive");
				break;
			}
		case P_KEEPALIVE:
			{
				int			ttl = -1;

				ok = etcd_lease_keepalive_result(req, &ttl, err);
				if (ok && ttl < 0)
					fail("keepalive", "accepted a negative TTL");
				break;
			}
		case P_CAMPAIGN:
			{
				int64		create_revision = -1;

				ok = etcd_campaign_result(req, &create_revision, err);
				if (ok && create_revision <= 0)
					fail("campaign", "accepted a create revision that is not positive");
				break;
			}
		case P_RANGE:
			{
				EtcdCandidates candidates;

				memset(&candidates, 0, sizeof(candidates));
				ok = etcd_range_candidates_result(req, FUZZ_PREFIX, &candidates, err);
				if (ok)
					check_candidates(&candidates, candidates.revision);
				break;
			}
		case P_READ_ELECTION:
		case P_READ_ELECTION_2:
			{
				EtcdElectionRead read;

				memset(&read, 0, sizeof(read));
				ok = etcd_read_election_result(req, FUZZ_PREFIX, &read, err);
				if (ok)
				{
					check_candidates(&read.queue, read.queue.revision);
					if (read.term_mod_revision > read.queue.revision)
						fail("read", "a term written after the read's revision");
					decode_values(&read);
				}
				break;
			}
		case P_READ_KEY_AT:
			{
				int64		created_before = -1;
				bool		exists_at;

				ok = etcd_read_key_at_result(req, &created_before, &exists_at, err);
				if (ok && created_before < 0)
					fail("read key at", "a negative create revision");
				break;
			}
		case P_TXN:
			{
				bool		succeeded;

				ok = etcd_txn_result(req, &succeeded, err);
				break;
			}
		case P_RESULT_OK:
			ok = etcd_result_ok(req, err);
			break;
		default:
			fail("parse_unary", "not a unary parser");
	}
	say("unary", ok, err);
	if (!ok)
		check_failure(err);
	else if (req->overflow || req->curl_result != CURLE_OK || req->http_status != 200)
		fail("unary", "accepted an answer that did not arrive whole with HTTP 200");
	else if (!one_json_value(req))
		fail("unary", "accepted an answer that is not one JSON value");
}

/* Reads every complete message; false once the watch is over (broken, canceled). */
static bool
drain_watch(EtcdRequest *req, size_t max_messages)
{
	char		err[LE_ERROR_LEN];
	int64		revision;

	/* each message ends in a newline; a finished watch says BROKEN once more */
	for (size_t i = 0; i <= max_messages + 1; i++)
	{
		EtcdWatchEvent event;

		memset(err, 0x01, sizeof(err));
		event = etcd_watch_next(req, &revision, err);
		if (event != ETCD_WATCH_NOTHING)
		{
			static const char *const names[] = {"nothing", "created", "deleted",
			"put", "other", "canceled", "broken"};

			say(names[event], event != ETCD_WATCH_BROKEN, err);
		}
		switch (event)
		{
			case ETCD_WATCH_NOTHING:
				if (req->done)
					fail("watch", "a finished watch said NOTHING");
				return true;
			case ETCD_WATCH_CREATED:
			case ETCD_WATCH_OTHER:
			case ETCD_WATCH_CANCELED:
				if (revision != 0)
					fail("watch", "a revision without an event");
				if (event == ETCD_WATCH_CANCELED)
					return false;
				break;
			case ETCD_WATCH_PUT:
			case ETCD_WATCH_DELETED:
				if (revision <= 0)
					fail("watch", "an event without a positive revision");
				break;
			case ETCD_WATCH_BROKEN:
				check_failure(err);
				return false;
			default:
				fail("watch", "an unknown event");
		}
	}
	fail("watch", "more messages than newlines");
	return false;
}

static void
parse_watch(EtcdRequest *req, const Outcome *outcome, const uint8_t *body, size_t len,
			size_t chunk)
{
	size_t		newlines = 0;
	size_t		at = 0;
	bool		open = true;

	for (size_t i = 0; i < len; i++)
		newlines += (body[i] == '\n');
	if (chunk == 0)
		chunk = Max(len, 1);
	/* while it streams, curl has set no status yet */
	while (open && at < len)
	{
		size_t		n = Min(chunk, len - at);

		if (write_callback((char *) body + at, 1, n, req) != n)
		{
			/* curl ends the transfer */
			req->done = true;
			req->curl_result = CURLE_WRITE_ERROR;
			req->http_status = 200;
			open = false;
			break;
		}
		at += n;
		open = drain_watch(req, newlines);
	}
	if (!open && !req->done)
		return;					/* the worker cancels such a watch */
	if (!req->done)
	{
		req->done = true;
		req->curl_result = outcome->curl_result;
		req->http_status = outcome->http_status;
		req->overflow = req->overflow || outcome->overflow;
	}
	if (drain_watch(req, newlines))
		fail("watch", "a finished watch stayed open");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	EtcdRequest *req;
	Parser		parser;
	const Outcome *outcome;
	const uint8_t *body;
	size_t		len;

	if (size < 1)
		return 0;
	parser = (Parser) (data[0] & 0x0f);
	outcome = &outcomes[data[0] >> 4];
	body = data + 1;
	len = size - 1;

	req = palloc0(sizeof(EtcdRequest));
	strlcpy(req->endpoint, FUZZ_ENDPOINT, sizeof(req->endpoint));

	switch (parser)
	{
		case P_WATCH:
		case P_WATCH_BYTE:
		case P_WATCH_SMALL:
		case P_WATCH_LARGE:
			parse_watch(req, outcome, body, len, watch_chunk[parser - P_WATCH]);
			break;
		case P_TERM_VALUE:
			{
				TermRecord	term;

				/* the mod revision from the selector: below, at or above the revision */
				term_record_decode((const char *) body, len, (int64) (data[0] >> 4) * 7,
								   FUZZ_PREFIX, &term);
				say("term value", term.readable, term.problem);
				check_printable(term.readable ? term.node : term.problem,
								term.readable ? LE_NAME_LEN : LE_ERROR_LEN,
								!term.readable, "term");
				break;
			}
		case P_AUTH:
			{
				char		token[LE_TOKEN_LEN];
				char		err[LE_ERROR_LEN];
				EtcdAuthOutcome auth;

				memset(err, 0x01, sizeof(err));
				auth = etcd_auth_answer(outcome->http_status, (const char *) body, len,
										token, err);
				say("authenticate", auth != ETCD_AUTH_REFUSED, err);
				if (auth == ETCD_AUTH_REFUSED)
					check_failure(err);
				else if (auth == ETCD_AUTH_TOKEN)
				{
					/* it goes into an HTTP header as is */
					check_printable(token, LE_TOKEN_LEN, true, "token");
					if (strchr(token, ' ') != NULL)
						fail("authenticate", "a token with a space");
				}
				(void) etcd_auth_token_rejected((const char *) body, len);
				break;
			}
		case P_RECORD_VALUE:
			{
				ClusterRecord record;

				cluster_record_decode((const char *) body, len, &record);
				say("record value", record.readable, record.problem);
				if (!record.readable)
					check_printable(record.problem, LE_ERROR_LEN, true, "record problem");
				for (int i = 0; record.readable && i < record.sync.count; i++)
					if (record.sync.names[i][0] == '\0')
						fail("record", "an empty synchronous standby name");
				/* the same bytes as a standby's published WAL position */
				decode_position(FUZZ_PREFIX ".wal.1a2b", (const char *) body, len);
				break;
			}
		default:
			/* a unary answer arrives whole; an empty body calls no callback */
			if (len > 0 && write_callback((char *) body, 1, len, req) != len)
				fail("write callback", "refused a unary answer below the cap");
			req->done = true;
			req->curl_result = outcome->curl_result;
			req->http_status = outcome->http_status;
			req->overflow = outcome->overflow;
			parse_unary(parser, req);
			break;
	}
	free(req->answer);
	fuzz_shim_reset();
	return 0;
}
