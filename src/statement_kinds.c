/*
 * statement_kinds.c
 *		Owns the fence's classification of statements and functions: which
 *		DDL touches only temporary relations, which statements are the
 *		extension's own, which end a transaction, which functions write large
 *		objects.  Pure: parse trees, catalogs and OIDs in, a yes or no out.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "nodes/parsenodes.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"

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
			foreach(lc, ((TruncateStmt *) stmt)->relations)
				if (!is_temp_relation(lfirst(lc)))
					return false;
			return true;
		default:
			return false;
	}
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
			return true;
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

bool
is_commit_prepared(Node *stmt)
{
	return IsA(stmt, TransactionStmt) &&
		((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED;
}

bool
is_large_object_write(Oid fn_oid)
{
	switch (fn_oid)
	{
		case F_LO_CREAT:
		case F_LO_CREATE:
		case F_LO_IMPORT_TEXT:
		case F_LO_IMPORT_TEXT_OID:
		case F_LO_FROM_BYTEA:
		case F_LO_PUT:
		case F_LOWRITE:
		case F_LO_TRUNCATE:
		case F_LO_TRUNCATE64:
		case F_LO_UNLINK:
			return true;
		default:
			return false;
	}
}
