/*
 * wal_shipping.c
 *		Owns the rule that a physical walsender which started while its node
 *		led stops once the node may no longer ship WAL as the leader.
 *
 * Why.  A deposed primary is fenced: it commits nothing.  But it still
 * writes WAL of its own (checkpoints, a running-xacts record), and its
 * walsenders would ship it to the standbys that stream from it.  A standby
 * that replays even one such record past the point where the new leader's
 * timeline forked can no longer follow the new leader.  The worker ends its
 * walsenders when it stops leading, but a frozen worker ends nothing.
 *
 * How.  The worker publishes how long this node may ship WAL as the leader
 * (shared_state.h: the end of its lease's local validity, while it leads or
 * hands over), which lapses by itself like leadership does.  A walsender
 * for physical replication that authenticates while that deadline lies
 * ahead arms a timer; every tick compares the deadline with the clock and,
 * once it has passed, asks the walsender to terminate (as SIGTERM would).
 * The standby then reconnects through primary_conninfo and finds the node
 * that leads now.  Walsenders that started while the node did not lead (a
 * base backup, a standby that names this node alone) are left alone: they
 * serve whoever asked for them, not the election.
 *
 * The timer handler runs in a signal handler: it reads an atomic and the
 * clock, sets flags and the latch, and nothing else.
 */
#include "postgres.h"

#include "libpq/auth.h"
#include "miscadmin.h"
#include "replication/walsender.h"
#include "storage/latch.h"
#include "utils/timeout.h"

#include "shared_state.h"
#include "wal_shipping.h"

#define TICK_MS 250

static ClientAuthentication_hook_type prev_client_authentication = NULL;

static void
shipping_tick(void)
{
	if (le_may_ship_wal())
		return;
	/* what die() does: the walsender terminates at its next interrupt check */
	InterruptPending = true;
	ProcDiePending = true;
	SetLatch(MyLatch);
}

static void
arm_at_authentication(Port *port, int status)
{
	TimeoutId	tick;

	if (prev_client_authentication)
		prev_client_authentication(port, status);
	if (status != STATUS_OK || !am_walsender || am_db_walsender || le_shared == NULL ||
		!le_may_ship_wal())
		return;
	tick = RegisterTimeout(USER_TIMEOUT, shipping_tick);
	enable_timeout_every(tick, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), TICK_MS),
						 TICK_MS);
}

void
le_wal_shipping_install(void)
{
	prev_client_authentication = ClientAuthentication_hook;
	ClientAuthentication_hook = arm_at_authentication;
}
