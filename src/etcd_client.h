/*
 * etcd_client.h
 *		HTTP transport to etcd's v3 JSON gateway: libcurl's multi interface
 *		driven from a PostgreSQL WaitEventSet, so that a process waiting for
 *		etcd still sees its latch and postmaster death at once.
 */
#ifndef LEADER_ELECTION_ETCD_CLIENT_H
#define LEADER_ELECTION_ETCD_CLIENT_H

#include <curl/curl.h>
#include <cjson/cJSON.h>

#include "etcd_access.h"
#include "shared_state.h"

/* Largest answer accepted; etcd's own default request limit is 1.5 MiB. */
#define ETCD_MAX_ANSWER		(2 * 1024 * 1024)

typedef struct EtcdClient EtcdClient;

typedef struct EtcdRequest
{
	int			tag;			/* caller's label, e.g. which call this is */
	uint64		started_us;		/* le_clock_us() when it was sent */
	bool		done;			/* transfer finished (fields below are set) */
	bool		transport_failed;	/* no usable HTTP answer: try elsewhere */
	CURLcode	curl_result;
	long		http_status;
	bool		overflow;		/* answer exceeded ETCD_MAX_ANSWER */
	/* why it was never sent, e.g. authentication failed ("" if it was) */
	char		failure[LE_ERROR_LEN];
	char	   *answer;			/* malloc'd by the write callback */
	size_t		answer_len;
	size_t		answer_consumed;	/* streams: bytes already taken as lines */
	char		endpoint[LE_URL_LEN];
	char		curl_error[CURL_ERROR_SIZE];
	CURL	   *easy;
	struct curl_slist *headers;
	EtcdClient *client;
	struct EtcdRequest *next;	/* client's list of live requests */

	/* kept to send it again once the client has a new token */
	char		path[64];
	char	   *body;			/* malloc'd JSON */
	int			timeout_ms;
	int			connect_timeout_ms;
	bool		awaits_token;	/* not sent yet: the client authenticates first */
	bool		sent_again;		/* sent again after a refused token: no more */
	uint32		token_generation;	/* of the token it was sent with */
} EtcdRequest;

extern EtcdClient *etcd_client_create(MemoryContext context);
extern void etcd_client_destroy(EtcdClient *client);

/*
 * TLS files and the etcd user for requests sent from now on.  A changed
 * user or password file drops the token: the next request authenticates.
 */
extern void etcd_client_set_access(EtcdClient *client, const EtcdAccess *access);

/* Takes the list parsed by the endpoints check hook; keeps the current one if listed. */
extern void etcd_client_set_endpoints(EtcdClient *client, const EtcdEndpoints *endpoints);
extern const char *etcd_client_endpoint(EtcdClient *client);
extern void etcd_client_next_endpoint(EtcdClient *client);
/* Makes endpoint the current one, if it is listed. */
extern void etcd_client_use_endpoint(EtcdClient *client, const char *endpoint);
/* A request to endpoint failed: move on, unless another one is current already. */
extern void etcd_client_endpoint_failed(EtcdClient *client, const char *endpoint);
extern int	etcd_client_endpoint_count(EtcdClient *client);

/*
 * Starts a POST of body (JSON) to path on the current endpoint.  timeout_ms
 * bounds the whole transfer; 0 means a stream (a watch) bounded only while
 * connecting, by connect_timeout_ms.  With an etcd user, a client without a
 * token authenticates first, and a request whose token etcd refuses is
 * sent once more after authenticating again: the caller sees only the
 * last answer, or in failure why authentication failed.
 */
extern EtcdRequest *etcd_post(EtcdClient *client, const char *path,
							  const cJSON *body, int timeout_ms,
							  int connect_timeout_ms, int tag);

/* Stops the transfer if it still runs and frees the request. */
extern void etcd_request_free(EtcdRequest *req);

/* Cancels and frees every live request. */
extern void etcd_client_cancel_all(EtcdClient *client);
extern bool etcd_client_idle(EtcdClient *client);

/*
 * Waits at most timeout_ms (-1: no limit of the caller's) for etcd traffic
 * and, with wake_events, for the latch and postmaster death too; lets curl
 * progress.  Returns the WL_LATCH_SET / WL_POSTMASTER_DEATH bits that fired.
 * Without wake_events it sleeps on the sockets and curl's timer only: a
 * process that already knows the postmaster died must not spin on it.
 */
extern int	etcd_client_wait(EtcdClient *client, long timeout_ms,
							 bool wake_events, uint32 wait_event_info);

/* A request that finished since the last call, or NULL. */
extern EtcdRequest *etcd_client_next_done(EtcdClient *client);

/*
 * Streams: the next complete newline-terminated message of the answer,
 * palloc'd, or NULL if none is complete yet.
 */
extern char *etcd_request_next_line(EtcdRequest *req);

#endif
