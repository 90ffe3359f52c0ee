/*
 * statement_kinds.c
 *		Owns the fence's classification of statements and functions: which
 *		DDL touches only temporary relations, which statements are the
 *		extension's own, which end a transaction, which functions write large
 *		objects.  Pure: parse trees, catalogs and OIDs in, a yes or no out.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "statement_kinds.h"

/* CREATE TEMP ... or CREATE ... pg_temp.name */
static bool
names_temp_namespace(RangeVar *rv)
{
	return rv->relpersistence == RELPERSISTENCE_TEMP ||
		(rv->schemaname != NULL && strcmp(rv->schemaname, "pg_temp") == 0);
}

static bool
is_temp_relation(RangeVar *rv)
{
	Oid			relid;

	if (names_temp_namespace(rv))
		return true;
	relid = RangeVarGetRelid(rv, NoLock, true);
	return OidIsValid(relid) && get_rel_persistence(relid) == RELPERSISTENCE_TEMP;
}

/* Names in a DROP, each a temporary relation. */
static bool
all_temp_relations(List *names)
{
	ListCell   *lc;

	foreach(lc, names)
		if (!is_temp_relation(makeRangeVarFromNameList(lfirst(lc))))
			return false;
	return true;
}

bool
is_temp_relation_ddl(Node *stmt)
{
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_CreateStmt:
			/* a permanent parent would get relhassubclass set */
			foreach(lc, ((CreateStmt *) stmt)->inhRelations)
				if (!is_temp_relation(lfirst(lc)))
					return false;
			return names_temp_namespace(((CreateStmt *) stmt)->relation);
		case T_CreateSeqStmt:
			return names_temp_namespace(((CreateSeqStmt *) stmt)->sequence);
		case T_ViewStmt:
			return names_temp_namespace(((ViewStmt *) stmt)->view);
		case T_CreateTableAsStmt:
			{
				CreateTableAsStmt *ctas = (CreateTableAsStmt *) stmt;

				return ctas->objtype == OBJECT_TABLE &&
					names_temp_namespace(ctas->into->rel);
			}
		case T_IndexStmt:
			return is_temp_relation(((IndexStmt *) stmt)->relation);
		case T_AlterTableStmt:
			foreach(lc, ((AlterTableStmt *) stmt)->cmds)
			{
				AlterTableCmd *cmd = lfirst(lc);

				if (cmd->behavior == DROP_CASCADE)
					return false;
				if ((cmd->subtype == AT_AddInherit || cmd->subtype == AT_DropInherit) &&
					!is_temp_relation((RangeVar *) cmd->def))
					return false;
			}
			return is_temp_relation(((AlterTableStmt *) stmt)->relation);
		case T_AlterSeqStmt:
			return is_temp_relation(((AlterSeqStmt *) stmt)->sequence);
		case T_RenameStmt:
			{
				RangeVar   *relation = ((RenameStmt *) stmt)->relation;

				return relation != NULL && is_temp_relation(relation);
			}
		case T_DropStmt:
			{
				DropStmt   *drop = (DropStmt *) stmt;

				if (drop->behavior == DROP_CASCADE)
					return false;
				switch (drop->removeType)
				{
					case OBJECT_TABLE:
					case OBJECT_SEQUENCE:
					case OBJECT_VIEW:
					case OBJECT_INDEX:
						return all_temp_relations(drop->objects);
					default:
						return false;
				}
			}
		case T_TruncateStmt:
			if (((TruncateStmt *) stmt)->behavior == DROP_CASCADE)
				return false;
			foreach(lc, ((TruncateStmt *) stmt)->relations)
				if (!is_temp_relation(lfirst(lc)))
					return false;
			return true;
		default:
			return false;
	}
}

/* Every member of the extension (none if it does not exist) is a function. */
static bool
extension_owns_only_functions(Oid extension)
{
	Relation	depend;
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		only_functions = true;

	if (!OidIsValid(extension))
		return true;
	depend = table_open(DependRelationId, AccessShareLock);
	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(ExtensionRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(extension));
	scan = systable_beginscan(depend, DependReferenceIndexId, true, NULL, 2, key);
	while (only_functions && HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tuple);

		if (dep->deptype == DEPENDENCY_EXTENSION && dep->classid != ProcedureRelationId)
			only_functions = false;
	}
	systable_endscan(scan);
	table_close(depend, AccessShareLock);
	return only_functions;
}

bool
is_own_extension_ddl(Node *stmt)
{
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_CreateExtensionStmt:
			return strcmp(((CreateExtensionStmt *) stmt)->extname, "leader_election") == 0;
		case T_AlterExtensionStmt:
			return strcmp(((AlterExtensionStmt *) stmt)->extname, "leader_election") == 0;
		case T_DropStmt:
			/* CASCADE would drop the user's objects that depend on it */
			if (((DropStmt *) stmt)->removeType != OBJECT_EXTENSION ||
				((DropStmt *) stmt)->behavior == DROP_CASCADE)
				return false;
			foreach(lc, ((DropStmt *) stmt)->objects)
				if (strcmp(strVal(lfirst(lc)), "leader_election") != 0)
					return false;
			/* nor may it drop a table someone added to the extension */
			return extension_owns_only_functions(get_extension_oid("leader_election", true));
		default:
			return false;
	}
}

bool
ends_transaction(Node *stmt)
{
	if (!IsA(stmt, TransactionStmt))
		return false;
	switch (((TransactionStmt *) stmt)->kind)
	{
		case TRANS_STMT_COMMIT:
		case TRANS_STMT_ROLLBACK:
		case TRANS_STMT_PREPARE:
			return true;
		default:
			return false;
	}
}

/*
 * The functions whose signature an update script of ours replaces: it
 * drops them (without CASCADE) before creating them anew.
 */
static bool
drops_replaced_function(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType != OBJECT_FUNCTION || stmt->behavior == DROP_CASCADE)
		return false;
	foreach(lc, stmt->objects)
	{
		ObjectWithArgs *func = lfirst(lc);

		if (strcmp(strVal(llast(func->objname)), "leader_status") != 0)
			return false;
	}
	return true;
}

bool
is_extension_script_statement(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_CreateFunctionStmt:
		case T_CommentStmt:
		case T_GrantStmt:
			return true;
		case T_DropStmt:
			return drops_replaced_function((DropStmt *) stmt);
		default:
			return false;
	}
}

/* Whether options (DefElems) name the option at all. */
static bool
has_option_named(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
		if (strcmp(((DefElem *) lfirst(lc))->defname, name) == 0)
			return true;
	return false;
}

/* The boolean option name of an EXPLAIN, false if absent. */
static bool
has_option(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *opt = lfirst(lc);

		if (strcmp(opt->defname, name) == 0)
			return defGetBoolean(opt);
	}
	return false;
}

const char *
persisting_read_only_statement(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_ClusterStmt:
			return "CLUSTER marks the index a table is clustered on";
		case T_ReindexStmt:
			/* a plain REINDEX changes files, not what clients see */
			if (has_option_named(((ReindexStmt *) stmt)->params, "tablespace"))
				return "REINDEX (TABLESPACE) moves indexes";
			/* it commits new catalog entries before it builds anything */
			if (has_option(((ReindexStmt *) stmt)->params, "concurrently"))
				return "REINDEX CONCURRENTLY commits catalog changes in its own transactions";
			return NULL;
		case T_AlterSystemStmt:
			return "ALTER SYSTEM writes postgresql.auto.conf";
		case T_ExplainStmt:
			{
				ExplainStmt *explain = (ExplainStmt *) stmt;
				Query	   *query = castNode(Query, explain->query);
				CreateTableAsStmt *ctas;

				if (!has_option(explain->options, "analyze") ||
					query->commandType != CMD_UTILITY ||
					!IsA(query->utilityStmt, CreateTableAsStmt))
					return NULL;
				ctas = (CreateTableAsStmt *) query->utilityStmt;
				if (names_temp_namespace(ctas->into->rel))
					return NULL;
				return "EXPLAIN ANALYZE would create and fill a relation";
			}
		default:
			return NULL;
	}
}

bool
imports_snapshot(Node *stmt)
{
	VariableSetStmt *set = (VariableSetStmt *) stmt;

	return IsA(stmt, VariableSetStmt) && set->kind == VAR_SET_MULTI &&
		strcmp(set->name, "TRANSACTION SNAPSHOT") == 0;
}

bool
is_commit_prepared(Node *stmt)
{
	return IsA(stmt, TransactionStmt) &&
		((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED;
}

/* The C functions behind built-ins whose writes read-only transactions allow. */
static const char *const persisting_functions[] = {
	/* large objects */
	"be_lo_creat", "be_lo_create", "be_lo_import", "be_lo_import_with_oid",
	"be_lo_from_bytea", "be_lo_put", "be_lowrite", "be_lo_truncate",
	"be_lo_truncate64", "be_lo_unlink",
	/* WAL messages that logical decoding hands to consumers */
	"pg_logical_emit_message_text", "pg_logical_emit_message_bytea",
	/* catalog rows */
	"pg_import_system_collations",
	/* replication origins and slots */
	"pg_replication_origin_create", "pg_replication_origin_drop",
	"pg_replication_origin_advance", "pg_replication_origin_session_setup",
	"pg_replication_origin_xact_setup",
	"pg_create_physical_replication_slot", "pg_create_logical_replication_slot",
	"pg_drop_replication_slot", "pg_replication_slot_advance",
	"pg_copy_logical_replication_slot_a", "pg_copy_logical_replication_slot_b",
	"pg_copy_logical_replication_slot_c", "pg_copy_physical_replication_slot_a",
	"pg_copy_physical_replication_slot_b",
	"pg_logical_slot_get_changes", "pg_logical_slot_get_binary_changes",
};

static const char *const sequence_functions[] = {
	"nextval_oid", "setval_oid", "setval3_oid",
};

static bool
listed(const char *symbol, const char *const *list, int count)
{
	for (int i = 0; i < count; i++)
		if (strcmp(symbol, list[i]) == 0)
			return true;
	return false;
}

FunctionEffect
function_effect(Oid fn_oid)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	FunctionEffect effect = FUNCTION_EFFECT_OTHER;

	if (!HeapTupleIsValid(tuple))
		return FUNCTION_EFFECT_OTHER;
	if (((Form_pg_proc) GETSTRUCT(tuple))->prolang == INTERNALlanguageId)
	{
		bool		isnull;
		Datum		prosrc = SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_prosrc, &isnull);
		char	   *symbol = isnull ? pstrdup("") : TextDatumGetCString(prosrc);

		if (listed(symbol, persisting_functions, lengthof(persisting_functions)))
			effect = FUNCTION_EFFECT_PERSISTS;
		else if (listed(symbol, sequence_functions, lengthof(sequence_functions)))
			effect = FUNCTION_EFFECT_SEQUENCE;
		pfree(symbol);
	}
	ReleaseSysCache(tuple);
	return effect;
}
