/*
 * leader_election.h
 *		Settings (GUCs) shared by the worker and the SQL functions, and the
 *		entry points module.c registers.
 */
#ifndef LEADER_ELECTION_H
#define LEADER_ELECTION_H

#include "election.h"
#include "endpoints.h"

extern char *le_endpoints;
extern char *le_prefix;
extern char *le_node_name;
extern int	le_lease_ttl;
extern int	le_request_timeout;
extern bool le_candidate;
extern int	le_max_lag_on_failover;	/* kB */
extern int	le_switchover_timeout;	/* ms */

/* leader_election.endpoints as parsed by its check hook. */
extern const EtcdEndpoints *le_endpoint_list;

/* The settings as the election uses them (node_name '' -> host:port). */
extern void le_current_config(ElectionConfig *config);

/* Raises the error every SQL function gives without shared_preload_libraries. */
extern void le_require_preload(void);

PGDLLEXPORT void leader_election_worker_main(Datum arg);

#endif
