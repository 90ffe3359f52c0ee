/*
 * statement_kinds.h
 *		Pure classifiers the write fence uses to decide what a statement or a
 *		function call is.  They look at parse trees, catalogs and function
 *		OIDs only; none of them changes state.
 */
#ifndef LEADER_ELECTION_STATEMENT_KINDS_H
#define LEADER_ELECTION_STATEMENT_KINDS_H

#include "nodes/nodes.h"

/* DDL that creates, changes or drops temporary relations only. */
extern bool is_temp_relation_ddl(Node *stmt);

/* CREATE/ALTER EXTENSION leader_election, or DROP of it without CASCADE. */
extern bool is_own_extension_ddl(Node *stmt);

/* COMMIT, ROLLBACK (with or without AND CHAIN) or PREPARE TRANSACTION. */
extern bool ends_transaction(Node *stmt);

/* COMMIT PREPARED: allowed in read-only transactions, yet it commits writes. */
extern bool is_commit_prepared(Node *stmt);

/* A built-in function that writes large objects (PostgreSQL 15 allows them read-only). */
extern bool is_large_object_write(Oid fn_oid);

#endif
