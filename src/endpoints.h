/*
 * endpoints.h
 *		The etcd endpoint list, parsed once by the check hook of
 *		leader_election.endpoints (module.c) and handed as is to every
 *		EtcdClient.
 */
#ifndef LEADER_ELECTION_ENDPOINTS_H
#define LEADER_ELECTION_ENDPOINTS_H

#define LE_MAX_ENDPOINTS	16
#define LE_URL_LEN			256

/* URLs without surrounding spaces or trailing slashes, in the order given. */
typedef struct EtcdEndpoints
{
	int			count;
	char		urls[LE_MAX_ENDPOINTS][LE_URL_LEN];
} EtcdEndpoints;

#endif
