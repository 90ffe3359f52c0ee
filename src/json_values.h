/*
 * json_values.h
 *		The JSON the extension writes into etcd values and reads back: an
 *		object turned into text, and WAL positions as PostgreSQL prints them.
 */
#ifndef LEADER_ELECTION_JSON_VALUES_H
#define LEADER_ELECTION_JSON_VALUES_H

#include <cjson/cJSON.h>

#include "access/xlogdefs.h"

/* A new object; what names the value for the out-of-memory error. */
extern cJSON *le_json_object(const char *what);

/* The object as compact text (palloc'd); json is freed. */
extern char *le_json_text(cJSON *json, const char *what);

/* Adds field = "16/B374D848". */
extern void le_json_add_lsn(cJSON *json, const char *field, XLogRecPtr lsn);

/* A string "16/B374D848" as a WAL position; false if item is not one. */
extern bool le_json_lsn(const cJSON *item, XLogRecPtr *lsn);

#endif
