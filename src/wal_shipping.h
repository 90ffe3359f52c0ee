/*
 * wal_shipping.h
 *		Walsenders that serve a leader end with its leadership, even when
 *		its worker cannot act.
 */
#ifndef LEADER_ELECTION_WAL_SHIPPING_H
#define LEADER_ELECTION_WAL_SHIPPING_H

/* From _PG_init, while shared_preload_libraries is processed. */
extern void le_wal_shipping_install(void);

#endif
