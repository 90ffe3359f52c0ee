/*
 * status_document.c
 *		Owns the JSON documents of the HTTP endpoint (status_document.h):
 *		the status, with leader_status()'s fields under its column names
 *		(null where it shows NULL), and the queue as the node last read it.
 *
 * Rules: built with cJSON, whose memory is malloc's, so that nothing here
 * allocates from PostgreSQL or raises an error inside libmicrohttpd's
 * callback; 64-bit integers (lease ids, tokens) are written as exact
 * decimal numbers, not as doubles that would round them.  Strings come
 * from the view, already printable.
 */
#include "postgres.h"

#include <time.h>

#include <cjson/cJSON.h>

#include "datatype/timestamp.h"

#include "election_phase.h"
#include "json_values.h"
#include "status_document.h"

void
iso_timestamp(TimestampTz t, char *buf, size_t len)
{
	int64		unix_us = t + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
	time_t		seconds = (time_t) (unix_us / 1000000);
	int			micros = (int) (unix_us % 1000000);
	struct tm	tm;
	char		date[32];

	if (micros < 0)
	{
		micros += 1000000;
		seconds--;
	}
	if (gmtime_r(&seconds, &tm) == NULL ||
		strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		strlcpy(date, "1970-01-01T00:00:00", sizeof(date));
	snprintf(buf, len, "%s.%06dZ", date, micros);
}

static void
add_int64(cJSON *obj, const char *name, int64 value)
{
	char		digits[32];

	snprintf(digits, sizeof(digits), INT64_FORMAT, value);
	cJSON_AddItemToObject(obj, name, cJSON_CreateRaw(digits));
}

static void
add_text_or_null(cJSON *obj, const char *name, const char *text)
{
	if (text != NULL && text[0] != '\0')
		cJSON_AddStringToObject(obj, name, text);
	else
		cJSON_AddNullToObject(obj, name);
}

static void
add_time(cJSON *obj, const char *name, TimestampTz t)
{
	char		text[64];

	iso_timestamp(t, text, sizeof(text));
	cJSON_AddStringToObject(obj, name, text);
}

/*
 * text with the user information of every URL in it left out: an endpoint
 * written as http://user:password@host shows as http://host (no secret in
 * any answer; the error messages name the endpoint).
 */
static void
add_text_without_secrets(cJSON *obj, const char *name, const char *text)
{
	char		shown[LE_ERROR_LEN];
	size_t		out = 0;
	const char *p = text;

	if (text[0] == '\0')
	{
		cJSON_AddNullToObject(obj, name);
		return;
	}
	while (*p != '\0' && out + 1 < sizeof(shown))
	{
		const char *scheme_end = strstr(p, "://");
		const char *authority;
		size_t		span;

		if (scheme_end == NULL)
			scheme_end = p + strlen(p);
		else
			scheme_end += 3;
		span = Min((size_t) (scheme_end - p), sizeof(shown) - 1 - out);
		memcpy(shown + out, p, span);
		out += span;
		p = scheme_end;
		/* the authority ends at the first character a host cannot hold */
		authority = p;
		while (*p != '\0' && *p != '/' && *p != ' ' && *p != '@' && *p != '"' && *p != ',')
			p++;
		if (*p == '@')
			p++;				/* user information: left out */
		else
			p = authority;
	}
	shown[out] = '\0';
	cJSON_AddStringToObject(obj, name, shown);
}

static double
seconds(uint64 us)
{
	return (double) us / 1000000.0;
}

/* What leader_status() shows, under its column names. */
static void
add_status_columns(cJSON *doc, const NodeSnapshot *s, LeaderRole role)
{
	const LeaderView *v = &s->view;
	bool		disconnected = (role == LE_ROLE_DISCONNECTED);

	cJSON_AddStringToObject(doc, "role", le_role_name(role));
	add_text_or_null(doc, "node_name", v->node_name);
	add_text_or_null(doc, "leader_name", v->leader_known && !disconnected ? v->leader_name : NULL);
	if (v->queue_position >= 0 && !disconnected)
		cJSON_AddNumberToObject(doc, "queue_position", v->queue_position);
	else
		cJSON_AddNullToObject(doc, "queue_position");
	if (v->lease_id != 0)
		add_int64(doc, "lease_id", v->lease_id);
	else
		cJSON_AddNullToObject(doc, "lease_id");
	cJSON_AddNumberToObject(doc, "lease_ttl", v->lease_ttl);
	if (v->leader_known && !disconnected)
		add_int64(doc, "fencing_token", v->fencing_token);
	else
		cJSON_AddNullToObject(doc, "fencing_token");
	if (role == LE_ROLE_LEADER)
		add_time(doc, "valid_until",
				 s->taken_at + (TimestampTz) (s->valid_until_us - s->now_us));
	else
		cJSON_AddNullToObject(doc, "valid_until");
	add_text_without_secrets(doc, "endpoint", v->endpoint);
	add_text_without_secrets(doc, "last_error", v->last_error);
	add_time(doc, "role_since", s->role_since);
	cJSON_AddStringToObject(doc, "phase", election_phase_name(v->phase));
	if (v->timeline != 0)
	{
		cJSON_AddBoolToObject(doc, "in_recovery", v->in_recovery);
		cJSON_AddNumberToObject(doc, "timeline", v->timeline);
		cJSON_AddBoolToObject(doc, "eligible", v->eligible);
	}
	else
	{
		cJSON_AddNullToObject(doc, "in_recovery");
		cJSON_AddNullToObject(doc, "timeline");
		cJSON_AddNullToObject(doc, "eligible");
	}
	if (v->wal_lag_bytes >= 0)
		add_int64(doc, "wal_lag_bytes", v->wal_lag_bytes);
	else
		cJSON_AddNullToObject(doc, "wal_lag_bytes");
	add_text_or_null(doc, "ineligible_reason", v->ineligible_reason);
	if (v->published_lsn != 0)
		le_json_add_lsn(doc, "published_lsn", v->published_lsn);
	else
		cJSON_AddNullToObject(doc, "published_lsn");
	add_text_or_null(doc, "yielded", v->yielded);
	add_text_or_null(doc, "succession", v->succession_wait);
	if (v->sync_mode[0] != '\0')
	{
		cJSON	   *names = cJSON_AddArrayToObject(doc, "synchronous_standbys");

		for (int i = 0; i < v->sync_count; i++)
			cJSON_AddItemToArray(names, cJSON_CreateString(v->sync_names[i]));
		cJSON_AddStringToObject(doc, "synchronous_mode", v->sync_mode);
		cJSON_AddBoolToObject(doc, "synchronous_standby", le_view_sync_member(v));
		cJSON_AddBoolToObject(doc, "automatic_failover",
							  strcmp(v->sync_mode, "off") == 0 || v->sync_count > 0);
	}
	else
	{
		cJSON_AddNullToObject(doc, "synchronous_standbys");
		cJSON_AddNullToObject(doc, "synchronous_mode");
		cJSON_AddNullToObject(doc, "synchronous_standby");
		cJSON_AddNullToObject(doc, "automatic_failover");
	}
}

char *
status_document(const NodeSnapshot *s)
{
	cJSON	   *doc = cJSON_CreateObject();
	LeaderRole	role = node_role(s);
	uint64		loop_age = node_loop_age_us(s);
	char	   *text;

	if (doc == NULL)
		return NULL;
	add_status_columns(doc, s, role);
	/* the health the routes check */
	cJSON_AddStringToObject(doc, "prefix", s->prefix);
	cJSON_AddBoolToObject(doc, "accepts_writes", node_leads(s));
	cJSON_AddBoolToObject(doc, "streaming", node_streams(s));
	cJSON_AddBoolToObject(doc, "accepts_connections", s->view.accepts_connections);
	cJSON_AddBoolToObject(doc, "worker_running", s->worker_running);
	cJSON_AddBoolToObject(doc, "worker_live", node_worker_live(s));
	if (loop_age != PG_UINT64_MAX)
		cJSON_AddNumberToObject(doc, "worker_loop_age_seconds", seconds(loop_age));
	else
		cJSON_AddNullToObject(doc, "worker_loop_age_seconds");
	if (s->view.lease_valid_until > s->now_us)
		cJSON_AddNumberToObject(doc, "lease_valid_seconds",
								seconds(s->view.lease_valid_until - s->now_us));
	else
		cJSON_AddNumberToObject(doc, "lease_valid_seconds", 0);
	if (s->view.in_recovery)
	{
		le_json_add_lsn(doc, "received_lsn", s->view.received_lsn);
		le_json_add_lsn(doc, "replayed_lsn", s->view.replayed_lsn);
	}
	add_time(doc, "answered_at", s->taken_at);

	text = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	return text;
}

char *
cluster_document(const NodeSnapshot *s)
{
	cJSON	   *doc = cJSON_CreateObject();
	cJSON	   *members;
	char	   *text;

	if (doc == NULL)
		return NULL;
	cJSON_AddStringToObject(doc, "prefix", s->prefix);
	cJSON_AddStringToObject(doc, "node_name", s->view.node_name);
	if (s->queue.revision != 0)
		add_int64(doc, "read_revision", s->queue.revision);
	else
		cJSON_AddNullToObject(doc, "read_revision");
	cJSON_AddNumberToObject(doc, "read_count", s->queue.total);
	members = cJSON_AddArrayToObject(doc, "members");
	for (int i = 0; i < s->queue.count; i++)
	{
		cJSON	   *m = cJSON_CreateObject();
		char		lease_hex[24];

		cJSON_AddNumberToObject(m, "position", i);
		cJSON_AddStringToObject(m, "name", s->queue.entries[i].name);
		cJSON_AddStringToObject(m, "key", s->queue.entries[i].key);
		add_int64(m, "create_revision", s->queue.entries[i].create_revision);
		/* as etcdctl shows leases and as keys name them */
		snprintf(lease_hex, sizeof(lease_hex), "%llx",
				 (unsigned long long) s->queue.entries[i].lease);
		cJSON_AddStringToObject(m, "lease", lease_hex);
		cJSON_AddBoolToObject(m, "leader", i == 0);
		cJSON_AddBoolToObject(m, "self", strcmp(s->queue.entries[i].key, s->view.own_key) == 0);
		cJSON_AddItemToArray(members, m);
	}
	text = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	return text;
}
