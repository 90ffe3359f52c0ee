/*
 * etcd_auth.h
 *		The etcd user's token over the JSON gateway: the authenticate call's
 *		body and answer, and the answers that say a token is no longer good.
 *		etcd_client.c drives it (authenticates, then retries once).
 */
#ifndef LEADER_ELECTION_ETCD_AUTH_H
#define LEADER_ELECTION_ETCD_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#define ETCD_PATH_AUTHENTICATE	"/v3/auth/authenticate"
/* JWT tokens run to a few hundred bytes; simple tokens to about twenty */
#define LE_TOKEN_LEN			2048

/*
 * The JSON body of an authenticate call, malloc'd: the caller wipes it
 * (it holds the password) and frees it.  NULL when out of memory.
 */
extern char *etcd_auth_request_body(const char *username, const char *password);

/* What an answer to an authenticate call says. */
typedef enum EtcdAuthOutcome
{
	ETCD_AUTH_TOKEN,			/* token holds the token */
	ETCD_AUTH_NOT_ENABLED,		/* etcd runs without authentication */
	ETCD_AUTH_REFUSED			/* err says why */
} EtcdAuthOutcome;

/* err (LE_ERROR_LEN) gets etcd's reason, printable; the caller names the endpoint and user. */
extern EtcdAuthOutcome etcd_auth_answer(long http_status, const char *answer, size_t len,
										char *token, char *err);

/*
 * Whether an answer (a unary answer, or the first message of a stream) is
 * etcd refusing the token: invalid or expired, issued before the auth
 * store changed, or missing while etcd requires one.
 */
extern bool etcd_auth_token_rejected(const char *answer, size_t len);

#endif
