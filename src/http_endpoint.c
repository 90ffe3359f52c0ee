/*
 * http_endpoint.c
 *		Owns the HTTP endpoint: its settings (the listen address, parsed
 *		once in its check hook), its background worker, and libmicrohttpd
 *		driven from that worker's latch loop.  What it answers is
 *		http_routes.c's, status_document.c's and metrics_text.c's.
 *
 * Rules:
 * - It reads the extension's shared memory only (a NodeSnapshot taken
 *   before each round of libmicrohttpd's work, without locks): never etcd,
 *   never a database, never a lock or spinlock of PostgreSQL's.  The election
 *   worker never waits for it: a slow, hostile or flooding client costs
 *   this process's time only, and it runs at a lower CPU priority (nice
 *   10) so that a flood yields the CPU to the election worker.
 * - libmicrohttpd runs without threads of its own (MHD_USE_EPOLL, no
 *   internal polling thread): its epoll descriptor sits in the worker's
 *   WaitEventSet beside the latch and postmaster death, so SIGTERM and
 *   SIGHUP are seen at once.
 * - Inside libmicrohttpd's callbacks nothing palloc's or ereport's: the
 *   access handler answers from the snapshot with malloc'd documents, and
 *   the logger only keeps the last message for the worker to report.
 * - Bounded: at most HTTP_MAX_CONNECTIONS connections (HTTP_MAX_PER_IP
 *   from one address), HTTP_MEMORY_LIMIT bytes per connection (a larger
 *   request head is refused with 431), HTTP_TIMEOUT_S idle seconds per
 *   connection; connections are kept alive between requests.  GET, HEAD
 *   and OPTIONS only, and a request body is never used.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "http_endpoint.h"
#include "http_routes.h"
#include "leader_election.h"
#include "metrics_text.h"
#include "node_snapshot.h"
#include "printable.h"
#include "status_document.h"

#define HTTP_MAX_CONNECTIONS	64
#define HTTP_MAX_PER_IP			32
#define HTTP_MEMORY_LIMIT		(16 * 1024)
#define HTTP_TIMEOUT_S			5
#define HTTP_MAX_WAIT_MS		1000
#define HTTP_TLS_FILE_MAX		(1024 * 1024)
#define HTTP_RESTART_S			5

static char *http_listen = NULL;
static char *http_cert_file = NULL;
static char *http_key_file = NULL;

/* leader_election.http_listen, as its check hook parsed it */
typedef struct HttpListen
{
	bool		any;			/* "*": every address, IPv4 and IPv6 */
	int			family;
	struct sockaddr_storage addr;
	uint16		port;
} HttpListen;

static const HttpListen *listen_at = NULL;

static bool
check_http_listen(char **newval, void **extra, GucSource source pg_attribute_unused())
{
	const char *value = *newval ? *newval : "";
	char		host[256];
	const char *colon;
	char	   *end;
	long		port;
	HttpListen	parsed;
	HttpListen *result;

	if (value[0] == '\0')
		return true;			/* off */
	colon = strrchr(value, ':');
	if (colon == NULL || colon == value || colon - value >= (ptrdiff_t) sizeof(host))
	{
		GUC_check_errdetail("Expected \"host:port\", e.g. \"127.0.0.1:8008\", \"[::1]:8008\" or \"*:8008\".");
		return false;
	}
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || port < 1 || port > 65535)
	{
		GUC_check_errdetail("The port must be a number from 1 to 65535.");
		return false;
	}
	memcpy(host, value, colon - value);
	host[colon - value] = '\0';

	memset(&parsed, 0, sizeof(parsed));
	parsed.port = (uint16) port;
	if (strcmp(host, "*") == 0)
		parsed.any = true;
	else if (strcmp(host, "localhost") == 0 || inet_pton(AF_INET, host, &((struct sockaddr_in *) &parsed.addr)->sin_addr) == 1)
	{
		struct sockaddr_in *in = (struct sockaddr_in *) &parsed.addr;

		if (strcmp(host, "localhost") == 0)
			in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		in->sin_family = AF_INET;
		in->sin_port = htons(parsed.port);
		parsed.family = AF_INET;
	}
	else
	{
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &parsed.addr;
		size_t		len = strlen(host);

		if (len < 3 || host[0] != '[' || host[len - 1] != ']')
		{
			GUC_check_errdetail("\"%s\" is not an IP address: use an IPv4 address, [an IPv6 address], localhost or *.", host);
			return false;
		}
		host[len - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &in6->sin6_addr) != 1)
		{
			GUC_check_errdetail("\"%s\" is not an IPv6 address.", host + 1);
			return false;
		}
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(parsed.port);
		parsed.family = AF_INET6;
	}

	/* guc.c frees extra with free() */
	result = malloc(sizeof(HttpListen));
	if (result == NULL)
		return false;
	*result = parsed;
	*extra = result;
	return true;
}

static void
assign_http_listen(const char *newval pg_attribute_unused(), void *extra)
{
	listen_at = extra;
}

void
http_endpoint_define_settings(void)
{
	DefineCustomStringVariable("leader_election.http_listen",
							   "Address and port of the HTTP health and metrics endpoint, e.g. 127.0.0.1:8008 or *:8008.",
							   "Empty: no endpoint.  Answers Patroni's health checks (/primary, /replica, /health, ...) and /metrics from shared memory.",
							   &http_listen,
							   "",
							   PGC_POSTMASTER, 0,
							   check_http_listen, assign_http_listen, NULL);
	DefineCustomStringVariable("leader_election.http_cert_file",
							   "Certificate (PEM) of the HTTP endpoint: with http_key_file, it answers HTTPS only.",
							   NULL,
							   &http_cert_file,
							   "",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("leader_election.http_key_file",
							   "Private key (PEM, unencrypted) of the HTTP endpoint's certificate.",
							   NULL,
							   &http_key_file,
							   "",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
}

void
http_endpoint_register_worker(void)
{
	BackgroundWorker worker;

	if (listen_at == NULL)
		return;
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_PostmasterStart;
	worker.bgw_restart_time = HTTP_RESTART_S;
	strlcpy(worker.bgw_library_name, "leader_election", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "leader_election_http_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "leader_election http", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "leader_election http", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* ---- the worker ---- */

/* What the access handler answers from; taken before each MHD_run(). */
static NodeSnapshot snapshot;

/* The last message libmicrohttpd logged (its logger must not ereport). */
static char mhd_message[256];

/*
 * Refreshes the snapshot's copies.  The view is read without the LWLock, so
 * this process never holds what the election worker waits for; a view the
 * worker was writing at every try keeps the last one.
 */
static void
take_snapshot(NodeSnapshot *s)
{
	static LeaderView view;
	static LeaderQueueView queue;
	TimestampTz role_since;

	/* the prefix may hold any byte but control characters: shown printable */
	le_printable(le_prefix, strlen(le_prefix), s->prefix, sizeof(s->prefix));
	if (le_shared_read_without_lock(&view, &role_since, &queue))
	{
		s->view = view;
		s->role_since = role_since;
		s->queue = queue;
	}
	le_counters_read(&s->counters);
}

/*
 * Leadership, liveness and the clocks as of now, for one answer: this
 * process may have been stopped since its snapshot (atomics and clock reads
 * only, so it runs inside libmicrohttpd's callback).
 */
static void
read_now(NodeSnapshot *s)
{
	s->now_us = le_clock_us();
	s->taken_at = GetCurrentTimestamp();
	s->valid_until_us = pg_atomic_read_u64(&le_shared->valid_until_us);
	s->loop_turned_at = le_shared_loop_turned_at();
	s->worker_running = s->loop_turned_at != 0;
}

static void
log_to_buffer(void *cls pg_attribute_unused(), const char *fmt, va_list ap)
{
	size_t		len;

	vsnprintf(mhd_message, sizeof(mhd_message), fmt, ap);
	len = strlen(mhd_message);
	while (len > 0 && isspace((unsigned char) mhd_message[len - 1]))
		mhd_message[--len] = '\0';
}

/* The document an answer carries, malloc'd; NULL when none or out of memory. */
static char *
render(const HttpAnswer *answer, const char **content_type)
{
	*content_type = "application/json";
	switch (answer->body)
	{
		case HTTP_BODY_STATUS:
			return status_document(&snapshot);
		case HTTP_BODY_CLUSTER:
			return cluster_document(&snapshot);
		case HTTP_BODY_METRICS:
			*content_type = METRICS_CONTENT_TYPE;
			return metrics_text(&snapshot);
		case HTTP_BODY_MESSAGE:
			*content_type = "text/plain; charset=utf-8";
			return strdup(answer->message);
		case HTTP_BODY_NONE:
			break;
	}
	return strdup("");
}

static enum MHD_Result
answer_request(void *cls pg_attribute_unused(), struct MHD_Connection *connection,
			   const char *url, const char *method,
			   const char *version pg_attribute_unused(),
			   const char *upload_data pg_attribute_unused(),
			   size_t *upload_data_size, void **con_cls)
{
	static int	seen;
	static int	answered;
	HttpAnswer	answer;
	const char *content_type;
	char	   *body;
	struct MHD_Response *response;
	enum MHD_Result queued;

	/*
	 * Our methods are answered at the last call, once the request is
	 * complete (its body, if any, read and dropped), so that the connection
	 * may stay open for the next request; any other is refused at once and
	 * its body never read (the connection is closed).
	 */
	if (*con_cls == &answered)
	{
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*con_cls == NULL && http_method_allowed(method))
	{
		*con_cls = &seen;
		return MHD_YES;
	}
	if (*upload_data_size != 0)
	{
		/* a body: dropped; the answer goes at the last call, which has none */
		*upload_data_size = 0;
		return MHD_YES;
	}
	*con_cls = &answered;

	read_now(&snapshot);

	http_route(&snapshot, method, url,
			   MHD_lookup_connection_value(connection, MHD_GET_ARGUMENT_KIND, "lag"),
			   &answer);
	body = render(&answer, &content_type);
	if (body == NULL)
	{
		answer.status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		content_type = "text/plain; charset=utf-8";
		body = strdup("out of memory\n");
		if (body == NULL)
			return MHD_NO;		/* libmicrohttpd closes the connection */
	}
	response = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (response == NULL)
	{
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (answer.status == MHD_HTTP_METHOD_NOT_ALLOWED || strcmp(method, "OPTIONS") == 0)
		MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD, OPTIONS");
	queued = MHD_queue_response(connection, answer.status, response);
	MHD_destroy_response(response);
	return queued;
}

/* A PEM file's text, for libmicrohttpd (which keeps the pointer). */
static char *
read_pem(const char *setting, const char *path)
{
	FILE	   *file = AllocateFile(path, "r");
	char	   *text;
	size_t		len;

	if (file == NULL)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("leader_election: could not open %s \"%s\": %m", setting, path)));
	text = MemoryContextAllocZero(TopMemoryContext, HTTP_TLS_FILE_MAX + 1);
	len = fread(text, 1, HTTP_TLS_FILE_MAX + 1, file);
	if (ferror(file) || len == 0 || len > HTTP_TLS_FILE_MAX)
		ereport(FATAL,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("leader_election: could not read %s \"%s\"", setting, path),
				 errdetail("It must be a PEM file of at most %d bytes.", HTTP_TLS_FILE_MAX)));
	FreeFile(file);
	return text;
}

static void
describe_listen(char *buf, size_t len)
{
	char		host[INET6_ADDRSTRLEN] = "*";

	if (listen_at->family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *) &listen_at->addr)->sin_addr,
				  host, sizeof(host));
	else if (listen_at->family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) &listen_at->addr)->sin6_addr,
				  host, sizeof(host));
	snprintf(buf, len, listen_at->family == AF_INET6 ? "[%s]:%u" : "%s:%u",
			 host, (unsigned) listen_at->port);
}

static struct MHD_Daemon *
start_daemon(const char *where)
{
	bool		tls = http_cert_file[0] != '\0' || http_key_file[0] != '\0';
	unsigned int flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	char	   *cert = NULL;
	char	   *key = NULL;
	struct MHD_OptionItem options[12];
	int			n = 0;
	struct MHD_Daemon *daemon;

	if (tls && (http_cert_file[0] == '\0' || http_key_file[0] == '\0'))
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("leader_election: the HTTP endpoint needs both http_cert_file and http_key_file for TLS"),
				 errhint("Set both, or neither for plain HTTP.")));
	if (tls)
	{
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
			ereport(FATAL,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("leader_election: this libmicrohttpd was built without TLS")));
		cert = read_pem("leader_election.http_cert_file", http_cert_file);
		key = read_pem("leader_election.http_key_file", http_key_file);
		flags |= MHD_USE_TLS;
	}
	if (listen_at->any)
		flags |= MHD_USE_DUAL_STACK;
	else if (listen_at->family == AF_INET6)
		flags |= MHD_USE_IPv6;

	options[n++] = (struct MHD_OptionItem) {MHD_OPTION_CONNECTION_LIMIT, HTTP_MAX_CONNECTIONS, NULL};
	options[n++] = (struct MHD_OptionItem) {MHD_OPTION_PER_IP_CONNECTION_LIMIT, HTTP_MAX_PER_IP, NULL};
	options[n++] = (struct MHD_OptionItem) {MHD_OPTION_CONNECTION_MEMORY_LIMIT, HTTP_MEMORY_LIMIT, NULL};
	options[n++] = (struct MHD_OptionItem) {MHD_OPTION_CONNECTION_TIMEOUT, HTTP_TIMEOUT_S, NULL};
	options[n++] = (struct MHD_OptionItem) {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t) log_to_buffer, NULL};
	if (!listen_at->any)
		options[n++] = (struct MHD_OptionItem) {MHD_OPTION_SOCK_ADDR, 0, (void *) &listen_at->addr};
	if (tls)
	{
		options[n++] = (struct MHD_OptionItem) {MHD_OPTION_HTTPS_MEM_CERT, 0, cert};
		options[n++] = (struct MHD_OptionItem) {MHD_OPTION_HTTPS_MEM_KEY, 0, key};
	}
	options[n++] = (struct MHD_OptionItem) {MHD_OPTION_END, 0, NULL};

	mhd_message[0] = '\0';
	errno = 0;
	daemon = MHD_start_daemon(flags, listen_at->port, NULL, NULL, answer_request, NULL,
							  MHD_OPTION_ARRAY, options, MHD_OPTION_END);
	if (key != NULL)
		explicit_bzero(key, strlen(key));	/* libmicrohttpd has parsed it */
	if (daemon == NULL && mhd_message[0] == '\0')
		strlcpy(mhd_message, errno != 0 ? pg_strerror(errno) : "libmicrohttpd said nothing",
				sizeof(mhd_message));
	if (daemon == NULL)
		ereport(FATAL,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("leader_election: the HTTP endpoint could not listen on %s", where),
				 errdetail("%s", mhd_message),
				 errhint("Check leader_election.http_listen (a port no other process uses) and the TLS files; the endpoint retries in %d s.",
						 HTTP_RESTART_S)));
	return daemon;
}

void
leader_election_http_main(Datum arg pg_attribute_unused())
{
	struct MHD_Daemon *daemon;
	const union MHD_DaemonInfo *info;
	WaitEventSet *events;
	char		where[INET6_ADDRSTRLEN + 16];

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	/* a flood of requests must not take the CPU from the election worker */
	if (setpriority(PRIO_PROCESS, 0, 10) != 0)
		ereport(LOG,
				(errmsg("leader_election: the HTTP endpoint could not lower its CPU priority: %m")));

	describe_listen(where, sizeof(where));
	take_snapshot(&snapshot);
	daemon = start_daemon(where);
	info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_EPOLL_FD);
	if (info == NULL)
		ereport(FATAL,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("leader_election: libmicrohttpd gave no epoll descriptor")));

	events = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(events, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(events, WL_POSTMASTER_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(events, WL_SOCKET_READABLE, info->epoll_fd, NULL, NULL);

	ereport(LOG,
			(errmsg("leader_election: HTTP endpoint listens on %s%s", where,
					http_cert_file[0] != '\0' ? " (HTTPS)" : "")));

	while (!ShutdownRequestPending)
	{
		WaitEvent	fired;
		MHD_UNSIGNED_LONG_LONG mhd_timeout;
		long		timeout_ms = HTTP_MAX_WAIT_MS;

		if (MHD_get_timeout(daemon, &mhd_timeout) == MHD_YES)
			timeout_ms = (long) Min(mhd_timeout, (MHD_UNSIGNED_LONG_LONG) HTTP_MAX_WAIT_MS);
		if (WaitEventSetWait(events, timeout_ms, &fired, 1, PG_WAIT_EXTENSION) > 0)
		{
			if (fired.events & WL_POSTMASTER_DEATH)
				break;
			if (fired.events & WL_LATCH_SET)
				ResetLatch(MyLatch);
		}
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		take_snapshot(&snapshot);
		MHD_run(daemon);
		if (mhd_message[0] != '\0')
		{
			ereport(DEBUG1,
					(errmsg("leader_election: HTTP endpoint: %s", mhd_message)));
			mhd_message[0] = '\0';
		}
	}
	MHD_stop_daemon(daemon);
	proc_exit(0);
}
