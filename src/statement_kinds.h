/*
 * statement_kinds.h
 *		Pure classifiers the write fence uses to decide what a statement or a
 *		function call is.  They look at parse trees, catalogs and function
 *		OIDs only; none of them changes state.
 */
#ifndef LEADER_ELECTION_STATEMENT_KINDS_H
#define LEADER_ELECTION_STATEMENT_KINDS_H

#include "nodes/nodes.h"

/*
 * DDL that creates, changes or drops temporary relations only (without
 * CASCADE, which could reach permanent objects that depend on them, and
 * without a permanent parent to inherit from).
 */
extern bool is_temp_relation_ddl(Node *stmt);

/*
 * CREATE/ALTER EXTENSION leader_election, or DROP of it without CASCADE
 * while it owns nothing but its own functions.
 */
extern bool is_own_extension_ddl(Node *stmt);

/* A statement of the kinds leader_election's own install and update scripts run. */
extern bool is_extension_script_statement(Node *stmt);

/*
 * Statements PostgreSQL allows in a read-only transaction that still change
 * what clients can see or the server's configuration: CLUSTER (marks an
 * index), REINDEX (TABLESPACE) and REINDEX CONCURRENTLY (which commits new
 * catalog entries first), ALTER SYSTEM, and EXPLAIN ANALYZE of CREATE
 * TABLE AS / SELECT INTO / CREATE MATERIALIZED VIEW of a permanent relation.
 * Maintenance that changes only files and statistics (VACUUM, VACUUM FULL,
 * ANALYZE, plain REINDEX) is not among them.  NULL if stmt is none of these,
 * else what it does, for the fence's error.
 */
extern const char *persisting_read_only_statement(Node *stmt);

/* COMMIT, ROLLBACK (with or without AND CHAIN) or PREPARE TRANSACTION. */
extern bool ends_transaction(Node *stmt);

/* SET TRANSACTION SNAPSHOT: the transaction reads from another's snapshot. */
extern bool imports_snapshot(Node *stmt);

/* COMMIT PREPARED: allowed in read-only transactions, yet it commits writes. */
extern bool is_commit_prepared(Node *stmt);

/* What calling a function does that the fence must know, by its C symbol. */
typedef enum FunctionEffect
{
	FUNCTION_EFFECT_OTHER,		/* nothing the read-only checks miss */
	FUNCTION_EFFECT_SEQUENCE,	/* nextval/setval: read-only refuses permanent ones */
	FUNCTION_EFFECT_PERSISTS	/* writes that read-only transactions let through */
} FunctionEffect;

/*
 * Built-in (LANGUAGE internal) functions are classified by the C function
 * behind them, so an alias under another name is classified the same.
 */
extern FunctionEffect function_effect(Oid fn_oid);

#endif
