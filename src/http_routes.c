/*
 * http_routes.c
 *		Owns the HTTP endpoint's routes: for each path, the check it makes
 *		on a NodeSnapshot and the document it answers with.  Pure: it runs
 *		inside libmicrohttpd's callback, so it neither allocates nor raises
 *		errors.
 *
 * The checks, as Patroni's REST API makes them:
 *	/, /primary, /leader, /master, /read-write   this node leads, writable
 *	/replica[?lag=size]     a streaming standby, within lag if given
 *	/read-only[?lag=size]   the leader, or such a standby
 *	/sync, /synchronous     a streaming standby the record names synchronous
 *	/async, /asynchronous   a streaming standby it does not, within lag
 *	/health                 PostgreSQL takes connections, the worker runs
 *	/liveness               the worker's loop turns
 *	/readiness              the leader, or a streaming standby
 *	/status, /patroni, /cluster, /metrics   always 200: documents
 * 200 when the check holds, else 503; the status document goes with both.
 */
#include "postgres.h"

#include "http_routes.h"

typedef enum RouteCheck
{
	CHECK_PRIMARY,
	CHECK_REPLICA,
	CHECK_READ_ONLY,
	CHECK_SYNC,
	CHECK_ASYNC,
	CHECK_HEALTH,
	CHECK_LIVENESS,
	CHECK_READINESS,
	CHECK_NONE					/* a document: always there */
} RouteCheck;

typedef struct Route
{
	const char *path;
	RouteCheck	check;
	HttpBody	body;
} Route;

static const Route routes[] = {
	{"/", CHECK_PRIMARY, HTTP_BODY_STATUS},
	{"/primary", CHECK_PRIMARY, HTTP_BODY_STATUS},
	{"/leader", CHECK_PRIMARY, HTTP_BODY_STATUS},
	{"/master", CHECK_PRIMARY, HTTP_BODY_STATUS},
	{"/read-write", CHECK_PRIMARY, HTTP_BODY_STATUS},
	{"/replica", CHECK_REPLICA, HTTP_BODY_STATUS},
	{"/read-only", CHECK_READ_ONLY, HTTP_BODY_STATUS},
	{"/sync", CHECK_SYNC, HTTP_BODY_STATUS},
	{"/synchronous", CHECK_SYNC, HTTP_BODY_STATUS},
	{"/async", CHECK_ASYNC, HTTP_BODY_STATUS},
	{"/asynchronous", CHECK_ASYNC, HTTP_BODY_STATUS},
	{"/health", CHECK_HEALTH, HTTP_BODY_STATUS},
	{"/liveness", CHECK_LIVENESS, HTTP_BODY_STATUS},
	{"/readiness", CHECK_READINESS, HTTP_BODY_STATUS},
	{"/status", CHECK_NONE, HTTP_BODY_STATUS},
	{"/patroni", CHECK_NONE, HTTP_BODY_STATUS},
	{"/cluster", CHECK_NONE, HTTP_BODY_CLUSTER},
	{"/metrics", CHECK_NONE, HTTP_BODY_METRICS},
};

bool
http_parse_size(const char *text, uint64 *bytes)
{
	static const struct
	{
		const char *unit;
		int			shift;
	}			units[] = {
		{"", 0}, {"b", 0}, {"kb", 10}, {"mb", 20}, {"gb", 30}, {"tb", 40}
	};
	uint64		value = 0;
	const char *p = text;

	if (!isdigit((unsigned char) *p))
		return false;
	for (; isdigit((unsigned char) *p); p++)
	{
		if (value > (PG_UINT64_MAX - 9) / 10)
			return false;
		value = value * 10 + (uint64) (*p - '0');
	}
	while (*p == ' ')
		p++;
	for (size_t i = 0; i < lengthof(units); i++)
		if (pg_strcasecmp(p, units[i].unit) == 0)
		{
			if (units[i].shift > 0 && value > (PG_UINT64_MAX >> units[i].shift))
				return false;
			*bytes = value << units[i].shift;
			return true;
		}
	return false;
}

/* A streaming standby, within max_lag bytes of what its upstream sent. */
static bool
replica_within(const NodeSnapshot *s, bool lag_given, uint64 max_lag)
{
	return node_streams(s) &&
		(!lag_given || (uint64) Max(s->view.receive_lag_bytes, 0) <= max_lag);
}

static bool
check_holds(const NodeSnapshot *s, RouteCheck check, bool lag_given, uint64 max_lag)
{
	switch (check)
	{
		case CHECK_PRIMARY:
			return node_leads(s);
		case CHECK_REPLICA:
			return replica_within(s, lag_given, max_lag);
		case CHECK_READ_ONLY:
			return node_leads(s) || replica_within(s, lag_given, max_lag);
		case CHECK_SYNC:
			return node_streams(s) && le_view_sync_member(&s->view);
		case CHECK_ASYNC:
			return replica_within(s, lag_given, max_lag) && !le_view_sync_member(&s->view);
		case CHECK_HEALTH:
			return s->view.accepts_connections && s->worker_running;
		case CHECK_LIVENESS:
			return node_worker_live(s);
		case CHECK_READINESS:
			return node_leads(s) || node_streams(s);
		case CHECK_NONE:
			break;
	}
	return true;
}

bool
http_method_allowed(const char *method)
{
	return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ||
		strcmp(method, "OPTIONS") == 0;
}

static void
message(HttpAnswer *answer, unsigned int status, const char *text)
{
	answer->status = status;
	answer->body = HTTP_BODY_MESSAGE;
	strlcpy(answer->message, text, sizeof(answer->message));
}

void
http_route(const NodeSnapshot *s, const char *method, const char *path,
		   const char *lag, HttpAnswer *answer)
{
	const Route *route = NULL;
	uint64		max_lag = 0;
	bool		options = strcmp(method, "OPTIONS") == 0;

	memset(answer, 0, sizeof(*answer));
	if (!http_method_allowed(method))
	{
		message(answer, 405, "method not allowed: GET, HEAD and OPTIONS only\n");
		return;
	}
	for (size_t i = 0; i < lengthof(routes); i++)
		if (strcmp(path, routes[i].path) == 0)
			route = &routes[i];
	if (route == NULL)
	{
		message(answer, 404, "not found\n");
		return;
	}
	if (lag != NULL && !http_parse_size(lag, &max_lag))
	{
		message(answer, 400, "lag must be a size in bytes, such as 1048576, 16kB or 10MB\n");
		return;
	}
	answer->status = check_holds(s, route->check, lag != NULL, max_lag) ? 200 : 503;
	/* OPTIONS answers with the status code only, as Patroni does */
	answer->body = options ? HTTP_BODY_NONE : route->body;
}
