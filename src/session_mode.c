/*
 * session_mode.c
 *		Owns what a session tells clients about writing: the reported
 *		setting default_transaction_read_only.
 *
 * libpq (target_session_attrs=read-write, PostgreSQL 14+) and pgjdbc pick a
 * writable server by default_transaction_read_only and in_hot_standby, read
 * from the ParameterStatus messages of a new connection.  So while the fence
 * applies and the node does not lead, every session reports "on": it is set
 * with source PGC_S_OVERRIDE during authentication, before the startup
 * ParameterStatus is sent (walsenders included), and again at each
 * statement start, so an open session follows its node; PostgreSQL reports
 * the change before the next ReadyForQuery.  When the node leads, the
 * session goes back to its configured value.
 *
 * The session's own choice wins: a SET of the setting (source
 * PGC_S_SESSION, above the override) is left alone.  It opens no way to
 * write -- the fence refuses writes by itself -- it only changes what that
 * session reports.  Everything is derived anew from the setting's current
 * value and source at each statement, because a change made inside a
 * transaction that aborts is rolled back with it.  Limit: role and database
 * settings arrive after authentication with lower priority than the
 * override, so a session that starts while its node is fenced does not get
 * them.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "libpq/auth.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"

#include "session_mode.h"

#define SETTING "default_transaction_read_only"

static ClientAuthentication_hook_type prev_client_authentication = NULL;

/* The fence's answer to "is this node fenced now?" */
static bool (*node_fenced_now) (void) = NULL;

/* The setting as the session had it before the fence overrode it. */
static bool configured_read_only = false;

/* The setting's GUC record, found once. */
static struct config_generic *
setting_record(void)
{
	static struct config_generic *record = NULL;

	if (record == NULL)
	{
		struct config_generic **all = get_guc_variables();
		int			count = GetNumConfigOptions();

		for (int i = 0; i < count; i++)
			if (strcmp(all[i]->name, SETTING) == 0)
				record = all[i];
		if (record == NULL || record->vartype != PGC_BOOL)
			elog(ERROR, "leader_election: setting \"%s\" not found", SETTING);
	}
	return record;
}

void
le_session_follow_node(bool node_fenced)
{
	struct config_generic *record;
	bool		want;

	/* only client sessions report; settings are fixed in parallel mode */
	if ((MyBackendType != B_BACKEND && MyBackendType != B_WAL_SENDER) ||
		IsInParallelMode())
		return;
	record = setting_record();
	if (record->source > PGC_S_OVERRIDE)
		return;					/* the session SET it: its own choice */
	if (record->source < PGC_S_OVERRIDE)
		configured_read_only = DefaultXactReadOnly;	/* not overridden (any more) */
	want = node_fenced || configured_read_only;
	if (DefaultXactReadOnly != want)
		(void) set_config_option(SETTING, want ? "on" : "off", PGC_SUSET,
								 PGC_S_OVERRIDE, GUC_ACTION_SET, true,
								 WARNING, false);
}

bool
le_session_overridden(bool *configured)
{
	if (MyBackendType != B_BACKEND && MyBackendType != B_WAL_SENDER)
		return false;
	*configured = configured_read_only;
	return setting_record()->source == PGC_S_OVERRIDE &&
		DefaultXactReadOnly != configured_read_only;
}

/* Before the startup ParameterStatus: a new session reports its node's state. */
static void
follow_node_at_authentication(Port *port, int status)
{
	if (prev_client_authentication)
		prev_client_authentication(port, status);
	if (status == STATUS_OK)
		le_session_follow_node(node_fenced_now());
}

void
le_session_mode_install(bool (*node_fenced) (void))
{
	node_fenced_now = node_fenced;
	prev_client_authentication = ClientAuthentication_hook;
	ClientAuthentication_hook = follow_node_at_authentication;
}
