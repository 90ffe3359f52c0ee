/*
 * metrics_text.h
 *		The HTTP endpoint's /metrics: a NodeSnapshot in Prometheus's text
 *		exposition format (version 0.0.4), malloc'd (built inside
 *		libmicrohttpd's callback); NULL when memory ran out.
 */
#ifndef LEADER_ELECTION_METRICS_TEXT_H
#define LEADER_ELECTION_METRICS_TEXT_H

#include "node_snapshot.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

extern char *metrics_text(const NodeSnapshot *s);

#endif
