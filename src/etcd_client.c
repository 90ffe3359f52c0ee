/*
 * etcd_client.c
 *		Owns the HTTP side of talking to etcd: the curl multi handle, the
 *		list of endpoints, the sockets curl wants watched, and the wait that
 *		combines them with the process latch.
 *
 * curl callbacks run inside curl_multi_socket_action(); they only record
 * sockets and copy bytes into malloc'd buffers (no palloc, no ereport), and
 * everything else happens after curl returns.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"

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
};

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
	pfree(client);
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

EtcdRequest *
etcd_post(EtcdClient *client, const char *path, const cJSON *body,
		  int timeout_ms, int connect_timeout_ms, int tag)
{
	EtcdRequest *req;
	char		url[LE_URL_LEN + 64];
	char	   *json;

	req = MemoryContextAllocZero(client->context, sizeof(EtcdRequest));
	req->client = client;
	req->tag = tag;
	req->started_us = le_clock_us();
	strlcpy(req->endpoint, etcd_client_endpoint(client), sizeof(req->endpoint));
	snprintf(url, sizeof(url), "%s%s", req->endpoint, path);

	json = cJSON_PrintUnformatted(body);
	req->easy = curl_easy_init();
	req->headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (json == NULL || req->easy == NULL || req->headers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while preparing an etcd request")));

	curl_easy_setopt(req->easy, CURLOPT_URL, url);
	curl_easy_setopt(req->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(req->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, req->headers);
	curl_easy_setopt(req->easy, CURLOPT_COPYPOSTFIELDS, json);
	curl_easy_setopt(req->easy, CURLOPT_WRITEFUNCTION, write_callback);
	curl_easy_setopt(req->easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(req->easy, CURLOPT_ERRORBUFFER, req->curl_error);
	curl_easy_setopt(req->easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(req->easy, CURLOPT_CONNECTTIMEOUT_MS, (long) connect_timeout_ms);
	curl_easy_setopt(req->easy, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
	if (timeout_ms == 0)
		curl_easy_setopt(req->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	free(json);

	if (curl_multi_add_handle(client->multi, req->easy) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start an etcd request")));

	req->next = client->requests;
	client->requests = req;
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
	/* Removing a finished handle is harmless; it is removed already. */
	curl_multi_remove_handle(client->multi, req->easy);
	curl_easy_cleanup(req->easy);
	curl_slist_free_all(req->headers);
	free(req->answer);
	pfree(req);
}

void
etcd_client_cancel_all(EtcdClient *client)
{
	while (client->requests != NULL)
		etcd_request_free(client->requests);
}

bool
etcd_client_idle(EtcdClient *client)
{
	return client->requests == NULL;
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
		req->done = true;
		req->curl_result = msg->data.result;
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->http_status);
		req->transport_failed = (req->curl_result != CURLE_OK &&
								 !(req->curl_result == CURLE_WRITE_ERROR &&
								   req->overflow)) ||
			req->http_status == 0 || req->http_status >= 500;
		curl_multi_remove_handle(client->multi, req->easy);
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
