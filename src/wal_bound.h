/*
 * wal_bound.h
 *		A leader's commits stay within max_lag_on_failover of the WAL
 *		position recorded in etcd.
 */
#ifndef LEADER_ELECTION_WAL_BOUND_H
#define LEADER_ELECTION_WAL_BOUND_H

/*
 * Called at the commit-time check of a transaction that writes in term:
 * returns once the WAL written so far is within max_lag_on_failover of the
 * position the cluster record holds; raises the fence's error if the node
 * stops leading in that term first.
 */
extern void le_await_recorded_wal(uint64 term);

#endif
