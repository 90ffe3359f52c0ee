/*
 * wal_position.c
 *		Owns the published WAL position of a queued standby: its key, its
 *		JSON form, and how two positions compare.
 *
 * A standby publishes its position once its stream ended, and withdraws it
 * when it streams again, so a position that exists describes WAL that no
 * longer grows.  The comparison is by timeline first: WAL of a later
 * timeline continues the history of the earlier one, so whoever received
 * it has more.
 */
#include "postgres.h"

#include "json_values.h"
#include "printable.h"
#include "wal_position.h"

#define POSITION_INFIX ".wal."

void
wal_position_key_prefix(const char *prefix, char *key, size_t len)
{
	/* not "<prefix>/...": no candidate's key */
	snprintf(key, len, "%s%s", prefix, POSITION_INFIX);
}

void
wal_position_key(const char *prefix, int64 lease, char *key, size_t len)
{
	snprintf(key, len, "%s%s%llx", prefix, POSITION_INFIX, (unsigned long long) lease);
}

char *
wal_position_encode(const WalPosition *position)
{
	cJSON	   *json = le_json_object("a WAL position");

	cJSON_AddStringToObject(json, "node", position->node);
	cJSON_AddNumberToObject(json, "timeline", position->timeline);
	le_json_add_lsn(json, "received", position->received);
	le_json_add_lsn(json, "flushed", position->flushed);
	return le_json_text(json, "a WAL position");
}

/* The lease of a key "<prefix>.wal.<hex>", or 0 if the key is not one. */
static int64
lease_of(const char *prefix, const char *key)
{
	char		start[LE_KEY_LEN];
	size_t		len;
	const char *hex;
	uint64		lease = 0;

	wal_position_key_prefix(prefix, start, sizeof(start));
	len = strlen(start);
	if (strncmp(key, start, len) != 0)
		return 0;
	hex = key + len;
	if (*hex == '\0' || strlen(hex) > 16)
		return 0;
	for (; *hex != '\0'; hex++)
	{
		if (!isxdigit((unsigned char) *hex) || isupper((unsigned char) *hex))
			return 0;
		lease = lease * 16 + (isdigit((unsigned char) *hex) ? *hex - '0' : *hex - 'a' + 10);
	}
	return (int64) lease;
}

bool
wal_position_decode(const char *prefix, const char *key, const char *value, size_t len,
					WalPosition *position)
{
	cJSON	   *json;
	const cJSON *node;
	const cJSON *timeline;
	bool		ok;

	memset(position, 0, sizeof(*position));
	position->lease = lease_of(prefix, key);
	if (position->lease <= 0)
		return false;
	json = cJSON_ParseWithLength(value, len);
	node = cJSON_GetObjectItemCaseSensitive(json, "node");
	timeline = cJSON_GetObjectItemCaseSensitive(json, "timeline");
	ok = cJSON_IsObject(json) &&
		cJSON_IsString(node) && strlen(node->valuestring) < LE_NAME_LEN &&
		cJSON_IsNumber(timeline) && timeline->valuedouble >= 1 &&
		timeline->valuedouble <= PG_UINT32_MAX &&
		timeline->valuedouble == (double) (TimeLineID) timeline->valuedouble &&
		le_json_lsn(cJSON_GetObjectItemCaseSensitive(json, "received"), &position->received) &&
		le_json_lsn(cJSON_GetObjectItemCaseSensitive(json, "flushed"), &position->flushed);
	if (ok)
	{
		le_printable(node->valuestring, strlen(node->valuestring), position->node,
					 sizeof(position->node));
		position->timeline = (TimeLineID) timeline->valuedouble;
	}
	cJSON_Delete(json);
	return ok;
}

int
wal_position_compare(const WalPosition *a, const WalPosition *b)
{
	if (a->timeline != b->timeline)
		return a->timeline < b->timeline ? -1 : 1;
	if (a->flushed != b->flushed)
		return a->flushed < b->flushed ? -1 : 1;
	return 0;
}
