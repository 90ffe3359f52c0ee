/*
 * module.c
 *		Module entry: the leader_election.* settings with their checks, and
 *		the registration of the shared-memory hooks, the write fence and the
 *		background workers (the election's, and the HTTP endpoint's when
 *		leader_election.http_listen is set).
 */
#include "postgres.h"

#include <unistd.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/postmaster.h"
#include "utils/guc.h"

#include "counters.h"
#include "etcd_access.h"
#include "fence.h"
#include "http_endpoint.h"
#include "session_mode.h"
#include "wal_shipping.h"
#include "leader_election.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

char	   *le_endpoints = NULL;
char	   *le_prefix = NULL;
char	   *le_node_name = NULL;
int			le_lease_ttl = 10;
int			le_request_timeout = 1000;
bool		le_candidate = true;
int			le_max_lag_on_failover = 1024;
int			le_switchover_timeout = 5000;
int			le_synchronous_mode = SYNC_MODE_OFF;
int			le_synchronous_node_count = 1;

static const struct config_enum_entry synchronous_mode_options[] = {
	{"off", SYNC_MODE_OFF, false},
	{"on", SYNC_MODE_ON, false},
	{"strict", SYNC_MODE_STRICT, false},
	{NULL, 0, false}
};

const EtcdEndpoints *le_endpoint_list = NULL;

static bool
has_control_characters(const char *s)
{
	for (; *s; s++)
		if ((unsigned char) *s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/*
 * Parses one endpoint of len bytes at p (spaces around it already trimmed)
 * into url; false with the check's detail set if it is not a usable URL.
 */
static bool
parse_endpoint(const char *p, size_t len, char *url)
{
	const char *host;

	if (len == 0)
	{
		GUC_check_errdetail("The list of endpoints has an empty entry.");
		return false;
	}
	if (len >= 7 && strncmp(p, "http://", 7) == 0)
		host = p + 7;
	else if (len >= 8 && strncmp(p, "https://", 8) == 0)
		host = p + 8;
	else
	{
		GUC_check_errdetail("Endpoint \"%.*s\" does not start with http:// or https://.",
							(int) len, p);
		return false;
	}
	if (host >= p + len || *host == '/')
	{
		GUC_check_errdetail("Endpoint \"%.*s\" names no host.", (int) len, p);
		return false;
	}
	if (len < LE_URL_LEN)
	{
		memcpy(url, p, len);
		url[len] = '\0';
	}
	if (len >= LE_URL_LEN || memchr(p, ' ', len) != NULL || has_control_characters(url))
	{
		GUC_check_errdetail("Endpoint \"%.*s\" is too long or contains spaces or control characters.",
							(int) Min(len, 64), p);
		return false;
	}
	/* "http://h:2379/" and "http://h:2379" are the same endpoint */
	while (len > 0 && url[len - 1] == '/')
		url[--len] = '\0';
	return true;
}

/*
 * Parses the comma-separated list into *extra, once; the assign hook makes
 * it le_endpoint_list, which the worker and leader_candidates() use as is.
 */
static bool
check_endpoints(char **newval, void **extra, GucSource source pg_attribute_unused())
{
	const char *p = *newval;
	EtcdEndpoints parsed;
	EtcdEndpoints *result;

	if (p == NULL || *p == '\0')
	{
		GUC_check_errdetail("At least one etcd endpoint is required.");
		return false;
	}
	parsed.count = 0;
	for (;;)
	{
		size_t		len;
		size_t		item_len;

		while (*p == ' ')
			p++;
		item_len = strcspn(p, ",");
		len = item_len;
		while (len > 0 && p[len - 1] == ' ')
			len--;
		if (parsed.count == LE_MAX_ENDPOINTS)
		{
			GUC_check_errdetail("At most %d endpoints are allowed.", LE_MAX_ENDPOINTS);
			return false;
		}
		if (!parse_endpoint(p, len, parsed.urls[parsed.count]))
			return false;
		/* a second entry would only give a hung endpoint a second chance */
		for (int i = 0; i < parsed.count; i++)
			if (strcmp(parsed.urls[i], parsed.urls[parsed.count]) == 0)
			{
				GUC_check_errdetail("Endpoint \"%s\" is listed twice.", parsed.urls[i]);
				return false;
			}
		parsed.count++;
		p += item_len;
		if (*p == '\0')
			break;
		p++;					/* the comma */
		if (*p == '\0')
		{
			GUC_check_errdetail("The list of endpoints ends with a comma.");
			return false;
		}
	}

	/* guc.c frees extra with free() */
	result = malloc(sizeof(EtcdEndpoints));
	if (result == NULL)
		return false;
	*result = parsed;
	*extra = result;
	return true;
}

static void
assign_endpoints(const char *newval pg_attribute_unused(), void *extra)
{
	le_endpoint_list = extra;
}

static bool
check_prefix(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	const char *prefix = *newval;
	size_t		len = prefix ? strlen(prefix) : 0;

	if (len == 0)
	{
		GUC_check_errdetail("The election prefix must not be empty.");
		return false;
	}
	if (prefix[len - 1] == '/')
	{
		GUC_check_errdetail("The election prefix must not end with \"/\": keys are \"<prefix>/<lease id>\".");
		return false;
	}
	/* the longest key beside it: "<prefix>.wal.<16 hex digits>" */
	if (len > LE_KEY_LEN - 24)
	{
		GUC_check_errdetail("The election prefix is limited to %d bytes.", LE_KEY_LEN - 24);
		return false;
	}
	if (has_control_characters(prefix))
	{
		GUC_check_errdetail("The election prefix must not contain control characters.");
		return false;
	}
	return true;
}

static bool
check_node_name(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	const char *name = *newval ? *newval : "";

	if (strlen(name) >= LE_NAME_LEN)
	{
		GUC_check_errdetail("The node name is limited to %d bytes.", LE_NAME_LEN - 1);
		return false;
	}
	if (has_control_characters(name))
	{
		GUC_check_errdetail("The node name must not contain control characters.");
		return false;
	}
	return true;
}

void
le_current_config(ElectionConfig *config)
{
	strlcpy(config->prefix, le_prefix, sizeof(config->prefix));
	if (le_node_name[0] != '\0')
		strlcpy(config->node_name, le_node_name, sizeof(config->node_name));
	else
	{
		char		host[LE_NAME_LEN - 8];

		if (gethostname(host, sizeof(host)) != 0)
			strlcpy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		snprintf(config->node_name, sizeof(config->node_name), "%s:%d",
				 host, PostPortNumber);
	}
	config->lease_ttl_s = le_lease_ttl;
	config->request_timeout_ms = le_request_timeout;
	config->candidate = le_candidate;
	config->max_lag_bytes = (int64) le_max_lag_on_failover * 1024;
	config->switchover_timeout_ms = le_switchover_timeout;
	config->sync_mode = (SyncMode) le_synchronous_mode;
	config->sync_node_count = le_synchronous_node_count;
	config->endpoints = *le_endpoint_list;
}

void
le_require_preload(void)
{
	if (le_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("leader_election is not running on this server"),
				 errdetail("The library was not loaded at server start."),
				 errhint("Add leader_election to shared_preload_libraries and restart the server.")));
}

void
_PG_init(void)
{
	BackgroundWorker worker;

	DefineCustomStringVariable("leader_election.endpoints",
							   "Comma-separated etcd client URLs.",
							   "The worker moves on to the next URL when one fails.",
							   &le_endpoints,
							   "http://127.0.0.1:2379",
							   PGC_SIGHUP, 0,
							   check_endpoints, assign_endpoints, NULL);
	DefineCustomStringVariable("leader_election.prefix",
							   "Election name: candidates' keys are <prefix>/<lease id in hex>.",
							   "The same name as etcdctl elect uses.",
							   &le_prefix,
							   "/leader_election/default",
							   PGC_SIGHUP, 0,
							   check_prefix, NULL, NULL);
	DefineCustomStringVariable("leader_election.node_name",
							   "This node's name, stored as the value of its key.",
							   "Empty means <hostname>:<port>.",
							   &le_node_name,
							   "",
							   PGC_SIGHUP, 0,
							   check_node_name, NULL, NULL);
	DefineCustomIntVariable("leader_election.lease_ttl",
							"TTL of this node's etcd lease.",
							"Crash failover takes about this long.",
							&le_lease_ttl,
							10, 2, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("leader_election.request_timeout",
							"Bound on each etcd request.",
							NULL,
							&le_request_timeout,
							1000, 100, 60000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("leader_election.candidate",
							 "Whether this node stands in the election.",
							 "off: it shows the election but never campaigns, so it is never promoted.",
							 &le_candidate,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("leader_election.max_lag_on_failover",
							"WAL a standby may have left to receive and still stand in the election.",
							"A streaming standby further behind its upstream leaves the queue until it catches up.",
							&le_max_lag_on_failover,
							1024, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("leader_election.switchover_timeout",
							"How long leader_resign() on a primary waits for the next in line to catch up.",
							"If it does not, the resign fails and the primary leads on.",
							&le_switchover_timeout,
							5000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("leader_election.synchronous_mode",
							 "Whether the leader keeps synchronous standbys, so that a crash loses no acknowledged commit.",
							 "off: asynchronous, the most advanced standby takes over; on: synchronous while a standby can be, else no automatic failover; strict: commits always wait for a standby.",
							 &le_synchronous_mode,
							 SYNC_MODE_OFF, synchronous_mode_options,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("leader_election.synchronous_node_count",
							"How many synchronous standbys the leader keeps in synchronous mode.",
							"Each of them has every acknowledged commit; only they may take over after a crash.",
							&le_synchronous_node_count,
							1, 1, LE_MAX_SYNC,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("leader_election.fence_writes",
							 "Refuses writes on a node that is not the leader.",
							 "Checked at every statement and again at commit.",
							 &le_fence_writes,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("leader_election.fence_bypass",
							 "Lets this session write although the node is not the leader.",
							 "For maintenance by superusers; every use is logged.",
							 &le_fence_bypass,
							 false,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	etcd_access_define_settings();
	/* PGC_POSTMASTER settings exist only in a server that preloads us */
	if (process_shared_preload_libraries_in_progress)
		http_endpoint_define_settings();
	MarkGUCPrefixReserved("leader_election");

	if (!process_shared_preload_libraries_in_progress)
		return;

	le_shmem_install_hooks();
	le_counters_install_hooks();
	le_fence_install();
	le_session_mode_install(le_fence_node_fenced);
	le_wal_shipping_install();

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_PostmasterStart;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "leader_election", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "leader_election_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "leader_election worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "leader_election", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
	http_endpoint_register_worker();
}
