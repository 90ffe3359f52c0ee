/*
 * etcd_auth.c
 *		Owns the token protocol of etcd's JSON gateway: the body of
 *		/v3/auth/authenticate, the reading of its answer, and the
 *		recognition of answers that refuse a token.
 *
 * etcd answers a refused token with gRPC code 16 (Unauthenticated,
 * "etcdserver: invalid auth token": expired, or issued by a member that
 * restarted since) or code 3 ("etcdserver: revision of auth store is old":
 * users or roles changed since it was issued), and with "etcdserver: user
 * name is empty" when a token is required but none was sent (etcd enabled
 * authentication after the client found it off).  Each of them is cured
 * by authenticating again.  Messages are matched rather than codes alone:
 * code 3 is also etcd's answer to any invalid argument.
 *
 * Rules.  The password is referenced, never copied, into the request
 * JSON, and the printed body is the caller's to wipe.  A token is accepted
 * only if it can travel in an HTTP header as is (printable ASCII without
 * spaces): a hostile answer cannot inject header lines.
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "etcd_api.h"
#include "etcd_auth.h"
#include "printable.h"
#include "shared_state.h"

char *
etcd_auth_request_body(const char *username, const char *password)
{
	cJSON	   *body = cJSON_CreateObject();
	char	   *json = NULL;

	if (body != NULL &&
		cJSON_AddStringToObject(body, "name", username) != NULL &&
		cJSON_AddItemToObject(body, "password", cJSON_CreateStringReference(password)))
		json = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);			/* a reference: the password is not freed */
	return json;
}

static bool
contains(const char *haystack, const char *needle)
{
	return haystack != NULL && strstr(haystack, needle) != NULL;
}

EtcdAuthOutcome
etcd_auth_answer(long http_status, const char *answer, size_t len, char *token, char *err)
{
	cJSON	   *json = answer ? cJSON_ParseWithLength(answer, len) : NULL;
	const char *message = json ? etcd_answer_error(json) : NULL;
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, "token");
	EtcdAuthOutcome outcome = ETCD_AUTH_REFUSED;

	token[0] = '\0';
	if (contains(message, "authentication is not enabled"))
		outcome = ETCD_AUTH_NOT_ENABLED;
	else if (message != NULL)
		le_printable(message, strlen(message), err, LE_ERROR_LEN);
	else if (http_status != 200 || !cJSON_IsObject(json))
		snprintf(err, LE_ERROR_LEN, "HTTP %ld without a JSON answer", http_status);
	else if (!cJSON_IsString(item) || item->valuestring[0] == '\0' ||
			 strlen(item->valuestring) >= LE_TOKEN_LEN)
		snprintf(err, LE_ERROR_LEN, "an answer without a valid token");
	else
	{
		outcome = ETCD_AUTH_TOKEN;
		for (const char *p = item->valuestring; *p; p++)
			if (*p <= ' ' || *p > '~')
			{
				snprintf(err, LE_ERROR_LEN, "a token with characters an HTTP header cannot carry");
				outcome = ETCD_AUTH_REFUSED;
				break;
			}
		if (outcome == ETCD_AUTH_TOKEN)
			strlcpy(token, item->valuestring, LE_TOKEN_LEN);
	}
	cJSON_Delete(json);
	return outcome;
}

bool
etcd_auth_token_rejected(const char *answer, size_t len)
{
	const char *line_end;
	cJSON	   *json;
	const char *message;
	bool		rejected;

	if (answer == NULL)
		return false;
	/* a stream: its first message */
	line_end = memchr(answer, '\n', len);
	if (line_end != NULL)
		len = line_end - answer;
	json = cJSON_ParseWithLength(answer, len);
	message = json ? etcd_answer_error(json) : NULL;
	rejected = contains(message, "invalid auth token") ||
		contains(message, "auth store is old") ||
		contains(message, "auth revision is old") ||
		contains(message, "user name is empty");
	cJSON_Delete(json);
	return rejected;
}
