/*
 * pg_shim.c
 *		The few backend symbols the parsers of etcd answers need, for the
 *		fuzz target outside a server.
 *
 * Memory: palloc and friends hand out malloc'd chunks kept on one list,
 * which fuzz_shim_reset() frees after each input, as a memory context
 * reset would; the sanitizers see every chunk as its own block, so an
 * overrun of a palloc'd buffer is caught.  A request above MaxAllocSize is
 * an ERROR in a backend, and so a finding here.
 *
 * Errors: ereport(ERROR) (or worse) from parsing is a finding: the worker
 * would leave its election for a bad answer instead of saying what was
 * wrong in last_error.  errfinish() aborts with the message.  Messages
 * below ERROR are dropped.  A failed Assert (the target is built with
 * USE_ASSERT_CHECKING) aborts too.
 *
 * Everything else that src/etcd_client.c refers to (waits, latches, the
 * clock) is never reached from parsing: its stubs abort if it is.
 */
#include "postgres.h"

#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/memutils.h"

#include "counters.h"
#include "shared_state.h"

extern void fuzz_shim_reset(void);

/* ---- memory ---- */

typedef struct Chunk
{
	struct Chunk *prev;
	struct Chunk *next;
	size_t		size;
} Chunk;

#define CHUNK_HEADER	MAXALIGN(sizeof(Chunk))

static Chunk chunks = {&chunks, &chunks, 0};

MemoryContext CurrentMemoryContext = NULL;

static void
shim_fail(const char *what, const char *detail)
{
	fprintf(stderr, "pg_shim: %s: %s\n", what, detail);
	abort();
}

static void *
chunk_alloc(Size size, bool zero)
{
	Chunk	   *c;

	if (!AllocSizeIsValid(size))
		shim_fail("ERROR", "invalid memory alloc request size");
	c = zero ? calloc(1, CHUNK_HEADER + size) : malloc(CHUNK_HEADER + size);
	if (c == NULL)
		shim_fail("ERROR", "out of memory");
	c->size = size;
	c->next = chunks.next;
	c->prev = &chunks;
	chunks.next->prev = c;
	chunks.next = c;
	return (char *) c + CHUNK_HEADER;
}

static Chunk *
chunk_of(void *pointer)
{
	return (Chunk *) ((char *) pointer - CHUNK_HEADER);
}

void
fuzz_shim_reset(void)
{
	while (chunks.next != &chunks)
	{
		Chunk	   *c = chunks.next;

		chunks.next = c->next;
		free(c);
	}
	chunks.prev = &chunks;
}

void *
palloc(Size size)
{
	return chunk_alloc(size, false);
}

void *
palloc0(Size size)
{
	return chunk_alloc(size, true);
}

void *
palloc_extended(Size size, int flags)
{
	return chunk_alloc(size, (flags & MCXT_ALLOC_ZERO) != 0);
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	(void) context;
	return chunk_alloc(size, false);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	(void) context;
	return chunk_alloc(size, true);
}

void
pfree(void *pointer)
{
	Chunk	   *c = chunk_of(pointer);

	c->prev->next = c->next;
	c->next->prev = c->prev;
	free(c);
}

void *
repalloc(void *pointer, Size size)
{
	Chunk	   *c = chunk_of(pointer);
	void	   *copy = chunk_alloc(size, false);

	memcpy(copy, pointer, Min(c->size, size));
	pfree(pointer);
	return copy;
}

char *
pstrdup(const char *in)
{
	size_t		len = strlen(in);
	char	   *out = chunk_alloc(len + 1, false);

	memcpy(out, in, len + 1);
	return out;
}

char *
pnstrdup(const char *in, Size size)
{
	size_t		len = strnlen(in, size);
	char	   *out = chunk_alloc(len + 1, false);

	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

char *
psprintf(const char *fmt,...)
{
	va_list		args;
	int			needed;
	char	   *out;

	va_start(args, fmt);
	needed = vsnprintf(NULL, 0, fmt, args);
	va_end(args);
	if (needed < 0)
		shim_fail("ERROR", "psprintf: bad format");
	out = chunk_alloc((Size) needed + 1, false);
	va_start(args, fmt);
	vsnprintf(out, (size_t) needed + 1, fmt, args);
	va_end(args);
	return out;
}

/* ---- errors ---- */

static int	error_level;
static char error_text[1024];

bool
errstart(int elevel, const char *domain)
{
	(void) domain;
	if (elevel < ERROR)
		return false;
	error_level = elevel;
	strlcpy(error_text, "(no message)", sizeof(error_text));
	return true;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	fprintf(stderr, "pg_shim: ereport(%s) reached from %s (%s:%d): %s\n",
			error_level == ERROR ? "ERROR" : "FATAL or PANIC", funcname,
			filename, lineno, error_text);
	abort();
}

int
errmsg(const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	vsnprintf(error_text, sizeof(error_text), fmt, args);
	va_end(args);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	vsnprintf(error_text, sizeof(error_text), fmt, args);
	va_end(args);
	return 0;
}

int
errcode(int sqlerrcode)
{
	(void) sqlerrcode;
	return 0;
}

int
errdetail(const char *fmt,...)
{
	(void) fmt;
	return 0;
}

int
errhint(const char *fmt,...)
{
	(void) fmt;
	return 0;
}

void
ExceptionalCondition(const char *conditionName, const char *errorType,
					 const char *fileName, int lineNumber)
{
	fprintf(stderr, "pg_shim: %s(\"%s\", File: \"%s\", Line: %d)\n",
			errorType, conditionName, fileName, lineNumber);
	abort();
}

/* ---- never reached from parsing ---- */

struct Latch *MyLatch = NULL;
char	   *DataDir = NULL;

FILE *
AllocateFile(const char *name, const char *mode)
{
	(void) name;
	(void) mode;
	shim_fail("AllocateFile", "not reached from parsing");
	return NULL;
}

int
FreeFile(FILE *file)
{
	(void) file;
	shim_fail("FreeFile", "not reached from parsing");
	return 0;
}

int
pg_fsync(int fd)
{
	(void) fd;
	shim_fail("pg_fsync", "not reached from parsing");
	return 0;
}

int
durable_rename(const char *oldfile, const char *newfile, int loglevel)
{
	(void) oldfile;
	(void) newfile;
	(void) loglevel;
	shim_fail("durable_rename", "not reached from parsing");
	return 0;
}

int
errcode_for_file_access(void)
{
	shim_fail("errcode_for_file_access", "not reached from parsing");
	return 0;
}

uint64
le_clock_us(void)
{
	shim_fail("le_clock_us", "not reached from parsing");
	return 0;
}

WaitEventSet *
CreateWaitEventSet(MemoryContext context, int nevents)
{
	(void) context;
	(void) nevents;
	shim_fail("CreateWaitEventSet", "not reached from parsing");
	return NULL;
}

int
AddWaitEventToSet(WaitEventSet *set, uint32 events, pgsocket fd, Latch *latch,
				  void *user_data)
{
	(void) set;
	(void) events;
	(void) fd;
	(void) latch;
	(void) user_data;
	shim_fail("AddWaitEventToSet", "not reached from parsing");
	return 0;
}

int
WaitEventSetWait(WaitEventSet *set, long timeout, WaitEvent *occurred_events,
				 int nevents, uint32 wait_event_info)
{
	(void) set;
	(void) timeout;
	(void) occurred_events;
	(void) nevents;
	(void) wait_event_info;
	shim_fail("WaitEventSetWait", "not reached from parsing");
	return 0;
}

void
FreeWaitEventSet(WaitEventSet *set)
{
	(void) set;
	shim_fail("FreeWaitEventSet", "not reached from parsing");
}

/* etcd_access.c holds settings; etcd_client.c reads the password through it */
bool
etcd_access_read_password(const char *path, char *password, size_t len, char *err)
{
	(void) path;
	(void) password;
	(void) len;
	(void) err;
	shim_fail("etcd_access_read_password", "not reached from parsing");
	return false;
}

/* counters.c lives in shared memory; etcd_client.c counts finished calls */
void
le_count_etcd_call(const char *path, bool failed)
{
	(void) path;
	(void) failed;
	shim_fail("le_count_etcd_call", "not reached from parsing");
}
