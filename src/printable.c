/*
 * printable.c
 *		Owns the one way text from outside is shown.  Any etcd client can
 *		write any bytes into a key or a value of the election, and a server
 *		that is not etcd can answer anything: such text must not reach a SQL
 *		result, an error message or a log line as it is (an invalid byte
 *		sequence turns the fence's 25006 into an encoding error for the
 *		client; a newline forges log lines).  Shown text is printable ASCII,
 *		which every server and client encoding can carry.
 */
#include "postgres.h"

#include "printable.h"

void
le_printable(const char *src, size_t srclen, char *dst, size_t dstsize)
{
	static const char hex[] = "0123456789abcdef";
	size_t		out = 0;

	Assert(dstsize > 0);
	for (size_t i = 0; i < srclen; i++)
	{
		unsigned char c = (unsigned char) src[i];

		if (c >= 0x20 && c <= 0x7e)
		{
			if (out + 1 >= dstsize)
				break;
			dst[out++] = (char) c;
		}
		else
		{
			if (out + 4 >= dstsize)
				break;
			dst[out++] = '\\';
			dst[out++] = 'x';
			dst[out++] = hex[c >> 4];
			dst[out++] = hex[c & 0x0f];
		}
	}
	dst[out] = '\0';
}
