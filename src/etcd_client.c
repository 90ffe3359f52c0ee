/*
 * etcd_client.c
 *		Owns the HTTP side of talking to etcd: the curl multi handle, the
 *		list of endpoints, the sockets curl wants watched, the wait that
 *		combines them with the process latch, the TLS files each transfer
 *		uses, and the etcd user's token.
 *
 * curl callbacks run inside curl_multi_socket_action(); they only record
 * sockets and copy bytes into malloc'd buffers (no palloc, no ereport), and
 * everything else happens after curl returns.
 *
 * The token.  With leader_election.username set, the client holds one
 * token for all its requests.  A request sent without one waits
 * (awaits_token) for the one authenticate call in flight, which is not a
 * caller's request and is never shown to one; its answer sends every
 * waiting request or fails them all with the reason.  A request whose
 * token etcd refuses is not reported done: it waits for a new token and is
 * sent once more (a refused request changed nothing in etcd), unless a
 * newer token was already taken since it was sent.  So a token that
 * expires costs the caller one round trip, never a failure.
 *
 * No proxy.  Every transfer goes straight to the endpoint: http_proxy and
 * its relatives in the server's environment are ignored.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"

#include "counters.h"
#include "etcd_auth.h"
#include "etcd_client.h"

#define ETCD_MAX_SOCKETS	32

typedef struct WatchedSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
} WatchedSocket;

struct EtcdClient
{
	MemoryContext context;
	CURLM	   *multi;
	EtcdEndpoints endpoints;
	int			current;
	int			nsockets;
	WatchedSocket sockets[ETCD_MAX_SOCKETS];
	bool		timer_armed;
	uint64		timer_due_us;
	EtcdRequest *requests;

	EtcdAccess	access;
	char		token[LE_TOKEN_LEN];	/* "" until authenticated */
	uint32		token_generation;	/* bumped for each new token, or none */
	bool		auth_off_in_etcd;	/* etcd said it runs without users */
	EtcdRequest *authenticating;	/* the authenticate call in flight */
	/* after a refusal, requests fail with its reason until auth_retry_at */
	uint64		auth_retry_at;
	int			auth_backoff_ms;
	char		auth_refusal[LE_ERROR_LEN];
};

/* A refused authentication is tried again after 1 s, then 2, 4, up to 8 s. */
#define AUTH_BACKOFF_MIN_MS	1000
#define AUTH_BACKOFF_MAX_MS	8000

static bool curl_initialised = false;

/* curl: start, change or stop watching a socket. */
static int
socket_callback(CURL *easy pg_attribute_unused(), curl_socket_t fd, int what, void *clientp,
				void *socketp pg_attribute_unused())
{
	EtcdClient *client = clientp;
	int			i;

	for (i = 0; i < client->nsockets; i++)
		if (client->sockets[i].fd == fd)
			break;

	if (what == CURL_POLL_REMOVE)
	{
		if (i < client->nsockets)
			client->sockets[i] = client->sockets[--client->nsockets];
		return 0;
	}
	if (i == client->nsockets)
	{
		if (client->nsockets == ETCD_MAX_SOCKETS)
			return -1;			/* curl fails the transfer */
		client->nsockets++;
	}
	client->sockets[i].fd = fd;
	client->sockets[i].what = what;
	return 0;
}

/* curl: when it next wants curl_multi_socket_action(CURL_SOCKET_TIMEOUT). */
static int
timer_callback(CURLM *multi pg_attribute_unused(), long timeout_ms, void *clientp)
{
	EtcdClient *client = clientp;

	client->timer_armed = (timeout_ms >= 0);
	if (client->timer_armed)
		client->timer_due_us = le_clock_us() + (uint64) timeout_ms * 1000;
	return 0;
}

/* curl: answer bytes arrived.  Refusing them (return 0) aborts the transfer. */
static size_t
write_callback(char *data, size_t size, size_t nmemb, void *userdata)
{
	EtcdRequest *req = userdata;
	size_t		n = size * nmemb;
	size_t		unread = req->answer_len - req->answer_consumed;

	/* a stream's status is known before it ends: its lines are read meanwhile */
	if (req->http_status == 0)
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->http_status);

	/* Streams drop what was already taken before growing. */
	if (req->answer_consumed > 0)
	{
		memmove(req->answer, req->answer + req->answer_consumed, unread);
		req->answer_len = unread;
		req->answer_consumed = 0;
	}
	if (req->answer_len + n > ETCD_MAX_ANSWER)
	{
		req->overflow = true;
		return 0;
	}
	{
		char	   *grown = realloc(req->answer, req->answer_len + n + 1);

		if (grown == NULL)
		{
			req->overflow = true;
			return 0;
		}
		req->answer = grown;
	}
	memcpy(req->answer + req->answer_len, data, n);
	req->answer_len += n;
	req->answer[req->answer_len] = '\0';
	return n;
}

EtcdClient *
etcd_client_create(MemoryContext context)
{
	EtcdClient *client;

	if (!curl_initialised)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not initialise libcurl")));
		curl_initialised = true;
	}

	client = MemoryContextAllocZero(context, sizeof(EtcdClient));
	client->context = context;
	client->multi = curl_multi_init();
	if (client->multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	curl_multi_setopt(client->multi, CURLMOPT_SOCKETFUNCTION, socket_callback);
	curl_multi_setopt(client->multi, CURLMOPT_SOCKETDATA, client);
	curl_multi_setopt(client->multi, CURLMOPT_TIMERFUNCTION, timer_callback);
	curl_multi_setopt(client->multi, CURLMOPT_TIMERDATA, client);
	curl_multi_setopt(client->multi, CURLMOPT_MAXCONNECTS, 8L);
	return client;
}

void
etcd_client_destroy(EtcdClient *client)
{
	etcd_client_cancel_all(client);
	curl_multi_cleanup(client->multi);
	explicit_bzero(client->token, sizeof(client->token));
	pfree(client);
}

void
etcd_client_set_access(EtcdClient *client, const EtcdAccess *access)
{
	if (strcmp(access->username, client->access.username) != 0 ||
		strcmp(access->password_file, client->access.password_file) != 0)
	{
		explicit_bzero(client->token, sizeof(client->token));
		client->token_generation++;
		client->auth_off_in_etcd = false;
		/* new credentials are tried at once */
		client->auth_retry_at = 0;
		client->auth_backoff_ms = 0;
	}
	client->access = *access;
}

void
etcd_client_set_endpoints(EtcdClient *client, const EtcdEndpoints *endpoints)
{
	char		previous[LE_URL_LEN];
	int			i;

	strlcpy(previous, etcd_client_endpoint(client), sizeof(previous));
	client->endpoints = *endpoints;
	client->current = 0;
	for (i = 0; i < endpoints->count; i++)
		if (strcmp(endpoints->urls[i], previous) == 0)
			client->current = i;
}

const char *
etcd_client_endpoint(EtcdClient *client)
{
	if (client->endpoints.count == 0)
		return "";
	return client->endpoints.urls[client->current];
}

void
etcd_client_next_endpoint(EtcdClient *client)
{
	if (client->endpoints.count > 0)
		client->current = (client->current + 1) % client->endpoints.count;
}

void
etcd_client_use_endpoint(EtcdClient *client, const char *endpoint)
{
	for (int i = 0; i < client->endpoints.count; i++)
		if (strcmp(client->endpoints.urls[i], endpoint) == 0)
			client->current = i;
}

void
etcd_client_endpoint_failed(EtcdClient *client, const char *endpoint)
{
	if (strcmp(endpoint, etcd_client_endpoint(client)) == 0)
		etcd_client_next_endpoint(client);
}

int
etcd_client_endpoint_count(EtcdClient *client)
{
	return client->endpoints.count;
}

/* (Re)starts req's transfer on the current endpoint, with the current token. */
static void
start_transfer(EtcdRequest *req)
{
	EtcdClient *client = req->client;
	char		url[LE_URL_LEN + 64];

	if (req->easy != NULL)
	{
		curl_multi_remove_handle(client->multi, req->easy);
		curl_easy_cleanup(req->easy);
	}
	curl_slist_free_all(req->headers);
	free(req->answer);
	req->answer = NULL;
	req->answer_len = req->answer_consumed = 0;
	req->overflow = false;
	req->curl_error[0] = '\0';
	req->awaits_token = false;
	req->token_generation = client->token_generation;
	strlcpy(req->endpoint, etcd_client_endpoint(client), sizeof(req->endpoint));
	snprintf(url, sizeof(url), "%s%s", req->endpoint, req->path);

	req->easy = curl_easy_init();
	req->headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (req->headers != NULL && client->token[0] != '\0' &&
		req != client->authenticating)
	{
		char		header[LE_TOKEN_LEN + 32];

		snprintf(header, sizeof(header), "Authorization: %s", client->token);
		req->headers = curl_slist_append(req->headers, header);
		explicit_bzero(header, sizeof(header));
	}
	if (req->easy == NULL || req->headers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while preparing an etcd request")));

	curl_easy_setopt(req->easy, CURLOPT_URL, url);
	curl_easy_setopt(req->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(req->easy, CURLOPT_PROXY, "");
	curl_easy_setopt(req->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, req->headers);
	curl_easy_setopt(req->easy, CURLOPT_POSTFIELDS, req->body);
	curl_easy_setopt(req->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(req->body));
	curl_easy_setopt(req->easy, CURLOPT_WRITEFUNCTION, write_callback);
	curl_easy_setopt(req->easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(req->easy, CURLOPT_ERRORBUFFER, req->curl_error);
	curl_easy_setopt(req->easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(req->easy, CURLOPT_CONNECTTIMEOUT_MS, (long) req->connect_timeout_ms);
	curl_easy_setopt(req->easy, CURLOPT_TIMEOUT_MS, (long) req->timeout_ms);
	curl_easy_setopt(req->easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(req->easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (client->access.ca_file[0] != '\0')
		curl_easy_setopt(req->easy, CURLOPT_CAINFO, client->access.ca_file);
	if (client->access.cert_file[0] != '\0')
		curl_easy_setopt(req->easy, CURLOPT_SSLCERT, client->access.cert_file);
	if (client->access.key_file[0] != '\0')
		curl_easy_setopt(req->easy, CURLOPT_SSLKEY, client->access.key_file);
	if (req->timeout_ms == 0)
		curl_easy_setopt(req->easy, CURLOPT_TCP_KEEPALIVE, 1L);

	if (curl_multi_add_handle(client->multi, req->easy) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start an etcd request")));
}

static EtcdRequest *
new_request(EtcdClient *client, const char *path, char *body, int timeout_ms,
			int connect_timeout_ms, int tag)
{
	EtcdRequest *req = MemoryContextAllocZero(client->context, sizeof(EtcdRequest));

	if (body == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while preparing an etcd request")));
	req->client = client;
	req->tag = tag;
	req->started_us = le_clock_us();
	strlcpy(req->path, path, sizeof(req->path));
	req->body = body;
	req->timeout_ms = timeout_ms;
	req->connect_timeout_ms = connect_timeout_ms;
	return req;
}

static void
free_request_resources(EtcdRequest *req)
{
	if (req->easy != NULL)
	{
		/* Removing a finished handle is harmless; it is removed already. */
		curl_multi_remove_handle(req->client->multi, req->easy);
		curl_easy_cleanup(req->easy);
	}
	curl_slist_free_all(req->headers);
	free(req->answer);
	if (req->body != NULL)
	{
		/* an authenticate call's body holds the password */
		explicit_bzero(req->body, strlen(req->body));
		free(req->body);
	}
	pfree(req);
}

/* Every request waiting for a token is done, with message as its failure. */
static void
fail_waiting_requests(EtcdClient *client, const char *message, bool transport_failed)
{
	for (EtcdRequest *req = client->requests; req != NULL; req = req->next)
	{
		if (!req->awaits_token)
			continue;
		req->awaits_token = false;
		req->done = true;
		req->transport_failed = transport_failed;
		strlcpy(req->failure, message, sizeof(req->failure));
		strlcpy(req->endpoint, etcd_client_endpoint(client), sizeof(req->endpoint));
	}
}

/*
 * Starts the authenticate call if none is in flight, bounded like the
 * request that waits for it.  A password that cannot be read fails the
 * waiting requests at once.
 */
static void
authenticate(EtcdClient *client, const EtcdRequest *waiting)
{
	char		password[LE_PASSWORD_LEN];
	char		err[LE_ERROR_LEN];
	char		message[LE_ERROR_LEN];
	char	   *body;

	if (client->authenticating != NULL)
		return;
	/* a wrong password or user must not cost etcd an attempt per request */
	if (le_clock_us() < client->auth_retry_at)
	{
		fail_waiting_requests(client, client->auth_refusal, false);
		return;
	}
	if (client->access.password_file[0] == '\0')
	{
		snprintf(message, sizeof(message),
				 "could not authenticate to etcd as user \"%s\": leader_election.password_file is not set",
				 client->access.username);
		fail_waiting_requests(client, message, false);
		return;
	}
	if (!etcd_access_read_password(client->access.password_file, password,
								   sizeof(password), err))
	{
		snprintf(message, sizeof(message),
				 "could not authenticate to etcd as user \"%s\": %s",
				 client->access.username, err);
		fail_waiting_requests(client, message, false);
		return;
	}
	body = etcd_auth_request_body(client->access.username, password);
	explicit_bzero(password, sizeof(password));
	/* a stream is bounded only while it connects: so is its authentication */
	client->authenticating = new_request(client, ETCD_PATH_AUTHENTICATE, body,
										 waiting->timeout_ms > 0 ? waiting->timeout_ms :
										 waiting->connect_timeout_ms,
										 waiting->connect_timeout_ms, -1);
	start_transfer(client->authenticating);
}

/* Holds req until the client has a token, authenticating if need be. */
static void
await_token(EtcdRequest *req)
{
	req->awaits_token = true;
	authenticate(req->client, req);
}

static bool
needs_token(EtcdClient *client)
{
	return client->access.username[0] != '\0' && client->token[0] == '\0' &&
		!client->auth_off_in_etcd;
}

EtcdRequest *
etcd_post(EtcdClient *client, const char *path, const cJSON *body,
		  int timeout_ms, int connect_timeout_ms, int tag)
{
	EtcdRequest *req = new_request(client, path, cJSON_PrintUnformatted(body),
								   timeout_ms, connect_timeout_ms, tag);

	req->next = client->requests;
	client->requests = req;
	if (needs_token(client))
		await_token(req);
	else
		start_transfer(req);
	return req;
}

void
etcd_request_free(EtcdRequest *req)
{
	EtcdClient *client = req->client;
	EtcdRequest **link;

	for (link = &client->requests; *link != NULL; link = &(*link)->next)
	{
		if (*link == req)
		{
			*link = req->next;
			break;
		}
	}
	free_request_resources(req);
}

void
etcd_client_cancel_all(EtcdClient *client)
{
	while (client->requests != NULL)
		etcd_request_free(client->requests);
	if (client->authenticating != NULL)
		free_request_resources(client->authenticating);
	client->authenticating = NULL;
}

bool
etcd_client_idle(EtcdClient *client)
{
	return client->requests == NULL;
}

/*
 * A finished transfer got no usable answer from its endpoint (so the next
 * one is tried): no connection, a broken transfer, no status, or a 5xx.  An
 * answer refused for its size was etcd answering.
 */
static bool
no_usable_answer(const EtcdRequest *req)
{
	return (req->curl_result != CURLE_OK &&
			!(req->curl_result == CURLE_WRITE_ERROR && req->overflow)) ||
		req->http_status == 0 || req->http_status >= 500;
}

/* The authenticate call finished: send the waiting requests, or fail them. */
static void
on_authenticated(EtcdClient *client, EtcdRequest *auth)
{
	char		reason[LE_ERROR_LEN];
	char		message[LE_ERROR_LEN];
	EtcdAuthOutcome outcome = ETCD_AUTH_REFUSED;
	bool		transport_failed = no_usable_answer(auth);

	client->authenticating = NULL;
	if (auth->overflow)
		snprintf(reason, sizeof(reason), "its answer exceeds %d bytes", ETCD_MAX_ANSWER);
	else if (auth->curl_result != CURLE_OK)
		strlcpy(reason, auth->curl_error[0] ? auth->curl_error :
				curl_easy_strerror(auth->curl_result), sizeof(reason));
	else
		outcome = etcd_auth_answer(auth->http_status, auth->answer, auth->answer_len,
								   client->token, reason);

	client->auth_off_in_etcd = (outcome == ETCD_AUTH_NOT_ENABLED);
	if (outcome == ETCD_AUTH_REFUSED)
	{
		client->token[0] = '\0';
		snprintf(message, sizeof(message),
				 "etcd at %s did not authenticate user \"%s\": %s",
				 auth->endpoint, client->access.username, reason);
		if (transport_failed)
			etcd_client_endpoint_failed(client, auth->endpoint);
		else
		{
			client->auth_backoff_ms = Min(Max(client->auth_backoff_ms * 2, AUTH_BACKOFF_MIN_MS),
										  AUTH_BACKOFF_MAX_MS);
			client->auth_retry_at = le_clock_us() + (uint64) client->auth_backoff_ms * 1000;
			strlcpy(client->auth_refusal, message, sizeof(client->auth_refusal));
		}
		free_request_resources(auth);
		fail_waiting_requests(client, message, transport_failed);
		return;
	}
	free_request_resources(auth);
	client->auth_backoff_ms = 0;
	client->token_generation++;
	for (EtcdRequest *req = client->requests; req != NULL; req = req->next)
		if (req->awaits_token)
			start_transfer(req);
}

/*
 * etcd refused the token req was sent with: true if req waits to be sent
 * again, once, with a new one.
 */
static bool
retry_with_new_token(EtcdClient *client, EtcdRequest *req)
{
	if (client->access.username[0] == '\0' || req->sent_again ||
		req->curl_result != CURLE_OK ||
		!etcd_auth_token_rejected(req->answer, req->answer_len))
		return false;
	req->sent_again = true;
	client->auth_off_in_etcd = false;
	/* a token taken since it was sent is tried first, without asking again */
	if (req->token_generation == client->token_generation)
	{
		client->token[0] = '\0';
		explicit_bzero(client->token, sizeof(client->token));
		client->token_generation++;
	}
	if (needs_token(client))
		await_token(req);
	else
		start_transfer(req);
	return true;
}

/* Moves finished transfers out of curl and marks their requests done. */
static void
collect_finished(EtcdClient *client)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(client->multi, &left)) != NULL)
	{
		EtcdRequest *req = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		req->curl_result = msg->data.result;
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->http_status);
		curl_multi_remove_handle(client->multi, req->easy);
		le_count_etcd_call(req->path, no_usable_answer(req) || req->http_status >= 400);
		if (req == client->authenticating)
		{
			on_authenticated(client, req);
			continue;
		}
		if (retry_with_new_token(client, req))
			continue;
		req->done = true;
		req->transport_failed = no_usable_answer(req);
	}
}

int
etcd_client_wait(EtcdClient *client, long timeout_ms, bool wake_events,
				 uint32 wait_event_info)
{
	WaitEvent	fired[ETCD_MAX_SOCKETS + 2];
	WaitEventSet *set;
	int			nfired;
	int			result = 0;
	int			running;
	int			i;

	if (client->timer_armed)
	{
		uint64		now = le_clock_us();
		long		curl_ms = 0;

		if (client->timer_due_us > now)
			curl_ms = (long) ((client->timer_due_us - now + 999) / 1000);
		if (timeout_ms < 0 || curl_ms < timeout_ms)
			timeout_ms = curl_ms;
	}

	/* The socket set changes between waits; a fresh set is a few calls. */
	set = CreateWaitEventSet(CurrentMemoryContext, client->nsockets + 2);
	if (wake_events)
	{
		AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(set, WL_POSTMASTER_DEATH, PGINVALID_SOCKET, NULL, NULL);
	}
	for (i = 0; i < client->nsockets; i++)
	{
		uint32		events = 0;

		if (client->sockets[i].what & CURL_POLL_IN)
			events |= WL_SOCKET_READABLE;
		if (client->sockets[i].what & CURL_POLL_OUT)
			events |= WL_SOCKET_WRITEABLE;
		AddWaitEventToSet(set, events, client->sockets[i].fd, NULL, NULL);
	}
	nfired = WaitEventSetWait(set, timeout_ms, fired, lengthof(fired),
							  wait_event_info);
	FreeWaitEventSet(set);

	for (i = 0; i < nfired; i++)
	{
		int			curl_events = 0;

		if (fired[i].events & (WL_LATCH_SET | WL_POSTMASTER_DEATH))
		{
			result |= fired[i].events & (WL_LATCH_SET | WL_POSTMASTER_DEATH);
			continue;
		}
		if (fired[i].events & WL_SOCKET_READABLE)
			curl_events |= CURL_CSELECT_IN;
		if (fired[i].events & WL_SOCKET_WRITEABLE)
			curl_events |= CURL_CSELECT_OUT;
		curl_multi_socket_action(client->multi, fired[i].fd, curl_events,
								 &running);
	}
	if (client->timer_armed && le_clock_us() >= client->timer_due_us)
	{
		client->timer_armed = false;
		curl_multi_socket_action(client->multi, CURL_SOCKET_TIMEOUT, 0,
								 &running);
	}
	collect_finished(client);
	return result;
}

EtcdRequest *
etcd_client_next_done(EtcdClient *client)
{
	EtcdRequest *req;

	for (req = client->requests; req != NULL; req = req->next)
		if (req->done)
			return req;
	return NULL;
}

char *
etcd_request_next_line(EtcdRequest *req)
{
	char	   *start;
	char	   *newline;
	char	   *line;

	if (req->answer == NULL || req->answer_consumed >= req->answer_len)
		return NULL;
	start = req->answer + req->answer_consumed;
	newline = memchr(start, '\n', req->answer_len - req->answer_consumed);
	if (newline == NULL)
		return NULL;
	line = pnstrdup(start, newline - start);
	req->answer_consumed += newline - start + 1;
	return line;
}
