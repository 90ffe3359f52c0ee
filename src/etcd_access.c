/*
 * etcd_access.c
 *		Owns the settings that secure the connection to etcd:
 *		leader_election.ca_file, cert_file, key_file (TLS), username and
 *		password_file (an etcd user), and the reading of the password.
 *
 * Rules.  Every setting is reloadable (SIGHUP), so certificates and
 * passwords can be rotated without a restart; a new value applies to
 * connections opened after the reload.  The check hooks refuse a file
 * this process cannot read, so a reload that names one keeps the old value
 * and logs why.  The password itself is never a setting: it is read from
 * password_file each time the client authenticates, only if that file is
 * private to the server's OS user (like libpq's .pgpass), and it is never
 * copied into a message, the log or shared memory.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "utils/guc.h"

#include "etcd_access.h"
#include "shared_state.h"

static char *ca_file = NULL;
static char *cert_file = NULL;
static char *key_file = NULL;
static char *username = NULL;
static char *password_file = NULL;

/* A file named by a setting must be readable now; "" always passes. */
static bool
check_readable_file(char **newval, void **extra pg_attribute_unused(),
					GucSource source pg_attribute_unused())
{
	const char *path = *newval;
	struct stat st;
	int			fd;

	if (path == NULL || path[0] == '\0')
		return true;
	if (strlen(path) >= LE_PATH_LEN)
	{
		GUC_check_errdetail("The path is longer than %d bytes.", LE_PATH_LEN - 1);
		return false;
	}
	fd = open(path, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
	{
		GUC_check_errdetail("Could not open file \"%s\": %m.", path);
		return false;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		GUC_check_errdetail("\"%s\" is not a regular file.", path);
		return false;
	}
	close(fd);
	return true;
}

static bool
check_password_file(char **newval, void **extra, GucSource source)
{
	char		password[LE_PASSWORD_LEN];
	char		err[LE_ERROR_LEN];
	bool		ok;

	if (!check_readable_file(newval, extra, source))
		return false;
	if ((*newval)[0] == '\0')
		return true;
	ok = etcd_access_read_password(*newval, password, sizeof(password), err);
	explicit_bzero(password, sizeof(password));
	if (!ok)
		GUC_check_errdetail("%s.", err);
	return ok;
}

static bool
check_username(char **newval, void **extra pg_attribute_unused(),
			   GucSource source pg_attribute_unused())
{
	const char *name = *newval ? *newval : "";

	if (strlen(name) >= LE_USER_LEN)
	{
		GUC_check_errdetail("The user name is limited to %d bytes.", LE_USER_LEN - 1);
		return false;
	}
	for (const char *p = name; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
		{
			GUC_check_errdetail("The user name must not contain control characters.");
			return false;
		}
	return true;
}

bool
etcd_access_read_password(const char *path, char *password, size_t len, char *err)
{
	struct stat st;
	int			fd;
	ssize_t		n;
	char	   *end;

	password[0] = '\0';
	fd = open(path, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
	{
		snprintf(err, LE_ERROR_LEN, "could not open leader_election.password_file \"%s\": %m",
				 path);
		return false;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		snprintf(err, LE_ERROR_LEN, "leader_election.password_file \"%s\" is not a regular file",
				 path);
		return false;
	}
	if (st.st_uid != geteuid())
	{
		close(fd);
		snprintf(err, LE_ERROR_LEN,
				 "leader_election.password_file \"%s\" is not owned by the server's operating system user",
				 path);
		return false;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
	{
		close(fd);
		snprintf(err, LE_ERROR_LEN,
				 "leader_election.password_file \"%s\" is accessible to group or others (mode %04o); it must be u=rw (0600) or less",
				 path, (unsigned) (st.st_mode & 07777));
		return false;
	}
	n = read(fd, password, len);
	close(fd);
	if (n < 0)
	{
		snprintf(err, LE_ERROR_LEN, "could not read leader_election.password_file \"%s\": %m",
				 path);
		return false;
	}
	if ((size_t) n == len)
	{
		explicit_bzero(password, len);
		snprintf(err, LE_ERROR_LEN,
				 "leader_election.password_file \"%s\" holds more than %zu bytes", path, len - 1);
		return false;
	}
	password[n] = '\0';
	/* the first line is the password; editors add a line end */
	end = password + strcspn(password, "\r\n");
	*end = '\0';
	if (password[0] == '\0' || strlen(password) != (size_t) (end - password))
	{
		explicit_bzero(password, len);
		snprintf(err, LE_ERROR_LEN,
				 "leader_election.password_file \"%s\" holds no password on its first line",
				 path);
		return false;
	}
	return true;
}

void
etcd_access_current(EtcdAccess *access)
{
	strlcpy(access->ca_file, ca_file ? ca_file : "", sizeof(access->ca_file));
	strlcpy(access->cert_file, cert_file ? cert_file : "", sizeof(access->cert_file));
	strlcpy(access->key_file, key_file ? key_file : "", sizeof(access->key_file));
	strlcpy(access->username, username ? username : "", sizeof(access->username));
	strlcpy(access->password_file, password_file ? password_file : "",
			sizeof(access->password_file));
}

void
etcd_access_define_settings(void)
{
	DefineCustomStringVariable("leader_election.ca_file",
							   "CA certificates that sign the etcd servers' certificates (PEM).",
							   "Empty means the system's CA bundle. Used with https:// endpoints.",
							   &ca_file, "", PGC_SIGHUP, 0,
							   check_readable_file, NULL, NULL);
	DefineCustomStringVariable("leader_election.cert_file",
							   "Client certificate (PEM) shown to etcd, for its --client-cert-auth.",
							   NULL,
							   &cert_file, "", PGC_SIGHUP, 0,
							   check_readable_file, NULL, NULL);
	DefineCustomStringVariable("leader_election.key_file",
							   "Private key (PEM) of leader_election.cert_file.",
							   NULL,
							   &key_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_readable_file, NULL, NULL);
	DefineCustomStringVariable("leader_election.username",
							   "etcd user the node authenticates as.",
							   "Empty means etcd without authentication.",
							   &username, "", PGC_SIGHUP, 0,
							   check_username, NULL, NULL);
	DefineCustomStringVariable("leader_election.password_file",
							   "File holding the etcd user's password on its first line.",
							   "It must be owned by the server's operating system user and not accessible to others.",
							   &password_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_password_file, NULL, NULL);
}
