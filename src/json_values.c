/*
 * json_values.c
 *		Owns the JSON helpers the values in etcd share (cluster record, term,
 *		published WAL positions).  Running out of memory is the only error:
 *		a value that does not parse is the caller's to describe.
 */
#include "postgres.h"

#include "json_values.h"

static void
out_of_memory(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("out of memory while building %s", what)));
}

cJSON *
le_json_object(const char *what)
{
	cJSON	   *json = cJSON_CreateObject();

	if (json == NULL)
		out_of_memory(what);
	return json;
}

char *
le_json_text(cJSON *json, const char *what)
{
	char	   *text = cJSON_PrintUnformatted(json);
	char	   *result;

	cJSON_Delete(json);
	if (text == NULL)
		out_of_memory(what);
	result = pstrdup(text);
	cJSON_free(text);
	return result;
}

void
le_json_add_lsn(cJSON *json, const char *field, XLogRecPtr lsn)
{
	char		text[32];

	snprintf(text, sizeof(text), "%X/%X", LSN_FORMAT_ARGS(lsn));
	cJSON_AddStringToObject(json, field, text);
}

bool
le_json_lsn(const cJSON *item, XLogRecPtr *lsn)
{
	const char *text;
	char	   *end;
	uint64		hi;
	uint64		lo;

	if (!cJSON_IsString(item))
		return false;
	text = item->valuestring;
	if (!isxdigit((unsigned char) text[0]))
		return false;
	errno = 0;
	hi = strtou64(text, &end, 16);
	if (errno != 0 || *end != '/' || hi > PG_UINT32_MAX || !isxdigit((unsigned char) end[1]))
		return false;
	lo = strtou64(end + 1, &end, 16);
	if (errno != 0 || *end != '\0' || lo > PG_UINT32_MAX)
		return false;
	*lsn = (hi << 32) | lo;
	return true;
}
