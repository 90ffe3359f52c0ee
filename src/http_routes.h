/*
 * http_routes.h
 *		What the HTTP endpoint answers to a method and a path, from a
 *		NodeSnapshot: the status code and which document goes with it.  The
 *		status codes are Patroni's REST API's, so that HAProxy checks and
 *		Kubernetes probes written for Patroni work unchanged.
 */
#ifndef LEADER_ELECTION_HTTP_ROUTES_H
#define LEADER_ELECTION_HTTP_ROUTES_H

#include "node_snapshot.h"

typedef enum HttpBody
{
	HTTP_BODY_NONE,				/* HEAD, OPTIONS: the status code only */
	HTTP_BODY_STATUS,			/* the status document (JSON) */
	HTTP_BODY_CLUSTER,			/* the queue (JSON) */
	HTTP_BODY_METRICS,			/* Prometheus text */
	HTTP_BODY_MESSAGE			/* a short text: 404, 405, 400 */
} HttpBody;

#define HTTP_MESSAGE_LEN	160

typedef struct HttpAnswer
{
	unsigned int status;
	HttpBody	body;
	char		message[HTTP_MESSAGE_LEN];	/* HTTP_BODY_MESSAGE */
} HttpAnswer;

/*
 * The answer to method on path; lag is the query argument "lag" (NULL if
 * none).  Never fails: an unknown path is 404, another method 405, a
 * lag that is no size 400.
 */
extern void http_route(const NodeSnapshot *s, const char *method, const char *path,
					   const char *lag, HttpAnswer *answer);

/* GET, HEAD and OPTIONS: the methods answered (others get 405). */
extern bool http_method_allowed(const char *method);

/* A size such as "1048576", "16kB", "10 MB", "1GB" in bytes; false if none. */
extern bool http_parse_size(const char *text, uint64 *bytes);

#endif
