/*
 * server_setting.h
 *		Changing a PostgreSQL server setting from the worker, as ALTER
 *		SYSTEM and pg_reload_conf() do, without SQL.
 */
#ifndef LEADER_ELECTION_SERVER_SETTING_H
#define LEADER_ELECTION_SERVER_SETTING_H

/*
 * Sets name = value in postgresql.auto.conf (value NULL: removes the line,
 * as ALTER SYSTEM RESET does) and asks the postmaster to reload.  False,
 * with err (LE_ERROR_LEN) set, if the file could not be read or written.
 */
extern bool server_setting_write(const char *name, const char *value, char *err);

#endif
