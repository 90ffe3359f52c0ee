/*
 * term_record.c
 *		Owns the leadership term in etcd (its key, its JSON form) and the rule
 *		of taking over: a node first in line leads only once the previous
 *		leader has provably stopped writing.
 *
 * Why.  A key can vanish while its owner still believes it leads: an
 * operator deletes it or revokes its lease while the owner's worker is
 * frozen, or its own-key watch is slow.  The owner then writes until its
 * validity ends, seconds later.  A successor that took over at once would
 * write too.
 *
 * How.  A leader's validity rests on two things, both measured from when
 * it sent them: its last answered lease renewal, and its last confirmation,
 * a write of the term that etcd accepts only while the leader's key is
 * first in line.  So a leader whose key is gone can confirm no more, and
 * its validity ends at most its TTL after its last confirmation, which
 * etcd applied before anyone could see it.  A node first in line therefore
 * takes over:
 * - at once, when the term is its own, or when the holder released it: it
 *   cleared its leadership in shared memory, saw no commit in flight, and
 *   wrote "released" in the transaction that deleted its key (the node
 *   checks that: the key existed just before the term's revision and not at
 *   it, so a release written by anyone else does not count);
 * - otherwise, once the holder's TTL (at least its own) has passed since it
 *   first saw the term as it is now -- at or after the holder's last
 *   confirmation.  The next in line watches the term, so after a crash it
 *   saw the last confirmation when it happened and takes over as soon as
 *   the lease expired; an operator's delete costs it up to one TTL;
 * - with no term, or an unreadable one, one TTL after the read that showed
 *   it missing (after it first saw the unreadable one): a new election
 *   cannot be told from one whose term was deleted while its leader, frozen
 *   or cut off, still writes.  So the first leader of a new election waits
 *   one TTL too.
 * The TTL waited for is the longest of the node's own, the holder's, and
 * any a holder wrote into a term the node read: nodes may differ.
 * Clocks are assumed to run at rates within 10% of each other, as for the
 * lease.
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "utils/builtins.h"

#include "printable.h"
#include "term_record.h"

#define TERM_SUFFIX ".term"
/* leader_election.lease_ttl's maximum: a longer TTL in etcd is not ours */
#define MAX_TTL_S	3600

void
term_record_key(const char *prefix, char *key, size_t len)
{
	/* '.' sorts before '/': outside the candidates' range <prefix>/ */
	snprintf(key, len, "%s%s", prefix, TERM_SUFFIX);
}

char *
term_record_encode(const char *key, int64 revision, const char *node, int ttl_s,
				   bool released, const SyncSet *sync)
{
	cJSON	   *json = cJSON_CreateObject();
	char		rev[32];
	char	   *text;
	char	   *result;

	if (json == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building the leadership term")));
	snprintf(rev, sizeof(rev), INT64_FORMAT, revision);
	cJSON_AddStringToObject(json, "key", key);
	cJSON_AddStringToObject(json, "revision", rev);
	cJSON_AddStringToObject(json, "node", node);
	cJSON_AddNumberToObject(json, "ttl", ttl_s);
	if (released)
		cJSON_AddTrueToObject(json, "released");
	if (sync != NULL)
	{
		cJSON_AddBoolToObject(json, "confirms_synchronous", true);
		sync_set_to_json(sync, json);
	}
	text = cJSON_PrintUnformatted(json);
	cJSON_Delete(json);
	if (text == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building the leadership term")));
	result = pstrdup(text);
	cJSON_free(text);
	return result;
}

static void
unreadable(TermRecord *term, const char *what, cJSON *json)
{
	term->readable = false;
	strlcpy(term->problem, what, sizeof(term->problem));
	cJSON_Delete(json);
}

void
term_record_decode(const char *value, size_t len, int64 mod_revision,
				   const char *prefix, TermRecord *term)
{
	cJSON	   *json = cJSON_ParseWithLength(value, len);
	const cJSON *key;
	const cJSON *revision;
	const cJSON *node;
	const cJSON *ttl;
	const cJSON *released;
	size_t		prefix_len = strlen(prefix);
	char	   *end;
	bool		by_hand;

	memset(term, 0, sizeof(*term));
	term->exists = true;
	term->mod_revision = mod_revision;
	if (!cJSON_IsObject(json))
		return unreadable(term, "it is not a JSON object", json);
	key = cJSON_GetObjectItemCaseSensitive(json, "key");
	revision = cJSON_GetObjectItemCaseSensitive(json, "revision");
	node = cJSON_GetObjectItemCaseSensitive(json, "node");
	ttl = cJSON_GetObjectItemCaseSensitive(json, "ttl");
	released = cJSON_GetObjectItemCaseSensitive(json, "released");

	if (!cJSON_IsString(key) || strlen(key->valuestring) >= LE_KEY_LEN ||
		strncmp(key->valuestring, prefix, prefix_len) != 0 ||
		key->valuestring[prefix_len] != '/')
		return unreadable(term, "key is not a key of this election", json);
	strlcpy(term->key, key->valuestring, sizeof(term->key));
	if (!cJSON_IsString(revision) || !isdigit((unsigned char) revision->valuestring[0]))
		return unreadable(term, "revision is not a decimal string", json);
	errno = 0;
	term->revision = strtoi64(revision->valuestring, &end, 10);
	if (errno != 0 || *end != '\0' || term->revision <= 0 || term->revision > mod_revision)
		return unreadable(term, "revision is not a create revision", json);
	if (!cJSON_IsString(node))
		return unreadable(term, "node is not a string", json);
	le_printable(node->valuestring, strlen(node->valuestring), term->node, LE_NAME_LEN);
	if (!cJSON_IsNumber(ttl) || ttl->valuedouble < 1 || ttl->valuedouble > PG_INT32_MAX)
		return unreadable(term, "ttl is not a number of seconds", json);
	term->ttl_s = (int) Min(ttl->valuedouble, MAX_TTL_S);
	if (released != NULL && !cJSON_IsBool(released))
		return unreadable(term, "released is not a boolean", json);
	term->released = cJSON_IsTrue(released);
	term->has_sync = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "confirms_synchronous"));
	if (term->has_sync && !sync_set_from_json(json, &term->sync, &by_hand))
		return unreadable(term, "synchronous_mode or synchronous is not what the leader writes", json);
	term->readable = true;
	cJSON_Delete(json);
}

bool
term_record_names(const TermRecord *term, const char *key, int64 revision)
{
	return term->exists && term->readable && term->revision == revision &&
		strcmp(term->key, key) == 0;
}

uint64
term_takeover_at(const TakeoverInput *input, char *why)
{
	const TermRecord *term = input->term;
	int			ttl_s = input->own_ttl_s;

	why[0] = '\0';
	ttl_s = Max(ttl_s, Min(input->longest_ttl_s, MAX_TTL_S));
	if (term_record_names(term, input->own_key, input->own_revision) && !term->released &&
		input->own_claim)
		return 0;
	if (!term->exists)
		snprintf(why, LE_ERROR_LEN,
				 "no leadership term is recorded in etcd: a new election, or one whose term was deleted");
	else if (!term->readable)
		snprintf(why, LE_ERROR_LEN,
				 "the leadership term in etcd is unreadable (%s)", term->problem);
	else if (term->released && input->release_verified)
		return 0;
	else
	{
		ttl_s = Max(ttl_s, term->ttl_s);
		snprintf(why, LE_ERROR_LEN,
				 "the previous leader \"%s\" (fencing token " INT64_FORMAT ") left without releasing leadership",
				 term->node, term->revision);
	}
	return input->term_seen_at + (uint64) ttl_s * 1000000;
}
