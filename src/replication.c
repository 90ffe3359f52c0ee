/*
 * replication.c
 *		Owns what the extension reads from, and does to, PostgreSQL's
 *		physical replication: whether this node is a standby, its timeline
 *		and system identifier, its WAL receiver's lag, its walsenders'
 *		positions, and the promotion request.
 *
 * Everything here reads shared memory the way PostgreSQL's own views do
 * (pg_stat_wal_receiver, pg_stat_replication): fields under their
 * spinlocks, names through the backend status snapshot.  A physical
 * walsender is told from a logical one by its database: it has none.
 * Nothing here waits, and nothing here decides: the election does.
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogrecovery.h"
#include "miscadmin.h"
#include "replication/walreceiver.h"
#include "replication/walsender.h"
#include "replication/walsender_private.h"
#include "storage/fd.h"
#include "storage/spin.h"
#include "utils/backend_status.h"

#include "replication.h"
#include "shared_state.h"

void
replication_read(ReplicationState *state)
{
	XLogRecPtr	replayed;

	memset(state, 0, sizeof(*state));
	state->system_identifier = GetSystemIdentifier();
	state->in_recovery = RecoveryInProgress();
	if (!state->in_recovery)
	{
		state->reads_open = true;
		state->timeline = GetWALInsertionTimeLine();
		return;
	}

	state->crash_recovery = (GetRecoveryState() == RECOVERY_STATE_CRASH);
	state->reads_open = !state->crash_recovery && HotStandbyActive();
	replayed = GetXLogReplayRecPtr(&state->timeline);
	state->replayed = replayed;
	if (WalRcv != NULL)
	{
		WalRcvState rcv_state;
		bool		connected;
		XLogRecPtr	flushed;
		XLogRecPtr	sent;

		SpinLockAcquire(&WalRcv->mutex);
		rcv_state = WalRcv->walRcvState;
		connected = WalRcv->ready_to_display;
		flushed = WalRcv->flushedUpto;
		sent = WalRcv->latestWalEnd;
		state->received_timeline = WalRcv->receivedTLI;
		SpinLockRelease(&WalRcv->mutex);

		/*
		 * A new WAL receiver starts at the beginning of a segment, behind what
		 * was replayed already; what this node has is the further of both.
		 */
		flushed = Max(flushed, replayed);
		/*
		 * A WAL receiver says it streams as soon as it starts, before it
		 * connects (every 5 s while the primary is unreachable); it streams
		 * once it is connected.
		 */
		state->streaming = (rcv_state == WALRCV_STREAMING && connected);
		state->flushed = flushed;
		state->received = Max(pg_atomic_read_u64(&WalRcv->writtenUpto), flushed);
		state->lag_bytes = sent > flushed ? (int64) (sent - flushed) : 0;
	}
}

XLogRecPtr
replication_wal_end(void)
{
	XLogRecPtr	insert = GetXLogInsertRecPtr();
	uint32		in_page = insert % XLOG_BLCKSZ;
	uint32		header = XLogSegmentOffset(insert, wal_segment_size) < XLOG_BLCKSZ ?
		SizeOfXLogLongPHD : SizeOfXLogShortPHD;

	/*
	 * Right after a page header nothing was written on the page yet: the WAL
	 * ends at the page boundary, which is as far as a standby can flush.
	 */
	return in_page == header ? insert - header : insert;
}

XLogRecPtr
replication_wal_flushed(void)
{
	return GetFlushRecPtr(NULL);
}

void
replication_flush_wal(XLogRecPtr upto)
{
	/* the WAL writer leaves a partly filled page alone: standbys need it now */
	XLogFlush(upto);
}

bool
replication_restart_receiver(void)
{
	pid_t		pid;

	SpinLockAcquire(&WalRcv->mutex);
	pid = WalRcv->pid;
	SpinLockRelease(&WalRcv->mutex);
	/* what pg_terminate_backend() would do; the startup process starts another */
	return pid != 0 && kill(pid, SIGTERM) == 0;
}

/*
 * The pids of this node's physical walsenders, with their application
 * names (palloc'd); returns how many.  The snapshot is taken anew each call.
 */
static int
physical_walsenders(pid_t **pids, char ***names)
{
	int			count;
	int			found = 0;

	pgstat_clear_backend_activity_snapshot();
	count = pgstat_fetch_stat_numbackends();
	*pids = palloc(sizeof(pid_t) * Max(count, 1));
	*names = palloc(sizeof(char *) * Max(count, 1));
	for (int i = 1; i <= count; i++)
	{
		LocalPgBackendStatus *local = pgstat_fetch_stat_local_beentry(i);
		PgBackendStatus *status;

		if (local == NULL)
			continue;
		status = &local->backendStatus;
		if (status->st_backendType != B_WAL_SENDER || status->st_databaseid != InvalidOid)
			continue;
		(*pids)[found] = status->st_procpid;
		(*names)[found] = pstrdup(status->st_appname ? status->st_appname : "");
		found++;
	}
	pgstat_clear_backend_activity_snapshot();
	return found;
}

/*
 * The walsender slot of pid, if it streams (or catches up): its flush
 * position, whether its client replays WAL (a standby reports what it
 * replayed; pg_receivewal and pg_basebackup report no apply position),
 * whether it caught up once, and its synchronous priority.
 */
static bool
walsender_state(pid_t pid, WalStream *one)
{
	for (int i = 0; i < max_wal_senders; i++)
	{
		WalSnd	   *walsnd = &WalSndCtl->walsnds[i];
		bool		match;

		SpinLockAcquire(&walsnd->mutex);
		match = walsnd->pid == pid &&
			(walsnd->state == WALSNDSTATE_STREAMING || walsnd->state == WALSNDSTATE_CATCHUP);
		one->flushed = walsnd->flush;
		one->replays = walsnd->apply != InvalidXLogRecPtr;
		one->streaming = walsnd->state == WALSNDSTATE_STREAMING;
		one->sync_priority = walsnd->sync_standby_priority;
		SpinLockRelease(&walsnd->mutex);
		if (match)
			return true;
	}
	return false;
}

void
replication_streams(WalStreams *streams)
{
	pid_t	   *pids;
	char	  **names;
	int			count = physical_walsenders(&pids, &names);

	streams->count = 0;
	streams->streams = palloc(sizeof(WalStream) * Max(count, 1));
	for (int i = 0; i < count; i++)
	{
		WalStream  *one = &streams->streams[streams->count];

		if (walsender_state(pids[i], one))
		{
			one->name = names[i];
			streams->count++;
		}
	}
}

bool
replication_has_standby(const WalStreams *streams)
{
	for (int i = 0; i < streams->count; i++)
		if (streams->streams[i].replays)
			return true;
	return false;
}

bool
replication_standby_flushed(const WalStreams *streams, const char *application_name,
							XLogRecPtr *flushed)
{
	bool		found = false;

	*flushed = InvalidXLogRecPtr;
	for (int i = 0; i < streams->count; i++)
	{
		const WalStream *one = &streams->streams[i];

		/* two connections under one name: the furthest speaks for it */
		if (strcmp(one->name, application_name) == 0)
		{
			*flushed = found ? Max(*flushed, one->flushed) : one->flushed;
			found = true;
		}
	}
	return found;
}

bool
replication_commits_wait_for_standbys(void)
{
	bool		defined;

	/* read without a lock, as SyncRepWaitForLSN() does first */
#ifdef SYNC_STANDBY_DEFINED
	/* 15.13 and later: a status with flags */
	defined = (((volatile WalSndCtlData *) WalSndCtl)->sync_standbys_status &
			   SYNC_STANDBY_DEFINED) != 0;
#else
	defined = ((volatile WalSndCtlData *) WalSndCtl)->sync_standbys_defined;
#endif
	pg_read_barrier();
	return defined;
}

const WalStream *
replication_stream(const WalStreams *streams, const char *application_name)
{
	const WalStream *found = NULL;

	for (int i = 0; i < streams->count; i++)
	{
		const WalStream *one = &streams->streams[i];

		if (one->replays && strcmp(one->name, application_name) == 0 &&
			(found == NULL || one->flushed > found->flushed))
			found = one;
	}
	return found;
}

int
replication_standbys_behind(const WalStreams *streams, XLogRecPtr upto)
{
	int			behind = 0;

	for (int i = 0; i < streams->count; i++)
		if (streams->streams[i].replays && streams->streams[i].flushed < upto)
			behind++;
	return behind;
}

int
replication_drop_standbys(const char *keep)
{
	pid_t	   *pids;
	char	  **names;
	int			count = physical_walsenders(&pids, &names);
	int			dropped = 0;

	for (int i = 0; i < count; i++)
	{
		if (keep != NULL && strcmp(names[i], keep) == 0)
			continue;
		(void) kill(pids[i], SIGTERM);
		dropped++;
	}
	return dropped;
}

bool
replication_request_promotion(char *err)
{
	FILE	   *file;

	/* the same request pg_promote() makes; the data directory is our cwd */
	file = AllocateFile(PROMOTE_SIGNAL_FILE, "w");
	if (file == NULL || FreeFile(file) != 0)
	{
		snprintf(err, LE_ERROR_LEN, "could not create promote signal file \"%s/%s\": %m",
				 DataDir, PROMOTE_SIGNAL_FILE);
		return false;
	}
	if (kill(PostmasterPid, SIGUSR1) != 0)
	{
		snprintf(err, LE_ERROR_LEN, "could not signal the postmaster to promote: %m");
		(void) unlink(PROMOTE_SIGNAL_FILE);
		return false;
	}
	return true;
}
