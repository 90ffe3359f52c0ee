/*
 * status_document.h
 *		The HTTP endpoint's JSON documents, from a NodeSnapshot: the status
 *		(what leader_status() shows, and the health the routes check) and
 *		the queue.  Both are malloc'd (cJSON), never palloc'd: they are built
 *		inside libmicrohttpd's callback.  NULL when memory ran out.
 */
#ifndef LEADER_ELECTION_STATUS_DOCUMENT_H
#define LEADER_ELECTION_STATUS_DOCUMENT_H

#include "node_snapshot.h"

extern char *status_document(const NodeSnapshot *s);
extern char *cluster_document(const NodeSnapshot *s);

/* TimestampTz as ISO 8601 in UTC, e.g. 2026-12-07T10:15:02.123456Z. */
extern void iso_timestamp(TimestampTz t, char *buf, size_t len);

#endif
