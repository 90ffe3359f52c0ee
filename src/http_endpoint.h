/*
 * http_endpoint.h
 *		The HTTP endpoint's settings and its background worker (module.c
 *		defines the settings and registers the worker through these).
 */
#ifndef LEADER_ELECTION_HTTP_ENDPOINT_H
#define LEADER_ELECTION_HTTP_ENDPOINT_H

#include "fmgr.h"

/* leader_election.http_listen, http_cert_file, http_key_file. */
extern void http_endpoint_define_settings(void);

/* From _PG_init while preloading: starts the worker if http_listen is set. */
extern void http_endpoint_register_worker(void);

PGDLLEXPORT void leader_election_http_main(Datum arg);

#endif
