/*
 * etcd_access.h
 *		How this node reaches a secured etcd: the TLS files that verify etcd
 *		and identify the node, and the etcd user it authenticates as.  The
 *		settings are checked by their check hooks (etcd_access.c); every
 *		EtcdClient takes a copy with etcd_client_set_access().
 */
#ifndef LEADER_ELECTION_ETCD_ACCESS_H
#define LEADER_ELECTION_ETCD_ACCESS_H

#include <limits.h>

#define LE_PATH_LEN		1024
#define LE_USER_LEN		256
/* the longest password read from leader_election.password_file */
#define LE_PASSWORD_LEN	1024

/* Empty strings mean "not set". */
typedef struct EtcdAccess
{
	char		ca_file[LE_PATH_LEN];	/* empty: the system's CA bundle */
	char		cert_file[LE_PATH_LEN];
	char		key_file[LE_PATH_LEN];
	char		username[LE_USER_LEN];	/* empty: etcd without users */
	char		password_file[LE_PATH_LEN];
} EtcdAccess;

extern void etcd_access_define_settings(void);

/* The settings as they are now in this process. */
extern void etcd_access_current(EtcdAccess *access);

/*
 * Reads the password from path: the first line, without its line end.
 * The file must be a regular file owned by this OS user and not accessible
 * to group or others.  False with err (LE_ERROR_LEN) set otherwise; the
 * message never contains the password.
 */
extern bool etcd_access_read_password(const char *path, char *password, size_t len,
									  char *err);

#endif
